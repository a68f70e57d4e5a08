//! Process objects: the identity the driver compares callers by, and its references.
//!
//! On Windows a process is an object (`EPROCESS`); `PsGetCurrentProcess` returns a pointer to
//! the current thread's process and `ObReferenceObject` keeps that object from being deleted
//! until `ObDereferenceObject` (Microsoft docs: "PsGetCurrentProcess", "ObReferenceObject
//! function (wdm.h)", "ObDereferenceObject macro (wdm.h)"). The process *id* is a different
//! thing: "Process Handles and Identifiers" says it is valid only until the process has been
//! terminated, after which the system may give it to a new process. The model keeps the two
//! apart: a spawned process gets a fresh [`ProcessObjectId`] every time, even when it reuses
//! an id ([`super::SimKernel::spawn_process_reusing`]), and the driver's
//! [`ProcessKey`] is the object's identity.
//!
//! Stricter than Windows: the model lets an id be reused right after its process exited,
//! even while the old object is still referenced (Windows may keep it reserved longer), so a
//! driver that compared ids would be caught.

use vmbmmio_core::control::ProcessReference;
use vmbmmio_core::sections::ProcessKey;

use super::SimKernel;
use super::state::{Process, State};
use crate::memory::ProcessId;

/// Identifies a process object in the model (the `EPROCESS` address on Windows).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProcessObjectId(pub u64);

impl ProcessObjectId {
    /// The identity the driver compares.
    pub fn key(self) -> ProcessKey {
        ProcessKey(self.0)
    }
}

/// One process object: which id it ran under and how many kernel references it has.
#[derive(Debug)]
pub(super) struct ProcessObject {
    pub(super) pid: ProcessId,
    pub(super) pointers: u64,
}

impl ProcessObject {
    pub(super) fn new(pid: ProcessId) -> Self {
        Self { pid, pointers: 0 }
    }
}

impl State {
    /// A new process object running under `pid` (replacing an exited process of that id).
    pub(super) fn insert_process(&mut self, pid: ProcessId) -> ProcessObjectId {
        self.next_process_object += 1;
        let object = ProcessObjectId(self.next_process_object);
        self.process_objects.insert(object, ProcessObject::new(pid));
        self.processes.insert(pid, Process::new(object));
        object
    }
}

/// The driver's reference on a process object (`ObReferenceObject(PsGetCurrentProcess())`);
/// dropping it is `ObDereferenceObject`.
#[derive(Debug)]
pub struct SimProcessRef {
    kernel: SimKernel,
    object: ProcessObjectId,
}

impl SimProcessRef {
    /// The referenced object.
    pub fn object(&self) -> ProcessObjectId {
        self.object
    }
}

impl ProcessReference for SimProcessRef {
    fn key(&self) -> ProcessKey {
        self.object.key()
    }
}

impl Drop for SimProcessRef {
    /// `ObDereferenceObject`. An over-dereference would bugcheck on Windows; the model cannot
    /// reach one (each reference is released once, by this drop).
    fn drop(&mut self) {
        let mut state = self.kernel.lock();
        if let Some(object) = state.process_objects.get_mut(&self.object) {
            object.pointers = object.pointers.saturating_sub(1);
        }
        state.counters.process_references_released += 1;
    }
}

impl SimKernel {
    /// `ObReferenceObject(PsGetCurrentProcess())`: a reference on the current thread's
    /// process object.
    pub fn reference_current_process(&self) -> SimProcessRef {
        let mut state = self.lock();
        let current = state.current;
        let object = state
            .processes
            .get(&current)
            .map_or(ProcessObjectId(0), |p| p.object);
        if let Some(record) = state.process_objects.get_mut(&object) {
            record.pointers += 1;
        }
        state.counters.process_references_taken += 1;
        SimProcessRef {
            kernel: self.clone(),
            object,
        }
    }

    /// Starts a new process that reuses the id of `pid`, which must have exited; `None` while
    /// a live process still has that id. The new process is a new object: its
    /// [`SimKernel::process_key`] differs from the old one's.
    pub fn spawn_process_reusing(&self, pid: ProcessId) -> Option<ProcessId> {
        let mut state = self.lock();
        if state.processes.get(&pid).is_some_and(|p| !p.exited) {
            return None;
        }
        state.insert_process(pid);
        Some(pid)
    }

    /// The object identity of the process that has id `pid` now (the newest one, if the id
    /// was reused).
    pub fn process_key(&self, pid: ProcessId) -> Option<ProcessKey> {
        self.lock().processes.get(&pid).map(|p| p.object.key())
    }

    /// The id a process object ran under.
    pub fn process_id_of(&self, key: ProcessKey) -> Option<ProcessId> {
        self.lock()
            .process_objects
            .get(&ProcessObjectId(key.0))
            .map(|o| o.pid)
    }

    /// Kernel references held on the process object `key`.
    pub fn process_references(&self, key: ProcessKey) -> u64 {
        self.lock()
            .process_objects
            .get(&ProcessObjectId(key.0))
            .map_or(0, |o| o.pointers)
    }
}
