//! `vmbmmio-devhost probe`: read-only field probes of a Hyper-V host, one JSON report.
//!
//! # Why
//! Several facts the design rests on can only be learned on a real host: which KMCL entry points
//! `vmbkmclr.sys` exports, whether a second open of a VM's VMBus vdev path succeeds, whether the
//! VM worker is a protected process, whether a section-backed BAR range takes effect when
//! mapped after the guest enabled decode. The first person who runs vmbmmio on a host runs
//! `vmbmmio-devhost probe` and sends back one report that answers them, with the raw evidence.
//!
//! # Parts
//! - [`questions`] and [`checks`]: what is asked, by stable ids; the check table drives the
//!   report's order, `probe --help` and docs/probe.md.
//! - [`facts`]: the raw facts, as plain values; [`classify`]: every decision, as pure functions
//!   of those facts; [`exports`]: the KMCL export comparison with the driver's own PE parser and
//!   entry table; [`mapping`]: the mapping check over the platform traits.
//! - [`build`], [`report`], [`summary`]: the report and its text digest.
//! - [`run`]: the subcommand (options, outputs, exit codes); `windows`: the collectors, thin
//!   and mechanical (`cfg(windows)`, type-checked here, never run).
//!
//! No check changes the machine or a VM unless its option says so: `--mapping` attaches a
//! device host to the VM and pauses/resumes it, `--experimental` sends vdev IOCTLs.

pub mod build;
pub mod checks;
pub mod classify;
pub mod exports;
pub mod facts;
pub mod mapping;
pub mod questions;
pub mod report;
pub mod run;
pub mod summary;
pub mod timestamp;
pub mod vdev;
#[cfg(windows)]
pub mod windows;

pub use build::{ProbeInputs, VmInputs, build_report};
pub use report::{Evidence, Finding, Invocation, REPORT_VERSION, Report, Value, Verdict};
pub use run::{ProbeOptions, cli_main};
pub use summary::render_summary;
