//! Conventions of this repository that no compiler checks: every task documented, every tool
//! pinned to one exact version, CI images in step with the toolchain, dependency versions in one
//! place, no unfinished code. Each test lists every offence it finds, not just the first.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use crate::common::{read_repo_file, repo_root, run_ok};
use clap::CommandFactory;
use serde_yaml::Value;
use xtask::flags::Xtask;

/// The files git tracks, relative to the repository root.
fn tracked_files() -> Vec<String> {
    let listing = run_ok(Command::new("git").arg("-C").arg(repo_root()).args(["ls-files", "-z"]));
    listing.split('\0').filter(|path| !path.is_empty()).map(str::to_owned).collect()
}

fn assert_none(offences: Vec<String>, rule: &str) {
    assert!(offences.is_empty(), "{rule}:\n  {}", offences.join("\n  "));
}

#[test]
fn every_xtask_command_has_a_readme_section_with_an_example() {
    let readme = read_repo_file("README.md");
    let offences = Xtask::command()
        .get_subcommands()
        .map(|task| task.get_name().to_owned())
        .filter(|name| {
            let invocation = format!("cargo xtask {name}");
            let has_section = readme.contains(&format!("### `{invocation}`"));
            let has_example = readme.lines().any(|line| line.trim_start().starts_with(&invocation));
            !(has_section && has_example)
        })
        .collect();
    assert_none(offences, "README.md needs a \"### `cargo xtask NAME`\" section with an example line for");
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

/// `cargo xtask` compiles xtask alone, `cargo xtask test` the whole workspace; a crate of xtask's
/// tree that the two resolve with different features is compiled twice (xtask/Cargo.toml).
#[test]
fn xtask_alone_builds_its_dependencies_as_the_workspace_does() {
    let resolved = |args: &[&str]| -> std::collections::BTreeSet<String> {
        let tree = run_ok(
            Command::new(env!("CARGO"))
                .args(["tree", "--frozen", "--prefix", "none", "--format", "{p} features: {f}"])
                .args(args)
                .current_dir(repo_root()),
        );
        tree.lines().map(|line| line.trim_end_matches(" (*)").to_owned()).collect()
    };
    // What `cargo run --package xtask` builds: no dev-dependencies.
    let alone = resolved(&["--package", "xtask", "--edges", "normal,build"]);
    let workspace = resolved(&["--workspace"]);
    let offences = alone.difference(&workspace).cloned().collect();
    assert_none(
        offences,
        "xtask alone resolves these otherwise than the workspace: add the workspace's features to xtask's dependencies",
    );
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
