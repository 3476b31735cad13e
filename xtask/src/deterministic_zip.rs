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
    EXCLUDED_DIRS.contains(&name)
        || name.ends_with(".egg-info")
        || (depth == 1 && EXCLUDED_TOP_DIRS.contains(&name))
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
    let canonical_root = root
        .canonicalize()
        .with_context(|| format!("cannot read folder {}", root.display()))?;
    let walk = walkdir::WalkDir::new(&canonical_root)
        .follow_links(true)
        .into_iter()
        .filter_entry(|e| {
            let name = e.file_name().to_string_lossy();
            if e.file_type().is_dir() {
                !is_excluded_dir(&name, e.depth())
            } else {
                !is_excluded_file(&name)
            }
        });
    let mut entries = Vec::new();
    for item in walk {
        let item = item.map_err(|err| {
            let path = err
                .path()
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            anyhow::anyhow!(
                "cannot read {path} while packaging {}: {err}",
                root.display()
            )
        })?;
        let rel = item
            .path()
            .strip_prefix(&canonical_root)
            .expect("walkdir stays below its root");
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
        let data = std::fs::read(item.path())
            .with_context(|| format!("cannot read {}", item.path().display()))?;
        entries.push(Entry {
            path: rel_str,
            executable: metadata.permissions().mode() & 0o111 != 0,
            data,
        });
    }
    Ok(entries)
}

/// SHA-256 of everything that determines an archive's bytes, to tell without compressing
/// anything whether an existing archive is still current.
pub fn input_digest(entries: &[Entry], epoch: i64) -> String {
    let mut hasher = Sha256::new();
    hasher.update(format!("zip-v1 epoch={epoch}\n"));
    for entry in sorted(entries) {
        hasher.update(format!(
            "{} {:o} {}\n",
            entry.path,
            entry.mode(),
            entry.data.len()
        ));
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
    let clamped = epoch.clamp(DOS_EPOCH, LAST_DOS_SECOND);
    let (days, secs) = (clamped.div_euclid(86_400), clamped.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    let time = DateTime::from_date_and_time(
        year as u16,
        month as u8,
        day as u8,
        (secs / 3600) as u8,
        (secs % 3600 / 60) as u8,
        (secs % 60) as u8,
    );
    time.map_err(|err| anyhow::anyhow!("time {epoch} has no zip timestamp: {err:?}"))
}

/// Gregorian date of a day count since 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}
