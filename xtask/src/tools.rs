//! Installs what the tasks need when it is missing, with one line of output per install:
//! Rust targets through rustup, Python tools into venvs under the tools dir (uv for ours, pip
//! for the seed code's), npm tools and cargo-deny there too.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use xshell::{Shell, cmd};

use crate::{deterministic_zip::sha256_hex, project};

/// Pinned Python tools, one requirements file and one venv per purpose (checkov pins its own
/// boto3, which cannot share a venv with moto's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requirements {
    /// uv, which installs the other venvs but the seed code's.
    Uv,
    /// zig and cargo-zigbuild, for `package`.
    Build,
    /// moto, boto3, python-gitlab and the linters, for `test`.
    Test,
    /// checkov, the CloudFormation security scanner.
    Checkov,
    /// The seed repositories' test requirements, which pin the SageMaker SDK and its stack.
    Seedcode,
}

impl Requirements {
    fn name(self) -> &'static str {
        match self {
            Requirements::Uv => "uv",
            Requirements::Build => "build",
            Requirements::Test => "test",
            Requirements::Checkov => "checkov",
            Requirements::Seedcode => "seedcode",
        }
    }

    /// Whether pip installs these, as the seed repositories' own CI does. Several of the SageMaker
    /// SDK's distributions ship the same files (`sagemaker/__init__.py` in four, with two
    /// contents); pip installs them one after another and the last one's copy stays, while uv
    /// installs side by side and may keep another. The seed venv must be the one its users get.
    /// uv itself comes from pip, having nothing to install it yet.
    fn installed_by_pip(self) -> bool {
        matches!(self, Requirements::Uv | Requirements::Seedcode)
    }
}

pub fn ensure_rust_target(sh: &Shell, target: &str) -> anyhow::Result<()> {
    let installed = cmd!(sh, "rustup target list --installed")
        .quiet()
        .read()
        .context("cannot list Rust targets: is rustup installed? (docs/troubleshooting.md#rustup-is-missing)")?;
    if installed.lines().any(|line| line.trim() == target) {
        return Ok(());
    }
    eprintln!("installing Rust target {target} (rustup target add {target})");
    cmd!(sh, "rustup target add {target}")
        .quiet()
        .run()
        .with_context(|| format!("cannot install the Rust target: run `rustup target add {target}` and retry"))
}

/// The venv holding the pinned tools of `reqs` (`<tools dir>/<name>-venv`), installed or
/// brought up to date; returns its `bin` folder.
pub fn ensure_python_tools(sh: &Shell, reqs: Requirements) -> anyhow::Result<PathBuf> {
    let venv = venv_dir(reqs);
    let req_file = project::root().join("xtask/requirements").join(format!("{}.txt", reqs.name()));
    let uv = if reqs.installed_by_pip() { None } else { Some(ensure_python_tools(sh, Requirements::Uv)?.join("uv")) };
    ensure_requirements_installed(&venv, &req_file, || {
        let pip_failed = || {
            format!(
                "could not install {}: check network access to PyPI (docs/troubleshooting.md#tools-cannot-be-installed)",
                relative(&req_file)
            )
        };
        // From empty every time: upgrading in place can leave another version's files behind
        // (sagemaker 2.x to 3.x broke `sagemaker.serve` so), and the venv is to hold the pins alone.
        let python = venv.join("bin/python");
        if let Some(uv) = uv {
            // The cache sits beside the venvs (one file system, so uv can hardlink) unless the
            // caller keeps one elsewhere (CI caches it between jobs).
            let cache =
                std::env::var_os("UV_CACHE_DIR").map_or_else(|| project::tools_dir().join("uv-cache"), PathBuf::from);
            cmd!(sh, "{uv} venv --quiet --clear --python python3 {venv}")
                .env("UV_PYTHON_DOWNLOADS", "never")
                .quiet()
                .run()
                .context("uv cannot create a venv with python3: install Python 3.9 or newer")?;
            cmd!(sh, "{uv} pip install --quiet --python {python} --requirement {req_file}")
                .env("UV_CACHE_DIR", cache)
                .quiet()
                .run()
                .with_context(pip_failed)?;
        } else {
            cmd!(sh, "python3 -m venv --clear {venv}").quiet().run().context(
                "cannot create a Python venv: install Python 3.9 or newer with its venv module (docs/troubleshooting.md#python-venv-cannot-be-created)",
            )?;
            let pip = venv.join("bin/pip");
            if reqs == Requirements::Seedcode {
                // The pinned pip first (its file is among the seed pins), to install the rest.
                let pip_req = project::root().join("xtask/requirements/pip.txt");
                cmd!(sh, "{pip} install --quiet --disable-pip-version-check --requirement {pip_req}")
                    .quiet()
                    .run()
                    .with_context(pip_failed)?;
            }
            cmd!(sh, "{pip} install --quiet --disable-pip-version-check --no-compile --requirement {req_file}")
                .quiet()
                .run()
                .with_context(pip_failed)?;
        }
        Ok(())
    })?;
    Ok(venv_bin(reqs))
}

/// The environment under which the venvs' Pythons write the bytecode of what they import, once,
/// into `<tools dir>/bytecode` (Python's own `PYTHONPYCACHEPREFIX`), even where the machine sets
/// `PYTHONDONTWRITEBYTECODE` (empty means unset): no venv is compiled at install, most of it is
/// never imported, yet moto starts dozens of times in a test run. The prefix keeps bytecode out
/// of the source trees these Pythons run (the seed code, the moto extensions in testkit/src).
pub fn python_bytecode_env() -> [(&'static str, std::ffi::OsString); 2] {
    [
        ("PYTHONPYCACHEPREFIX", project::tools_dir().join("bytecode").into_os_string()),
        ("PYTHONDONTWRITEBYTECODE", std::ffi::OsString::new()),
    ]
}

fn venv_dir(reqs: Requirements) -> PathBuf {
    project::tools_dir().join(format!("{}-venv", reqs.name()))
}

/// The `bin` folder of the venv of `reqs`, once `ensure_python_tools` installed it.
pub fn venv_bin(reqs: Requirements) -> PathBuf {
    venv_dir(reqs).join("bin")
}

/// The pinned npm tools of `xtask/requirements/npm.txt` under `<tools dir>/npm`; returns the
/// folder of their executables.
pub fn ensure_npm_tools(sh: &Shell) -> anyhow::Result<PathBuf> {
    ensure_debian_programs(sh, &[("node", "nodejs"), ("npm", "npm")])?;
    let prefix = project::tools_dir().join("npm");
    let req_file = project::root().join("xtask/requirements/npm.txt");
    let text = std::fs::read_to_string(&req_file).with_context(|| format!("cannot read {}", req_file.display()))?;
    let packages: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
    ensure_requirements_installed(&prefix, &req_file, || {
        cmd!(sh, "npm install --prefix {prefix} --no-audit --no-fund --loglevel=error {packages...}")
            .quiet()
            .ignore_stdout()
            .run()
            .with_context(|| {
                format!("npm could not install {}: check network access to the npm registry", relative(&req_file))
            })
    })?;
    Ok(prefix.join("node_modules/.bin"))
}

/// cargo-deny, which checks the dependency policy of `deny.toml`, at a pinned version built
/// from its own lock file, once per tools dir; returns its path. Built unoptimised and without
/// debug info: that build takes a minute on 2 cores against two and a half for its release
/// profile (fat LTO, one codegen unit), and the check then takes 2.5 s instead of 1 s.
pub fn ensure_cargo_deny(sh: &Shell) -> anyhow::Result<PathBuf> {
    const VERSION: &str = "0.20.2";
    let root = project::tools_dir().join("cargo");
    let build_dir = project::tools_dir().join("cargo-build");
    let pinned = format!("cargo-deny {VERSION}");
    ensure_installed(&root, &pinned, pinned.clone(), || {
        cmd!(sh, "cargo install cargo-deny@{VERSION} --debug --locked --quiet --root {root} --target-dir {build_dir}")
            .env("CARGO_PROFILE_DEV_DEBUG", "false")
            .quiet()
            .run()
            .context("cargo could not install cargo-deny: check network access to crates.io")?;
        // Only the binary is needed; its build tree is hundreds of megabytes.
        std::fs::remove_dir_all(&build_dir).context("cannot remove cargo-deny's build tree")
    })?;
    Ok(root.join("bin/cargo-deny"))
}

/// `ensure_installed` for the tools a requirements file pins: its stamp is the hash of the file
/// and the files it includes.
fn ensure_requirements_installed(
    dir: &Path,
    req_file: &Path,
    install: impl FnOnce() -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut contents = Vec::new();
    read_with_includes(req_file, &mut contents)?;
    ensure_installed(dir, &format!("the tools of {}", relative(req_file)), sha256_hex(&contents), install)
}

/// Runs `install` into `dir` unless a stamp there records `wanted` (what `what` pins), so the
/// check costs nothing when nothing changed. Concurrent tasks (parallel tests) wait for one
/// install instead of racing in one folder.
fn ensure_installed(
    dir: &Path,
    what: &str,
    wanted: String,
    install: impl FnOnce() -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let stamp = dir.join(".installed-requirements");
    let is_current = || std::fs::read_to_string(&stamp).is_ok_and(|have| have == wanted);
    if is_current() {
        return Ok(());
    }
    std::fs::create_dir_all(dir)?;
    // Beside the folder, not in it: an install may empty the folder first.
    let lock = std::fs::File::create(dir.with_extension("lock"))?;
    lock.lock()?;
    if is_current() {
        return Ok(());
    }
    eprintln!("installing {what} into {}", dir.display());
    install()?;
    std::fs::write(&stamp, wanted)?;
    Ok(())
}

/// Appends `req_file` and every file it includes with pip's `-r` to `out`.
fn read_with_includes(req_file: &Path, out: &mut Vec<u8>) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(req_file).with_context(|| format!("cannot read {}", req_file.display()))?;
    out.extend_from_slice(text.as_bytes());
    for line in text.lines() {
        let included = line.trim().strip_prefix("-r ").or_else(|| line.trim().strip_prefix("--requirement "));
        if let Some(included) = included {
            read_with_includes(&req_file.parent().unwrap_or(Path::new(".")).join(included.trim()), out)?;
        }
    }
    Ok(())
}

/// Prepends `bin` to a PATH value, for commands that must find the venv's tools first.
pub fn path_with(bin: &Path) -> anyhow::Result<std::ffi::OsString> {
    let current = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::iter::once(bin.to_path_buf()).chain(std::env::split_paths(&current));
    std::env::join_paths(dirs).context("PATH cannot hold the tools folder")
}

fn relative(path: &Path) -> String {
    let root = project::root();
    path.strip_prefix(&root).unwrap_or(path).display().to_string()
}

/// Makes sure each `(program, Debian package)` is on PATH, installing the missing packages
/// with apt-get when running as root on Debian; otherwise fails naming what to install.
pub fn ensure_debian_programs(sh: &Shell, needed: &[(&str, &str)]) -> anyhow::Result<()> {
    let missing: Vec<&str> = needed
        .iter()
        .filter(|(program, _)| cmd!(sh, "sh -c 'command -v \"$0\"' {program}").quiet().ignore_stdout().run().is_err())
        .map(|(_, package)| *package)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let as_root = cmd!(sh, "id -u").quiet().read().is_ok_and(|uid| uid == "0");
    let has_apt = cmd!(sh, "sh -c 'command -v apt-get'").quiet().ignore_stdout().run().is_ok();
    if !(as_root && has_apt) {
        bail!(
            "missing programs: install the Debian packages {} (apt-get install {})",
            missing.join(", "),
            missing.join(" ")
        );
    }
    let packages = &missing;
    eprintln!("installing Debian packages {} (apt-get install)", missing.join(" "));
    cmd!(sh, "apt-get update --quiet=2").quiet().ignore_stdout().run()?;
    cmd!(sh, "apt-get install --quiet=2 --yes --no-install-recommends {packages...}")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .quiet()
        .ignore_stdout()
        .run()
        .with_context(|| format!("apt-get could not install {}", missing.join(" ")))
}
