//! The HDV and HCS model: what the device host sees of Hyper-V (shared/reference/hdv.md).
//!
//! [`HdvSim`] implements the device host's `HcsApi` and `HdvApi` traits
//! (`vmbmmio_devhost::platform`), so the device host's real call sequence runs against it, and
//! offers the test harness the calls that in reality someone else makes: creating, starting
//! and terminating the VM. [`SimSectionMapper`] gives the device host its views of sections
//! through the section model's [`crate::memory::SectionResolver`].
//!
//! What it models, each rule citing its source:
//! - compute systems in the states created, running, paused, stopped; open handles; pause and
//!   resume (hdv.md §3.3, §4);
//! - device hosts (COM-security flag once per process, teardown on the initializing thread,
//!   §3.1) and PCI device instances with their callbacks, called at VM start in the observed
//!   order Initialize, SetConfiguration, GetDetails, Start (§3.7) and Stop, Teardown at VM
//!   termination;
//! - section-backed MMIO ranges, tracked in pages per BAR, with every check of §3.3 (the
//!   undocumented ones in their stricter reading) and counters of everything created and
//!   released;
//! - which devices the guest sees (§5: only those its configuration declares), for
//!   [`crate::guest_memory`].
//!
//! Error codes: the reference documents none for HDV or HCS (§3) except the two observed ones
//! (`RPC_E_TOO_LATE`, `HRESULT_FROM_WIN32(ERROR_INVALID_STATE)`); every other failure returns
//! a code this model chooses, named in [`codes`].

mod api;
mod sim;
mod state;
mod views;

pub use sim::{GuestDevice, GuestRange, HdvSim};
pub use state::{FlexibleIovDevice, HdvCounters, HostingModel, PlatformQuirks, VmConfig, VmState};
pub use views::{SimSectionMapper, SimView, ViewCounters};

/// The HRESULTs the model returns where the reference documents none (model choices).
pub mod codes {
    use vmbmmio_devhost::hresult::HResult;

    /// `HRESULT_FROM_WIN32(ERROR_NOT_FOUND)`: no compute system with that id.
    pub const NOT_FOUND: HResult = HResult::from_win32(1168);
    /// A handle the model does not know (closed, torn down or never created).
    pub const BAD_HANDLE: HResult = HResult::E_HANDLE;
    /// An argument the model refuses (bounds, overlap, section too small, bad BAR).
    pub const INVALID_ARGUMENT: HResult = HResult::E_INVALIDARG;
    /// The section handle lacks the access the mapping needs.
    pub const ACCESS_DENIED: HResult = HResult::E_ACCESSDENIED;
    /// A call in the wrong compute-system state (also what HDV answers, observed, for a
    /// mapping before the VM runs).
    pub const INVALID_STATE: HResult = HResult::INVALID_STATE;
    /// Teardown from a thread other than the initializing one.
    pub const WRONG_THREAD: HResult = HResult::RPC_E_WRONG_THREAD;
    /// The VM start failed because a declared external device has no device host/instance.
    pub const DEVICE_HOST_MISSING: HResult = HResult::E_FAIL;
}
