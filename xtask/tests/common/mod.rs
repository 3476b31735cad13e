//! What the xtask integration tests share.

// Each test binary compiles this module and uses only part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// A file of this checkout, by its path from the repository root.
pub fn read_repo_file(relative: &str) -> String {
    std::fs::read_to_string(repo_root().join(relative)).unwrap_or_else(|err| panic!("{relative}: {err}"))
}

pub use lambda_testkit::tools_dir;

pub fn tool(venv: &str, program: &str) -> PathBuf {
    let path = tools_dir().join(format!("{venv}-venv/bin/{program}"));
    assert!(path.exists(), "{} is missing: run the tests with `cargo xtask test`, which installs it", path.display());
    path
}

/// The target dir of builds from clones of this repository. Apart from this checkout's, since
/// cargo judges path crates by mtime and a clone's newer build would pass for this checkout's.
pub fn clones_target_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).parent().unwrap().join("clones")
}

/// A fresh clone of HEAD at `parent/name`.
pub fn clone_head(parent: &Path, name: &str) -> PathBuf {
    let dest = parent.join(name);
    run_ok(Command::new("git").args(["clone", "--quiet"]).arg(repo_root()).arg(&dest));
    dest
}

/// Runs `command`, failing the test with its output unless it succeeds; returns its stdout.
pub fn run_ok(command: &mut Command) -> String {
    let output = command.output().unwrap_or_else(|err| panic!("{command:?}: {err}"));
    assert!(
        output.status.success(),
        "{command:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}
