//! The walls DESIGN names, checked on the source tree itself.
//!
//! Each top-level module of `src/` (a folder or a file) is a node; `crate::x` anywhere in its code
//! (comments aside) is an edge to `x`. The rules: no cycles between nodes; only `tui` names the
//! terminal crates; the emulator and the client side meet only in `app`/`cli` (the wiring) and
//! through the leaf modules both may use (`proto`, `vocab`, `catalog`, `timing`); `vocab` imports
//! nothing of ours. `cargo test --test architecture -- --nocapture` prints the graph.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

type Graph = BTreeMap<String, BTreeSet<String>>;

/// Modules of the client side: they drive a server and must not reach into the emulator.
const CLIENT: &[&str] = &[
    "triton",
    "loadgen",
    "engine",
    "fleet",
    "exporter",
    "measure",
    "telemetry",
    "cost",
    "report",
    "session",
    "tui",
];
/// What the emulator may import: the generated protocol, plain data and the clock helpers.
const EMULATOR_MAY_USE: &[&str] = &["proto", "vocab", "catalog", "timing"];
/// What the planner may import: it reads sessions, catalogs and prices and asks the emulator's
/// virtual-time core, on neither side of the wall; only the wiring imports it.
const PLAN_MAY_USE: &[&str] = &["emulator", "catalog", "cost", "session", "vocab", "suggest"];
/// Crates that draw on or read from the terminal.
const TERMINAL_CRATES: &[&str] = &["ratatui", "crossterm"];

/// What a source tree says: its module graph and which modules name a terminal crate.
struct Tree {
    graph: Graph,
    terminal: BTreeSet<String>,
}

fn strip_comments(src: &str) -> String {
    src.lines()
        .map(|line| match line.find("//") {
            Some(i) => &line[..i],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The crate-level names a piece of code refers to with `crate::name`, including `crate::{a, b}`.
fn crate_refs(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    for (i, _) in code.match_indices("crate::") {
        let before = code[..i].chars().last();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$') {
            continue;
        }
        let rest = &code[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for part in group[..end].split(',') {
                let name = ident(part.trim());
                if !name.is_empty() {
                    out.insert(name);
                }
            }
        } else {
            let name = ident(rest);
            if !name.is_empty() {
                out.insert(name);
            }
        }
    }
    out
}

fn names_crate(code: &str, krate: &str) -> bool {
    code.match_indices(krate).any(|(i, _)| {
        let before = code[..i].chars().last();
        let after = code[i + krate.len()..].chars().next();
        !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
            && after.is_some_and(|c| c == ':' || c == ';')
    })
}

fn scan(src: &Path) -> Tree {
    let mut graph = Graph::new();
    let mut terminal = BTreeSet::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).expect("source folder reads") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(src).expect("under src");
            let first = rel.components().next().expect("component");
            let node = Path::new(first.as_os_str())
                .file_stem()
                .expect("stem")
                .to_string_lossy()
                .into_owned();
            if node == "lib" || node == "main" {
                continue;
            }
            let code = strip_comments(&fs::read_to_string(&path).expect("source reads"));
            let refs = graph.entry(node.clone()).or_default();
            refs.extend(crate_refs(&code).into_iter().filter(|r| *r != node));
            if TERMINAL_CRATES.iter().any(|k| names_crate(&code, k)) {
                terminal.insert(node);
            }
        }
    }
    Tree { graph, terminal }
}

/// One cycle through `start`, if any (depth-first over the graph).
fn cycle_from(graph: &Graph, start: &str) -> Option<Vec<String>> {
    fn walk(
        graph: &Graph,
        node: &str,
        path: &mut Vec<String>,
        seen: &mut BTreeSet<String>,
    ) -> bool {
        for next in graph.get(node).into_iter().flatten() {
            if *next == path[0] {
                return true;
            }
            if seen.insert(next.clone()) {
                path.push(next.clone());
                if walk(graph, next, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut path = vec![start.to_string()];
    let mut seen = BTreeSet::new();
    walk(graph, start, &mut path, &mut seen).then_some(path)
}

fn violations(tree: &Tree) -> Vec<String> {
    let mut out = Vec::new();
    let mut cycles = BTreeSet::new();
    for node in tree.graph.keys() {
        if let Some(mut cycle) = cycle_from(&tree.graph, node) {
            // One report per cycle, whichever node it was found from.
            let min = cycle.iter().enumerate().min_by_key(|(_, n)| (*n).clone());
            let at = min.map_or(0, |(i, _)| i);
            cycle.rotate_left(at);
            cycles.insert(cycle);
        }
    }
    for cycle in cycles {
        out.push(format!("cycle: {} -> {}", cycle.join(" -> "), cycle[0]));
    }
    for node in &tree.terminal {
        if node != "tui" {
            out.push(format!("{node} names a terminal crate; only tui draws"));
        }
    }
    for (node, refs) in &tree.graph {
        if node == "vocab" {
            for r in refs {
                out.push(format!(
                    "vocab imports crate::{r}; the vocabulary imports nothing of ours"
                ));
            }
        }
        if node == "emulator" {
            for r in refs
                .iter()
                .filter(|r| !EMULATOR_MAY_USE.contains(&r.as_str()))
            {
                out.push(format!(
                    "emulator imports crate::{r}; it shares only protocol types and data"
                ));
            }
        }
        if node == "plan" {
            for r in refs.iter().filter(|r| !PLAN_MAY_USE.contains(&r.as_str())) {
                out.push(format!(
                    "plan imports crate::{r}; it may use only {}",
                    PLAN_MAY_USE.join(", ")
                ));
            }
        }
        if node != "commands" && refs.contains("plan") {
            out.push(format!(
                "{node} imports crate::plan; only the wiring (commands) may"
            ));
        }
        if CLIENT.contains(&node.as_str()) && refs.contains("emulator") {
            out.push(format!(
                "{node} imports crate::emulator; only the wiring (app, cli) may"
            ));
        }
    }
    out
}

fn render(graph: &Graph) -> String {
    graph
        .iter()
        .map(|(node, refs)| {
            let refs: Vec<&str> = refs.iter().map(String::as_str).collect();
            format!("{node:<10} -> {}", refs.join(" "))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_source_tree_keeps_the_walls() {
    let tree = scan(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    println!("{}", render(&tree.graph));
    assert!(tree.graph.contains_key("vocab") && tree.graph.contains_key("emulator"));
    let found = violations(&tree);
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn a_planted_violation_of_each_wall_is_found() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path();
    let files = [
        (
            "vocab/mod.rs",
            "use crate::engine::Thing;\n// crate::tui in a comment is no import\n",
        ),
        ("engine/mod.rs", "use crate::{vocab, loadgen::Driver};\n"),
        ("loadgen/mod.rs", "use crate::engine::Handle;\n"),
        (
            "emulator/mod.rs",
            "use crate::triton::TritonClient;\nuse crate::proto;\n",
        ),
        ("triton.rs", "fn f() { let _ = crate::emulator::serve; }\n"),
        ("report/mod.rs", "use ratatui::widgets::Table;\n"),
        ("tui/mod.rs", "use crossterm::event;\nuse crate::vocab;\n"),
        (
            "plan/mod.rs",
            "use crate::loadgen::ArrivalProcess;\nuse crate::emulator::sim;\n",
        ),
        ("telemetry.rs", "use crate::plan::PlanReport;\n"),
    ];
    for (path, text) in files {
        let path = src.join(path);
        fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        fs::write(path, text).expect("write");
    }
    let found = violations(&scan(src));
    let expect = [
        "cycle: emulator -> triton -> emulator",
        "cycle: engine -> loadgen -> engine",
        "cycle: engine -> vocab -> engine",
        "report names a terminal crate",
        "vocab imports crate::engine",
        "emulator imports crate::triton",
        "triton imports crate::emulator",
        "plan imports crate::loadgen",
        "telemetry imports crate::plan",
    ];
    for e in expect {
        assert!(
            found.iter().any(|f| f.starts_with(e)),
            "expected {e:?} among {found:#?}"
        );
    }
    assert!(!found.iter().any(|f| f.contains("tui names")), "{found:#?}");
    assert!(
        !found.iter().any(|f| f.contains("vocab imports crate::tui")),
        "{found:#?}"
    );
    assert_eq!(found.len(), expect.len(), "{found:#?}");
}
