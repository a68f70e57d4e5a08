//! `docs/simulator.md` is the simulator's promise made checkable: every rule the models enforce
//! is a row with a public source and at least one test that exercises it. This test keeps the
//! table honest: each row names a source (never the maintainers' private notes), each named test
//! exists in the workspace, and every KMCL rule the model can report is listed.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every `fn name(` in the workspace's Rust sources (crates/, tests/, src/).
fn function_names() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut stack: Vec<PathBuf> = ["crates", "tests", "src"]
        .iter()
        .map(|dir| workspace().join(dir))
        .collect();
    while let Some(path) = stack.pop() {
        let Ok(entries) = fs::read_dir(&path) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                if path.file_name().is_some_and(|n| n != "target") {
                    stack.push(path);
                }
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = fs::read_to_string(&path).unwrap_or_default();
                for (index, _) in text.match_indices("fn ") {
                    let rest = &text[index + 3..];
                    let name: String = rest
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    if rest[name.len()..].starts_with('(') || rest[name.len()..].starts_with('<') {
                        names.insert(name);
                    }
                }
            }
        }
    }
    names
}

/// Backticked words of a table cell.
fn backticked(cell: &str) -> Vec<String> {
    cell.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

struct Row {
    line: usize,
    cells: Vec<String>,
}

/// Data rows of every table whose header's first cell is "Rule".
fn rule_rows(doc: &str) -> Vec<Row> {
    let mut rows = Vec::new();
    let mut in_rule_table = false;
    for (number, line) in doc.lines().enumerate() {
        let trimmed = line.trim();
        if !trimmed.starts_with('|') {
            in_rule_table = false;
            continue;
        }
        let cells: Vec<String> = trimmed
            .trim_matches('|')
            .split('|')
            .map(|c| c.trim().to_string())
            .collect();
        if cells.first().is_some_and(|c| c == "Rule") {
            in_rule_table = true;
            continue;
        }
        if !in_rule_table
            || cells
                .iter()
                .all(|c| c.chars().all(|ch| ch == '-' || ch == ':'))
        {
            continue;
        }
        rows.push(Row {
            line: number + 1,
            cells,
        });
    }
    rows
}

fn doc() -> String {
    fs::read_to_string(workspace().join("docs/simulator.md")).expect("docs/simulator.md exists")
}

#[test]
fn every_rule_row_has_a_public_source_and_existing_tests() {
    let doc = doc();
    let rows = rule_rows(&doc);
    assert!(
        rows.len() >= 30,
        "the rule tables look empty: {} rows",
        rows.len()
    );
    let functions = function_names();
    let mut problems = Vec::new();
    for row in &rows {
        let [rule, source, .., tests] = row.cells.as_slice() else {
            problems.push(format!(
                "line {}: needs at least rule | source | tests",
                row.line
            ));
            continue;
        };
        if rule.is_empty() {
            problems.push(format!("line {}: no rule", row.line));
        }
        if source.is_empty() || source.contains("shared/") {
            problems.push(format!(
                "line {}: needs a public source, got {source:?}",
                row.line
            ));
        }
        let names = backticked(tests);
        if names.is_empty() {
            problems.push(format!("line {}: names no test", row.line));
        }
        for name in names {
            if !functions.contains(&name) {
                problems.push(format!(
                    "line {}: no test named `{name}` in the workspace",
                    row.line
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "docs/simulator.md:\n{}",
        problems.join("\n")
    );
}

#[test]
fn every_kmcl_rule_the_model_reports_is_in_the_table() {
    let doc = doc();
    let rules = fs::read_to_string(workspace().join("crates/hvsim/src/kmcl/rules.rs")).unwrap();
    let enum_body = rules
        .split("pub enum Rule {")
        .nth(1)
        .and_then(|rest| rest.split("\n}").next())
        .expect("kmcl::rules::Rule");
    let variants: Vec<&str> = enum_body
        .lines()
        .map(str::trim)
        .filter(|line| !line.starts_with("//") && !line.is_empty())
        .map(|line| line.trim_end_matches(','))
        .collect();
    assert!(variants.len() > 10);
    let missing: Vec<_> = variants
        .iter()
        .filter(|v| !doc.contains(&format!("`Rule::{v}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "KMCL rules missing from docs/simulator.md: {missing:?}"
    );
}

#[test]
fn the_docs_cite_no_private_notes() {
    let mut offenders = Vec::new();
    let mut files = vec![workspace().join("README.md")];
    if let Ok(entries) = fs::read_dir(workspace().join("docs")) {
        files.extend(entries.flatten().map(|e| e.path()));
    }
    for file in files {
        let text = fs::read_to_string(&file).unwrap_or_default();
        for (number, line) in text.lines().enumerate() {
            let private = [
                "shared/reference",
                "../shared",
                "kmcl.md",
                "hdv.md",
                "anchors.md",
                "platform-paths.md",
                "windows-drivers-rs.md",
                "windows-target-check.md",
            ];
            if private.iter().any(|name| line.contains(name)) {
                offenders.push(format!("{}:{}", file.display(), number + 1));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "docs must cite public sources: {offenders:?}"
    );
}
