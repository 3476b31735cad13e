//! Conventions of this repository that no compiler checks: every task in the README's table, every
//! error's docs link pointing at a heading that exists, the crates layered as ARCHITECTURE.md
//! says, files of one concern, every tool pinned to one exact version, CI images in step with
//! the toolchain, dependency versions in one place, no unfinished code. Each test lists every
//! offence it finds, not just the first.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use clap::CommandFactory;
use serde_yaml::Value;
use xtask::flags::Xtask;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn read_repo_file(relative: &str) -> String {
    std::fs::read_to_string(repo_root().join(relative)).unwrap_or_else(|err| panic!("{relative}: {err}"))
}

fn run_ok(command: &mut Command) -> String {
    let output = command.output().unwrap_or_else(|err| panic!("{command:?}: {err}"));
    assert!(output.status.success(), "{command:?} failed:\n{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

/// The files git tracks, relative to the repository root.
fn tracked_files() -> Vec<String> {
    let listing = run_ok(Command::new("git").arg("-C").arg(repo_root()).args(["ls-files", "-z"]));
    listing.split('\0').filter(|path| !path.is_empty()).map(str::to_owned).collect()
}

fn assert_none(offences: Vec<String>, rule: &str) {
    assert!(offences.is_empty(), "{rule}:\n  {}", offences.join("\n  "));
}

#[test]
fn every_task_has_a_line_and_an_example_in_the_readme_task_table() {
    let readme = read_repo_file("README.md");
    let offences = Xtask::command()
        .get_subcommands()
        .filter_map(|task| {
            let row = format!("| `cargo xtask {}", task.get_name());
            let has_row = readme.lines().any(|line| line.starts_with(&row) && line.matches('|').count() >= 4);
            let has_about = task.get_about().is_some_and(|about| !about.to_string().trim().is_empty());
            (!(has_row && has_about)).then(|| task.get_name().to_owned())
        })
        .collect();
    assert_none(
        offences,
        "README.md's task table needs a row \"| `cargo xtask NAME ...` | what | example |\", and flags.rs a doc comment, for",
    );
}

/// GitHub's anchor of a Markdown heading: lowercase, punctuation but `-` and `_` dropped, spaces
/// to `-`.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

#[test]
fn every_docs_link_in_the_sources_points_at_a_heading_that_exists() {
    let mut anchors: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let files = tracked_files();
    for doc in files.iter().filter(|path| path.starts_with("docs/") && path.ends_with(".md")) {
        let headings = read_repo_file(doc)
            .lines()
            .filter_map(|l| l.strip_prefix('#'))
            .map(|h| anchor(h.trim_start_matches('#')))
            .collect();
        anchors.insert(doc.clone(), headings);
    }
    let mut offences = Vec::new();
    let mut links = 0;
    let sources = files.iter().filter(|path| [".rs", ".py", ".sh", ".yml"].iter().any(|ext| path.ends_with(ext)));
    for file in sources {
        for (number, line) in read_repo_file(file).lines().enumerate() {
            for (at, _) in line.match_indices("docs/") {
                let link: String =
                    line[at..].chars().take_while(|c| c.is_alphanumeric() || "/._-#".contains(*c)).collect();
                let Some((page, fragment)) = link.split_once('#') else { continue };
                links += 1;
                match anchors.get(page) {
                    None => offences.push(format!("{file}:{}: {page} does not exist", number + 1)),
                    Some(found) if !found.contains(fragment) => {
                        offences.push(format!("{file}:{}: {page} has no heading #{fragment}", number + 1))
                    }
                    Some(_) => {}
                }
            }
        }
    }
    assert!(links > 10, "only {links} docs links found: has the convention changed?");
    assert_none(offences, "docs links must point at a heading");
}

/// The packages `package` depends on for its own build (no dev-dependencies), on this platform.
fn dependencies_of(package: &str) -> BTreeSet<String> {
    let tree = run_ok(
        Command::new(env!("CARGO"))
            .args(["tree", "--frozen", "--prefix", "none", "--format", "{p}", "--edges", "normal,build"])
            .args(["--package", package])
            .current_dir(repo_root()),
    );
    tree.lines().filter_map(|line| line.split_whitespace().next()).map(str::to_owned).collect()
}

#[test]
fn the_crates_depend_on_each_other_as_architecture_md_says() {
    // (crate, what it must not link, why)
    let rules: &[(&str, &[&str], &str)] = &[
        ("xtask", &["aws-sdk-s3", "aws-config", "testkit", "lambda-common"], "cargo xtask package compiles no SDK"),
        ("xtask-aws", &["testkit", "axum", "rcgen"], "the product commands link no test stand-in"),
        ("seedcode-checkin", &["testkit", "xtask", "axum"], "what ships links no test support"),
        ("pipeline-trigger", &["testkit", "xtask", "axum"], "what ships links no test support"),
        ("lambda-common", &["testkit", "xtask", "axum"], "what ships links no test support"),
    ];
    let mut offences = Vec::new();
    for (krate, banned, why) in rules {
        let linked = dependencies_of(krate);
        offences.extend(banned.iter().filter(|b| linked.contains(**b)).map(|b| format!("{krate} links {b}: {why}")));
    }
    assert_none(offences, "layering");
}

#[test]
fn source_files_keep_to_one_concern_or_say_why_not() {
    const MAX_LINES: usize = 500;
    let mut offences = Vec::new();
    let sources = tracked_files().into_iter().filter(|path| path.ends_with(".rs") && !path.contains("/tests/"));
    for file in sources {
        let text = read_repo_file(&file);
        let header: String = text.lines().take_while(|l| l.starts_with("//!")).collect();
        if text.lines().count() > MAX_LINES && !header.contains("stays one file") {
            offences.push(format!("{file}: {} lines", text.lines().count()));
        }
    }
    assert_none(
        offences,
        "files over 500 lines must split along their seams, or say in their //! header why it \"stays one file\"",
    );
}

/// `name==version` of a pip requirement line, the name normalised as PyPI does and without extras.
fn exact_pip_pin(line: &str) -> Option<(String, String)> {
    let requirement = line.split(';').next()?.trim();
    let (name, version) = requirement.split_once("==")?;
    let name = name.split('[').next()?.trim().to_lowercase().replace(['_', '.'], "-");
    let exact =
        !name.is_empty() && !version.is_empty() && version.chars().all(|c| c.is_ascii_alphanumeric() || c == '.');
    exact.then(|| (name, version.to_owned()))
}

/// `name@version` of an npm requirement line, for plain and `@scope/` names.
fn exact_npm_pin(line: &str) -> Option<(String, String)> {
    let (name, version) = line.rsplit_once('@')?;
    let exact = !name.is_empty() && !version.is_empty() && version.chars().all(|c| c.is_ascii_digit() || c == '.');
    exact.then(|| (name.to_owned(), version.to_owned()))
}

#[test]
fn python_and_npm_tools_are_pinned_to_one_exact_version_everywhere() {
    let mut offences = Vec::new();
    // package → version → the files that pin it there
    let mut pins: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    let requirement_files = tracked_files().into_iter().filter(|path| {
        let name = Path::new(path).file_name().unwrap().to_str().unwrap();
        path.starts_with("xtask/requirements/") || (name.starts_with("requirements") && name.ends_with(".txt"))
    });
    for file in requirement_files {
        let npm = file.ends_with("npm.txt");
        for (number, line) in read_repo_file(&file).lines().enumerate() {
            let line = line.split(" #").next().unwrap().trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some(included) = line.strip_prefix("-r ") {
                let target = repo_root().join(&file).parent().unwrap().join(included.trim());
                if !target.is_file() {
                    offences.push(format!("{file}:{}: `{line}` names a file that does not exist", number + 1));
                }
                continue;
            }
            match if npm { exact_npm_pin(line) } else { exact_pip_pin(line) } {
                Some((name, version)) => pins.entry(name).or_default().entry(version).or_default().push(file.clone()),
                None => offences.push(format!("{file}:{}: `{line}` is not an exact pin", number + 1)),
            }
        }
    }
    for (name, versions) in pins.iter().filter(|(_, versions)| versions.len() > 1) {
        offences.push(format!("{name} is pinned to different versions: {versions:?}"));
    }
    assert_none(offences, "requirements must be exact pins that agree across files");
}

/// Every `image:` of a GitLab CI file, whether a string or `{ name: ... }`.
fn ci_images(value: &Value, images: &mut Vec<String>) {
    match value {
        Value::Mapping(mapping) => {
            for (key, value) in mapping {
                match (key.as_str(), value) {
                    (Some("image"), Value::String(image)) => images.push(image.clone()),
                    (Some("image"), Value::Mapping(image)) => {
                        images.extend(image.get("name").and_then(Value::as_str).map(str::to_owned))
                    }
                    _ => ci_images(value, images),
                }
            }
        }
        Value::Sequence(items) => items.iter().for_each(|item| ci_images(item, images)),
        _ => {}
    }
}

#[test]
fn ci_images_are_pinned_and_in_step_with_the_toolchains() {
    let toolchain = read_repo_file("rust-toolchain.toml");
    let rust_channel = toolchain
        .lines()
        .find_map(|line| line.strip_prefix("channel = "))
        .expect("rust-toolchain.toml names a channel")
        .trim_matches('"');
    let mut offences = Vec::new();
    let mut rust_images = 0;
    for file in tracked_files().into_iter().filter(|path| path.ends_with(".gitlab-ci.yml")) {
        let mut images = Vec::new();
        ci_images(&serde_yaml::from_str(&read_repo_file(&file)).unwrap(), &mut images);
        for image in images {
            let tag = image.rsplit('/').next().unwrap().split_once(':').map(|(_, tag)| tag);
            let Some(tag) =
                tag.filter(|tag| *tag != "latest" && tag.starts_with(|c: char| c.is_ascii_digit() || c == 'v'))
            else {
                offences.push(format!("{file}: image {image} has no version tag"));
                continue;
            };
            if image.starts_with("rust:") {
                rust_images += 1;
                if tag != rust_channel && !tag.starts_with(&format!("{rust_channel}-")) {
                    offences.push(format!("{file}: image {image} is not rust-toolchain.toml's {rust_channel}"));
                }
            }
            if image.starts_with("python:") {
                // The seed's pins are a freeze on the Python its pyproject.toml names.
                let pyproject = Path::new(&file).with_file_name("pyproject.toml");
                let python = read_repo_file(pyproject.to_str().unwrap())
                    .lines()
                    .find_map(|line| line.strip_prefix("requires-python = \">="))
                    .map(|version| version.trim_end_matches('"').to_owned())
                    .unwrap_or_else(|| panic!("{} names no requires-python", pyproject.display()));
                if !tag.starts_with(&format!("{python}.")) {
                    offences.push(format!("{file}: image {image} is not the Python {python} its pins were made on"));
                }
            }
        }
    }
    assert!(rust_images > 0, "no rust: image found in any .gitlab-ci.yml; has the release job moved?");
    assert_none(offences, "CI images must carry a version tag that matches the toolchain");
}

#[test]
fn crate_dependencies_take_their_versions_from_the_workspace() {
    let mut offences = Vec::new();
    let manifests = tracked_files().into_iter().filter(|path| path.ends_with("/Cargo.toml"));
    for manifest in manifests {
        let mut in_dependencies = false;
        for line in read_repo_file(&manifest).lines().map(str::trim) {
            if line.starts_with('[') {
                in_dependencies = line.ends_with("dependencies]");
            } else if in_dependencies
                && !line.is_empty()
                && !line.starts_with('#')
                && !line.contains("workspace = true")
            {
                offences.push(format!("{manifest}: `{line}`"));
            }
        }
    }
    assert_none(offences, "member crates must use `name.workspace = true`; versions live in the root Cargo.toml");
}

#[test]
fn no_unfinished_or_debugging_code() {
    // Spelt in pieces so this file does not match itself.
    let markers = [
        ("rs", concat!("todo", "!(")),
        ("rs", concat!("unimplemented", "!(")),
        ("rs", concat!("dbg", "!(")),
        ("py", concat!("breakpoint", "()")),
        ("py", concat!("import ", "pdb")),
    ];
    let mut offences = Vec::new();
    for file in tracked_files() {
        let extension = Path::new(&file).extension().and_then(|ext| ext.to_str()).unwrap_or_default();
        if !markers.iter().any(|(ext, _)| *ext == extension) {
            continue;
        }
        for (number, line) in read_repo_file(&file).lines().enumerate() {
            for (_, marker) in markers.iter().filter(|(ext, marker)| *ext == extension && line.contains(marker)) {
                offences.push(format!("{file}:{}: {marker}", number + 1));
            }
        }
    }
    assert_none(offences, "unfinished or debugging code");
}

#[test]
fn text_files_end_in_one_newline_and_have_no_trailing_whitespace() {
    let mut offences = Vec::new();
    for file in tracked_files() {
        let Ok(text) = std::fs::read_to_string(repo_root().join(&file)) else { continue };
        if text.is_empty() {
            continue;
        }
        if !text.ends_with('\n') || text.ends_with("\n\n") {
            offences.push(format!("{file}: does not end in exactly one newline"));
        }
        if text.contains('\r') {
            offences.push(format!("{file}: has CR line endings"));
        }
        for (number, line) in text.lines().enumerate().filter(|(_, line)| line.ends_with([' ', '\t'])) {
            offences.push(format!("{file}:{}: trailing whitespace in `{}`", number + 1, line.trim_end()));
        }
    }
    assert_none(offences, "text files must be clean");
}
