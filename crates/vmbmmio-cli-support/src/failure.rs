//! Why a command failed: a stable kind for `--json`, the message for people, and the exit code
//! (2: a usage or setup problem, something to fix before the command can work; 1: a failed
//! check or operation). Both CLIs document these codes and the `error` object's fields
//! (`kind`, `message`, `exit_code`); each converts its own library's errors with
//! [`Failure::classified`].

use serde_json::{Value, json};

/// Exit code of a usage or setup problem.
pub const SETUP: u8 = 2;
/// Exit code of a failed check.
pub const CHECK: u8 = 1;

/// A failed command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The exit code ([`SETUP`] or [`CHECK`]).
    pub exit: u8,
    /// A stable snake_case name (each CLI's documentation lists them, "Errors").
    pub kind: &'static str,
    /// What happened and what to do.
    pub message: String,
}

impl Failure {
    /// A usage or setup problem.
    pub fn setup(kind: &'static str, message: impl Into<String>) -> Self {
        Self::classified(true, kind, message)
    }

    /// A failed check.
    pub fn check(kind: &'static str, message: impl Into<String>) -> Self {
        Self::classified(false, kind, message)
    }

    /// A library error, classified by the library (`setup`: its `is_setup()`, `kind`: its
    /// `kind()`, `message`: its `Display`).
    pub fn classified(setup: bool, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            exit: if setup { SETUP } else { CHECK },
            kind,
            message: message.into(),
        }
    }

    /// The `error` object of the JSON output.
    pub fn to_json(&self) -> Value {
        json!({ "kind": self.kind, "message": self.message, "exit_code": self.exit })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_and_the_error_object() {
        let setup = Failure::setup("usage", "give --pattern or --byte");
        assert_eq!(setup.exit, 2);
        assert_eq!(
            setup.to_json(),
            json!({ "kind": "usage", "message": "give --pattern or --byte", "exit_code": 2 })
        );
        let check = Failure::check("mismatch", String::from("1 of 4 bytes"));
        assert_eq!(check.exit, 1);
        assert_eq!(check.to_json()["exit_code"], json!(1));
        assert_eq!(Failure::classified(true, "k", "m").exit, SETUP);
        assert_eq!(Failure::classified(false, "k", "m").exit, CHECK);
    }
}
