//! The seed repositories as their users get them: their CI's unit-test job runs under
//! gitlab-ci-local and their own unit tests pass in it with their own pins, none skipped; the
//! endpoint template lints clean, and the two repositories agree on the model's input format.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{repo_root, run_ok, tool, tools_dir};

const SEED_REPOS: [&str; 2] = ["model-build", "model-deploy"];

fn seed_repo(name: &str) -> PathBuf {
    repo_root().join("seedcode").join(name)
}

/// A command in the seed venv's Python world (which keeps bytecode in the venv, not beside the
/// sources: `xtask::tools::ensure_python_tools`).
fn seed_python(dir: &Path) -> Command {
    let mut command = Command::new(tool("seedcode", "python"));
    command.current_dir(dir);
    command
}

#[test]
fn the_endpoint_template_passes_cfn_lint() {
    let output = run_ok(Command::new(tool("test", "cfn-lint")).arg(seed_repo("model-deploy").join("endpoint.yml")));
    assert_eq!(output.trim(), "", "cfn-lint reported:\n{output}");
}

/// Each repository needs its own copy (they are separate GitLab projects); they must not drift.
/// (Only model-build's tests exercise them.)
#[test]
fn both_seed_repos_get_aws_credentials_the_same_way() {
    for file in ["ci/aws-credentials.sh", "ci/wait_for_role.py"] {
        let [build, deploy] = SEED_REPOS.map(|repo| std::fs::read(seed_repo(repo).join(file)).unwrap());
        assert!(build == deploy, "seedcode/*/{file} differ: change both");
    }
}

/// The deploy's staging test sends its sample rows to a model the build trained: they must be
/// rows the build's preprocessing writes, label first.
#[test]
fn the_endpoint_sample_is_rows_the_build_preprocessing_writes() {
    let work = tempfile::tempdir().unwrap();
    std::fs::create_dir(work.path().join("input")).unwrap();
    std::fs::copy(seed_repo("model-build").join("data/penguins.csv"), work.path().join("input/penguins.csv")).unwrap();
    run_ok(seed_python(&seed_repo("model-build")).args(["-m", "pipelines.preprocess", "--base-dir"]).arg(work.path()));

    let test_split = std::fs::read_to_string(work.path().join("test/test.csv")).unwrap();
    let sample = std::fs::read_to_string(seed_repo("model-deploy").join("data/endpoint-sample.csv")).unwrap();
    let rows: Vec<&str> = sample.lines().filter(|line| !line.starts_with('#') && !line.trim().is_empty()).collect();
    assert!(rows.len() >= 5, "the sample has {} rows", rows.len());
    for row in rows {
        assert!(test_split.lines().any(|line| line == row), "{row} is not a row of the build's test split");
    }
}

/// Each seed repo's `unit-tests` job, run by gitlab-ci-local in a git repository holding just
/// that seed tree, as the checkin Lambda commits it. The seed venv comes first on PATH, so the
/// job's `pip install` finds its pins satisfied and needs no network.
#[test]
fn each_seed_repos_unit_test_job_runs_under_gitlab_ci_local() {
    let gitlab_ci_local = tools_dir().join("npm/node_modules/.bin/gitlab-ci-local");
    let seed_bin = tool("seedcode", "python").parent().unwrap().to_path_buf();
    let path = xtask::tools::path_with(&seed_bin).unwrap();
    for repo in SEED_REPOS {
        let work = tempfile::tempdir().unwrap();
        let checkout = work.path().join(repo);
        run_ok(Command::new("cp").arg("-R").arg(seed_repo(repo)).arg(&checkout));
        let git = |args: &[&str]| {
            run_ok(
                Command::new("git")
                    .arg("-C")
                    .arg(&checkout)
                    .args(["-c", "user.name=ci", "-c", "user.email=ci@example.com"])
                    .args(args),
            )
        };
        git(&["init", "--quiet", "--initial-branch=main"]);
        git(&["add", "--all"]);
        git(&["commit", "--quiet", "--message", "Seed code"]);
        // As GitLab's runner clones it: `rules: changes` (run-pipeline's) compare with origin.
        git(&["remote", "add", "origin", checkout.to_str().unwrap()]);
        git(&["fetch", "--quiet", "origin"]);
        git(&["remote", "set-head", "origin", "main"]);

        let mut command = Command::new(&gitlab_ci_local);
        command
            .arg("--force-shell-executor=true")
            .arg("unit-tests")
            .current_dir(&checkout)
            .env("PATH", &path)
            .env("PIP_NO_INDEX", "1");
        let output = command.output().unwrap_or_else(|err| panic!("{}: {err}", gitlab_ci_local.display()));
        let log = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && log.contains("PASS  unit-tests"),
            "{repo}: the unit-tests job failed:\n{log}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        // pytest's closing line, as the job printed it: "N passed in S s", with nothing skipped.
        let summary = log.lines().rfind(|line| line.contains(" passed")).unwrap_or_default();
        assert!(!summary.is_empty() && !summary.contains("skipped"), "{repo}: {summary}\n{log}");
    }
}
