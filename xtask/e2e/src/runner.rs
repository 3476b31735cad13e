//! How a packaged `bootstrap` runs here: natively, or under qemu-user on another CPU.

use std::path::{Path, PathBuf};

use anyhow::ensure;
use testkit::runtime_api::RuntimeApi;
use xshell::{Shell, cmd};
use xtask::flags::Arch;
use xtask::tools;

pub(crate) enum Runner {
    Native,
    Qemu { qemu: PathBuf },
}

impl Runner {
    pub(crate) fn for_arch(sh: &Shell, arch: Arch) -> anyhow::Result<Runner> {
        let native = matches!((arch, std::env::consts::ARCH), (Arch::X86_64, "x86_64") | (Arch::Arm64, "aarch64"));
        if native {
            return Ok(Runner::Native);
        }
        ensure!(arch == Arch::Arm64, "an x86_64 bootstrap cannot run on this {} machine", std::env::consts::ARCH);
        tools::ensure_debian_programs(
            sh,
            &[("qemu-aarch64-static", "qemu-user-static"), (ARM64_LOADER, "libc6-arm64-cross")],
        )?;
        let qemu = cmd!(sh, "sh -c 'command -v qemu-aarch64-static'").quiet().read()?;
        Ok(Runner::Qemu { qemu: PathBuf::from(qemu) })
    }

    pub(crate) fn spawn(&self, api: &RuntimeApi, bootstrap: &Path, env: &[(String, String)]) -> tokio::process::Child {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        match self {
            Runner::Native => api.spawn_function(bootstrap, &env),
            Runner::Qemu { qemu } => {
                let bootstrap = bootstrap.to_str().expect("temporary paths are UTF-8");
                api.spawn_command(qemu, &["-L", "/usr/aarch64-linux-gnu", bootstrap], &env)
            }
        }
    }

    pub(crate) fn describe(&self) -> &'static str {
        match self {
            Runner::Native => "natively",
            Runner::Qemu { .. } => "under qemu-aarch64-static",
        }
    }
}

/// The arm64 dynamic loader libc6-arm64-cross installs, which qemu's `-L` points at.
const ARM64_LOADER: &str = "/usr/aarch64-linux-gnu/lib/ld-linux-aarch64.so.1";
