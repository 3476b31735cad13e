//! The system tests: every `cargo xtask` task, the templates' permission proofs, the seed
//! repositories and the repository's conventions, in one binary: one link instead of nine (each
//! links the AWS SDK), and the slow tests (package, the package job, e2e) overlap with the rest
//! instead of running one binary after another. They live in xtask-e2e because its binary runs
//! every task (xtask hands each task over to its crate; `xtask/tests` checks the hand-over).

mod common;

mod doctor;
mod e2e;
mod gitlab_ci;
mod package;
mod permissions;
mod publish;
mod rotate_token;
mod seedcode;
mod target_account;
mod templates;
