//! Why a command failed: a stable kind for `--json`, the message for people, and the exit code
//! (2: a usage or setup problem; 1: a failed check or operation), as the guest agent's CLI.

use serde_json::{Value, json};
use vmbmmio_host::Error;

/// Exit code of a usage or setup problem.
pub const SETUP: u8 = 2;
/// Exit code of a failed check.
pub const CHECK: u8 = 1;

/// A failed command.
#[derive(Debug)]
pub struct Failure {
    /// The exit code.
    pub exit: u8,
    /// A stable snake_case name (`docs/host-library.md`, "Errors").
    pub kind: &'static str,
    /// What happened and what to do.
    pub message: String,
}

impl Failure {
    /// A usage or setup problem.
    pub fn setup(kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            exit: SETUP,
            kind,
            message: message.into(),
        }
    }

    /// A failed check.
    pub fn check(kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            exit: CHECK,
            kind,
            message: message.into(),
        }
    }

    /// The `error` object of the JSON output.
    pub fn to_json(&self) -> Value {
        json!({ "kind": self.kind, "message": self.message, "exit_code": self.exit })
    }
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        Self {
            exit: if error.is_setup() { SETUP } else { CHECK },
            kind: error.kind(),
            message: error.to_string(),
        }
    }
}
