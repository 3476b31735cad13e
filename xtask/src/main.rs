//! `cargo xtask`: the build and release tasks of this repository, one module per task.

use std::process::{Command, ExitCode};

use clap::Parser;
use xtask::flags::{Task, Xtask};
use xtask::{exit_code, project};

fn main() -> ExitCode {
    match Xtask::parse().task {
        Task::Local(task) => exit_code(xtask::run(task)),
        Task::Aws(_) => hand_over_to("xtask-aws"),
        Task::E2e(_) => hand_over_to("xtask-e2e"),
    }
}

/// Runs the same command line in the crate that owns the task. The AWS tasks live in xtask-aws:
/// compiling the SDK is most of their build, which `cargo xtask package` on a fresh clone need
/// not wait for; e2e lives in xtask-e2e, the one crate that links the test stand-ins. cargo
/// builds each the first time one of its tasks runs, as the alias builds this crate. The flags
/// were checked above, against the definition all three binaries share.
fn hand_over_to(package: &str) -> ExitCode {
    // `cargo run` tells the program it starts which cargo it is.
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(&cargo)
        .args(["run", "--quiet", "--package", package, "--"])
        .args(std::env::args_os().skip(1))
        .current_dir(project::root())
        .status();
    match status {
        // The task has reported its own error; only its exit code is passed on (a Unix exit
        // code is one byte; a signal leaves none).
        Ok(status) => status.code().and_then(|code| u8::try_from(code).ok()).map_or(ExitCode::FAILURE, ExitCode::from),
        Err(err) => exit_code(Err(anyhow::anyhow!("cannot start {}: {err}", cargo.display()))),
    }
}
