//! `cargo xtask test`: the one command that installs what the tests need and runs them all.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use xshell::{Shell, cmd};

use crate::flags::{self, Arch, TestPart};
use crate::{project, tools};

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
    let mut phases = Phases::default();
    if args.only != Some(TestPart::Tests) {
        phases.time("lint (rustfmt, clippy)", || {
            cmd!(sh, "cargo fmt --all --check").run()?;
            cmd!(sh, "cargo clippy --workspace --all-targets --locked -- --deny warnings").run()?;
            Ok(())
        })?;
    }
    if args.only != Some(TestPart::Lint) {
        let cargo_deny = phases.time("tools", || install_tools(sh))?;
        // The dependency policy (deny.toml); advisories need the network, so they are not here.
        phases.time("cargo deny", || Ok(cmd!(sh, "{cargo_deny} --offline check bans licenses sources").run()?))?;
        let extra = &args.cargo_test_args;
        // The tests find the tools where they were installed above, whatever CARGO_TARGET_DIR is.
        let _tools = sh.push_env("XTASK_TOOLS_DIR", project::tools_dir());
        phases.time("cargo test", || Ok(cmd!(sh, "cargo test --workspace --locked -- {extra...}").run()?))?;
    }
    phases.print();
    Ok(())
}

/// Everything the tests call, installed where missing or out of date; returns cargo-deny's path.
/// The installs run side by side: pip and npm mostly wait on downloads while cargo-deny compiles.
fn install_tools(sh: &Shell) -> anyhow::Result<std::path::PathBuf> {
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

/// How long each part of the run took, printed as a table at the end.
#[derive(Default)]
struct Phases(Vec<(&'static str, Duration)>);

impl Phases {
    fn time<T>(&mut self, name: &'static str, phase: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<T> {
        let started = Instant::now();
        let result = phase();
        self.0.push((name, started.elapsed()));
        result
    }

    fn print(&self) {
        eprintln!("\n{:<24} {:>8}", "phase", "seconds");
        for (name, took) in &self.0 {
            eprintln!("{name:<24} {:>8.1}", took.as_secs_f64());
        }
        let total: Duration = self.0.iter().map(|(_, took)| *took).sum();
        eprintln!("{:<24} {:>8.1}", "total", total.as_secs_f64());
    }
}
