//! `cargo xtask` runs package, test and bench itself and hands publish, versions and doctor over
//! to xtask-aws (`cargo run --package xtask-aws`), e2e to xtask-e2e, whose tests cover the tasks
//! themselves. Here a stand-in for cargo records what it was asked to run.

use std::path::Path;
use std::process::{Command, Output};

/// Runs this build's xtask with `CARGO` pointing at a script that records its arguments and
/// folder in `dir` and exits with 7.
fn xtask_with_recording_cargo(dir: &Path, args: &[&str]) -> Output {
    let cargo = dir.join("cargo");
    let script = format!("#!/bin/sh\nprintf '%s\\n' \"$@\" > '{0}/argv'\npwd > '{0}/cwd'\nexit 7\n", dir.display());
    std::fs::write(&cargo, script).unwrap();
    std::fs::set_permissions(&cargo, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    Command::new(env!("CARGO_BIN_EXE_xtask")).args(args).env("CARGO", &cargo).current_dir(dir).output().unwrap()
}

#[test]
fn an_aws_task_goes_to_xtask_aws_with_its_arguments_and_its_exit_code_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let output =
        xtask_with_recording_cargo(dir.path(), &["versions", "--region", "eu-west-1", "--product-name", "My product"]);
    assert_eq!(output.status.code(), Some(7), "{}", String::from_utf8_lossy(&output.stderr));
    let argv = std::fs::read_to_string(dir.path().join("argv")).unwrap();
    assert_eq!(
        argv.lines().collect::<Vec<_>>(),
        [
            "run",
            "--quiet",
            "--package",
            "xtask-aws",
            "--",
            "versions",
            "--region",
            "eu-west-1",
            "--product-name",
            "My product"
        ]
    );
    // From the workspace root, whatever the caller's folder: cargo finds the package there.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    assert_eq!(std::fs::read_to_string(dir.path().join("cwd")).unwrap().trim_end(), root.to_str().unwrap());
    // xtask-aws reports its own errors: nothing is added to them.
    assert!(output.stderr.is_empty(), "{}", String::from_utf8_lossy(&output.stderr));
}

#[test]
fn e2e_goes_to_xtask_e2e_with_its_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let output = xtask_with_recording_cargo(dir.path(), &["e2e", "--arch", "x86_64"]);
    assert_eq!(output.status.code(), Some(7), "{}", String::from_utf8_lossy(&output.stderr));
    let argv = std::fs::read_to_string(dir.path().join("argv")).unwrap();
    assert_eq!(
        argv.lines().collect::<Vec<_>>(),
        ["run", "--quiet", "--package", "xtask-e2e", "--", "e2e", "--arch", "x86_64"]
    );
}

#[test]
fn flags_are_checked_before_anything_is_handed_over() {
    let dir = tempfile::tempdir().unwrap();
    let output = xtask_with_recording_cargo(dir.path(), &["publish", "--region", "eu-west-1"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--bucket"));
    assert!(!dir.path().join("argv").exists(), "cargo was run for flags clap refuses");
}

#[test]
fn package_runs_here() {
    let dir = tempfile::tempdir().unwrap();
    let not_a_dir = dir.path().join("file");
    std::fs::write(&not_a_dir, b"").unwrap();
    let output = xtask_with_recording_cargo(dir.path(), &["package", "--out", not_a_dir.to_str().unwrap()]);
    // Its first check fails before any build: a bad output folder.
    assert_eq!(output.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("is not writable"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!dir.path().join("argv").exists(), "package was handed over");
}
