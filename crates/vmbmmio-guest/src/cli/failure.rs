//! The agent library's errors as the CLI's failures. The [`Failure`] type (exit 2: a usage or
//! setup problem, something to fix before the agent can work; 1: a failed check or a session
//! the host did not complete; a stable kind for `--json`) is the host CLI's too, shared in
//! `vmbmmio_cli_support::failure`.

use vmbmmio_guest::linux::AgentError;

pub use vmbmmio_cli_support::failure::Failure;

/// The library's `error` (an [`AgentError`] or one it wraps: discovery, Linux, session errors)
/// as a failure: its kind (`docs/guest-agent.md`, "Errors"), its message, and exit 2 when it
/// is a setup problem.
pub fn failure(error: impl Into<AgentError>) -> Failure {
    let error = error.into();
    Failure::classified(error.is_setup(), error.kind(), error.to_string())
}
