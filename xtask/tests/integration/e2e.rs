//! `cargo xtask e2e` on a clean clone of HEAD: every step passes, and the table says so.

use std::process::Command;

use crate::common::{clones_target_dir, head_checkout, tools_dir};

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

#[test]
fn the_whole_flow_passes_every_step() {
    // The arm64 build is the one of the shared clone, which the package tests reuse.
    let checkout = head_checkout();
    let output = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("e2e")
        .env("CARGO_MANIFEST_DIR", checkout.join("xtask"))
        .env("CARGO_TARGET_DIR", clones_target_dir())
        .env("XTASK_TOOLS_DIR", tools_dir())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "cargo xtask e2e failed:\n{stdout}\n{stderr}");
    let table: Vec<&str> = stdout.lines().skip_while(|line| !line.starts_with("step ")).skip(1).collect();
    assert_eq!(table.len(), STEPS.len(), "{stdout}");
    for (row, step) in table.iter().zip(STEPS) {
        let verdict = row.strip_prefix(step).map(str::trim_start);
        assert!(verdict.is_some_and(|v| v.starts_with("pass ")), "{step}: {row}");
    }
    // The stand-in checks ran the shipped arm64 binaries, under emulation on this machine.
    assert!(stdout.contains("the packaged bootstrap under qemu-aarch64-static") || std::env::consts::ARCH == "aarch64");
}
