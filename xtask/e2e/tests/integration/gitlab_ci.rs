//! The GitLab CI files: valid against GitLab's schema, and this repository's package job run for
//! real with gitlab-ci-local (shell executor: no Docker here), its artifacts checked.

use crate::common;

use std::process::Command;

use crate::common::{head_checkout, lambda_builds, repo_root, run_ok, target_dir, tool, tools_dir};

#[test]
fn every_gitlab_ci_file_matches_gitlabs_schema() {
    let files = [".gitlab-ci.yml", "seedcode/model-build/.gitlab-ci.yml", "seedcode/model-deploy/.gitlab-ci.yml"];
    let output = run_ok(
        Command::new(tool("test", "check-jsonschema"))
            .args(["--builtin-schema", "vendor.gitlab-ci"])
            .args(files)
            .current_dir(repo_root()),
    );
    assert!(output.contains("ok -- validation done"), "{output}");
}

#[test]
fn the_package_job_runs_and_its_artifacts_match_their_sums() {
    // The shell executor runs the job in the checkout itself, building into this build's target
    // dir, so the Lambdas built by the other tests from the same sources are reused.
    let _builds = lambda_builds();
    let checkout = head_checkout();
    let cargo_home =
        std::env::var("CARGO_HOME").unwrap_or_else(|_| format!("{}/.cargo", std::env::var("HOME").unwrap()));
    // The job's `cargo xtask` runs this build's xtask-e2e (as the package tests do) instead of
    // compiling another into the shared target dir, where it would pass for this checkout's own
    // build: cargo takes the alias from CARGO_ALIAS_XTASK before .cargo/config.toml, and an alias
    // may name an external command, `cargo-<name>` on PATH, which gets the alias name first.
    let bin = tempfile::tempdir().unwrap();
    let xtask = bin.path().join("cargo-xtask-under-test");
    let script = format!(
        "#!/bin/sh\nshift\nCARGO_MANIFEST_DIR=\"$PWD/xtask\" exec '{}' \"$@\"\n",
        env!("CARGO_BIN_EXE_xtask-e2e")
    );
    std::fs::write(&xtask, script).unwrap();
    std::fs::set_permissions(&xtask, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let variable = |name: &str, value: &str| format!("{name}={value}");
    let gitlab_ci_local = tools_dir().join("npm/node_modules/.bin/gitlab-ci-local");
    let output = Command::new(&gitlab_ci_local)
        .arg("--force-shell-executor=true")
        // Build where the package tests build, with the tools and registry already here.
        .args(["--variable", &variable("CARGO_TARGET_DIR", target_dir().to_str().unwrap())])
        .args(["--variable", &variable("XTASK_TOOLS_DIR", tools_dir().to_str().unwrap())])
        .args(["--variable", &variable("CARGO_HOME", &cargo_home)])
        .arg("package")
        .env("CARGO_ALIAS_XTASK", "xtask-under-test")
        .env("PATH", xtask::tools::path_with(bin.path()).unwrap())
        .current_dir(&checkout)
        .output()
        .unwrap_or_else(|err| panic!("{}: {err}", gitlab_ci_local.display()));
    let log = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && log.contains("PASS  package"),
        "the package job failed:\n{log}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );

    assert!(!log.contains("Compiling xtask"), "the job compiled its own xtask:\n{log}");

    let artifacts = checkout.join(".gitlab-ci-local/artifacts/package/target/dist");
    let mut files: Vec<String> =
        std::fs::read_dir(&artifacts).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    files.sort();
    assert_eq!(
        files,
        [
            "SHA256SUMS",
            "lambda-gitlab-pipeline-trigger.zip",
            "lambda-seedcode-checkin-gitlab.zip",
            "manifest.json",
            "mlops-gitlab-project-seedcode-model-build.zip",
            "mlops-gitlab-project-seedcode-model-deploy.zip"
        ]
    );
    run_ok(Command::new("sha256sum").args(["--check", "--strict", "SHA256SUMS"]).current_dir(&artifacts));
    // The release job links these files by their path in the package job's artifacts.
    let pipeline: serde_yaml::Value = serde_yaml::from_str(&common::read_repo_file(".gitlab-ci.yml")).unwrap();
    let links = pipeline["release"]["release"]["assets"]["links"].as_sequence().expect("the release job links assets");
    assert_eq!(links.len(), files.len() - 1, "every artifact but the manifest is a release asset");
    for link in links {
        let url = link["url"].as_str().unwrap();
        let path = url.split_once("/artifacts/raw/").map(|(_, path)| path).unwrap_or_else(|| panic!("{url}"));
        let name = link["name"].as_str().unwrap();
        assert!(
            checkout.join(".gitlab-ci-local/artifacts/package").join(path).is_file(),
            "release asset {name}: {path} is not a package artifact"
        );
        assert!(path.ends_with(name), "release asset {name} links {path}");
    }
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(artifacts.join("manifest.json")).unwrap()).unwrap();
    let head = run_ok(Command::new("git").arg("-C").arg(&checkout).args(["rev-parse", "HEAD"]));
    assert_eq!(manifest["source_commit"], head.trim());
}
