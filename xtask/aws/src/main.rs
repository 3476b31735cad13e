//! `xtask-aws`: the tasks of `cargo xtask` that use the AWS SDK, which `cargo xtask` hands over
//! to. It runs the local tasks too, through the xtask library, as a plain `cargo run` would want.

use std::process::ExitCode;

use clap::Parser;
use xtask::exit_code;
use xtask::flags::{Task, Xtask};

fn main() -> ExitCode {
    match Xtask::parse().task {
        Task::Local(task) => exit_code(xtask::run(task)),
        Task::Aws(task) => exit_code(xtask_aws::run(task)),
        Task::E2e(_) => exit_code(Err(anyhow::anyhow!("e2e runs in xtask-e2e: use `cargo xtask e2e`"))),
    }
}
