//! Turning a seed code zip into the actions of one GitLab commit.

use std::io::{Cursor, Read};
use std::path::{Component, Path};

use base64::Engine as _;
use lambda_common::gitlab::CommitAction;

/// Entries above this are refused: GitLab's commit API takes the whole commit in one request.
pub const MAX_TOTAL_BYTES: u64 = 50 * 1024 * 1024;

/// Why a seed code zip cannot be committed; `what` names the zip.
#[derive(Debug, thiserror::Error)]
pub enum ZipError {
    #[error("{what} is not a readable zip ({reason}): re-run cargo xtask publish")]
    Unreadable { what: String, reason: String },
    #[error("{what}: {problem}")]
    Entry { what: String, problem: String },
    #[error("{what} unpacks to more than {MAX_TOTAL_BYTES} bytes, too large for one commit")]
    TooLarge { what: String },
    #[error("{what} holds no files")]
    Empty { what: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedFile {
    pub path: String,
    pub content: Vec<u8>,
    pub executable: bool,
}

/// The files of a seed code zip. `what` names the zip in errors. Directory entries are skipped;
/// entries that would land outside the repository (absolute paths, `..`, backslashes) and
/// symlinks are refused.
pub fn read_zip(bytes: &[u8], what: &str) -> Result<Vec<SeedFile>, ZipError> {
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes))
        .map_err(|err| ZipError::Unreadable { what: what.into(), reason: err.to_string() })?;
    let entry_error = |problem: String| ZipError::Entry { what: what.into(), problem };
    let mut files = Vec::new();
    let mut total = 0u64;
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).map_err(|err| entry_error(format!("entry {i} is unreadable: {err}")))?;
        let name =
            entry.name().map_err(|err| entry_error(format!("entry {i} has an unreadable name: {err}")))?.into_owned();
        if entry.is_dir() {
            continue;
        }
        if !is_safe_path(&name) {
            return Err(entry_error(format!("entry {name:?} would be written outside the repository")));
        }
        let mode = entry.unix_mode().unwrap_or(0o644);
        if mode & 0o170000 == 0o120000 {
            return Err(entry_error(format!("entry {name:?} is a symlink, which the seed code may not contain")));
        }
        total += entry.size();
        if total > MAX_TOTAL_BYTES {
            return Err(ZipError::TooLarge { what: what.into() });
        }
        let mut content = Vec::with_capacity(entry.size() as usize);
        entry.read_to_end(&mut content).map_err(|err| entry_error(format!("entry {name:?} is corrupt: {err}")))?;
        files.push(SeedFile { path: name, content, executable: mode & 0o111 != 0 });
    }
    if files.is_empty() {
        return Err(ZipError::Empty { what: what.into() });
    }
    Ok(files)
}

fn is_safe_path(name: &str) -> bool {
    !name.is_empty()
        && !name.contains('\\')
        && !name.contains('\0')
        && Path::new(name).components().all(|c| matches!(c, Component::Normal(_)))
}

/// One `create` action per file: text as is, anything that is not UTF-8 as base64.
pub fn commit_actions(files: &[SeedFile]) -> Vec<CommitAction> {
    files
        .iter()
        .map(|file| {
            let (content, encoding) = match std::str::from_utf8(&file.content) {
                Ok(text) => (text.to_owned(), "text"),
                Err(_) => (base64::engine::general_purpose::STANDARD.encode(&file.content), "base64"),
            };
            CommitAction {
                action: "create",
                file_path: file.path.clone(),
                content,
                encoding,
                execute_filemode: file.executable,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use zip::write::SimpleFileOptions;

    use super::*;

    fn zip_of(entries: &[(&str, u32, &[u8])]) -> Vec<u8> {
        let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
        for (name, mode, content) in entries {
            let options = SimpleFileOptions::default().unix_permissions(*mode);
            if name.ends_with('/') {
                zip.add_directory(*name, options).unwrap();
            } else {
                zip.start_file(*name, options).unwrap();
                zip.write_all(content).unwrap();
            }
        }
        zip.finish().unwrap().into_inner()
    }

    #[test]
    fn reads_files_modes_and_binary_content() {
        let png = [0x89u8, b'P', b'N', b'G', 0xff, 0x00];
        let bytes = zip_of(&[
            ("pipelines/", 0o755, b""),
            (".gitlab-ci.yml", 0o644, b"stages: [build]\n"),
            ("scripts/run.sh", 0o755, b"#!/bin/sh\n"),
            ("img/logo.png", 0o644, &png),
        ]);
        let files = read_zip(&bytes, "build.zip").unwrap();
        let summary: Vec<(&str, bool)> = files.iter().map(|f| (f.path.as_str(), f.executable)).collect();
        assert_eq!(summary, [(".gitlab-ci.yml", false), ("scripts/run.sh", true), ("img/logo.png", false)]);
        let actions = commit_actions(&files);
        assert_eq!((actions[0].encoding, actions[0].content.as_str()), ("text", "stages: [build]\n"));
        assert!(actions[1].execute_filemode);
        assert_eq!(actions[2].encoding, "base64");
        assert_eq!(base64::engine::general_purpose::STANDARD.decode(&actions[2].content).unwrap(), png);
    }

    #[test]
    fn refuses_entries_outside_the_tree() {
        for name in ["../evil.sh", "a/../../evil.sh", "/etc/passwd", "a\\..\\evil", "./x/../../y"] {
            let err = read_zip(&zip_of(&[(name, 0o644, b"x")]), "build.zip").unwrap_err().to_string();
            assert!(err.contains("outside the repository") && err.contains("build.zip"), "{name}: {err}");
        }
    }

    #[test]
    fn refuses_symlinks_corrupt_and_empty_zips() {
        let mut with_link = zip::ZipWriter::new(Cursor::new(Vec::new()));
        with_link.add_symlink("link", "/etc/passwd", SimpleFileOptions::default()).unwrap();
        let err = read_zip(&with_link.finish().unwrap().into_inner(), "z").unwrap_err().to_string();
        assert!(err.contains("symlink"), "{err}");
        let err = read_zip(b"PK\x03\x04 not really a zip", "deploy.zip").unwrap_err().to_string();
        assert!(err.contains("deploy.zip is not a readable zip"), "{err}");
        let err = read_zip(&zip_of(&[("only-a-dir/", 0o755, b"")]), "z").unwrap_err().to_string();
        assert!(err.contains("holds no files"), "{err}");
    }
}
