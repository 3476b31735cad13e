//! `xtask-e2e`: `cargo xtask e2e`, which `cargo xtask` hands over to. It runs every other task
//! too, through the xtask and xtask-aws libraries, so that the system tests drive one binary.

use std::process::ExitCode;

use clap::Parser;
use xtask::exit_code;
use xtask::flags::{Task, Xtask};

fn main() -> ExitCode {
    exit_code(match Xtask::parse().task {
        Task::Local(task) => xtask::run(task),
        Task::Aws(task) => xtask_aws::run(task),
        Task::E2e(args) => xtask_e2e::run(&args),
    })
}
