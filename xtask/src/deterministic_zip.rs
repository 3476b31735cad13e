//! Byte-reproducible zip archives: the one place that decides what goes into an artifact and how.
//!
//! The same entries always give the same bytes, whatever the file system order, the checkout
//! path, the clock or the machine: entries sorted by path, one fixed timestamp, modes normalised
//! to 0644/0755, no directory entries and no host-specific extra fields.

use std::io::{Cursor, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::{Context, bail};
use sha2::{Digest, Sha256};
use zip::{CompressionMethod, DateTime, ZipWriter, write::SimpleFileOptions};

/// The earliest time a zip (DOS) timestamp can hold: 1980-01-01T00:00:00Z. It is the default
/// entry time, so that a rebuilt artifact only changes when its content does.
pub const DOS_EPOCH: i64 = 315_532_800;

/// One file of an archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Relative path with `/` separators.
    pub path: String,
    pub executable: bool,
    pub data: Vec<u8>,
}

impl Entry {
    fn mode(&self) -> u32 {
        if self.executable { 0o755 } else { 0o644 }
    }
}

/// Folders never shipped: version control, Python caches and virtualenvs, build output.
const EXCLUDED_DIRS: &[&str] = &[
    ".git",
    ".hg",
    ".svn",
    "__pycache__",
    ".pytest_cache",
    ".mypy_cache",
    ".ruff_cache",
    ".tox",
    ".venv",
    ".ipynb_checkpoints",
];
/// Build output folders, left out only at the top of a tree (deeper ones may be real code).
const EXCLUDED_TOP_DIRS: &[&str] = &["build", "dist"];

fn is_excluded_dir(name: &str, depth: usize) -> bool {
    EXCLUDED_DIRS.contains(&name) || name.ends_with(".egg-info") || (depth == 1 && EXCLUDED_TOP_DIRS.contains(&name))
}

/// OS junk and compiled Python.
fn is_excluded_file(name: &str) -> bool {
    name == ".DS_Store"
        || name == "Thumbs.db"
        || name.starts_with("._")
        || name.ends_with(".pyc")
        || name.ends_with(".pyo")
}

/// Reads every file below `root` that belongs in an artifact, dotfiles included.
///
/// A symlink is followed when it stays inside the tree (the archive holds the file it points
/// to) and refused when it points outside, so nothing from the packaging machine leaks in.
pub fn collect_tree(root: &Path) -> anyhow::Result<Vec<Entry>> {
    let canonical_root = root.canonicalize().with_context(|| format!("cannot read folder {}", root.display()))?;
    let walk = walkdir::WalkDir::new(&canonical_root).follow_links(true).into_iter().filter_entry(|e| {
        let name = e.file_name().to_string_lossy();
        if e.file_type().is_dir() { !is_excluded_dir(&name, e.depth()) } else { !is_excluded_file(&name) }
    });
    let mut entries = Vec::new();
    for item in walk {
        let item = item.map_err(|err| {
            let path = err.path().map(|p| p.display().to_string()).unwrap_or_default();
            match err.loop_ancestor() {
                Some(ancestor) if !ancestor.starts_with(&canonical_root) => anyhow::anyhow!(
                    "{path} is a symlink to {}, outside the tree: replace it with a copy of what it points to",
                    ancestor.display()
                ),
                Some(ancestor) => {
                    anyhow::anyhow!("{path} is a symlink loop back to {}: remove it", ancestor.display())
                }
                None => anyhow::anyhow!("cannot read {path} while packaging {}: {err}", root.display()),
            }
        })?;
        let rel = item.path().strip_prefix(&canonical_root).expect("walkdir stays below its root");
        let rel_str = rel
            .to_str()
            .with_context(|| format!("{} is not valid UTF-8: rename it", item.path().display()))?
            .to_owned();
        if item.path_is_symlink() {
            let target = item.path().canonicalize();
            match target {
                Ok(target) if target.starts_with(&canonical_root) => {}
                Ok(target) => bail!(
                    "{rel_str} in {} is a symlink to {}, outside the tree: replace it with a copy of what it points to",
                    root.display(),
                    target.display()
                ),
                Err(err) => bail!("{rel_str} in {} is a broken symlink: {err}", root.display()),
            }
        }
        if !item.file_type().is_file() {
            continue;
        }
        let metadata = item.metadata()?;
        let data = std::fs::read(item.path()).with_context(|| format!("cannot read {}", item.path().display()))?;
        entries.push(Entry { path: rel_str, executable: metadata.permissions().mode() & 0o111 != 0, data });
    }
    Ok(entries)
}

/// SHA-256 of everything that determines an archive's bytes, to tell without compressing
/// anything whether an existing archive is still current.
pub fn input_digest(entries: &[Entry], epoch: i64) -> String {
    let mut hasher = Sha256::new();
    hasher.update(format!("zip-v1 epoch={epoch}\n"));
    for entry in sorted(entries) {
        hasher.update(format!("{} {:o} {}\n", entry.path, entry.mode(), entry.data.len()));
        hasher.update(&entry.data);
    }
    format!("{:x}", hasher.finalize())
}

fn sorted(entries: &[Entry]) -> Vec<&Entry> {
    let mut sorted: Vec<&Entry> = entries.iter().collect();
    sorted.sort_by(|a, b| a.path.as_bytes().cmp(b.path.as_bytes()));
    sorted
}

/// Writes `entries` as a zip archive whose entries all carry the time `epoch` (seconds since
/// 1970, UTC; clamped to the range a zip timestamp can hold).
pub fn write(entries: &[Entry], epoch: i64) -> anyhow::Result<Vec<u8>> {
    let sorted = sorted(entries);
    if let Some(pair) = sorted.windows(2).find(|pair| pair[0].path == pair[1].path) {
        bail!("two entries share the path {}", pair[0].path);
    }
    let timestamp = dos_timestamp(epoch)?;
    let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
    for entry in sorted {
        let options = SimpleFileOptions::default()
            .compression_method(CompressionMethod::Deflated)
            .compression_level(Some(9))
            .last_modified_time(timestamp)
            .unix_permissions(entry.mode());
        zip.start_file(entry.path.as_str(), options)?;
        zip.write_all(&entry.data)?;
    }
    Ok(zip.finish()?.into_inner())
}

/// A zip timestamp (civil UTC time, 2-second resolution) for a Unix time.
fn dos_timestamp(epoch: i64) -> anyhow::Result<DateTime> {
    const LAST_DOS_SECOND: i64 = 4_354_819_198; // 2107-12-31T23:59:58Z
    let utc = time::OffsetDateTime::from_unix_timestamp(epoch.clamp(DOS_EPOCH, LAST_DOS_SECOND))?;
    DateTime::try_from(time::PrimitiveDateTime::new(utc.date(), utc.time()))
        .map_err(|err| anyhow::anyhow!("time {epoch} has no zip timestamp: {err:?}"))
}

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::os::unix::fs::symlink;

    use super::*;

    fn entry(path: &str, executable: bool, data: &str) -> Entry {
        Entry { path: path.into(), executable, data: data.as_bytes().to_vec() }
    }

    /// (path, unix mode, content, DOS time) of every entry, in archive order.
    fn read_back(bytes: &[u8]) -> Vec<(String, u32, String, DateTime)> {
        let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).unwrap();
        (0..archive.len())
            .map(|i| {
                let mut file = archive.by_index(i).unwrap();
                let mut content = String::new();
                file.read_to_string(&mut content).unwrap();
                (file.name().unwrap().into_owned(), file.unix_mode().unwrap(), content, file.last_modified().unwrap())
            })
            .collect()
    }

    fn write_file(path: &Path, content: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }

    #[test]
    fn archive_bytes_do_not_depend_on_input_order() {
        let a = vec![entry("b/c.txt", false, "c"), entry("a.txt", false, "a"), entry("b.txt", true, "b")];
        let mut b = a.clone();
        b.reverse();
        let bytes = write(&a, DOS_EPOCH).unwrap();
        assert_eq!(bytes, write(&b, DOS_EPOCH).unwrap());
        let names: Vec<String> = read_back(&bytes).into_iter().map(|e| e.0).collect();
        // Byte order: '.' (0x2e) sorts before '/' (0x2f).
        assert_eq!(names, ["a.txt", "b.txt", "b/c.txt"]);
    }

    #[test]
    fn every_entry_carries_the_given_time() {
        // 2023-11-14T22:13:20Z
        let bytes = write(&[entry("x", false, "x"), entry("y", false, "y")], 1_700_000_000).unwrap();
        for (_, _, _, time) in read_back(&bytes) {
            let fields = (time.year(), time.month(), time.day(), time.hour(), time.minute(), time.second());
            assert_eq!(fields, (2023, 11, 14, 22, 13, 20));
        }
        assert_ne!(bytes, write(&[entry("x", false, "x"), entry("y", false, "y")], DOS_EPOCH).unwrap());
    }

    #[test]
    fn times_outside_the_zip_range_are_clamped() {
        let before_1980 = read_back(&write(&[entry("x", false, "")], 0).unwrap()).remove(0).3;
        assert_eq!((before_1980.year(), before_1980.month(), before_1980.day()), (1980, 1, 1));
        let far_future = read_back(&write(&[entry("x", false, "")], i64::MAX).unwrap()).remove(0).3;
        assert_eq!(far_future.year(), 2107);
    }

    #[test]
    fn modes_are_normalised() {
        let bytes = write(&[entry("run.sh", true, "#!/bin/sh"), entry("data.csv", false, "1,2")], DOS_EPOCH).unwrap();
        let modes: Vec<(String, u32)> = read_back(&bytes).into_iter().map(|e| (e.0, e.1)).collect();
        assert_eq!(modes, [("data.csv".to_owned(), 0o100644), ("run.sh".to_owned(), 0o100755)]);
    }

    #[test]
    fn duplicate_paths_are_refused() {
        let err = write(&[entry("a", false, "1"), entry("a", true, "2")], DOS_EPOCH).unwrap_err();
        assert!(err.to_string().contains("two entries share the path a"), "{err}");
    }

    #[test]
    fn input_digest_follows_content_mode_and_time() {
        let base = [entry("a", false, "1")];
        let digest = input_digest(&base, DOS_EPOCH);
        assert_eq!(digest, input_digest(&base, DOS_EPOCH));
        assert_ne!(digest, input_digest(&[entry("a", false, "2")], DOS_EPOCH));
        assert_ne!(digest, input_digest(&[entry("a", true, "1")], DOS_EPOCH));
        assert_ne!(digest, input_digest(&[entry("b", false, "1")], DOS_EPOCH));
        assert_ne!(digest, input_digest(&base, DOS_EPOCH + 2));
    }

    #[test]
    fn tree_keeps_dotfiles_and_leaves_out_junk() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for kept in [".gitlab-ci.yml", ".hidden/config", "pipelines/run.py", "pipelines/build/keep.py", "README.md"] {
            write_file(&root.join(kept), kept);
        }
        for junk in [
            ".git/HEAD",
            ".DS_Store",
            "pipelines/._run.py",
            "pipelines/__pycache__/run.cpython-311.pyc",
            "pipelines/stale.pyc",
            ".venv/bin/python",
            "build/lib/x.py",
            "dist/x.whl",
            "pipelines.egg-info/PKG-INFO",
            ".pytest_cache/v/cache",
        ] {
            write_file(&root.join(junk), junk);
        }
        let mut paths: Vec<String> = collect_tree(root).unwrap().into_iter().map(|e| e.path).collect();
        paths.sort();
        assert_eq!(
            paths,
            [".gitlab-ci.yml", ".hidden/config", "README.md", "pipelines/build/keep.py", "pipelines/run.py"]
        );
    }

    #[test]
    fn tree_reads_the_executable_bit() {
        let dir = tempfile::tempdir().unwrap();
        write_file(&dir.path().join("deploy.sh"), "#!/bin/sh");
        write_file(&dir.path().join("config.json"), "{}");
        std::fs::set_permissions(dir.path().join("deploy.sh"), std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::set_permissions(dir.path().join("config.json"), std::fs::Permissions::from_mode(0o600)).unwrap();
        let mut modes: Vec<(String, bool)> =
            collect_tree(dir.path()).unwrap().into_iter().map(|e| (e.path, e.executable)).collect();
        modes.sort();
        assert_eq!(modes, [("config.json".to_owned(), false), ("deploy.sh".to_owned(), true)]);
    }

    #[test]
    fn symlinks_inside_the_tree_are_stored_as_files() {
        let dir = tempfile::tempdir().unwrap();
        write_file(&dir.path().join("shared/params.json"), "{\"a\": 1}");
        symlink("shared/params.json", dir.path().join("params.json")).unwrap();
        symlink("shared", dir.path().join("alias")).unwrap();
        let mut entries = collect_tree(dir.path()).unwrap();
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        let got: Vec<(&str, &[u8])> = entries.iter().map(|e| (e.path.as_str(), e.data.as_slice())).collect();
        let content: &[u8] = b"{\"a\": 1}";
        assert_eq!(got, [("alias/params.json", content), ("params.json", content), ("shared/params.json", content)]);
    }

    #[test]
    fn symlinks_leaving_the_tree_are_refused() {
        let outside = tempfile::tempdir().unwrap();
        write_file(&outside.path().join("secret.txt"), "credentials");
        let dir = tempfile::tempdir().unwrap();
        write_file(&dir.path().join("ok.txt"), "ok");
        symlink(outside.path().join("secret.txt"), dir.path().join("leak.txt")).unwrap();
        let err = collect_tree(dir.path()).unwrap_err().to_string();
        assert!(err.contains("leak.txt") && err.contains("outside the tree"), "{err}");

        let dir = tempfile::tempdir().unwrap();
        symlink("../..", dir.path().join("up")).unwrap();
        let err = collect_tree(dir.path()).unwrap_err().to_string();
        assert!(err.contains("up") && err.contains("outside the tree"), "{err}");
    }

    #[test]
    fn broken_symlinks_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        symlink("missing.txt", dir.path().join("dangling")).unwrap();
        let err = collect_tree(dir.path()).unwrap_err().to_string();
        assert!(err.contains("dangling"), "{err}");
    }

    #[test]
    fn timestamps_are_civil_utc_dates_clamped_to_what_zip_can_hold() {
        let date = |epoch| {
            let t = dos_timestamp(epoch).unwrap();
            (t.year(), t.month(), t.day(), t.hour(), t.minute(), t.second())
        };
        assert_eq!(date(11_016 * 86_400), (2000, 2, 29, 0, 0, 0));
        assert_eq!(date(19_675 * 86_400 + 22 * 3600 + 13 * 60 + 21), (2023, 11, 14, 22, 13, 20));
        // Before 1980 and after 2107 a zip has no date: the nearest one it has.
        assert_eq!(date(0), (1980, 1, 1, 0, 0, 0));
        assert_eq!(date(-1), (1980, 1, 1, 0, 0, 0));
        assert_eq!(date(i64::MAX), (2107, 12, 31, 23, 59, 58));
    }
}
