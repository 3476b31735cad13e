//! Local stand-ins for the services the Lambdas talk to, so tests run real binaries offline.

pub mod gitlab;
pub mod iam;
pub mod logs;
pub mod moto;
pub mod response_sink;
pub mod runtime_api;

/// Where `cargo xtask test` installed the tools the tests call (venvs, npm packages). It resolves
/// that folder once (`xtask/src/project.rs`, which honours `CARGO_TARGET_DIR`) and hands it to
/// the tests as `XTASK_TOOLS_DIR`, so no test guesses where the target dir is.
pub fn tools_dir() -> std::path::PathBuf {
    match std::env::var_os("XTASK_TOOLS_DIR") {
        Some(dir) => dir.into(),
        None => panic!(
            "XTASK_TOOLS_DIR is not set: run the tests with `cargo xtask test`, which installs the tools and sets it"
        ),
    }
}
