//! Where things are: the checkout being built, its cargo target dir, and its git state.

use std::path::{Path, PathBuf};

use xshell::{Shell, cmd};

/// The workspace root: the nearest folder holding Cargo.lock above the manifest dir of the crate
/// that runs (xtask, or xtask-aws or xtask-e2e below it). `cargo run` sets CARGO_MANIFEST_DIR for the process
/// it starts, so a clone of the repository builds from its own sources even when it shares a
/// target dir with another checkout (where the compiled-in path would point at the other checkout).
pub fn root() -> PathBuf {
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    manifest_dir
        .ancestors()
        .skip(1)
        .find(|dir| dir.join("Cargo.lock").is_file())
        .expect("xtask lives below the workspace root, which holds Cargo.lock")
        .to_path_buf()
}

/// The cargo target dir: `CARGO_TARGET_DIR` when set, else `<root>/target`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => std::path::absolute(dir).expect("the current directory exists"),
        None => root().join("target"),
    }
}

/// Where xtask installs the tools it needs (a Python venv with zig, the test linters, ...):
/// `XTASK_TOOLS_DIR` when set (tests point clones at the installed tools), else `<target>/tools`.
pub fn tools_dir() -> PathBuf {
    match std::env::var_os("XTASK_TOOLS_DIR") {
        Some(dir) => std::path::absolute(dir).expect("the current directory exists"),
        None => target_dir().join("tools"),
    }
}

/// The commit the artifacts are built from, and whether the work tree differs from it.
/// Both are `None` outside a git checkout (e.g. a source tarball).
pub struct GitState {
    pub commit: Option<String>,
    pub dirty: Option<bool>,
}

pub fn git_state(sh: &Shell, root: &Path) -> GitState {
    let commit = cmd!(sh, "git -C {root} rev-parse HEAD").quiet().ignore_stderr().read().ok();
    let dirty = commit.as_ref().and_then(|_| {
        let status = cmd!(sh, "git -C {root} status --porcelain").quiet().ignore_stderr().read().ok()?;
        Some(!status.is_empty())
    });
    GitState { commit, dirty }
}

/// The files git tracks below `dir` (a folder of the checkout at `root`), as paths relative to
/// `dir`; `None` outside a git checkout (a source tarball ships what it holds).
pub fn tracked_files(sh: &Shell, root: &Path, dir: &str) -> anyhow::Result<Option<std::collections::BTreeSet<String>>> {
    if cmd!(sh, "git -C {root} rev-parse --is-inside-work-tree").quiet().ignore_stderr().read().is_err() {
        return Ok(None);
    }
    let listing = cmd!(sh, "git -C {root} ls-files -z -- {dir}").quiet().read()?;
    let prefix = format!("{}/", dir.trim_end_matches('/'));
    Ok(Some(listing.split('\0').filter_map(|path| path.strip_prefix(&prefix)).map(str::to_owned).collect()))
}
