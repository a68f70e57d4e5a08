//! Evidence classification: pure functions from collected raw facts to a verdict, a summary and
//! the evidence recorded.
//!
//! Why pure: this is every decision the probe makes, and it cannot run on a Hyper-V host here;
//! written as functions of plain values it is tested on Linux rule by rule
//! (`tests/probe_classify.rs`), and the Windows collectors stay mechanical.

mod host;
mod mapping;
mod vm;

pub use host::{
    DRIVER_FILE, MIN_KMDF, MIN_WINDOWS_BUILD, classify_comparison, driver_verifier,
    hyperv_components, hyperv_role, kmcl_exports, kmdf_version, test_signing, windows_build,
};
pub use mapping::section_backed_mapping;
pub use vm::{
    VmStatus, WorkerMatch, find_worker, protection_level_name, resolve_vm, vdev_ioctls,
    vdev_second_open, vm_state, worker_protection,
};

use super::facts::OsError;
use super::report::{Evidence, Verdict};

/// What one check concluded.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    /// The verdict.
    pub verdict: Verdict,
    /// One or two sentences.
    pub summary: String,
    /// The raw facts.
    pub evidence: Evidence,
}

impl Outcome {
    /// An outcome.
    pub fn new(verdict: Verdict, summary: impl Into<String>, evidence: Evidence) -> Self {
        Self {
            verdict,
            summary: summary.into(),
            evidence,
        }
    }

    /// `not_run`, with the reason.
    pub fn not_run(reason: impl Into<String>) -> Self {
        Self::new(Verdict::NotRun, reason, Evidence::new())
    }

    /// `error`: collecting failed with `error`.
    pub fn error(what: &str, error: &OsError, evidence: Evidence) -> Self {
        Self::new(
            Verdict::Error,
            format!("{what}: {error}"),
            evidence.with("error", os_error(error)),
        )
    }
}

/// An [`OsError`] as evidence.
pub fn os_error(error: &OsError) -> Evidence {
    Evidence::new()
        .with("call", error.call.as_str())
        .with("code", error.code)
        .with("code_hex", format!("{:#010x}", error.code))
}
