//! Windows kernel glue: the only code that touches `wdk-sys`.
//!
//! Everything here is mechanical: it fills WDF structures, calls WDF through
//! `call_unsafe_wdf_function_binding!`, and forwards to the portable modules. Nothing here
//! decides anything; a decision that creeps in belongs in a portable module with a test.
//! This module is compiled only on Windows with the `driver` feature, so it is checked by the
//! Windows CI workflow, never on Linux.

mod control;
mod driver;
mod event_log;
mod events;
mod guest_waits;
mod handles;
mod host_library;
mod process;
mod section_security;
pub mod sections;
mod strings;
