//! A command's output and the process's exit code, the same in both CLIs: the command builds
//! one JSON object (with a `text` field for people when it has one), the CLI adds `ok` and
//! `error` (the [`Failure`]'s object, or null), prints the object (`--json`) or its text on
//! stdout, prints a failure's message on stderr and exits with its code (0 on success).

use std::process::ExitCode;

use serde_json::{Value, json};

use crate::failure::Failure;

/// What a command returns: its output object, or the output so far and why it failed.
pub type Outcome = Result<Value, (Value, Failure)>;

/// An [`Outcome`] as the output object and the failure.
pub fn split(outcome: Outcome) -> (Value, Option<Failure>) {
    match outcome {
        Ok(value) => (value, None),
        Err((value, failure)) => (value, Some(failure)),
    }
}

/// What the text form of a successful output without a `text` field is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Untexted {
    /// Nothing (the host CLI: every command has a `text`).
    Silent,
    /// The object rendered by [`text_of`] (the guest agent's `status`).
    Rendered,
}

/// How the output is printed on stdout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Style {
    /// `--json`: the object, one line.
    pub json: bool,
    /// The text form of an output without `text`.
    pub untexted: Untexted,
}

/// Prints `output` (with `ok` and `error`), then the failure's message on stderr prefixed with
/// `program`; the process's exit code.
pub fn finish(program: &str, style: Style, output: Value, failure: Option<Failure>) -> ExitCode {
    let output = with_status(output, failure.as_ref());
    print!("{}", stdout_of(style, &output, failure.is_some()));
    match failure {
        None => ExitCode::SUCCESS,
        Some(failure) => {
            eprintln!("{program}: {}", failure.message);
            ExitCode::from(failure.exit)
        }
    }
}

/// `output` with `ok` and `error` set (when it is an object).
pub fn with_status(mut output: Value, failure: Option<&Failure>) -> Value {
    if let Some(object) = output.as_object_mut() {
        object.insert("ok".into(), json!(failure.is_none()));
        object.insert(
            "error".into(),
            failure.map_or(Value::Null, Failure::to_json),
        );
    }
    output
}

/// What goes to stdout for `output`: the JSON line, its `text`, or (per [`Untexted`]) its
/// rendering.
pub fn stdout_of(style: Style, output: &Value, failed: bool) -> String {
    if style.json {
        format!("{output}\n")
    } else if let Some(text) = output.get("text").and_then(Value::as_str) {
        text.to_owned()
    } else if !failed && style.untexted == Untexted::Rendered {
        format!("{}\n", text_of(output, 0))
    } else {
        String::new()
    }
}

/// An indented, human-readable rendering of a JSON object (nulls, `ok` and `error` left out).
pub fn text_of(value: &Value, indent: usize) -> String {
    let pad = "  ".repeat(indent);
    match value {
        Value::Object(map) => map
            .iter()
            .filter(|(key, value)| {
                !value.is_null() && key.as_str() != "ok" && key.as_str() != "error"
            })
            .map(|(key, value)| match value {
                Value::Object(_) | Value::Array(_) => {
                    format!("{pad}{key}:\n{}", text_of(value, indent.saturating_add(1)))
                }
                _ => format!("{pad}{key}: {}", text_of(value, 0)),
            })
            .collect::<Vec<_>>()
            .join("\n"),
        Value::Array(items) => items
            .iter()
            .map(|item| format!("{pad}-\n{}", text_of(item, indent.saturating_add(1))))
            .collect::<Vec<_>>()
            .join("\n"),
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: Style = Style {
        json: false,
        untexted: Untexted::Silent,
    };
    const RENDERED: Style = Style {
        json: false,
        untexted: Untexted::Rendered,
    };

    #[test]
    fn ok_and_error_are_set() {
        let ok = with_status(json!({ "length": 4 }), None);
        assert_eq!(ok, json!({ "length": 4, "ok": true, "error": null }));
        let failure = Failure::check("timeout", "no doorbell");
        let failed = with_status(json!({}), Some(&failure));
        assert_eq!(failed["ok"], json!(false));
        assert_eq!(failed["error"]["kind"], json!("timeout"));
        assert_eq!(failed["error"]["exit_code"], json!(1));
        assert_eq!(with_status(json!(3), None), json!(3));
    }

    #[test]
    fn stdout_is_json_text_or_rendering() {
        let output = json!({ "text": "wrote\n", "ok": true });
        let json_style = Style {
            json: true,
            untexted: Untexted::Silent,
        };
        let line = stdout_of(json_style, &output, false);
        assert_eq!(
            serde_json::from_str::<Value>(&line).ok(),
            Some(output.clone())
        );
        assert!(line.ends_with('\n'));
        assert_eq!(stdout_of(TEXT, &output, false), "wrote\n");
        let plain = json!({ "a": 1, "b": { "c": "x", "d": null }, "ok": true, "error": null });
        assert_eq!(stdout_of(TEXT, &plain, false), "");
        assert_eq!(stdout_of(RENDERED, &plain, false), "a: 1\nb:\n  c: x\n");
        assert_eq!(stdout_of(RENDERED, &plain, true), "");
        assert_eq!(
            text_of(&json!({ "l": [{ "n": 1 }] }), 0),
            "l:\n  -\n    n: 1"
        );
    }

    #[test]
    fn outcomes_split() {
        assert_eq!(split(Ok(json!(1))), (json!(1), None));
        let failure = Failure::setup("usage", "bad");
        assert_eq!(
            split(Err((json!(2), failure.clone()))),
            (json!(2), Some(failure))
        );
    }
}
