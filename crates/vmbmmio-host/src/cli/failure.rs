//! The host library's errors as the CLI's failures. The [`Failure`] type (exit 2: a usage or
//! setup problem; 1: a failed check or operation; a stable kind for `--json`) is the guest
//! agent's too, shared in `vmbmmio_cli_support::failure`.

use vmbmmio_host::Error;

pub use vmbmmio_cli_support::failure::Failure;

/// The library's `error` as a failure: its kind (`docs/host-library.md`, "Errors"), its
/// message, and exit 2 when it is a setup problem.
pub fn failure(error: Error) -> Failure {
    Failure::classified(error.is_setup(), error.kind(), error.to_string())
}
