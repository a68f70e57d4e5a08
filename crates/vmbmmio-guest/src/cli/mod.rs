//! The agent's commands (`docs/guest-agent.md`): each finds the channel and the paired
//! function, opens the session when it needs one, and prints text or (`--json`) one JSON
//! object on stdout. Failures print the discovery module's message (on stderr, and as the
//! `error` object with `--json`) and exit 2 for a usage or setup problem, 1 for a failed check.

pub mod args;
pub mod commands;
pub mod doorbells;
pub mod failure;
pub mod found;
pub mod session_json;

use std::process::ExitCode;

use serde_json::{Value, json};

use args::{Cli, Command};
use failure::Failure;

/// Runs the command; the process's exit code.
pub fn run(cli: Cli) -> ExitCode {
    let (output, failure) = match &cli.command {
        Command::Status { discover_only } => commands::status(&cli, *discover_only),
        Command::Read(args) => split(commands::read(&cli, args)),
        Command::Write(args) => split(commands::write(&cli, args)),
        Command::Verify(args) => split(commands::verify(&cli, args)),
        Command::Serve => split(commands::serve(&cli)),
        Command::Ring(args) => split(doorbells::ring(&cli, args)),
        Command::Wait(args) => split(doorbells::wait(&cli, args)),
    };
    print(&cli, output, failure.as_ref());
    match failure {
        None => ExitCode::SUCCESS,
        Some(failure) => {
            eprintln!("vmbmmio-guest: {}", failure.message);
            ExitCode::from(failure.exit)
        }
    }
}

/// A result as the output object and the failure.
fn split(result: Result<Value, (Value, Failure)>) -> (Value, Option<Failure>) {
    match result {
        Ok(value) => (value, None),
        Err((value, failure)) => (value, Some(failure)),
    }
}

/// Prints `output` with `ok` and `error` set: JSON, or its text form.
fn print(cli: &Cli, mut output: Value, failure: Option<&Failure>) {
    if let Some(object) = output.as_object_mut() {
        object.insert("ok".into(), json!(failure.is_none()));
        object.insert(
            "error".into(),
            failure.map_or(Value::Null, Failure::to_json),
        );
    }
    if cli.json {
        println!("{output}");
    } else if let Some(text) = output.get("text").and_then(Value::as_str) {
        print!("{text}");
    } else if failure.is_none() {
        println!("{}", text_of(&output, 0));
    }
}

/// An indented, human-readable rendering of a JSON object.
fn text_of(value: &Value, indent: usize) -> String {
    let pad = "  ".repeat(indent);
    match value {
        Value::Object(map) => map
            .iter()
            .filter(|(key, value)| {
                !value.is_null() && key.as_str() != "ok" && key.as_str() != "error"
            })
            .map(|(key, value)| match value {
                Value::Object(_) | Value::Array(_) => {
                    format!("{pad}{key}:\n{}", text_of(value, indent + 1))
                }
                _ => format!("{pad}{key}: {}", text_of(value, 0)),
            })
            .collect::<Vec<_>>()
            .join("\n"),
        Value::Array(items) => items
            .iter()
            .map(|item| format!("{pad}-\n{}", text_of(item, indent + 1)))
            .collect::<Vec<_>>()
            .join("\n"),
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}
