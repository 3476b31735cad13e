//! The tasks of `cargo xtask` that use the AWS SDK, one module per task, and what they share
//! (`aws`: clients and Service Catalog look-ups; `checks`: the account checks publish and doctor
//! both make; `report`: the pass/FAIL table). A crate apart from xtask so that
//! `cargo xtask package` compiles none of the SDK; it links no test stand-in.

use anyhow::Context as _;
use xtask::flags::AwsTask;
use xtask::project;

mod aws;
mod checks;
pub mod doctor;
pub mod publish;
pub mod report;
pub mod rotate_token;
pub mod versions;

/// Runs a task of this crate.
pub fn run(task: AwsTask) -> anyhow::Result<()> {
    let sh = xshell::Shell::new()?;
    sh.change_dir(project::root());
    match task {
        AwsTask::Publish(mut args) => {
            args.gitlab_server_url = gitlab_server_url(&args.gitlab_server_url)?;
            publish::run(&sh, &args)
        }
        AwsTask::Versions(args) => versions::run(&args),
        AwsTask::Doctor(mut args) => {
            args.gitlab_server_url = gitlab_server_url(&args.gitlab_server_url)?;
            doctor::run(&args)
        }
        AwsTask::RotateToken(mut args) => {
            args.gitlab_server_url = gitlab_server_url(&args.gitlab_server_url)?;
            rotate_token::run(&args)
        }
    }
}

/// `--gitlab-server-url` as the Lambdas accept it (checked by their own rules, before any AWS
/// call), without a trailing slash.
fn gitlab_server_url(url: &str) -> anyhow::Result<String> {
    lambda_common::gitlab::server_url(url).context("--gitlab-server-url")?;
    Ok(url.trim().trim_end_matches('/').to_owned())
}
