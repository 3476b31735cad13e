//! `cargo xtask test`: the one command that installs what the tests need and runs them all.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use xshell::{Shell, cmd};

use crate::flags::{self, Arch, TestPart};
use crate::{project, tools};

/// What `cargo test` builds and runs: every target with `test = true`, the libraries' and test
/// files' (the binaries' mains hold no tests and say `test = false`). Not the examples, which are
/// benchmark programs that clippy checks and `cargo xtask bench` runs (linking them took 100 MB
/// and seconds), nor doc tests, which no crate has.
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
    if lint {
        phases.time("rustfmt", || Ok(cmd!(sh, "cargo fmt --all --check").run()?))?;
    }
    // Two lanes side by side: cargo compiles (clippy's check, then the test binaries) on both
    // cores while the tool installs mostly wait on downloads and pip's one core.
    let cargo_lane = || -> anyhow::Result<Vec<(&'static str, Duration)>> {
        let mut lane = Phases::new();
        if lint {
            lane.time("clippy", || {
                Ok(cmd!(sh, "cargo clippy --workspace --all-targets --locked -- --deny warnings").run()?)
            })?;
        }
        if tests {
            lane.time("test build", || Ok(cmd!(sh, "cargo test {TEST_TARGETS...} --no-run").run()?))?;
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
    if let Some(cargo_deny) = cargo_deny {
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
        phases.time("cargo test", || Ok(cmd!(sh, "cargo test {TEST_TARGETS...} -- {extra...}").run()?))?;
    }
    phases.print();
    Ok(())
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
