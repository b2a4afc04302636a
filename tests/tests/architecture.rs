//! ARCHITECTURE.md's rules, kept: crates use only crates of lower rows (service-kit knows
//! nothing of the device, test-kit reaches no production binary), the modules of a crate import
//! each other without a cycle, and only binaries choose the allocator.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a failed unwrap is a failed test

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// The production crates' folders (their `src/` is shipped or linked into what is).
const CRATES: [&str; 8] = [
    "crates/qwiic-button",
    "crates/qwiic-sim",
    "crates/qwiic-bus",
    "crates/runtime-kit",
    "crates/service-kit",
    "button-service",
    "led-service",
    "simulator",
];

/// The names in one `[section]` of a Cargo.toml (`name.workspace = true`, `name = ...`).
fn dependencies(manifest: &str, section: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut inside = false;
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            inside = line == format!("[{section}]");
            continue;
        }
        if inside && !line.is_empty() && !line.starts_with('#') {
            let name = line.split(['=', '.', ' ']).next().unwrap_or_default();
            names.insert(name.to_owned());
        }
    }
    names
}

fn manifest(dir: &str) -> String {
    std::fs::read_to_string(root().join(dir).join("Cargo.toml")).unwrap()
}

#[test]
fn crates_use_only_crates_of_lower_rows() {
    let project: BTreeSet<&str> = [
        "qwiic-button",
        "qwiic-sim",
        "qwiic-bus",
        "runtime-kit",
        "service-kit",
        "test-kit",
        "led-service",
        "button-service",
        "simulator",
    ]
    .into();
    let allowed: BTreeMap<&str, &[&str]> = [
        ("crates/qwiic-button", &[][..]),
        ("crates/qwiic-sim", &[][..]),
        ("crates/runtime-kit", &[][..]),
        (
            "crates/qwiic-bus",
            &["qwiic-button", "qwiic-sim", "runtime-kit"][..],
        ),
        ("crates/service-kit", &["runtime-kit"][..]),
        (
            "button-service",
            &["qwiic-bus", "qwiic-button", "runtime-kit", "service-kit"][..],
        ),
        (
            "led-service",
            &["qwiic-bus", "qwiic-button", "runtime-kit", "service-kit"][..],
        ),
        (
            "simulator",
            &[
                "qwiic-bus",
                "qwiic-button",
                "qwiic-sim",
                "runtime-kit",
                "service-kit",
            ][..],
        ),
    ]
    .into();
    for dir in CRATES {
        let used: BTreeSet<String> = dependencies(&manifest(dir), "dependencies")
            .into_iter()
            .filter(|name| project.contains(name.as_str()))
            .collect();
        let allowed: BTreeSet<String> = allowed[dir].iter().map(|s| s.to_string()).collect();
        let beyond: Vec<_> = used.difference(&allowed).collect();
        assert!(
            beyond.is_empty(),
            "{dir} depends on {beyond:?}, outside what ARCHITECTURE.md allows it ({allowed:?})"
        );
    }
}

/// Every `.rs` file under `dir`, recursively.
fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(sources(&path));
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            found.push(path);
        }
    }
    found
}

/// `crate::a::b` for `src/a/b.rs` or `src/a/b/mod.rs`; `crate` for `lib.rs`.
fn module_of(src: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = relative
        .components()
        .map(|part| part.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|last| last == "mod") {
        parts.pop();
    }
    if parts == ["lib"] {
        return "crate".to_owned();
    }
    std::iter::once("crate".to_owned())
        .chain(parts)
        .collect::<Vec<_>>()
        .join("::")
}

/// The code of a file without its tests and comments.
fn code(text: &str) -> String {
    let text = text.split("#[cfg(test)]").next().unwrap_or_default();
    text.lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The paths a piece of code names that start with `prefix::` (`crate`, `super`).
fn paths_after<'a>(code: &'a str, prefix: &str) -> Vec<Vec<&'a str>> {
    let mut paths = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find(&format!("{prefix}::")) {
        let before = rest[..at].chars().next_back();
        let tail = &rest[at + prefix.len() + 2..];
        rest = tail;
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let end = tail
            .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(tail.len());
        paths.push(tail[..end].split("::").filter(|s| !s.is_empty()).collect());
    }
    paths
}

#[test]
fn the_modules_of_every_crate_import_each_other_without_a_cycle() {
    for dir in CRATES.iter().copied().chain(["crates/test-kit"]) {
        let src = root().join(dir).join("src");
        let files: BTreeMap<String, PathBuf> = sources(&src)
            .into_iter()
            .filter(|file| !file.ends_with("main.rs"))
            .map(|file| (module_of(&src, &file), file))
            .collect();
        let mut edges: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for (module, file) in &files {
            let code = code(&std::fs::read_to_string(file).unwrap());
            let parent = module
                .rsplit_once("::")
                .map_or("crate", |(parent, _)| parent);
            let named = paths_after(&code, "crate")
                .into_iter()
                .map(|path| ("crate".to_owned(), path))
                .chain(
                    paths_after(&code, "super")
                        .into_iter()
                        .map(|path| (parent.to_owned(), path)),
                );
            for (base, path) in named {
                // The longest module the path names; an item of the root counts as the root.
                let target = (0..=path.len())
                    .rev()
                    .map(|len| {
                        std::iter::once(base.as_str())
                            .chain(path[..len].iter().copied())
                            .collect::<Vec<_>>()
                            .join("::")
                    })
                    .find(|candidate| files.contains_key(candidate));
                if let Some(target) = target.filter(|target| target != module) {
                    let (target, _) = files.get_key_value(&target).unwrap();
                    edges.entry(module).or_default().insert(target);
                }
            }
        }
        // The root declares and re-exports every module: an edge into it from a module that
        // it does not name back in its own code is a use of one of its items, not a cycle.
        for (module, targets) in &edges {
            for target in targets {
                let mut seen = BTreeSet::new();
                let mut stack = vec![*target];
                while let Some(next) = stack.pop() {
                    assert!(
                        next != *module,
                        "{dir}: {module} imports {target}, which leads back to {module}: an import cycle"
                    );
                    if seen.insert(next) {
                        stack.extend(edges.get(next).into_iter().flatten().copied());
                    }
                }
            }
        }
    }
}

#[test]
fn only_binaries_choose_the_allocator() {
    for dir in CRATES.iter().copied().chain(["crates/test-kit"]) {
        for file in sources(&root().join(dir).join("src")) {
            let text = std::fs::read_to_string(&file).unwrap();
            if text.contains("#[global_allocator]") {
                assert!(
                    file.ends_with("main.rs"),
                    "{} sets the allocator: a library would choose it for every binary and test that links it",
                    file.display()
                );
            }
        }
    }
}
