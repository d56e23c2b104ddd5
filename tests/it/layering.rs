//! The library's top-level modules depend on each other one way, as the pipeline runs
//! (ARCHITECTURE.md draws it): this reads every `crate::NAME` path under `src/` (use lines,
//! `crate::{a, b::c}` groups and inline paths, test blocks included, comments left out) and
//! fails on any path that reaches a module to its right, or on a module the table below does not
//! place, naming the file and line.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each top-level module and its layer: a module may use only modules of a lower layer.
/// Keep in step with the drawing in ARCHITECTURE.md.
const LAYERS: &[(&str, u32)] = &[
    ("micros", 0),
    ("plex", 1),
    ("state", 1),
    ("config", 2),
    ("capture", 3),
    ("meter", 4),
    ("attribute", 5),
    ("rules", 6),
    ("enforce", 7),
    ("notify", 8),
    ("engine", 9),
    ("fakeplex", 10),
    ("hook", 10),
    ("daemon", 11),
    ("demo", 12),
    ("cli", 13),
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The top-level modules: every folder and every `.rs` file of `src/` but lib.rs and main.rs.
fn top_modules() -> BTreeSet<String> {
    std::fs::read_dir(src())
        .expect("src/")
        .map(|e| e.expect("an entry of src/").path())
        .filter_map(|p| {
            let name = p.file_name()?.to_str()?.to_string();
            if p.is_dir() {
                Some(name)
            } else {
                let stem = name.strip_suffix(".rs")?;
                (stem != "lib" && stem != "main").then(|| stem.to_string())
            }
        })
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("a folder of src/") {
        let path = entry.expect("an entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
}

/// The text with `//` comments blanked (string literals kept, so `"http://x"` stays whole).
fn without_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let mut in_str = false;
        let mut prev = '\0';
        let mut cut = line.len();
        for (i, c) in line.char_indices() {
            if c == '"' && prev != '\\' {
                in_str = !in_str;
            } else if !in_str && c == '/' && prev == '/' {
                cut = i - 1;
                break;
            }
            prev = c;
        }
        out.push_str(&line[..cut]);
        out.push('\n');
    }
    out
}

/// Every module name a text reaches through `crate::`, with the line it is on (1-based).
fn crate_paths(text: &str) -> Vec<(String, usize)> {
    let bytes = text.as_bytes();
    let mut found = Vec::new();
    let mut at = 0;
    while let Some(pos) = text[at..].find("crate::") {
        let start = at + pos;
        at = start + "crate::".len();
        if start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_') {
            continue; // another crate's path, e.g. `mycrate::` (`$crate::` is this crate)
        }
        let line = text[..start].matches('\n').count() + 1;
        if bytes.get(at) == Some(&b'{') {
            // A group: the first identifier of each top-level item.
            let mut depth = 0;
            let mut expect_item = true;
            let mut i = at;
            while i < bytes.len() {
                match bytes[i] {
                    b'{' => {
                        depth += 1;
                        if depth == 1 {
                            expect_item = true;
                        }
                    }
                    b'}' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    b',' if depth == 1 => expect_item = true,
                    c if depth == 1 && expect_item && (c.is_ascii_alphabetic() || c == b'_') => {
                        let end = text[i..]
                            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                            .map_or(text.len(), |n| i + n);
                        let item_line = text[..i].matches('\n').count() + 1;
                        found.push((text[i..end].to_string(), item_line));
                        expect_item = false;
                        i = end;
                        continue;
                    }
                    _ => {}
                }
                i += 1;
            }
        } else {
            let end = text[at..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .map_or(text.len(), |n| at + n);
            found.push((text[at..end].to_string(), line));
        }
    }
    found
}

/// (from, to) → the first place it happens, for every edge between two top-level modules.
fn edges() -> BTreeMap<(String, String), String> {
    let tops = top_modules();
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    files.sort();
    let mut edges = BTreeMap::new();
    for file in files {
        let rel = file.strip_prefix(src()).expect("under src/");
        let first = rel
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .unwrap_or_default();
        let from = first.strip_suffix(".rs").unwrap_or(first).to_string();
        if !tops.contains(&from) {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("a source file");
        for (to, line) in crate_paths(&without_comments(&text)) {
            if to != from && tops.contains(&to) {
                edges
                    .entry((from.clone(), to))
                    .or_insert_with(|| format!("src/{}:{line}", rel.display()));
            }
        }
    }
    edges
}

#[test]
fn modules_depend_one_way_as_the_pipeline_runs() {
    let layer: BTreeMap<&str, u32> = LAYERS.iter().copied().collect();
    let unplaced: Vec<_> = top_modules()
        .into_iter()
        .filter(|m| !layer.contains_key(m.as_str()))
        .collect();
    assert!(
        unplaced.is_empty(),
        "modules with no layer in tests/it/layering.rs (and ARCHITECTURE.md): {unplaced:?}"
    );
    let edges = edges();
    let wrong: Vec<String> = edges
        .iter()
        .filter(|((from, to), _)| layer[from.as_str()] <= layer[to.as_str()])
        .map(|((from, to), at)| format!("{from} uses {to} at {at}"))
        .collect();
    assert!(
        wrong.is_empty(),
        "the layering runs one way ({}); these go against it:\n{}",
        LAYERS
            .iter()
            .map(|(m, _)| *m)
            .collect::<Vec<_>>()
            .join(" → "),
        wrong.join("\n")
    );
    // The check sees the graph at all: the daemon is known to use the engine.
    assert!(
        edges.contains_key(&("daemon".to_string(), "engine".to_string())),
        "no daemon → engine edge found: {edges:?}"
    );
}

#[test]
fn the_reader_finds_groups_inline_paths_and_skips_comments() {
    let text = without_comments(
        "use crate::{plex::{Session, x}, rules};\n\
         // crate::daemon is only mentioned here\n\
         let s = \"http://a\"; let v = crate::meter::Meter::new(); // crate::cli\n\
         macro_rules! m { () => { $crate::hook::x() } }\n\
         use othercrate::daemon;\n",
    );
    let names: Vec<(String, usize)> = crate_paths(&text);
    assert_eq!(
        names,
        vec![
            ("plex".to_string(), 1),
            ("rules".to_string(), 1),
            ("meter".to_string(), 3),
            ("hook".to_string(), 4)
        ]
    );
}
