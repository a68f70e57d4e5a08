//! Fault injection: make the Nth call of one kernel step fail, to prove that every failure
//! path releases what was made before it.

use std::collections::BTreeMap;

use kmcl::raw::NTSTATUS;

/// A kernel step the model can fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultPoint {
    /// `ZwCreateSection`: no object is created.
    CreateSection,
    /// `ObReferenceObjectByHandle` on the new kernel handle: the glue then closes the handle,
    /// which destroys the new object.
    ReferenceObject,
    /// `ObOpenObjectByPointer` for a user handle: no handle is created.
    OpenUserHandle,
    /// `ObReferenceObjectByHandle` of a consumer's doorbell event (module `events`). Not in
    /// [`FaultPoint::ALL`]: the explorers attach no consumers.
    ReferenceEvent,
}

impl FaultPoint {
    /// Every fault point, for explorers to draw from.
    pub const ALL: &'static [FaultPoint] = &[
        Self::CreateSection,
        Self::ReferenceObject,
        Self::OpenUserHandle,
    ];
}

#[derive(Debug, Default)]
pub(super) struct Faults {
    calls: BTreeMap<FaultPoint, u64>,
    armed: BTreeMap<FaultPoint, (u64, NTSTATUS)>,
}

impl Faults {
    /// Arms `point` to fail its `nth` call from now (1-based) with `status`, once.
    pub(super) fn arm(&mut self, point: FaultPoint, nth: u64, status: NTSTATUS) {
        let base = self.calls.get(&point).copied().unwrap_or(0);
        self.armed.insert(point, (base + nth.max(1), status));
    }

    /// Counts a call of `point`; returns the status to fail it with, if armed for this call.
    pub(super) fn hit(&mut self, point: FaultPoint) -> Option<NTSTATUS> {
        let calls = self.calls.entry(point).or_insert(0);
        *calls += 1;
        let calls = *calls;
        match self.armed.get(&point) {
            Some(&(at, status)) if at == calls => {
                self.armed.remove(&point);
                Some(status)
            }
            _ => None,
        }
    }

    /// Calls of `point` so far.
    pub(super) fn calls(&self, point: FaultPoint) -> u64 {
        self.calls.get(&point).copied().unwrap_or(0)
    }
}
