//! The house in layers, kept: every module of `src/` imports only from the layers below it, and
//! no files import each other in a circle. Read from the source's own `use crate::…`,
//! `use super::…` and inline `crate::…` paths (test modules excluded), so a new import that
//! runs upward fails here, in CI, naming the file and the path.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The top-level modules, bottom layer first. A module may import from any module of a lower
/// row, never from its own row's other modules (siblings such as `write` and `query` stay
/// independent) nor from a higher row.
const LAYERS: &[&[&str]] = &[
    &["remote_write"],
    &["telemetry"],
    &["config"],
    &["aws"],
    &["http"],
    &["write", "query"],
    &["router"],
    &["app", "ops"],
    &["cli"],
];

/// A source file and the module path it defines (`src/write/send.rs` → `["write", "send"]`).
struct SourceFile {
    path: PathBuf,
    module: Vec<String>,
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn source_files() -> Vec<SourceFile> {
    fn walk(dir: &Path, module: &[String], out: &mut Vec<SourceFile>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for path in entries {
            let name = path.file_stem().unwrap().to_string_lossy().to_string();
            if path.is_dir() {
                let mut sub = module.to_vec();
                sub.push(name);
                walk(&path, &sub, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                // The crate roots declare modules, they import nothing of the house; `tests.rs`
                // files are `#[cfg(test)]` modules.
                if module.is_empty() && (name == "lib" || name == "main") || name == "tests" {
                    continue;
                }
                let mut m = module.to_vec();
                if name != "mod" {
                    m.push(name);
                }
                out.push(SourceFile { path, module: m });
            }
        }
    }
    let mut out = Vec::new();
    walk(&src_dir(), &[], &mut out);
    out
}

/// The code of a file without its test module and without comment lines.
fn code_of(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let mut code = String::new();
    for line in text.lines() {
        let t = line.trim_start();
        if t.starts_with("#[cfg(test)]") {
            break;
        }
        if !t.starts_with("//") {
            code.push_str(line);
            code.push('\n');
        }
    }
    code
}

/// Expands a `use` tree (`a::{b, c::{d as e, self}}`) into paths.
fn expand(tree: &str, prefix: &[String], out: &mut Vec<Vec<String>>) {
    let tree = tree.trim();
    if let Some(open) = tree.find('{') {
        let mut base = prefix.to_vec();
        base.extend(segments(&tree[..open]));
        let inner = &tree[open + 1..tree.rfind('}').unwrap()];
        let mut depth = 0;
        let mut start = 0;
        for (i, c) in inner.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    expand(&inner[start..i], &base, out);
                    start = i + 1;
                }
                _ => {}
            }
        }
        expand(&inner[start..], &base, out);
    } else if !tree.is_empty() {
        let mut path = prefix.to_vec();
        path.extend(segments(tree.split(" as ").next().unwrap()));
        out.push(path);
    }
}

fn segments(s: &str) -> Vec<String> {
    s.split("::")
        .map(str::trim)
        .filter(|p| !p.is_empty() && *p != "*")
        .map(String::from)
        .collect()
}

/// Every path of the house a file's code names: `use` trees, then inline `crate::`/`super::`
/// paths.
fn paths_named(code: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut rest = code;
    let mut others = String::new();
    while let Some(at) = rest.find("use ") {
        let before = &rest[..at];
        let is_use = before
            .rsplit('\n')
            .next()
            .is_some_and(|l| l.trim().is_empty() || l.trim().starts_with("pub"));
        if !is_use {
            others.push_str(&rest[..at + 4]);
            rest = &rest[at + 4..];
            continue;
        }
        others.push_str(before);
        let end = rest[at..].find(';').map_or(rest.len(), |e| at + e);
        let tree: String = rest[at + 4..end]
            .chars()
            .filter(|c| !c.is_whitespace() || *c == ' ')
            .collect();
        if tree.starts_with("crate::") || tree.starts_with("super::") || tree.starts_with("self::")
        {
            expand(&tree, &[], &mut out);
        }
        rest = &rest[end..];
    }
    others.push_str(rest);
    for root in ["crate::", "super::"] {
        let mut from = 0;
        while let Some(i) = others[from..].find(root) {
            let start = from + i;
            let preceded = others[..start]
                .chars()
                .last()
                .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':');
            let len = others[start..]
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(others.len() - start);
            if !preceded {
                out.push(segments(&others[start..start + len]));
            }
            from = start + len.max(1);
        }
    }
    out
}

/// The file a path lands in: the deepest module it names.
fn resolve(
    path: &[String],
    file: &SourceFile,
    modules: &BTreeMap<Vec<String>, usize>,
) -> Vec<String> {
    let (mut module, rest) = match path.first().map(String::as_str) {
        Some("crate") => (Vec::new(), &path[1..]),
        Some("self") => (file.module.clone(), &path[1..]),
        Some("super") => {
            // `super` in `a/b.rs` is `a`; in `a/mod.rs` (module `a`) it is the crate root.
            let mut parent = file.module.clone();
            parent.pop();
            let mut rest = &path[1..];
            while rest.first().is_some_and(|s| s == "super") {
                parent.pop();
                rest = &rest[1..];
            }
            (parent, rest)
        }
        _ => return file.module.clone(),
    };
    for seg in rest {
        if seg == "self" {
            continue;
        }
        let mut next = module.clone();
        next.push(seg.clone());
        if !modules.contains_key(&next) {
            break;
        }
        module = next;
    }
    module
}

fn layer_of(top: &str) -> Option<usize> {
    LAYERS.iter().position(|row| row.contains(&top))
}

/// File → the files it imports from.
fn import_graph() -> (Vec<SourceFile>, BTreeMap<usize, BTreeSet<usize>>) {
    let files = source_files();
    let modules: BTreeMap<Vec<String>, usize> = files
        .iter()
        .enumerate()
        .map(|(i, f)| (f.module.clone(), i))
        .collect();
    let mut graph: BTreeMap<usize, BTreeSet<usize>> = BTreeMap::new();
    for (i, file) in files.iter().enumerate() {
        for path in paths_named(&code_of(&file.path)) {
            let target = resolve(&path, file, &modules);
            if let Some(&j) = modules.get(&target) {
                if j != i {
                    graph.entry(i).or_default().insert(j);
                }
            }
        }
    }
    (files, graph)
}

fn name(f: &SourceFile) -> String {
    f.path
        .strip_prefix(src_dir())
        .unwrap()
        .display()
        .to_string()
}

#[test]
fn every_module_imports_only_from_the_layers_below() {
    let (files, graph) = import_graph();
    let mut wrong = Vec::new();
    for f in &files {
        assert!(
            layer_of(&f.module[0]).is_some(),
            "src/{}: module `{}` has no layer; add it to LAYERS in tests/layers.rs",
            name(f),
            f.module[0]
        );
    }
    for (&from, tos) in &graph {
        let (a, fa) = (
            &files[from].module[0],
            layer_of(&files[from].module[0]).unwrap(),
        );
        for &to in tos {
            let (b, fb) = (
                &files[to].module[0],
                layer_of(&files[to].module[0]).unwrap(),
            );
            if a != b && fb >= fa {
                wrong.push(format!(
                    "src/{} ({a}, layer {fa}) imports src/{} ({b}, layer {fb})",
                    name(&files[from]),
                    name(&files[to])
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports that run upward or sideways:\n{}",
        wrong.join("\n")
    );
    // Not vacuous: the parser sees the write path's imports.
    let index = |n: &str| files.iter().position(|f| name(f) == n).unwrap();
    let forward = &graph[&index("write/forward.rs")];
    assert!(
        forward.contains(&index("http/headers.rs")),
        "write/forward.rs -> http/headers.rs"
    );
    assert!(
        forward.contains(&index("write/send.rs")),
        "write/forward.rs -> write/send.rs"
    );
}

#[test]
fn no_files_import_each_other_in_a_circle() {
    let (files, graph) = import_graph();
    // Depth-first search; a file met again while still on the path closes a circle.
    fn visit(
        n: usize,
        graph: &BTreeMap<usize, BTreeSet<usize>>,
        state: &mut BTreeMap<usize, bool>,
        path: &mut Vec<usize>,
    ) -> Option<Vec<usize>> {
        match state.get(&n) {
            Some(true) => return None,
            Some(false) => {
                let at = path.iter().position(|&p| p == n).unwrap();
                let mut circle = path[at..].to_vec();
                circle.push(n);
                return Some(circle);
            }
            None => {}
        }
        state.insert(n, false);
        path.push(n);
        for &m in graph.get(&n).into_iter().flatten() {
            if let Some(circle) = visit(m, graph, state, path) {
                return Some(circle);
            }
        }
        path.pop();
        state.insert(n, true);
        None
    }
    let mut state = BTreeMap::new();
    for n in 0..files.len() {
        if let Some(circle) = visit(n, &graph, &mut state, &mut Vec::new()) {
            let names: Vec<String> = circle
                .iter()
                .map(|&i| format!("src/{}", name(&files[i])))
                .collect();
            panic!("import circle: {}", names.join(" -> "));
        }
    }
}
