//! `cargo xtask test`: the one command that installs what the tests need and runs them all.

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
    if args.only != Some(TestPart::Tests) {
        cmd!(sh, "cargo fmt --all --check").run()?;
        cmd!(sh, "cargo clippy --workspace --all-targets --locked -- --deny warnings").run()?;
    }
    if args.only == Some(TestPart::Lint) {
        return Ok(());
    }
    tools::ensure_debian_programs(sh, TEST_PROGRAMS)?;
    // The packaging tests cross-compile: install their tools up front, once.
    tools::ensure_rust_target(sh, Arch::Arm64.rust_target())?;
    tools::ensure_python_tools(sh, tools::Requirements::Build)?;
    tools::ensure_python_tools(sh, tools::Requirements::Test)?;
    tools::ensure_python_tools(sh, tools::Requirements::Checkov)?;
    tools::ensure_python_tools(sh, tools::Requirements::Seedcode)?;
    tools::ensure_npm_tools(sh)?;
    // The dependency policy (deny.toml); advisories need the network, so they are not here.
    let cargo_deny = tools::ensure_cargo_deny(sh)?;
    cmd!(sh, "{cargo_deny} --offline check bans licenses sources").run()?;

    let extra = &args.cargo_test_args;
    // The tests find the tools where they were installed above, whatever CARGO_TARGET_DIR is.
    let _tools = sh.push_env("XTASK_TOOLS_DIR", project::tools_dir());
    cmd!(sh, "cargo test --workspace --locked -- {extra...}").run()?;
    Ok(())
}
