//! `cargo xtask package` end to end, on clones of this repository's HEAD: reproducible across
//! checkouts, cheap to re-run, and refusing bad input without leaving anything half-made.
//!
//! The clones build into this build's target dir, so dependencies compile once for all of them
//! and for this checkout: what each Lambda build read is recorded there, and a build from other
//! sources first removes the workspace crates' artifacts. The first clone is the one the
//! package-job test uses too (`common::head_checkout`); the second, at another path and newer, is
//! compiled again for the proof.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

use crate::common::{clone_head, date_files, head_checkout, lambda_builds, repo_root, run_ok, target_dir, tools_dir};

const ZIPS: [&str; 4] = [
    "lambda-gitlab-pipeline-trigger.zip",
    "lambda-seedcode-checkin-gitlab.zip",
    "mlops-gitlab-project-seedcode-model-build.zip",
    "mlops-gitlab-project-seedcode-model-deploy.zip",
];

/// `cargo xtask package ARGS` for the sources in `checkout`, building into this build's target
/// dir. It runs this build's xtask-e2e binary (which runs every task), taking the workspace root from
/// CARGO_MANIFEST_DIR as `cargo run` would set it, so no clone compiles xtask again.
fn package_command(checkout: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_xtask-e2e"));
    command
        .arg("package")
        .args(args)
        .current_dir(checkout)
        .env("CARGO_MANIFEST_DIR", checkout.join("xtask"))
        .env("CARGO_TARGET_DIR", target_dir())
        .env("XTASK_TOOLS_DIR", tools_dir())
        .env_remove("SOURCE_DATE_EPOCH");
    command
}

fn xtask_package(checkout: &Path, args: &[&str]) -> Output {
    package_command(checkout, args).output().expect("cargo runs")
}

fn succeeded(output: &Output) -> (String, String) {
    let (stdout, stderr) =
        (String::from_utf8_lossy(&output.stdout).into_owned(), String::from_utf8_lossy(&output.stderr).into_owned());
    assert!(output.status.success(), "package failed:\n{stderr}");
    (stdout, stderr)
}

fn failed(output: &Output) -> String {
    assert!(!output.status.success(), "package should have failed:\n{}", String::from_utf8_lossy(&output.stdout));
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn files_in(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| (e.file_name().into_string().unwrap(), std::fs::read(e.path()).unwrap()))
        .collect()
}

/// Lists each zip with Python's `zipfile`, a reader independent of the one that wrote it:
/// {zip: [[name, unix mode, first 20 bytes as hex]]}, after `testzip` found every CRC right.
fn inspect_with_python(dir: &Path) -> serde_json::Value {
    let script = r#"
import json, pathlib, sys, zipfile
report = {}
for path in sorted(pathlib.Path(sys.argv[1]).glob("*.zip")):
    with zipfile.ZipFile(path) as z:
        assert z.testzip() is None, f"{path.name}: bad CRC"
        report[path.name] = [[i.filename, i.external_attr >> 16, z.read(i)[:20].hex()] for i in z.infolist()]
print(json.dumps(report))
"#;
    let stdout = run_ok(Command::new("python3").arg("-c").arg(script).arg(dir));
    serde_json::from_str(&stdout).unwrap()
}

fn max_glibc_version(binary: &Path) -> (u32, u32) {
    let versions = run_ok(Command::new("readelf").arg("--version-info").arg(binary));
    versions
        .split("GLIBC_")
        .skip(1)
        .filter_map(|rest| {
            let v: String = rest.chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
            let mut parts = v.split('.').map(|p| p.parse::<u32>().ok());
            Some((parts.next()??, parts.next().flatten().unwrap_or(0)))
        })
        .max()
        .expect("a dynamically linked glibc binary names GLIBC_ versions")
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[test]
fn two_clones_give_byte_identical_artifacts_a_rerun_reuses_them_and_older_broken_sources_fail() {
    let _builds = lambda_builds();
    let tmp = tempfile::tempdir().unwrap();
    let (out_a, out_b) = (tmp.path().join("out-a"), tmp.path().join("out-b"));
    let a = head_checkout();
    let (summary, _) = succeeded(&xtask_package(&a, &["--out", out_a.to_str().unwrap()]));
    for zip in ZIPS {
        assert!(summary.contains(zip), "summary table lacks {zip}:\n{summary}");
    }
    // Cloned after the shared checkout's build, so its sources are newer and cargo really
    // compiles them.
    let b = clone_head(tmp.path(), "second/clone-at-another-path");
    let (_, log) = succeeded(&xtask_package(&b, &["--out", out_b.to_str().unwrap()]));
    assert!(log.contains("seedcode-checkin") && log.contains("pipeline-trigger") && log.contains("compiled"), "{log}");

    let (files_a, files_b) = (files_in(&out_a), files_in(&out_b));
    let mut expected: Vec<&str> = ZIPS.to_vec();
    expected.extend(["SHA256SUMS", "manifest.json"]);
    expected.sort();
    assert_eq!(files_a.keys().map(String::as_str).collect::<Vec<_>>(), expected);
    for (name, bytes) in &files_a {
        assert!(files_b[name] == *bytes, "{name} differs between the two clones");
    }

    run_ok(Command::new("sha256sum").args(["--check", "--strict", "SHA256SUMS"]).current_dir(&out_a));
    let manifest: serde_json::Value = serde_json::from_slice(&files_a["manifest.json"]).unwrap();
    let head = run_ok(Command::new("git").arg("-C").arg(&a).args(["rev-parse", "HEAD"]));
    assert_eq!(manifest["source_commit"], head.trim());
    assert_eq!(manifest["dirty"], false);
    for artifact in manifest["artifacts"].as_array().unwrap() {
        let file = artifact["file"].as_str().unwrap();
        assert_eq!(artifact["size"], files_a[file].len() as u64, "{file}");
        let expected_arch = if file.starts_with("lambda-") { "arm64" } else { "any" };
        assert_eq!(artifact["architecture"], expected_arch, "{file}");
    }

    let zips = inspect_with_python(&out_a);
    for lambda in ["lambda-gitlab-pipeline-trigger.zip", "lambda-seedcode-checkin-gitlab.zip"] {
        let entries = zips[lambda].as_array().unwrap();
        assert_eq!(entries.len(), 1, "{lambda}: {entries:?}");
        assert_eq!(entries[0][0], "bootstrap");
        assert_eq!(entries[0][1], 0o100755);
        // ELF magic, 64-bit, little-endian; e_machine (bytes 18-19) 0xb7 = AArch64.
        let header = entries[0][2].as_str().unwrap();
        assert!(header.starts_with("7f454c460201"), "{lambda}: not a 64-bit LE ELF: {header}");
        assert_eq!(&header[36..40], "b700", "{lambda}: not an AArch64 binary");
    }
    for seedcode in ["mlops-gitlab-project-seedcode-model-build.zip", "mlops-gitlab-project-seedcode-model-deploy.zip"]
    {
        let names: Vec<&str> = zips[seedcode].as_array().unwrap().iter().map(|e| e[0].as_str().unwrap()).collect();
        assert!(names.contains(&".gitlab-ci.yml"), "{seedcode}: {names:?}");
    }

    // The shipped binary runs on Lambda's glibc and names no path of this machine.
    let unpacked = tmp.path().join("unpacked");
    run_ok(
        Command::new("unzip").arg("-q").arg(out_a.join("lambda-seedcode-checkin-gitlab.zip")).arg("-d").arg(&unpacked),
    );
    let bootstrap = unpacked.join("bootstrap");
    assert!(max_glibc_version(&bootstrap) <= (2, 34), "needs glibc {:?}", max_glibc_version(&bootstrap));
    let binary = std::fs::read(&bootstrap).unwrap();
    let cargo_home =
        std::env::var("CARGO_HOME").unwrap_or_else(|_| format!("{}/.cargo", std::env::var("HOME").unwrap()));
    for leak in [a.to_str().unwrap(), b.to_str().unwrap(), &cargo_home, target_dir().to_str().unwrap()] {
        assert!(!contains(&binary, leak), "bootstrap contains the path {leak}");
    }

    // Nothing changed: nothing is rebuilt or rewritten.
    let mtimes = |dir: &Path| -> Vec<_> {
        ZIPS.iter().map(|z| std::fs::metadata(dir.join(z)).unwrap().modified().unwrap()).collect()
    };
    let before = mtimes(&out_a);
    let (summary, log) = succeeded(&xtask_package(&a, &["--out", out_a.to_str().unwrap()]));
    assert!(log.contains("reused the existing Lambda build"), "{log}");
    assert_eq!(summary.matches("reused").count(), 4, "{summary}");
    assert_eq!(mtimes(&out_a), before);
    assert_eq!(files_in(&out_a), files_a);

    // SOURCE_DATE_EPOCH sets every entry's time, without rebuilding anything.
    let out_epoch = tmp.path().join("out-epoch");
    let output = package_command(&a, &["--out", out_epoch.to_str().unwrap()])
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .output()
        .unwrap();
    let (_, log) = succeeded(&output);
    assert!(log.contains("reused the existing Lambda build"), "{log}");
    for zip in ZIPS {
        let listing = run_ok(Command::new("zipinfo").arg("-T").arg(out_epoch.join(zip)));
        let entries: Vec<&str> = listing.lines().filter(|l| l.starts_with('-')).collect();
        assert!(!entries.is_empty(), "{listing}");
        for entry in entries {
            // zipinfo -T prints times as yyyymmdd.hhmmss: 2023-11-14T22:13:20Z.
            assert!(entry.contains("20231114.221320"), "{zip}: {entry}");
        }
    }

    // A seed zip holds what the commit holds: an ignored pip cache and an untracked `.env` in the
    // folder stay out, and the zips keep their bytes.
    std::fs::write(a.join("seedcode/model-build/.env"), "GITLAB_TOKEN=glpat-planted\n").unwrap();
    std::fs::create_dir_all(a.join("seedcode/model-build/.cache/pip")).unwrap();
    std::fs::write(a.join("seedcode/model-build/.cache/pip/token"), "planted\n").unwrap();
    let (_, log) = succeeded(&xtask_package(&a, &["--out", out_a.to_str().unwrap()]));
    assert!(log.contains("reused the existing Lambda build"), "{log}");
    let repackaged = files_in(&out_a);
    for zip in ZIPS {
        assert!(repackaged[zip] == files_a[zip], "{zip} changed when untracked files were planted");
    }
    let build_zip = "mlops-gitlab-project-seedcode-model-build.zip";
    let names = run_ok(Command::new("zipinfo").arg("-1").arg(out_a.join(build_zip)));
    assert!(!names.contains(".env") && !names.contains(".cache"), "{names}");
    let manifest: serde_json::Value = serde_json::from_slice(&repackaged["manifest.json"]).unwrap();
    assert_eq!(manifest["dirty"], true, "the planted files make the tree dirty");
    // The checkout is shared: later tests get it as committed.
    std::fs::remove_file(a.join("seedcode/model-build/.env")).unwrap();
    std::fs::remove_dir_all(a.join("seedcode/model-build/.cache")).unwrap();

    // Last, as it leaves the shared target without a Lambda build: a checkout whose sources
    // differ from that build's but are all older than it (cloned from an older commit, edited
    // before the build ran) is compiled, not served that build, which cargo alone would judge by
    // file times. Broken, it fails and leaves no artifact, and no record claiming the build.
    let broken = clone_head(tmp.path(), "broken");
    let source = broken.join("lambdas/pipeline-trigger/src/lib.rs");
    std::fs::write(&source, std::fs::read_to_string(&source).unwrap() + "\nfn broken( {\n").unwrap();
    date_files(&broken, std::time::SystemTime::now() - std::time::Duration::from_secs(3600));
    let out = tmp.path().join("out-broken");
    let stderr = failed(&xtask_package(&broken, &["--out", out.to_str().unwrap()]));
    assert!(stderr.contains("the Lambda build failed") && stderr.contains("broken"), "{stderr}");
    assert!(files_in(&out).is_empty(), "{:?}", files_in(&out).keys());
    assert!(!target_dir().join("aarch64-unknown-linux-gnu/release/xtask-built-from.json").exists());
}

#[test]
fn unknown_architecture_is_refused() {
    let stderr = failed(&xtask_package(&repo_root(), &["--arch", "sparc", "--out", "/nonexistent"]));
    assert!(stderr.contains("invalid value 'sparc'") && stderr.contains("arm64"), "{stderr}");
}

#[test]
fn missing_seedcode_folder_is_refused_before_building() {
    let tmp = tempfile::tempdir().unwrap();
    let checkout = clone_head(tmp.path(), "clone");
    std::fs::remove_dir_all(checkout.join("seedcode/model-deploy")).unwrap();
    let out = tmp.path().join("out");
    let stderr = failed(&xtask_package(&checkout, &["--out", out.to_str().unwrap()]));
    assert!(stderr.contains("seed code folder") && stderr.contains("seedcode/model-deploy is missing"), "{stderr}");
    assert!(!stderr.contains("building the Lambdas"), "{stderr}");
    assert!(!out.exists() || files_in(&out).is_empty());
}

#[test]
fn unwritable_output_folder_is_refused_before_building() {
    let tmp = tempfile::tempdir().unwrap();
    let not_a_dir = tmp.path().join("file");
    std::fs::write(&not_a_dir, "").unwrap();
    let out = not_a_dir.join("dist");
    let stderr = failed(&xtask_package(&repo_root(), &["--out", out.to_str().unwrap()]));
    assert!(stderr.contains("is not writable") && stderr.contains("--out"), "{stderr}");
}
