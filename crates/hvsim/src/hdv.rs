//! The HDV and HCS model: what the device host sees of Hyper-V (shared/reference/hdv.md).
//!
//! [`HdvSim`] implements the device host's `HcsApi` and `HdvApi` traits
//! (`vmbmmio_devhost::platform`), so the device host's real call sequence runs against it, and
//! offers the test harness the calls that in reality someone else makes: creating, starting
//! and terminating the VM. [`SimSectionMapper`] gives the device host its views of sections
//! through the section model's [`crate::memory::SectionResolver`].
//!
//! What it models, each rule citing its source:
//! - compute systems whose state is the power state of a shared [`crate::vm::GuestVm`] (created,
//!   running, paused, stopped, crashed), so the KMCL and memory models see the same VM; open
//!   handles; pause and resume (hdv.md §3.3, §4); a VM worker process per running VM;
//! - device hosts (COM-security flag once per process, teardown on the initializing thread,
//!   §3.1) and PCI device instances with their callbacks, called at VM start in the observed
//!   order Initialize, SetConfiguration, GetDetails, Start (§3.7) and Stop, Teardown at VM
//!   termination;
//! - section-backed MMIO ranges, tracked in pages per BAR, with every check of §3.3 (the
//!   undocumented ones in their stricter reading: map read/write **and query** rights), HDV's
//!   duplicate of each range's section handle in the VM worker (§3.3 `system_handle`), and
//!   counters of everything created and released (a range never destroyed is a leak);
//! - `HdvTeardownDeviceHost` only once the VM no longer runs (§3.1 hcs-rs, §5 step 6);
//! - the vPCI platform (`vpci_host`, [`crate::vpci`]): each started device reaches the guest
//!   as a vPCI function whose BAR and command registers the platform holds;
//! - the observed quirks of the one public run ([`PlatformQuirks`]), the worker crash among
//!   them;
//! - which devices the guest sees (§5: only those its configuration declares), for
//!   [`crate::guest_memory`].
//!
//! Error codes: the reference documents none for HDV or HCS (§3) except the two observed ones
//! (`RPC_E_TOO_LATE`, `HRESULT_FROM_WIN32(ERROR_INVALID_STATE)`); every other failure returns
//! a code this model chooses, named in [`codes`].

mod api;
mod faults;
mod lifecycle;
mod sim;
mod state;
mod views;
mod vpci_host;

pub use faults::HdvCall;
pub use lifecycle::SavedVm;
pub use sim::{GuestDevice, GuestRange, HdvSim};
pub use state::{FlexibleIovDevice, HdvCounters, HostingModel, PlatformQuirks, VmConfig, VmState};
pub use views::{SimSectionMapper, SimView, ViewCounters};
pub use vpci_host::{EARLY_MAPPING_CRASH, VpciDevice, VpciError};

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
    /// `HCS_E_INVALID_STATE` (0x80370105, Microsoft's "HCS Error Code" page): what
    /// `HcsSaveComputeSystem` returns for a running system (its page: "cannot be saved as it
    /// is still running").
    pub const HCS_INVALID_STATE: HResult = HResult::from_bits(0x8037_0105);
    /// `HCS_E_SYSTEM_ALREADY_EXISTS` (0x8037010F, the same page): a compute system with that id
    /// still exists (the model's answer to a restore over a system that is not gone).
    pub const SYSTEM_ALREADY_EXISTS: HResult = HResult::from_bits(0x8037_010F);
}
