//! `cargo xtask e2e` on this checkout, as a developer tries a change, in one account and with
//! staging and production in accounts of their own: every step passes, and the table says so.
//! The two runs go one after the other: both publish through the same `dist` folder.

use std::process::Command;

use crate::common::{lambda_builds, target_dir, tools_dir};

const STEPS: [&str; 13] = [
    "stand-ins",
    "publish",
    "provision",
    "checkin project paths",
    "checkin Create",
    "GitLab projects",
    "model-build CI job",
    "trigger on approval",
    "model-deploy CI jobs",
    "fault: GitLab unreachable",
    "fault: token rejected",
    "fault: retried Create",
    "IAM: recorded calls",
];

/// Runs `cargo xtask e2e ARGS` and returns its table's rows, having checked the run passed.
fn e2e(args: &[&str]) -> String {
    // The arm64 build is shared with the package tests' clones when the sources are the same.
    let output = Command::new(env!("CARGO_BIN_EXE_xtask-e2e"))
        .arg("e2e")
        .args(args)
        .env("CARGO_TARGET_DIR", target_dir())
        .env("XTASK_TOOLS_DIR", tools_dir())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "cargo xtask e2e {args:?} failed:\n{stdout}\n{stderr}");
    // The stand-in checks ran the shipped arm64 binaries, under emulation on this machine.
    assert!(stdout.contains("the packaged bootstrap under qemu-aarch64-static") || std::env::consts::ARCH == "aarch64");
    stdout
}

fn assert_every_step_passes(stdout: &str, steps: &[&str]) {
    let table: Vec<&str> = stdout.lines().skip_while(|line| !line.starts_with("step ")).skip(1).collect();
    assert_eq!(table.len(), steps.len(), "{stdout}");
    for (row, step) in table.iter().zip(steps) {
        let verdict = row.strip_prefix(step).map(str::trim_start);
        assert!(verdict.is_some_and(|v| v.starts_with("pass ")), "{step}: {row}");
    }
}

#[test]
fn the_whole_flow_passes_every_step_in_one_account_and_with_target_accounts() {
    let _builds = lambda_builds();
    let stdout = e2e(&[]);
    assert_every_step_passes(&stdout, &STEPS);

    let stdout = e2e(&["--target-accounts"]);
    let mut steps = STEPS.to_vec();
    steps.insert(1, "target accounts");
    assert_every_step_passes(&stdout, &steps);
    let deployed = stdout.lines().find(|line| line.starts_with("model-deploy CI jobs")).unwrap();
    for made in ["-staging CREATE_COMPLETE in 111111111111", "-production CREATE_COMPLETE in 222222222222", "none here"]
    {
        assert!(deployed.contains(made), "{deployed}");
    }
}
