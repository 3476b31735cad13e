//! `cargo xtask`: the build and release tasks of this repository, one module per task.

use std::process::{Command, ExitCode};

use clap::Parser;
use xtask::flags::{Task, Xtask};
use xtask::{exit_code, project};

fn main() -> ExitCode {
    match Xtask::parse().task {
        Task::Local(task) => exit_code(xtask::run(task)),
        Task::Aws(_) => hand_over_to_xtask_aws().unwrap_or_else(|err| exit_code(Err(err))),
    }
}

/// The tasks that use the AWS SDK live in xtask-aws: compiling the SDK is three quarters of
/// xtask's build, which `cargo xtask package` on a fresh clone need not wait for. cargo builds
/// xtask-aws the first time one of its tasks runs, as the alias builds this crate. The flags were
/// checked above, against the definition both binaries share.
fn hand_over_to_xtask_aws() -> anyhow::Result<ExitCode> {
    // `cargo run` tells the program it starts which cargo it is.
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(&cargo)
        .args(["run", "--quiet", "--package", "xtask-aws", "--"])
        .args(std::env::args_os().skip(1))
        .current_dir(project::root())
        .status()
        .map_err(|err| anyhow::anyhow!("cannot start {}: {err}", cargo.display()))?;
    // xtask-aws has reported its own error; only its exit code is passed on (a Unix exit code
    // is one byte; a signal leaves none).
    Ok(status.code().and_then(|code| u8::try_from(code).ok()).map_or(ExitCode::FAILURE, ExitCode::from))
}
