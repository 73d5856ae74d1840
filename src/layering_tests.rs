//! The top-level modules of `src/` (each folder or file directly under it) form a layered
//! graph: no module reaches, through `crate::` paths, one that reaches back to it. Test
//! code is exempt: `#[cfg(test)] mod x { … }` blocks, and files declared under
//! `#[cfg(test)]`, may import from anywhere.
//!
//! The layers, lowest first: the leaves (`error`, `text_enum`, `crypto`, `identity`,
//! `input`, `telemetry`, `cli`); `config`, `fhir`; `db`; `stores`, `credentials`; `audit`;
//! `state`; `graphql` (helpers, no domain); `access`; the domains (`consent`, `records`,
//! `auth`, `patients`, …); and at the top `schema`, `http`, `seed`, `startup`.
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const SRC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src");

/// Module → the modules it names, each with where it first does (`file:line`).
type Graph = BTreeMap<String, BTreeMap<String, String>>;

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

fn ident_at(s: &str) -> &str {
    let end = s.find(|c: char| !is_ident(c)).unwrap_or(s.len());
    &s[..end]
}

/// The top-level names after each `crate::` in `line`, grouped imports
/// (`crate::{a::X, b}`) included.
fn crate_refs(line: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(i) = rest.find("crate::") {
        let before = rest[..i].chars().next_back();
        let after = &rest[i + "crate::".len()..];
        rest = after;
        if before.is_some_and(is_ident) {
            continue; // `other_crate::`
        }
        if let Some(group) = after.strip_prefix('{') {
            // Top-level items of the group: the first segment of each.
            let mut depth = 0usize;
            let mut start = true;
            for (j, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => start = true,
                    c if start && is_ident(c) => {
                        out.push(ident_at(&group[j..]));
                        start = false;
                    }
                    c if !c.is_whitespace() => start = false,
                    _ => {}
                }
            }
        } else {
            let name = ident_at(after);
            if !name.is_empty() {
                out.push(name);
            }
        }
    }
    out
}

/// `(line number, line)` of `text` outside test code: a `#[cfg(test)]` line at column 0
/// followed by `mod x {` skips through the module's closing `}` at column 0 (rustfmt's
/// layout of a file-level module). Also returns the out-of-line modules declared under
/// `#[cfg(test)]` (`mod x;`), whose files are test code as a whole.
fn non_test_lines(text: &str) -> (Vec<(usize, &str)>, Vec<String>) {
    let mut lines = Vec::new();
    let mut test_children = Vec::new();
    let mut it = text.lines().enumerate().peekable();
    while let Some((n, line)) = it.next() {
        if line != "#[cfg(test)]" {
            lines.push((n + 1, line));
            continue;
        }
        // The item the attribute applies to (other attributes may sit in between).
        let mut item = None;
        while let Some(&(_, next)) = it.peek() {
            if next.trim().is_empty() || next.starts_with("#[") {
                it.next();
                continue;
            }
            item = Some(next);
            break;
        }
        let Some(item) = item else { break };
        let decl = item
            .trim_start_matches("pub ")
            .trim_start_matches("pub(crate) ")
            .strip_prefix("mod ");
        match decl {
            Some(d) if d.trim_end().ends_with('{') => {
                // Skip through the block's closing brace at column 0.
                for (_, l) in it.by_ref() {
                    if l == "}" {
                        break;
                    }
                }
            }
            Some(d) if d.trim_end().ends_with(';') => {
                it.next();
                test_children.push(ident_at(d).to_owned());
            }
            // A test-only item other than a module (a `use`, a function): its line is
            // test code; anything it spans beyond is counted, to be safe.
            _ => {
                it.next();
            }
        }
    }
    (lines, test_children)
}

/// Where the files of `file`'s child modules live.
fn child_dir(file: &Path) -> PathBuf {
    let parent = file.parent().unwrap_or(Path::new("")).to_path_buf();
    match file.file_name().and_then(|n| n.to_str()) {
        Some("mod.rs" | "lib.rs" | "main.rs") => parent,
        _ => parent.join(file.file_stem().unwrap_or_default()),
    }
}

fn rs_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rs_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The top-level module a file under `src` belongs to (`None` for the crate roots).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (!matches!(name, "lib" | "main")).then(|| name.to_owned())
}

/// The module graph of the crate under `src`, test code left out.
fn graph_of(src: &Path) -> Graph {
    let mut files = Vec::new();
    rs_files(src, &mut files);
    let modules: BTreeSet<String> = files.iter().filter_map(|f| module_of(src, f)).collect();
    let texts: BTreeMap<&PathBuf, String> = files
        .iter()
        .map(|f| (f, std::fs::read_to_string(f).unwrap()))
        .collect();
    // Files (and folders) of modules declared under `#[cfg(test)]`.
    let mut test_only: Vec<PathBuf> = Vec::new();
    for (f, text) in &texts {
        for child in non_test_lines(text).1 {
            let dir = child_dir(f);
            test_only.push(dir.join(format!("{child}.rs")));
            test_only.push(dir.join(child));
        }
    }
    let mut graph = Graph::new();
    for (f, text) in &texts {
        let Some(from) = module_of(src, f) else {
            continue;
        };
        if test_only.iter().any(|t| f.starts_with(t)) {
            continue;
        }
        let edges = graph.entry(from.clone()).or_default();
        let shown = f.strip_prefix(src).unwrap_or(f).display().to_string();
        for (n, line) in non_test_lines(text).0 {
            for to in crate_refs(line) {
                if to != from && modules.contains(to) {
                    edges
                        .entry(to.to_owned())
                        .or_insert_with(|| format!("src/{shown}:{n}"));
                }
            }
        }
    }
    graph
}

/// Every cycle's modules (strongly connected components of more than one module), by
/// Tarjan's algorithm.
fn cycles(graph: &Graph) -> Vec<Vec<String>> {
    struct Tarjan<'g> {
        graph: &'g Graph,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        on_stack: BTreeSet<&'g str>,
        found: Vec<Vec<String>>,
    }
    impl<'g> Tarjan<'g> {
        fn visit(&mut self, v: &'g str) {
            let i = self.index.len();
            self.index.insert(v, i);
            self.low.insert(v, i);
            self.stack.push(v);
            self.on_stack.insert(v);
            for w in self.graph.get(v).into_iter().flat_map(|e| e.keys()) {
                let w = w.as_str();
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let lw = self.low[w];
                    let lv = self.low.get_mut(v).unwrap();
                    *lv = (*lv).min(lw);
                } else if self.on_stack.contains(w) {
                    let iw = self.index[w];
                    let lv = self.low.get_mut(v).unwrap();
                    *lv = (*lv).min(iw);
                }
            }
            if self.low[v] == self.index[v] {
                let mut scc = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack.remove(w);
                    scc.push(w.to_owned());
                    if w == v {
                        break;
                    }
                }
                if scc.len() > 1 {
                    scc.sort();
                    self.found.push(scc);
                }
            }
        }
    }
    let mut t = Tarjan {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for v in graph.keys() {
        if !t.index.contains_key(v.as_str()) {
            t.visit(v);
        }
    }
    t.found
}

/// One concrete loop through the modules of a cycle, `a -> b -> … -> a`, each step with
/// the first place it is taken.
fn describe(graph: &Graph, scc: &[String]) -> String {
    let inside: BTreeSet<&str> = scc.iter().map(String::as_str).collect();
    let start = scc[0].as_str();
    // Breadth-first from `start` back to `start`, within the cycle's modules.
    let mut came_from: BTreeMap<&str, &str> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    let mut closing = None;
    'search: while let Some(v) = queue.pop_front() {
        for w in graph[v].keys().map(String::as_str) {
            if w == start {
                closing = Some(v);
                break 'search;
            }
            if inside.contains(w) && !came_from.contains_key(w) {
                came_from.insert(w, v);
                queue.push_back(w);
            }
        }
    }
    let mut path = vec![start];
    let mut v = closing.unwrap_or(start);
    while v != start {
        path.push(v);
        v = came_from[v];
    }
    path[1..].reverse();
    path.push(start);
    let steps: Vec<String> = path
        .windows(2)
        .map(|w| format!("  {} -> {}  ({})", w[0], w[1], graph[w[0]][w[1]]))
        .collect();
    format!(
        "modules {scc:?} import each other; for example:\n{}",
        steps.join("\n")
    )
}

fn check(graph: &Graph) -> Result<(), String> {
    let found = cycles(graph);
    if found.is_empty() {
        return Ok(());
    }
    let text: Vec<String> = found.iter().map(|scc| describe(graph, scc)).collect();
    Err(text.join("\n"))
}

#[test]
fn top_level_modules_have_no_import_cycle() {
    let graph = graph_of(Path::new(SRC));
    // The walk found the crate: a few modules that must exist, with their imports.
    for m in ["access", "audit", "graphql", "schema", "state"] {
        assert!(graph.contains_key(m), "module {m} not found under {SRC}");
    }
    assert!(graph["schema"].contains_key("patients"));
    if let Err(cycle) = check(&graph) {
        panic!("the top-level modules of src/ must form layers without cycles:\n{cycle}");
    }
}

fn hand_built(edges: &[(&str, &str)]) -> Graph {
    let mut g = Graph::new();
    for (a, b) in edges {
        g.entry((*a).to_owned())
            .or_default()
            .insert((*b).to_owned(), format!("{a}.rs:1"));
        g.entry((*b).to_owned()).or_default();
    }
    g
}

#[test]
fn a_cycle_is_reported_by_name() {
    let layered = hand_built(&[("top", "mid"), ("mid", "low"), ("top", "low")]);
    assert_eq!(check(&layered), Ok(()));
    let looped = hand_built(&[
        ("top", "mid"),
        ("mid", "low"),
        ("low", "top"),
        ("low", "leaf"),
        ("x", "y"),
        ("y", "x"),
    ]);
    let err = check(&looped).unwrap_err();
    assert!(err.contains(r#"["low", "mid", "top"]"#), "{err}");
    assert!(err.contains("low -> top  (low.rs:1)"), "{err}");
    assert!(err.contains(r#"["x", "y"]"#), "{err}");
    assert!(!err.contains("leaf"), "{err}");
    assert_eq!(cycles(&looped).len(), 2);
}

#[test]
fn references_are_read_from_paths_and_groups_outside_test_code() {
    assert_eq!(crate_refs("use crate::alpha::X;"), ["alpha"]);
    assert_eq!(
        crate_refs("use crate::{alpha::{A, B}, beta, gamma::C};"),
        ["alpha", "beta", "gamma"]
    );
    assert_eq!(
        crate_refs("f(crate::alpha::g(), $crate::beta!())"),
        ["alpha", "beta"]
    );
    assert!(crate_refs("use other_crate::alpha;").is_empty());
    let text = "use crate::alpha::A;\n\
                #[cfg(test)]\n\
                mod helpers;\n\
                \n\
                #[cfg(test)]\n\
                mod tests {\n    use crate::beta::B;\n}\n\
                fn after() { crate::gamma::g() }\n";
    let (lines, children) = non_test_lines(text);
    let refs: Vec<&str> = lines.iter().flat_map(|(_, l)| crate_refs(l)).collect();
    assert_eq!(refs, ["alpha", "gamma"]);
    assert_eq!(children, ["helpers"]);
}
