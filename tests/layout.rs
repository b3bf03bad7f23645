//! The house rules of `src/`, checked: no module inside `src/core` uses one
//! that (directly or not) uses it back, the concept folders only use the
//! folders below them (model → core → processors → tracking, stability →
//! setup), and no source file grows past 600 lines.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The names `crate::<prefix>::<name>` a file refers to, grouped imports
/// (`crate::core::{a, b::c}`, `crate::{core::a, model}`) included.
fn uses(text: &str, prefix: &str) -> BTreeSet<String> {
    let needle = if prefix.is_empty() {
        "crate::".to_string()
    } else {
        format!("crate::{prefix}::")
    };
    names_after(text, &needle)
}

/// The first path segment of every path that follows `needle` in `text`.
fn names_after(text: &str, needle: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find(needle) {
        rest = &rest[i + needle.len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // Items of the group, split at its top-level commas.
            let mut depth = 0;
            let mut item = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        found.extend(first_segment(&item));
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                item.push(c);
            }
            found.extend(first_segment(&item));
        } else {
            found.extend(first_segment(rest));
        }
    }
    found
}

fn first_segment(path: &str) -> Option<String> {
    let name: String = path
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    (!name.is_empty() && name != "self").then_some(name)
}

#[test]
fn module_uses_are_found_in_every_import_form() {
    let text = "use crate::core::ledger::Ack;\n\
                use crate::core::{scope::Scope, sinks::{SinkKind, SinkRef}, counts};\n\
                let x = crate::core::timer::on_timer_thread();";
    let got: Vec<_> = uses(text, "core").into_iter().collect();
    assert_eq!(got, ["counts", "ledger", "scope", "sinks", "timer"]);
    let got: Vec<_> = uses("use crate::{core::manager, model::attr};", "")
        .into_iter()
        .collect();
    assert_eq!(got, ["core", "model"]);
    let got: Vec<_> = names_after("use super::{persist, rules::Event};", "super::")
        .into_iter()
        .collect();
    assert_eq!(got, ["persist", "rules"]);
}

/// The module a file under `root` belongs to (its first path component).
fn module_of(root: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(root).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_string()
}

/// The graph module → modules it uses, for the modules directly under `dir`.
fn graph(dir: &Path, prefix: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut all = Vec::new();
    files(dir, &mut all);
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in all {
        let m = module_of(dir, &f);
        if m == "mod" || m == "lib" {
            continue;
        }
        let text = std::fs::read_to_string(&f).unwrap();
        let mut used = uses(&text, prefix);
        // In a module file directly under `dir`, `super::` is `dir` itself.
        if f.parent() == Some(dir) {
            used.extend(names_after(&text, "super::"));
        }
        let deps = g.entry(m.clone()).or_default();
        for d in used {
            if d != m {
                deps.insert(d);
            }
        }
    }
    g
}

fn cycle(g: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == n) {
            let mut c = path[i..].to_vec();
            c.push(n.to_string());
            return Some(c);
        }
        if done.contains(n) {
            return None;
        }
        path.push(n.to_string());
        for d in g.get(n).into_iter().flatten() {
            if let Some(c) = visit(d, g, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(n.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for n in g.keys() {
        if let Some(c) = visit(n, g, &mut Vec::new(), &mut done) {
            return Some(c);
        }
    }
    None
}

#[test]
fn no_module_inside_core_uses_one_that_uses_it_back() {
    let g = graph(&src().join("core"), "core");
    assert!(g.len() > 10, "the core's modules were found: {g:?}");
    assert_eq!(cycle(&g), None, "a cycle among src/core's modules");
}

#[test]
fn the_concept_folders_only_use_the_ones_below_them() {
    let order = [
        "model",
        "core",
        "processors",
        "tracking",
        "stability",
        "setup",
    ];
    // tracking and stability are side by side: neither uses the other.
    let rank = |m: &str| match m {
        "model" => 0,
        "core" => 1,
        "processors" => 2,
        "tracking" | "stability" => 3,
        "setup" => 4,
        _ => 5,
    };
    for folder in order {
        let mut all = Vec::new();
        files(&src().join(folder), &mut all);
        for f in all {
            let text = std::fs::read_to_string(&f).unwrap();
            for used in uses(&text, "") {
                if !order.contains(&used.as_str()) || used == folder {
                    continue;
                }
                assert!(
                    rank(&used) < rank(folder),
                    "{} ({folder}) uses crate::{used}",
                    f.display()
                );
            }
        }
    }
}

#[test]
fn no_source_file_grows_past_600_lines() {
    let mut all = Vec::new();
    files(&src(), &mut all);
    for f in all {
        let lines = std::fs::read_to_string(&f).unwrap().lines().count();
        assert!(lines <= 600, "{} has {lines} lines", f.display());
    }
}
