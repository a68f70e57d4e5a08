//! Fault injection for the HDV/HCS entry points the device host calls: make the nth call of
//! one entry fail, once, with an HRESULT of the caller's choice (as `SimKernel::fail_nth` does
//! for the section calls and `kmcl::Sim::fail_nth` for KMCL).
//!
//! A failed call is counted ([`super::HdvSim::calls`]) and returns the error **before the
//! model looks at anything**: no handle, host, device or range is created or released, no
//! counter of [`super::HdvCounters`] moves, no callback runs, and the VM keeps its power
//! state. That is the strict reading of a failed call (the HDV and HCS pages document no
//! partial effects).

use std::collections::BTreeMap;

use vmbmmio_devhost::hresult::HResult;

/// One HCS/HDV entry point the model implements through the device host's `HcsApi` and
/// `HdvApi` traits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HdvCall {
    /// `HcsOpenComputeSystem`.
    OpenComputeSystem,
    /// `HcsCloseComputeSystem` (returns nothing: counted, never failed).
    CloseComputeSystem,
    /// `HcsPauseComputeSystem`.
    PauseComputeSystem,
    /// `HcsResumeComputeSystem`.
    ResumeComputeSystem,
    /// `HdvInitializeDeviceHost(Ex)`.
    InitializeDeviceHost,
    /// `HdvCreateDeviceInstance`.
    CreateDeviceInstance,
    /// `HdvCreateSectionBackedMmioRange`.
    CreateSectionBackedMmioRange,
    /// `HdvDestroySectionBackedMmioRange`.
    DestroySectionBackedMmioRange,
    /// `HdvTeardownDeviceHost`.
    TeardownDeviceHost,
}

impl HdvCall {
    /// Every entry point, for explorers to draw from (filter with [`HdvCall::can_fail`]).
    pub const ALL: &'static [HdvCall] = &[
        Self::OpenComputeSystem,
        Self::CloseComputeSystem,
        Self::PauseComputeSystem,
        Self::ResumeComputeSystem,
        Self::InitializeDeviceHost,
        Self::CreateDeviceInstance,
        Self::CreateSectionBackedMmioRange,
        Self::DestroySectionBackedMmioRange,
        Self::TeardownDeviceHost,
    ];

    /// Whether the entry returns an HRESULT (`HcsCloseComputeSystem` returns `void`).
    pub const fn can_fail(self) -> bool {
        !matches!(self, Self::CloseComputeSystem)
    }
}

#[derive(Debug, Default)]
pub(super) struct HdvFaults {
    calls: BTreeMap<HdvCall, u64>,
    armed: BTreeMap<HdvCall, (u64, HResult)>,
}

impl HdvFaults {
    /// Arms `call` to fail its `nth` call from now (1-based) with `error`, once.
    pub(super) fn arm(&mut self, call: HdvCall, nth: u64, error: HResult) {
        let base = self.calls(call);
        self.armed
            .insert(call, (base.saturating_add(nth.max(1)), error));
    }

    /// Counts a call of `call`; returns the error to fail it with, if armed for this call.
    pub(super) fn hit(&mut self, call: HdvCall) -> Option<HResult> {
        let calls = self.calls.entry(call).or_insert(0);
        *calls += 1;
        let calls = *calls;
        match self.armed.get(&call) {
            Some(&(at, error)) if at == calls => {
                self.armed.remove(&call);
                Some(error)
            }
            _ => None,
        }
    }

    /// Calls of `call` so far.
    pub(super) fn calls(&self, call: HdvCall) -> u64 {
        self.calls.get(&call).copied().unwrap_or(0)
    }
}
