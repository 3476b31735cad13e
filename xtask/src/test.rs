//! `cargo xtask test`: the one command that installs what the tests need and runs them all.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use xshell::{Shell, cmd};

use crate::flags::{self, Arch, TestPart};
use crate::{project, tools};

/// What `cargo test` builds and runs: every target with `test = true`, the libraries' and test
/// files' (the binaries' mains hold no tests and say `test = false`), and no doc tests, which no
/// crate has. The examples (benchmark programs `cargo xtask bench` runs) are built beside them, so
/// that they are linted.
const TEST_TARGETS: &[&str] = &["--workspace", "--locked", "--tests"];

/// Programs the tests call, with the Debian package that brings each.
const TEST_PROGRAMS: &[(&str, &str)] = &[
    ("git", "git"),
    ("python3", "python3"),
    ("readelf", "binutils"),
    ("rsync", "rsync"),
    ("sha256sum", "coreutils"),
    ("unzip", "unzip"),
    ("zipinfo", "unzip"),
];

pub fn run(sh: &Shell, args: &flags::Test) -> anyhow::Result<()> {
    let (lint, tests) = (args.only != Some(TestPart::Tests), args.only != Some(TestPart::Lint));
    let mut phases = Phases::new();
    // The whole check, not the edit loop where incremental builds pay: here their caches would
    // only take disk. A caller's CARGO_INCREMENTAL stands.
    let incremental = std::env::var_os("CARGO_INCREMENTAL").unwrap_or_else(|| "0".into());
    let _incremental = sh.push_env("CARGO_INCREMENTAL", incremental);
    if lint {
        phases.time("rustfmt", || Ok(cmd!(sh, "cargo fmt --all --check").run()?))?;
    }
    let clippy_driver = if tests { Some(clippy_driver(sh)?) } else { None };
    // With the tests, clippy lints as the workspace's compiler while the test binaries build
    // (`lint_and_build`), instead of `cargo clippy` checking every dependency a second time on
    // its own: that second pass is what keeps the fresh-clone run within its 600 s budget on a
    // 2-core machine (measured when it was introduced: 250 s of a 540 s run). Alone, `cargo
    // clippy` is the quicker lint.
    let cargo_lane = || -> anyhow::Result<Vec<(&'static str, Duration)>> {
        let mut lane = Phases::new();
        if let Some(clippy_driver) = &clippy_driver {
            lane.time("clippy and test build", || lint_and_build(sh, clippy_driver))?;
        } else if lint {
            lane.time("clippy", || {
                Ok(cmd!(sh, "cargo clippy --workspace --all-targets --locked -- --deny warnings").run()?)
            })?;
        }
        Ok(lane.0)
    };
    let cargo_deny = std::thread::scope(|scope| -> anyhow::Result<_> {
        let tools = tests.then(|| scope.spawn(|| timed(install_tools)));
        let cargo = cargo_lane();
        let tools = tools.map(|t| t.join().map_err(|_| anyhow::anyhow!("the tool installs panicked"))).transpose()?;
        phases.0.extend(cargo?);
        let Some((tools, took)) = tools else { return Ok(None) };
        phases.0.push(("tools (beside the above)", took));
        Ok(Some(tools?))
    })?;
    if let (Some(cargo_deny), Some(clippy_driver)) = (cargo_deny, clippy_driver) {
        // The dependency policy (deny.toml); advisories need the network, so they are not here.
        // cargo-deny reads the metadata of every package for every platform, which needs them
        // all downloaded: a build downloads only this platform's (a new machine has no others).
        phases.time("cargo deny", || {
            cmd!(sh, "cargo fetch --locked --quiet").run()?;
            Ok(cmd!(sh, "{cargo_deny} --offline check bans licenses sources").run()?)
        })?;
        let extra = &args.cargo_test_args;
        // The tests find the tools where they were installed above, whatever CARGO_TARGET_DIR is.
        let _tools = sh.push_env("XTASK_TOOLS_DIR", project::tools_dir());
        let _bytecode = tools::python_bytecode_env().map(|(key, value)| sh.push_env(key, value));
        // The binaries lint_and_build made, not a rebuild by rustc alone.
        let _clippy = sh.push_env(WORKSPACE_WRAPPER, clippy_driver);
        // Most tests block on child processes (moto, gitlab-ci-local, qemu, a clone's build):
        // oversubscribe. A caller's RUST_TEST_THREADS stands.
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let threads = std::env::var_os("RUST_TEST_THREADS").unwrap_or_else(|| (2 * cores).to_string().into());
        let _threads = sh.push_env("RUST_TEST_THREADS", threads);
        phases.time("cargo test", || Ok(cmd!(sh, "cargo test {TEST_TARGETS...} -- {extra...}").run()?))?;
        // Nothing else runs the benchmarks: one smoke run each, so that a change that breaks one
        // fails here. Not when the tests were filtered: that run is the edit loop.
        if extra.is_empty() {
            let smoke = flags::Bench { which: None, runs: 1, smoke: true };
            phases.time("benches, one smoke run each", || crate::bench::run(sh, &smoke))?;
        }
    }
    phases.print();
    Ok(())
}

/// cargo runs this program instead of rustc for the workspace's crates, not their dependencies.
const WORKSPACE_WRAPPER: &str = "RUSTC_WORKSPACE_WRAPPER";

/// Builds the test binaries and the examples with clippy-driver compiling the workspace's crates:
/// clippy's lints run as they compile, and the dependencies are compiled once, as `cargo test`
/// needs them. Fails on any warning, as `cargo clippy -- --deny warnings` would, including the
/// ones cargo replays from an earlier build of unchanged crates. These are debug test binaries:
/// clippy-driver compiles without MIR optimisations, which changes their speed, not their
/// meaning; the shipped Lambdas are built by `cargo xtask package` with rustc alone.
fn lint_and_build(sh: &Shell, clippy_driver: &std::path::Path) -> anyhow::Result<()> {
    let message_format = match std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        true => "--message-format=json-diagnostic-rendered-ansi",
        false => "--message-format=json",
    };
    let build = cmd!(sh, "cargo test {TEST_TARGETS...} --examples --no-run {message_format}");
    let mut build = std::process::Command::from(build.env(WORKSPACE_WRAPPER, clippy_driver));
    let mut child = build.stdout(std::process::Stdio::piped()).spawn().context("cannot start cargo")?;
    let stdout = std::io::BufReader::new(child.stdout.take().expect("stdout is piped"));
    let mut warnings = 0;
    for line in std::io::BufRead::lines(stdout) {
        let message: serde_json::Value = match serde_json::from_str(&line?) {
            Ok(message) => message,
            Err(_) => continue,
        };
        if message["reason"] != "compiler-message" {
            continue;
        }
        if let Some(rendered) = message["message"]["rendered"].as_str() {
            eprint!("{rendered}");
        }
        if message["message"]["level"] == "warning" {
            warnings += 1;
        }
    }
    if !child.wait()?.success() {
        bail!("the build failed (compiler output above)");
    }
    if warnings > 0 {
        bail!(
            "{warnings} warnings from clippy or rustc (above): fix them, or allow one where it is wrong, saying why (docs/troubleshooting.md#warnings-fail-the-test-command)"
        );
    }
    Ok(())
}

/// The toolchain's clippy-driver (rust-toolchain.toml installs the clippy component).
fn clippy_driver(sh: &Shell) -> anyhow::Result<std::path::PathBuf> {
    let sysroot = cmd!(sh, "rustc --print sysroot").quiet().read()?;
    let driver = std::path::Path::new(&sysroot).join("bin/clippy-driver");
    if !driver.is_file() {
        bail!("{} is missing: install it with `rustup component add clippy`", driver.display());
    }
    Ok(driver)
}

fn timed<T>(work: impl FnOnce() -> T) -> (T, Duration) {
    let started = Instant::now();
    (work(), started.elapsed())
}

/// Everything the tests call, installed where missing or out of date; returns cargo-deny's path.
/// The installs run side by side: pip and npm mostly wait on downloads while cargo-deny compiles.
fn install_tools() -> anyhow::Result<std::path::PathBuf> {
    let sh = &Shell::new()?;
    tools::ensure_debian_programs(sh, TEST_PROGRAMS)?;
    // The packaging tests cross-compile: install their tools up front, once.
    tools::ensure_rust_target(sh, Arch::Arm64.rust_target())?;
    std::thread::scope(|scope| {
        let python = [
            tools::Requirements::Build,
            tools::Requirements::Test,
            tools::Requirements::Checkov,
            tools::Requirements::Seedcode,
        ]
        .map(|reqs| scope.spawn(move || tools::ensure_python_tools(&Shell::new()?, reqs)));
        let npm = scope.spawn(|| tools::ensure_npm_tools(&Shell::new()?));
        let cargo_deny = tools::ensure_cargo_deny(sh);
        for install in python {
            install.join().map_err(|_| anyhow::anyhow!("a Python tools install panicked"))??;
        }
        npm.join().map_err(|_| anyhow::anyhow!("the npm tools install panicked"))??;
        cargo_deny
    })
    .context("installing the test tools failed")
}

/// How long each part of the run took, printed as a table at the end; the total is the wall
/// time from the first phase, as some phases run side by side.
struct Phases(Vec<(&'static str, Duration)>, Instant);

impl Phases {
    fn new() -> Phases {
        Phases(Vec::new(), Instant::now())
    }

    fn time<T>(&mut self, name: &'static str, phase: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<T> {
        let (result, took) = timed(phase);
        self.0.push((name, took));
        result
    }

    fn print(&self) {
        eprintln!("\n{:<26} {:>8}", "phase", "seconds");
        for (name, took) in &self.0 {
            eprintln!("{name:<26} {:>8.1}", took.as_secs_f64());
        }
        eprintln!("{:<26} {:>8.1}", "total", self.1.elapsed().as_secs_f64());
    }
}
