//! `cargo xtask bench`: the speed targets, as medians against a baseline from the same run.

use std::time::{Duration, Instant};

use xshell::{Shell, cmd};

use crate::flags::{self, BenchName};
use crate::{package, project, tools};

pub fn run(sh: &Shell, args: &flags::Bench) -> anyhow::Result<()> {
    anyhow::ensure!(args.runs > 0, "--runs must be at least 1");
    let runs = if args.smoke { 1 } else { args.runs };
    // The examples find moto's venv where xtask installs it, whatever CARGO_TARGET_DIR is.
    let _tools = sh.push_env("XTASK_TOOLS_DIR", project::tools_dir());
    let _bytecode = tools::python_bytecode_env().map(|(key, value)| sh.push_env(key, value));
    let all = args.which.is_none();
    if all || args.which == Some(BenchName::Package) {
        package_rerun(sh, runs)?;
    }
    if all || args.which == Some(BenchName::Checkin) {
        checkin_create(sh, runs)?;
    }
    if all || args.which == Some(BenchName::Coldstart) {
        cold_start(sh, runs, args.smoke)?;
    }
    if all || args.which == Some(BenchName::Publish) {
        publish_rerun(sh, runs)?;
    }
    Ok(())
}

/// A no-change publish against moto, next to a first publish; the example prints the figures.
fn publish_rerun(sh: &Shell, runs: usize) -> anyhow::Result<()> {
    tools::ensure_python_tools(sh, tools::Requirements::Test)?;
    let dist = project::target_dir().join("bench/publish-dist");
    cmd!(sh, "cargo xtask package --out {dist}").quiet().ignore_stdout().run()?;
    // The binary that runs publish itself, without `cargo xtask`'s hand-over to it.
    cmd!(sh, "cargo build --quiet --locked --package xtask-aws").run()?;
    let xtask = project::target_dir().join("debug/xtask-aws");
    let runs = runs.to_string();
    cmd!(sh, "cargo run --quiet --locked --package xtask-e2e --example bench_publish -- {runs} {xtask} {dist}")
        .run()?;
    Ok(())
}

/// Both Lambdas built for this machine in release mode (cold start is timed natively, not under
/// emulation), against the Python baseline; the example prints the figures. A smoke run takes
/// the test build's binaries instead of compiling a release build for this machine.
fn cold_start(sh: &Shell, runs: usize, smoke: bool) -> anyhow::Result<()> {
    let venv_bin = tools::ensure_python_tools(sh, tools::Requirements::Test)?;
    let packages = package::LAMBDAS.iter().flat_map(|(krate, _)| ["--package", krate]);
    let (release, profile) = if smoke { (None, "debug") } else { (Some("--release"), "release") };
    cmd!(sh, "cargo build --quiet {release...} --locked {packages...}").run()?;
    let built = project::target_dir().join(profile);
    let bootstraps = package::LAMBDAS.map(|(krate, _)| built.join(krate));
    let (runs, python) = (runs.to_string(), venv_bin.join("python"));
    cmd!(
        sh,
        "cargo run --quiet --locked --package testkit --example bench_cold_start -- {runs} {python} {bootstraps...}"
    )
    .run()?;
    Ok(())
}

/// The checkin Lambda's Create against moto and the GitLab double (the example prints its own
/// figures: its median against the same calls made sequentially).
fn checkin_create(sh: &Shell, runs: usize) -> anyhow::Result<()> {
    tools::ensure_python_tools(sh, tools::Requirements::Test)?;
    let runs = runs.to_string();
    cmd!(sh, "cargo run --quiet --locked --package seedcode-checkin --example bench_create -- {runs}").run()?;
    Ok(())
}

/// `cargo xtask package` when nothing changed (the target: at most 2 s), against the same
/// command after the output folder was deleted, which rebuilds no Lambda but writes every zip;
/// then the zips' sizes against their targets.
fn package_rerun(sh: &Shell, runs: usize) -> anyhow::Result<()> {
    let out = project::target_dir().join("bench/dist");
    let package = || cmd!(sh, "cargo xtask package --out {out}").quiet().ignore_stdout().ignore_stderr().run();
    eprintln!("bench package: warming up (the first run may compile the Lambdas)");
    package()?;

    let unchanged = measure(runs, || Ok(()), package)?;
    let rewrite = measure(runs, || Ok(std::fs::remove_dir_all(&out)?), package)?;
    report("package, nothing changed", &unchanged, "package, empty output folder", &rewrite);
    zip_sizes(&out)
}

/// Every cold start downloads the Lambda's zip: the size each should stay under (issue 17's
/// targets for the shipped arm64 build), in bytes, in the order of `package::LAMBDAS`.
const ZIP_SIZE_TARGETS: [u64; 2] = [2_500_000, 2_000_000];

fn zip_sizes(out: &std::path::Path) -> anyhow::Result<()> {
    for ((_, zip), target) in package::LAMBDAS.iter().zip(ZIP_SIZE_TARGETS) {
        let size = std::fs::metadata(out.join(zip))?.len();
        let verdict = if size <= target { "within" } else { "OVER" };
        println!(
            "{zip:<40} {size:>10} B  target {target:>10} B  {verdict} ({:.0} %)",
            size as f64 * 100.0 / target as f64
        );
    }
    Ok(())
}

/// Times `runs` calls of `timed`, each after an untimed `setup`.
fn measure(
    runs: usize,
    mut setup: impl FnMut() -> anyhow::Result<()>,
    mut timed: impl FnMut() -> xshell::Result<()>,
) -> anyhow::Result<Vec<Duration>> {
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        setup()?;
        let start = Instant::now();
        timed()?;
        samples.push(start.elapsed());
    }
    samples.sort();
    Ok(samples)
}

fn median(sorted: &[Duration]) -> Duration {
    sorted[sorted.len() / 2]
}

fn report(name: &str, samples: &[Duration], baseline_name: &str, baseline: &[Duration]) {
    let (m, b) = (median(samples), median(baseline));
    println!(
        "{name:<40} median {:>8.3} s  (min {:.3}, max {:.3}, n={})",
        m.as_secs_f64(),
        samples[0].as_secs_f64(),
        samples[samples.len() - 1].as_secs_f64(),
        samples.len()
    );
    println!("{baseline_name:<40} median {:>8.3} s  (baseline)", b.as_secs_f64());
    println!("ratio {:.2}", m.as_secs_f64() / b.as_secs_f64());
}
