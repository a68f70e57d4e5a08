//! The plain-text summary (`probe-summary.txt`): one block per finding, for a human reading the
//! console or a pasted report. The JSON is the record; this is its digest.

use std::fmt::Write as _;

use super::report::{Evidence, Report, Value, Verdict};

fn value_text(value: &Value) -> String {
    match value {
        Value::Text(text) => text.clone(),
        other => serde_json::to_string(other).unwrap_or_else(|_| "?".to_string()),
    }
}

fn evidence_line(evidence: &Evidence) -> String {
    evidence
        .entries()
        .iter()
        .map(|(key, value)| format!("{key}={}", value_text(value)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Renders the summary.
pub fn render_summary(report: &Report) -> String {
    let mut text = String::new();
    let _ = writeln!(
        text,
        "{} {} probe, report version {}, {}",
        report.tool.name, report.tool.version, report.report_version, report.generated_at
    );
    let _ = writeln!(text, "host: {}", evidence_line(&report.host));
    let mut options = Vec::new();
    if let Some(vm) = &report.invocation.vm {
        options.push(format!("--vm {vm}"));
    }
    if let Some(mapping) = &report.invocation.mapping {
        options.push(format!("--mapping {mapping}"));
    }
    if report.invocation.experimental {
        options.push("--experimental".to_string());
    }
    let _ = writeln!(
        text,
        "options: {}",
        if options.is_empty() {
            "none (host checks only)".to_string()
        } else {
            options.join(" ")
        }
    );
    let width = report
        .findings
        .iter()
        .map(|finding| finding.id.len())
        .max()
        .unwrap_or(0);
    for finding in &report.findings {
        let _ = writeln!(
            text,
            "\n[{:<12}] {:<width$}  {}",
            finding.verdict.as_str(),
            finding.id,
            finding.summary
        );
        let _ = writeln!(
            text,
            "  {:<12}  {}: {}",
            "", finding.question.id, finding.question.text
        );
    }
    let count = |verdict: Verdict| {
        report
            .findings
            .iter()
            .filter(|finding| finding.verdict == verdict)
            .count()
    };
    let _ = writeln!(
        text,
        "\ntotals: {} answered_yes, {} answered_no, {} inconclusive, {} not_run, {} error",
        count(Verdict::AnsweredYes),
        count(Verdict::AnsweredNo),
        count(Verdict::Inconclusive),
        count(Verdict::NotRun),
        count(Verdict::Error)
    );
    let _ = writeln!(
        text,
        "Send probe-report.json back (docs/probe.md, \"What to send back\"); the raw evidence \
         of every finding is in it."
    );
    text
}
