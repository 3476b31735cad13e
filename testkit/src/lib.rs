//! Local stand-ins for the services the Lambdas talk to, so tests run real binaries offline.

pub mod cfn;
pub mod gitlab;
pub mod iam;
pub mod logs;
pub mod managed_policies;
pub mod moto;
pub mod response_sink;
pub mod runtime_api;

static TOOLS_DIR: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();

/// Where the tools the stand-ins run (moto's venv, ...) are, for a process that resolved the
/// folder itself: `cargo xtask e2e` installs them and says where before it starts moto.
pub fn use_tools_dir(dir: std::path::PathBuf) {
    // A second call names the same folder: xtask resolves it one way.
    let _ = TOOLS_DIR.set(dir);
}

/// Where the tools are: as `use_tools_dir` named it, else `XTASK_TOOLS_DIR`, which
/// `cargo xtask test` sets for the tests after installing the tools. xtask resolves the folder
/// once (`xtask/src/project.rs`, which honours `CARGO_TARGET_DIR`), so no test guesses where
/// the target dir is.
pub fn tools_dir() -> std::path::PathBuf {
    if let Some(dir) = TOOLS_DIR.get() {
        return dir.clone();
    }
    match std::env::var_os("XTASK_TOOLS_DIR") {
        Some(dir) => dir.into(),
        None => panic!(
            "XTASK_TOOLS_DIR is not set: run the tests with `cargo xtask test`, which installs the tools and sets it (docs/troubleshooting.md#xtask_tools_dir-is-not-set)"
        ),
    }
}
