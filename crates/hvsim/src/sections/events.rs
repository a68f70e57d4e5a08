//! Event objects in the processes' handle tables: the model behind
//! `vmbmmio_core::consumers::UserEvents` (SET_DOORBELL_EVENT).
//!
//! # What it models, and from where
//! - A consumer's `CreateEvent` (Win32): a new event object and a user handle to it in the
//!   process's table with `EVENT_ALL_ACCESS`; handles share the table (and its value reuse) with
//!   the sections' handles; `DuplicateHandle` may make a handle with less access.
//! - The driver's `ObReferenceObjectByHandle(handle, EVENT_MODIFY_STATE, *ExEventObjectType,
//!   UserMode, ..)` in the **current** process (Microsoft, "ObReferenceObjectByHandle function
//!   (wdm.h)", return values): a value that is not an open handle of that process (0, closed,
//!   or a kernel handle named from user mode) → `STATUS_INVALID_HANDLE`; an object of another
//!   type (a section) → `STATUS_OBJECT_TYPE_MISMATCH`; a handle without `EVENT_MODIFY_STATE`
//!   (the `UserMode` access check against the handle's granted access) → `STATUS_ACCESS_DENIED`.
//! - `KeSetEvent`: the event becomes signalled; every call counted.
//! - `ObDereferenceObject`; objects live while a reference or a handle exists (general
//!   object-manager semantics), so a consumer may close its handle once registered.
//!
//! The driver's rule that references are taken and released outside its spin lock (the event
//! lock) is checked ([`crate::lock_rules::not_under_event_lock`]); `KeSetEvent` is allowed
//! there.
//!
//! Every reference taken and released is counted ([`super::SimCounters`]): a test proves the
//! driver releases each one exactly once, and a release of a reference the model never gave
//! out panics (a bugcheck on Windows).

use kmcl::raw::{NTSTATUS, STATUS_ACCESS_DENIED, STATUS_INVALID_HANDLE};
use vmbmmio_core::consumers::{EVENT_MODIFY_STATE, EventRef, UserEvents};

use super::SimKernel;
use super::faults::FaultPoint;
use super::handle_table::HandleEntry;
use super::object::ObjectId;
use super::state::{STATUS_PROCESS_IS_TERMINATING, State};
use crate::memory::ProcessId;

/// `STATUS_OBJECT_TYPE_MISMATCH` (ntstatus.h).
pub const STATUS_OBJECT_TYPE_MISMATCH: NTSTATUS = 0xC000_0024_u32 as i32;

/// `EVENT_ALL_ACCESS` (winnt.h): what `CreateEvent` grants its caller.
pub const EVENT_ALL_ACCESS: u32 = 0x001F_0003;

/// `SYNCHRONIZE` (winnt.h): wait on the object, nothing else.
pub const SYNCHRONIZE: u32 = 0x0010_0000;

/// One event object.
#[derive(Debug, Default)]
pub(super) struct EventObject {
    pub(super) signalled: bool,
    /// `KeSetEvent` calls so far.
    pub(super) signals: u64,
    /// Kernel references (pointer count).
    pub(super) pointers: u64,
    /// Open handles in any process.
    pub(super) handles: u64,
}

impl State {
    /// `CreateEvent` in `pid`, with a handle granting `access`.
    pub(super) fn create_event(&mut self, pid: ProcessId, access: u32) -> Result<u64, NTSTATUS> {
        self.next_object += 1;
        let id = ObjectId(self.next_object);
        let process = self
            .processes
            .get_mut(&pid)
            .filter(|p| !p.exited)
            .ok_or(STATUS_PROCESS_IS_TERMINATING)?;
        let handle = process.handles.insert(HandleEntry {
            object: id,
            access_mask: access,
            kernel: false,
        });
        self.events.insert(
            id,
            EventObject {
                handles: 1,
                ..EventObject::default()
            },
        );
        self.counters.events_created += 1;
        self.counters.user_handles_opened += 1;
        Ok(handle)
    }

    /// `ObReferenceObjectByHandle(handle, EVENT_MODIFY_STATE, *ExEventObjectType, UserMode)`
    /// in the current process.
    fn reference_event(&mut self, handle: u64) -> Result<ObjectId, NTSTATUS> {
        if let Some(status) = self.faults.hit(FaultPoint::ReferenceEvent) {
            return Err(status);
        }
        let entry = self
            .user_entry(self.current, handle)
            .ok_or(STATUS_INVALID_HANDLE)?;
        let event = self
            .events
            .get_mut(&entry.object)
            .ok_or(STATUS_OBJECT_TYPE_MISMATCH)?;
        if entry.access_mask & EVENT_MODIFY_STATE == 0 {
            return Err(STATUS_ACCESS_DENIED);
        }
        event.pointers += 1;
        self.counters.event_references_taken += 1;
        Ok(entry.object)
    }

    fn dereference_event(&mut self, object: ObjectId) {
        let Some(event) = self.events.get_mut(&object).filter(|e| e.pointers > 0) else {
            panic!(
                "hvsim: ObDereferenceObject of event {object:?} without a reference (bugcheck on Windows)"
            );
        };
        event.pointers -= 1;
        self.counters.event_references_released += 1;
        self.reap_event(object);
    }

    /// Destroys the event if nothing references it any more.
    pub(super) fn reap_event(&mut self, object: ObjectId) {
        if self
            .events
            .get(&object)
            .is_some_and(|e| e.pointers == 0 && e.handles == 0)
        {
            self.events.remove(&object);
            self.counters.events_destroyed += 1;
        }
    }

    /// The event behind a user handle of `pid`.
    fn event_of(&self, pid: ProcessId, handle: u64) -> Option<&EventObject> {
        let entry = self.user_entry(pid, handle)?;
        self.events.get(&entry.object)
    }
}

impl SimKernel {
    /// `CreateEvent` in `pid` (manual-reset, not signalled): a handle with `EVENT_ALL_ACCESS`.
    pub fn create_event(&self, pid: ProcessId) -> Result<u64, NTSTATUS> {
        self.lock().create_event(pid, EVENT_ALL_ACCESS)
    }

    /// An event whose only handle in `pid` grants `access` (e.g. [`SYNCHRONIZE`] alone, as a
    /// `DuplicateHandle` with less access would leave it).
    pub fn create_event_with_access(&self, pid: ProcessId, access: u32) -> Result<u64, NTSTATUS> {
        self.lock().create_event(pid, access)
    }

    /// How many times the event behind `handle` in `pid` was signalled (`None`: not an event
    /// handle of that process).
    pub fn event_signals(&self, pid: ProcessId, handle: u64) -> Option<u64> {
        self.lock().event_of(pid, handle).map(|e| e.signals)
    }

    /// Whether the event behind `handle` in `pid` is signalled; `ResetEvent` if `reset`.
    pub fn event_signalled(&self, pid: ProcessId, handle: u64, reset: bool) -> Option<bool> {
        let mut state = self.lock();
        let object = state.user_entry(pid, handle)?.object;
        let event = state.events.get_mut(&object)?;
        let was = event.signalled;
        if reset {
            event.signalled = false;
        }
        Some(was)
    }

    /// Event objects alive now.
    pub fn live_events(&self) -> usize {
        self.lock().events.len()
    }
}

impl UserEvents for SimKernel {
    fn reference(&self, handle: u64) -> Result<EventRef, NTSTATUS> {
        crate::lock_rules::not_under_event_lock("ObReferenceObjectByHandle of an event");
        self.lock()
            .reference_event(handle)
            .map(|object| EventRef::from_raw(object.0))
    }

    fn signal(&self, event: &EventRef) {
        let mut state = self.lock();
        let object = ObjectId(event.raw());
        let Some(target) = state.events.get_mut(&object).filter(|e| e.pointers > 0) else {
            panic!("hvsim: KeSetEvent on {object:?} without a reference (bugcheck on Windows)");
        };
        target.signalled = true;
        target.signals += 1;
        state.counters.event_signals += 1;
    }

    fn release(&self, event: EventRef) {
        crate::lock_rules::not_under_event_lock("ObDereferenceObject of an event");
        self.lock().dereference_event(ObjectId(event.raw()));
    }
}
