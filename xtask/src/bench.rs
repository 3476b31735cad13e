//! `cargo xtask bench`: the speed targets, as medians against a baseline from the same run.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
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
    if args.which == Some(BenchName::Package) {
        return Ok(());
    }
    let built = build_programs(sh)?;
    if all || args.which == Some(BenchName::Checkin) {
        checkin_create(sh, &built, runs)?;
    }
    if all || args.which == Some(BenchName::Coldstart) {
        cold_start(sh, &built, runs, args.smoke)?;
    }
    if all || args.which == Some(BenchName::Publish) {
        publish_rerun(sh, &built, runs)?;
    }
    Ok(())
}

/// The benchmark programs (examples) and the binaries they drive, built with the whole
/// workspace's features, as the test build resolves them, so that they share its dependencies: a
/// `cargo run --package` of one of them would resolve that package's features alone and compile
/// much of the tree a second time. Their paths come from cargo's report of what it built
/// (`--message-format=json`).
struct Built(std::collections::BTreeMap<String, PathBuf>);

impl Built {
    /// The executable of the example or binary `name`.
    fn program(&self, name: &str) -> anyhow::Result<&Path> {
        self.0.get(name).map(PathBuf::as_path).with_context(|| format!("the workspace build made no program {name}"))
    }
}

fn build_programs(sh: &Shell) -> anyhow::Result<Built> {
    let report = cmd!(sh, "cargo build --quiet --workspace --locked --examples --bins --message-format=json").read()?;
    let mut programs = std::collections::BTreeMap::new();
    for message in report.lines().filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok()) {
        let kinds = message["target"]["kind"].as_array().cloned().unwrap_or_default();
        let (Some(name), Some(executable)) = (message["target"]["name"].as_str(), message["executable"].as_str())
        else {
            continue;
        };
        if kinds.iter().any(|k| k == "example" || k == "bin") {
            programs.insert(name.to_owned(), PathBuf::from(executable));
        }
    }
    Ok(Built(programs))
}

/// A no-change publish against moto, next to a first publish; the example prints the figures.
fn publish_rerun(sh: &Shell, built: &Built, runs: usize) -> anyhow::Result<()> {
    tools::ensure_python_tools(sh, tools::Requirements::Test)?;
    let dist = project::target_dir().join("bench/publish-dist");
    cmd!(sh, "cargo xtask package --out {dist}").quiet().ignore_stdout().run()?;
    // A binary that runs publish itself, without `cargo xtask`'s hand-over: the system tests'.
    let (xtask, bench) = (built.program("xtask-e2e")?, built.program("bench_publish")?);
    let runs = runs.to_string();
    cmd!(sh, "{bench} {runs} {xtask} {dist}").run()?;
    Ok(())
}

/// Both Lambdas built for this machine in release mode (cold start is timed natively, not under
/// emulation), against the Python baseline; the example prints the figures. A smoke run takes
/// the workspace's debug binaries instead of compiling a release build for this machine.
fn cold_start(sh: &Shell, built: &Built, runs: usize, smoke: bool) -> anyhow::Result<()> {
    let venv_bin = tools::ensure_python_tools(sh, tools::Requirements::Test)?;
    let bootstraps: Vec<PathBuf> = if smoke {
        package::LAMBDAS
            .iter()
            .map(|(krate, _)| built.program(krate).map(Path::to_path_buf))
            .collect::<Result<_, _>>()?
    } else {
        let packages = package::LAMBDAS.iter().flat_map(|(krate, _)| ["--package", krate]);
        cmd!(sh, "cargo build --quiet --release --locked {packages...}").run()?;
        package::LAMBDAS.iter().map(|(krate, _)| project::target_dir().join("release").join(krate)).collect()
    };
    let (runs, python, bench) = (runs.to_string(), venv_bin.join("python"), built.program("bench_cold_start")?);
    cmd!(sh, "{bench} {runs} {python} {bootstraps...}").run()?;
    Ok(())
}

/// The checkin Lambda's Create against moto and the GitLab double (the example prints its own
/// figures: its median against the same calls made sequentially).
fn checkin_create(sh: &Shell, built: &Built, runs: usize) -> anyhow::Result<()> {
    tools::ensure_python_tools(sh, tools::Requirements::Test)?;
    let (runs, bench) = (runs.to_string(), built.program("bench_create")?);
    cmd!(sh, "{bench} {runs}").run()?;
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
