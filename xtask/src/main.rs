//! `cargo xtask`: the build and release tasks of this repository, one module per task.

use std::process::ExitCode;

use clap::Parser;
use xtask::{bench, doctor, e2e, flags, package, project, publish, test, versions};

fn main() -> ExitCode {
    let flags = flags::Xtask::parse();
    match run(flags.task) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // The cause chain on one line; a backtrace would bury it.
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(task: flags::Task) -> anyhow::Result<()> {
    let sh = xshell::Shell::new()?;
    sh.change_dir(project::root());
    match task {
        flags::Task::Package(args) => package::run(&sh, &args).map(drop),
        flags::Task::Publish(args) => publish::run(&sh, &args),
        flags::Task::Versions(args) => versions::run(&args),
        flags::Task::Doctor(args) => doctor::run(&args),
        flags::Task::Test(args) => test::run(&sh, &args),
        flags::Task::Bench(args) => bench::run(&sh, &args),
        flags::Task::E2e(args) => e2e::run(&sh, &args),
    }
}
