//! `xtask-aws`: the tasks of `cargo xtask` that use the AWS SDK, which `cargo xtask` hands over
//! to; the others it runs through the xtask library, so that the tests drive one binary.

use std::process::ExitCode;

use clap::Parser;
use xtask::exit_code;
use xtask::flags::{Task, Xtask};

fn main() -> ExitCode {
    match Xtask::parse().task {
        Task::Local(task) => exit_code(xtask::run(task)),
        Task::Aws(task) => exit_code(xtask_aws::run(task)),
    }
}
