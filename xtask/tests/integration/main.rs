//! xtask's integration tests, in one binary: one link instead of nine (each links the AWS SDK),
//! and the slow tests (package, the package job, e2e) overlap with the rest instead of running
//! one binary after another.

mod common;

mod doctor;
mod e2e;
mod gitlab_ci;
mod package;
mod permissions;
mod publish;
mod seedcode;
mod target_account;
mod templates;
mod tidy;
