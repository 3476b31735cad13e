//! `cargo xtask package`: the four release artifacts, byte-reproducible, rebuilt only when
//! their inputs change.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use xshell::{Shell, cmd};

mod built_from;

use crate::deterministic_zip::{self, DOS_EPOCH, Entry};
use crate::flags::{self, Arch};
use crate::{project, tools};

/// The Lambda crates and the zip each ships in. The zip names are part of the template's interface.
pub const LAMBDAS: [(&str, &str); 2] = [
    ("seedcode-checkin", "lambda-seedcode-checkin-gitlab.zip"),
    ("pipeline-trigger", "lambda-gitlab-pipeline-trigger.zip"),
];
/// The seed code folders and their zips.
pub const SEEDCODE: [(&str, &str); 2] = [
    ("seedcode/model-build", "mlops-gitlab-project-seedcode-model-build.zip"),
    ("seedcode/model-deploy", "mlops-gitlab-project-seedcode-model-deploy.zip"),
];
/// glibc of Lambda's `provided.al2023` runtime: the binaries must not need anything newer.
const LAMBDA_GLIBC: &str = "2.34";

#[derive(Debug, Serialize, Deserialize)]
pub struct Manifest {
    pub source_commit: Option<String>,
    pub dirty: Option<bool>,
    pub source_date_epoch: i64,
    pub artifacts: Vec<ManifestArtifact>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ManifestArtifact {
    pub file: String,
    pub sha256: String,
    pub size: u64,
    /// The crate (Lambdas) or folder (seed code) the artifact is built from.
    pub source: String,
    /// `arm64` or `x86_64` for Lambdas, `any` for seed code.
    pub architecture: String,
    /// Digest of everything the zip's bytes depend on (see `deterministic_zip::input_digest`).
    pub input_sha256: String,
}

/// What one artifact is made of before it is zipped.
struct Planned {
    file: &'static str,
    source: String,
    architecture: String,
    entries: Vec<Entry>,
}

pub fn run(sh: &Shell, args: &flags::Package) -> anyhow::Result<Manifest> {
    let root = project::root();
    let out = args.out.clone().unwrap_or_else(|| project::target_dir().join("dist"));
    let epoch = source_date_epoch()?;

    // Cheap checks first, so bad input fails before minutes of compiling.
    let seedcode_dirs = SEEDCODE.map(|(dir, _)| root.join(dir));
    for dir in &seedcode_dirs {
        if !dir.is_dir() {
            bail!("seed code folder {} is missing: restore it (git checkout -- {})", dir.display(), dir.display());
        }
    }
    ensure_writable_dir(&out)?;

    let binaries = build_lambdas(sh, &root, args.arch)?;

    let mut planned = Vec::new();
    for ((krate, file), binary) in LAMBDAS.iter().zip(&binaries) {
        let data = std::fs::read(binary).with_context(|| format!("cannot read {}", binary.display()))?;
        let entries = vec![Entry { path: "bootstrap".into(), executable: true, data }];
        planned.push(Planned {
            file,
            source: format!("lambdas/{krate}"),
            architecture: args.arch.lambda_name().into(),
            entries,
        });
    }
    for ((dir, file), path) in SEEDCODE.iter().zip(&seedcode_dirs) {
        // What the commit holds, not whatever lies in the folder: an ignored `.env` or pip
        // cache must never reach every new repository.
        let mut entries = deterministic_zip::collect_tree(path)?;
        if let Some(tracked) = project::tracked_files(sh, &root, dir)? {
            entries.retain(|entry| tracked.contains(&entry.path));
        }
        if !entries.iter().any(|e| e.path == ".gitlab-ci.yml") {
            bail!("{dir} has no .gitlab-ci.yml: the GitLab project it seeds would have no pipeline");
        }
        planned.push(Planned { file, source: (*dir).into(), architecture: "any".into(), entries });
    }

    let previous = read_manifest(&out);
    let mut artifacts = Vec::new();
    let mut reused = Vec::new();
    for plan in planned {
        let input_sha256 = deterministic_zip::input_digest(&plan.entries, epoch);
        let path = out.join(plan.file);
        let current = previous.as_ref().and_then(|m| m.artifacts.iter().find(|a| a.file == plan.file));
        let (sha256, size) = match current {
            Some(prev) if prev.input_sha256 == input_sha256 && file_sha256(&path).as_ref() == Some(&prev.sha256) => {
                reused.push(plan.file);
                (prev.sha256.clone(), prev.size)
            }
            _ => {
                let bytes = deterministic_zip::write(&plan.entries, epoch)
                    .with_context(|| format!("cannot zip {}", plan.source))?;
                write_atomically(&path, &bytes)?;
                (deterministic_zip::sha256_hex(&bytes), bytes.len() as u64)
            }
        };
        artifacts.push(ManifestArtifact {
            file: plan.file.into(),
            sha256,
            size,
            source: plan.source,
            architecture: plan.architecture,
            input_sha256,
        });
    }

    let git = project::git_state(sh, &root);
    let manifest = Manifest { source_commit: git.commit, dirty: git.dirty, source_date_epoch: epoch, artifacts };
    let sums: String = manifest.artifacts.iter().map(|a| format!("{}  {}\n", a.sha256, a.file)).collect();
    write_if_changed(&out.join("SHA256SUMS"), sums.as_bytes())?;
    write_if_changed(&out.join("manifest.json"), (serde_json::to_string_pretty(&manifest)? + "\n").as_bytes())?;

    print_summary(&out, &manifest, &reused);
    Ok(manifest)
}

/// Entry time of every zip: `SOURCE_DATE_EPOCH` when set (the reproducible-builds convention),
/// else 1980-01-01 so that an artifact's bytes change only when its content does.
fn source_date_epoch() -> anyhow::Result<i64> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(value) if !value.trim().is_empty() => value
            .trim()
            .parse()
            .with_context(|| format!("SOURCE_DATE_EPOCH={value:?} is not a whole number of seconds since 1970")),
        _ => Ok(DOS_EPOCH),
    }
}

fn ensure_writable_dir(out: &Path) -> anyhow::Result<()> {
    let probe = out.join(format!(".write-probe-{}", std::process::id()));
    std::fs::create_dir_all(out)
        .and_then(|()| std::fs::write(&probe, b""))
        .and_then(|()| std::fs::remove_file(&probe))
        .with_context(|| format!("output folder {} is not writable: choose another with --out", out.display()))
}

/// Cross-compiles both Lambdas of the checkout at `root` in one cargo run and returns their
/// executables, in `LAMBDAS` order.
fn build_lambdas(sh: &Shell, root: &Path, arch: Arch) -> anyhow::Result<Vec<PathBuf>> {
    let target = arch.rust_target();
    tools::ensure_rust_target(sh, target)?;
    let venv_bin = tools::ensure_python_tools(sh, tools::Requirements::Build)?;

    // cargo passes workspace sources to rustc as relative paths; dependencies and generated
    // code carry the cargo home and target dir, which differ between machines.
    let cargo_home = cargo_home()?;
    let target_dir = project::target_dir();
    let remap = format!(
        "--remap-path-prefix={}=/cargo --remap-path-prefix={}=/target",
        cargo_home.display(),
        target_dir.display()
    );
    let rustflags_var = format!("CARGO_TARGET_{}_RUSTFLAGS", target.to_uppercase().replace('-', "_"));
    let zig_target = format!("{target}.{LAMBDA_GLIBC}");
    let packages = LAMBDAS.iter().flat_map(|(krate, _)| ["--package", krate]);

    let built_from = built_from::prepare(sh, root, &target_dir, target)?;
    eprintln!("building the Lambdas for {} ({zig_target})", arch.lambda_name());
    let _in_root = sh.push_dir(root);
    let output = cmd!(
        sh,
        "cargo zigbuild --release --locked --target {zig_target} {packages...} --message-format=json-render-diagnostics"
    )
    .env("PATH", tools::path_with(&venv_bin)?)
    .env(rustflags_var, remap)
    // rustc alone compiles what ships, whatever compiles the caller's workspace crates
    // (`cargo xtask test` has clippy-driver do it for the tests it runs).
    .env_remove("RUSTC_WORKSPACE_WRAPPER")
    // zig and cargo-zigbuild keep their caches here rather than in the user's home.
    .env("XDG_CACHE_HOME", project::tools_dir().join("cache"))
    // One fixed time for the C compilers (__DATE__, __TIME__), whatever the caller's
    // SOURCE_DATE_EPOCH: the binaries stay reproducible on any day, and a SOURCE_DATE_EPOCH
    // meant for the zips does not make cc's build scripts rebuild every C dependency.
    .env("SOURCE_DATE_EPOCH", DOS_EPOCH.to_string())
    .quiet()
    .read()
    .context("the Lambda build failed (compiler output above; docs/troubleshooting.md#the-lambda-build-failed)")?;

    let mut fresh_units = 0;
    let mut rebuilt_units = 0;
    let mut binaries = vec![None; LAMBDAS.len()];
    for line in output.lines() {
        let Ok(message) = serde_json::from_str::<CargoMessage>(line) else {
            continue;
        };
        if message.reason != "compiler-artifact" {
            continue;
        }
        if message.fresh {
            fresh_units += 1
        } else {
            rebuilt_units += 1
        }
        let target_name = message.target.as_ref().map(|t| t.name.as_str());
        let lambda = LAMBDAS.iter().position(|(krate, _)| Some(*krate) == target_name);
        if let (Some(executable), Some(i)) = (message.executable, lambda) {
            binaries[i] = Some(executable);
        }
    }
    if rebuilt_units == 0 {
        eprintln!("reused the existing Lambda build: all {fresh_units} units up to date");
    } else {
        eprintln!("compiled {rebuilt_units} units, reused {fresh_units}");
    }
    let binaries = binaries
        .into_iter()
        .zip(LAMBDAS)
        .map(|(binary, (krate, _))| binary.with_context(|| format!("cargo built no executable for {krate}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    built_from.built(&binaries)?;
    Ok(binaries)
}

#[derive(Deserialize)]
struct CargoMessage {
    reason: String,
    #[serde(default)]
    fresh: bool,
    target: Option<CargoTarget>,
    executable: Option<PathBuf>,
}

#[derive(Deserialize)]
struct CargoTarget {
    name: String,
}

fn cargo_home() -> anyhow::Result<PathBuf> {
    if let Some(home) = std::env::var_os("CARGO_HOME") {
        return Ok(PathBuf::from(home));
    }
    let home = std::env::var_os("HOME").context("neither CARGO_HOME nor HOME is set")?;
    Ok(PathBuf::from(home).join(".cargo"))
}

fn read_manifest(out: &Path) -> Option<Manifest> {
    serde_json::from_slice(&std::fs::read(out.join("manifest.json")).ok()?).ok()
}

fn file_sha256(path: &Path) -> Option<String> {
    Some(deterministic_zip::sha256_hex(&std::fs::read(path).ok()?))
}

/// Writes through a temporary file and a rename, so a failure never leaves a partial artifact.
fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let file_name = path.file_name().context("artifact path has no file name")?.to_string_lossy();
    let tmp = path.with_file_name(format!(".{file_name}.tmp-{}", std::process::id()));
    let result = std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("cannot write {}", path.display()))
}

fn write_if_changed(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    if std::fs::read(path).is_ok_and(|have| have == bytes) {
        return Ok(());
    }
    write_atomically(path, bytes)
}

fn print_summary(out: &Path, manifest: &Manifest, reused: &[&str]) {
    println!("{:<48} {:>10}  {:<12}  status", "artifact", "bytes", "sha256");
    for a in &manifest.artifacts {
        let status = if reused.contains(&a.file.as_str()) { "reused" } else { "written" };
        println!("{:<48} {:>10}  {:<12}  {status}", a.file, a.size, &a.sha256[..12]);
    }
    println!("in {}", out.display());
}
