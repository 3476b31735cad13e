//! Which sources the Lambda build in a target dir was compiled from, so that checkouts at other
//! paths (clones, CI's own checkout, the tests') can share one target dir and its dependencies.
//!
//! cargo judges a workspace crate fresh when no source file is newer than its last build: it
//! compares modification times, not contents. A checkout whose files are older than a build made
//! from another checkout (a clone of an older commit, a working tree edited before the other
//! build ran) would get that other checkout's binaries. So each successful build records the
//! SHA-256 of every workspace file rustc read for it (cargo's dep-info lists them), and a build
//! from files that differ first has cargo remove the workspace crates' artifacts. Dependencies
//! from crates.io are versioned, and cargo judges those by content already.
//!
//! The standard ways cost more: cargo's content-based freshness (`-Zchecksum-freshness`) is
//! nightly-only, and a target dir per clone would compile the Lambdas' arm64 release tree again
//! for each of the tests' clones: that build is most of a fresh `cargo xtask package` (170 s on
//! the 2-core machine of 2026-12-08), which the 600 s budget of `cargo xtask test` cannot take.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, ensure};
use serde::{Deserialize, Serialize};
use xshell::{Shell, cmd};

use crate::deterministic_zip::sha256_hex;

/// `<target dir>/<triple>/release/xtask-built-from.json`.
const RECORD: &str = "xtask-built-from.json";

#[derive(Serialize, Deserialize)]
struct Record {
    /// Workspace files by their path from the workspace root, with their SHA-256.
    inputs: BTreeMap<String, String>,
}

/// Holds the target's lock from before the check until the record is written, so two builds
/// from different checkouts (parallel tests, a developer's build beside them) never interleave.
pub struct Guard {
    root: PathBuf,
    record: PathBuf,
    _lock: std::fs::File,
}

/// Makes the workspace crates of `triple`'s release build in `target_dir` safe to reuse for the
/// checkout at `root`: when the last successful build read other file contents (or nothing
/// says what it read), their artifacts are removed and cargo compiles them again.
pub fn prepare(sh: &Shell, root: &Path, target_dir: &Path, triple: &str) -> anyhow::Result<Guard> {
    let dir = target_dir.join(triple).join("release");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let lock = std::fs::File::create(dir.join("xtask-built-from.lock"))?;
    lock.lock().context("cannot lock the Lambda build")?;
    let record = dir.join(RECORD);
    let last: Option<Record> = std::fs::read(&record).ok().and_then(|bytes| serde_json::from_slice(&bytes).ok());
    if !last.is_some_and(|last| same_contents(root, &last)) {
        // Gone before anything is compiled: a build that fails half-way leaves no claim.
        if record.exists() {
            std::fs::remove_file(&record).with_context(|| format!("cannot remove {}", record.display()))?;
        }
        let members = workspace_members(sh, root)?;
        let packages = members.iter().flat_map(|name| ["--package", name.as_str()]);
        let manifest = root.join("Cargo.toml");
        cmd!(sh, "cargo clean --quiet --manifest-path {manifest} --release --target {triple} --target-dir {target_dir} {packages...}")
            .quiet()
            .run()
            .context("cannot remove the workspace crates' earlier build")?;
    }
    Ok(Guard { root: root.to_path_buf(), record, _lock: lock })
}

impl Guard {
    /// Records what the build of `executables` just read: every file below the checkout's root
    /// that their dep-info files (`<executable>.d`, written by cargo) list.
    pub fn built(self, executables: &[PathBuf]) -> anyhow::Result<()> {
        let root = &self.root;
        // cargo names the files by the path it was started in, which may be a link to `root`.
        let roots = [root.clone(), root.canonicalize()?];
        let mut inputs = BTreeMap::new();
        for executable in executables {
            let dep_info = executable.with_extension("d");
            let text = std::fs::read_to_string(&dep_info)
                .with_context(|| format!("cannot read cargo's dep-info {}", dep_info.display()))?;
            for path in dep_info_inputs(&text) {
                if let Some(relative) = roots.iter().find_map(|root| path.strip_prefix(root).ok()) {
                    inputs.insert(relative.to_string_lossy().into_owned(), file_sha256(&path)?);
                }
            }
        }
        // A build whose inputs are not under `root` was not this checkout's: claim nothing.
        ensure!(!inputs.is_empty(), "cargo's dep-info names no file below {}", root.display());
        let json = serde_json::to_vec_pretty(&Record { inputs })?;
        std::fs::write(&self.record, json).with_context(|| format!("cannot write {}", self.record.display()))
    }
}

fn same_contents(root: &Path, last: &Record) -> bool {
    last.inputs.iter().all(|(path, sha256)| file_sha256(&root.join(path)).is_ok_and(|have| have == *sha256))
}

fn file_sha256(path: &Path) -> anyhow::Result<String> {
    Ok(sha256_hex(&std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?))
}

/// The workspace's own crates: the ones cargo judges by modification time.
fn workspace_members(sh: &Shell, root: &Path) -> anyhow::Result<Vec<String>> {
    #[derive(Deserialize)]
    struct Metadata {
        packages: Vec<Package>,
    }
    #[derive(Deserialize)]
    struct Package {
        name: String,
    }
    let manifest = root.join("Cargo.toml");
    let json = cmd!(sh, "cargo metadata --no-deps --format-version 1 --locked --manifest-path {manifest}")
        .quiet()
        .read()
        .context("cargo metadata failed")?;
    let metadata: Metadata = serde_json::from_str(&json).context("cargo metadata printed no metadata")?;
    Ok(metadata.packages.into_iter().map(|p| p.name).collect())
}

/// The prerequisites of a Makefile-style dep-info file: `target: input input ...`, spaces
/// inside a path escaped with a backslash.
fn dep_info_inputs(text: &str) -> Vec<PathBuf> {
    let mut inputs = Vec::new();
    for line in text.lines() {
        let Some((_, prerequisites)) = line.split_once(": ") else { continue };
        let mut current = String::new();
        let mut chars = prerequisites.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => current.extend(chars.next()),
                ' ' => inputs.extend((!current.is_empty()).then(|| PathBuf::from(std::mem::take(&mut current)))),
                _ => current.push(c),
            }
        }
        inputs.extend((!current.is_empty()).then(|| PathBuf::from(current)));
    }
    inputs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dep_info_inputs_are_the_prerequisites_with_escaped_spaces_kept() {
        let text = "/t/release/bootstrap: /w/src/main.rs /w/my\\ dir/lib.rs /cargo/registry/x.rs\n";
        assert_eq!(
            dep_info_inputs(text),
            ["/w/src/main.rs", "/w/my dir/lib.rs", "/cargo/registry/x.rs"].map(PathBuf::from)
        );
    }

    #[test]
    fn contents_are_the_same_only_when_every_recorded_file_hashes_as_recorded() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("src")).unwrap();
        std::fs::write(root.path().join("src/lib.rs"), "fn a() {}").unwrap();
        let record = Record { inputs: BTreeMap::from([("src/lib.rs".into(), sha256_hex(b"fn a() {}"))]) };
        assert!(same_contents(root.path(), &record));
        std::fs::write(root.path().join("src/lib.rs"), "fn b() {}").unwrap();
        assert!(!same_contents(root.path(), &record));
        std::fs::remove_file(root.path().join("src/lib.rs")).unwrap();
        assert!(!same_contents(root.path(), &record));
    }
}
