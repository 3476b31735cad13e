//! The build and release tasks of this repository, one module per task; `main.rs` only parses
//! the flags and dispatches. A library too, so that xtask-aws (the tasks that use the AWS SDK),
//! xtask-e2e and the system tests share its code (the template renderer above all).

use std::process::ExitCode;

pub mod bench;
pub mod deterministic_zip;
pub mod flags;
pub mod package;
pub mod project;
pub mod template;
pub mod test;
pub mod tools;

/// Runs a task of this crate.
pub fn run(task: flags::LocalTask) -> anyhow::Result<()> {
    let sh = xshell::Shell::new()?;
    sh.change_dir(project::root());
    match task {
        flags::LocalTask::Package(args) => package::run(&sh, &args).map(drop),
        flags::LocalTask::Test(args) => test::run(&sh, &args),
        flags::LocalTask::Bench(args) => bench::run(&sh, &args),
    }
}

/// A task's outcome as the process exit code, with the error's cause chain on one line (a
/// backtrace would bury it).
pub fn exit_code(outcome: anyhow::Result<()>) -> ExitCode {
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
