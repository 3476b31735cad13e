//! Command-line flags of `cargo xtask`: one subcommand per task module.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "Build, test and release the SageMaker Projects template for GitLab"
)]
pub struct Xtask {
    #[command(subcommand)]
    pub task: Task,
}

#[derive(Debug, Subcommand)]
pub enum Task {
    /// Cross-compile both Lambdas and write the four deterministic zips, SHA256SUMS and manifest.json
    Package(Package),
    /// Install the tools the tests need, then run formatting, lint and every test of the workspace
    Test(Test),
    /// Measure the speed targets and print medians against a baseline measured in the same run
    Bench(Bench),
}

#[derive(Debug, clap::Args)]
pub struct Package {
    /// CPU architecture of the Lambda functions
    #[arg(long, value_enum, default_value_t = Arch::Arm64)]
    pub arch: Arch,
    /// Directory for the artifacts [default: <target dir>/dist]
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct Test {
    /// Extra arguments for `cargo test`, e.g. a test name filter
    #[arg(last = true)]
    pub cargo_test_args: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct Bench {
    /// Which benchmark [default: all]
    #[arg(value_enum)]
    pub which: Option<BenchName>,
    /// Timed runs per measurement (the median is reported)
    #[arg(long, default_value_t = 7)]
    pub runs: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BenchName {
    /// `cargo xtask package` when nothing changed
    Package,
    /// The checkin Lambda's Create against a GitLab with 100 ms latency
    Checkin,
    /// Both Lambdas' cold start and memory, against a Python process importing boto3 and python-gitlab
    Coldstart,
}

/// Lambda architectures, named as Lambda names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Arch {
    Arm64,
    #[value(name = "x86_64")]
    X86_64,
}

impl Arch {
    pub fn lambda_name(self) -> &'static str {
        match self {
            Arch::Arm64 => "arm64",
            Arch::X86_64 => "x86_64",
        }
    }

    pub fn rust_target(self) -> &'static str {
        match self {
            Arch::Arm64 => "aarch64-unknown-linux-gnu",
            Arch::X86_64 => "x86_64-unknown-linux-gnu",
        }
    }
}
