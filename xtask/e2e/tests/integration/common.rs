//! What the xtask integration tests share.

use std::path::{Path, PathBuf};
use std::process::Command;

pub fn repo_root() -> PathBuf {
    // This crate is xtask/e2e.
    Path::new(env!("CARGO_MANIFEST_DIR")).ancestors().nth(2).unwrap().to_path_buf()
}

/// A file of this checkout, by its path from the repository root.
pub fn read_repo_file(relative: &str) -> String {
    std::fs::read_to_string(repo_root().join(relative)).unwrap_or_else(|err| panic!("{relative}: {err}"))
}

pub use testkit::tools_dir;

pub fn tool(venv: &str, program: &str) -> PathBuf {
    let path = tools_dir().join(format!("{venv}-venv/bin/{program}"));
    assert!(path.exists(), "{} is missing: run the tests with `cargo xtask test`, which installs it", path.display());
    path
}

/// This build's target dir, which builds from clones share: `cargo xtask package` records what
/// each Lambda build read, so a clone's build and this checkout's never pass for each other.
pub fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).parent().unwrap().to_path_buf()
}

/// The one clone of HEAD that the tests packaging from a clone share (package, the package job).
/// Its files carry the commit's time, not the clone's, so its first build reuses a Lambda build of
/// the same sources made from any checkout (this one's, say), as a checkout made earlier would:
/// the build record, not the file times, decides. It lives under the system's temporary folder,
/// named after this checkout and the commit, without a remote (gitlab-ci-local would read it);
/// files a test adds are swept away on the next first use.
pub fn head_checkout() -> PathBuf {
    static CHECKOUT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    CHECKOUT
        .get_or_init(|| {
            use std::hash::{Hash, Hasher};
            let commit = run_ok(Command::new("git").arg("-C").arg(repo_root()).args(["rev-parse", "HEAD"]));
            let mut hasher = std::hash::DefaultHasher::new();
            repo_root().hash(&mut hasher);
            let checkouts = std::env::temp_dir().join(format!("xtask-tests-{:016x}", hasher.finish()));
            std::fs::create_dir_all(&checkouts).unwrap();
            // Test binaries run one after another, but two `cargo test` runs may overlap.
            let lock = std::fs::File::create(checkouts.with_extension("lock")).unwrap();
            lock.lock().unwrap();
            let checkout = checkouts.join(commit.trim());
            for entry in std::fs::read_dir(&checkouts).unwrap() {
                let path = entry.unwrap().path();
                if path != checkout {
                    std::fs::remove_dir_all(&path).unwrap();
                }
            }
            if checkout.join(".git").is_dir() {
                run_ok(Command::new("git").arg("-C").arg(&checkout).args(["clean", "-ffdxq"]));
                run_ok(Command::new("git").arg("-C").arg(&checkout).args(["reset", "--hard", "--quiet"]));
            } else {
                clone_head(&checkouts, commit.trim());
                run_ok(Command::new("git").arg("-C").arg(&checkout).args(["remote", "remove", "origin"]));
            }
            let committed = run_ok(Command::new("git").arg("-C").arg(&checkout).args(["log", "-1", "--format=%ct"]));
            date_files(
                &checkout,
                std::time::UNIX_EPOCH + std::time::Duration::from_secs(committed.trim().parse().unwrap()),
            );
            // The package job run here leaves gitlab-ci-local's state and its dotenv report in the
            // checkout; the tree must still be the commit's, or the package tests' manifests
            // would say "dirty".
            std::fs::write(checkout.join(".git/info/exclude"), "/.gitlab-ci-local/\n/package.env\n").unwrap();
            checkout
        })
        .clone()
}

/// Sets the modification time of every file git tracks in `checkout` to `time`.
pub fn date_files(checkout: &Path, time: std::time::SystemTime) {
    for file in run_ok(Command::new("git").arg("-C").arg(checkout).args(["ls-files", "-z"])).split_terminator('\0') {
        std::fs::File::options().write(true).open(checkout.join(file)).unwrap().set_modified(time).unwrap();
    }
}

/// Held by every test that builds the Lambdas (package, the package job, e2e) for as long as it
/// does. Not for correctness (xtask locks the build and checks what it was made from) but for the
/// tests' own claims: between two steps of one test, another test's build from other sources
/// would make "reused" a rebuild.
pub fn lambda_builds() -> std::sync::MutexGuard<'static, ()> {
    static BUILDS: std::sync::Mutex<()> = std::sync::Mutex::new(());
    // A test that failed while holding it leaves nothing half-built that the next one minds.
    BUILDS.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A fresh clone of HEAD at `parent/name`.
pub fn clone_head(parent: &Path, name: &str) -> PathBuf {
    let dest = parent.join(name);
    run_ok(Command::new("git").args(["clone", "--quiet"]).arg(repo_root()).arg(&dest));
    dest
}

/// Runs `command`, failing the test with its output unless it succeeds; returns its stdout.
pub fn run_ok(command: &mut Command) -> String {
    let output = command.output().unwrap_or_else(|err| panic!("{command:?}: {err}"));
    assert!(
        output.status.success(),
        "{command:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// SageMaker's products role in the moto account the publish and doctor tests share: publish
/// refuses an account without it, and a doctor test takes it away for a moment. Publish tests
/// hold the read side for their whole run, that moment holds the write side.
pub fn products_role() -> &'static tokio::sync::RwLock<()> {
    static ROLE: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());
    &ROLE
}
