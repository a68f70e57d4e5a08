//! What vmbmmio's two user-mode command lines share: the host library's CLI (`vmbmmio-host`,
//! `docs/host-library.md`, "Command line") and the Linux guest agent (`vmbmmio-guest`,
//! `docs/guest-agent.md`) follow one set of conventions, and this crate holds them once so the
//! two cannot drift apart:
//!
//! - [`parse`]: the value parsers of their options (sizes with `K`/`M` units and `0x` hex, hex
//!   byte patterns, single bytes);
//! - [`failure`]: why a command failed, with its exit code (2: usage or setup, 1: a failed
//!   check), its stable kind and the `error` object of the JSON output;
//! - [`output`]: printing a command's output (one JSON object with `ok` and `error`, or its
//!   text) and the process's exit code;
//! - [`bytes`]: hex strings, hex dumps and the byte pattern `verify` writes.
//!
//! Plain `std` and `serde_json` only: the host CLI builds for Windows, the guest agent for
//! Linux, and this crate for both (`scripts/check-windows-target.sh` type-checks the host CLI
//! for Windows). Each CLI keeps its own commands and the conversion of its library's errors.

pub mod bytes;
pub mod failure;
pub mod output;
pub mod parse;
