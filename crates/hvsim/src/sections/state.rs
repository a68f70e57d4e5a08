//! The model's state: processes, their handle tables and views, and the section objects.
//!
//! Each primitive mirrors one kernel or Win32 call and cites where its rule comes from;
//! `super::SimKernel` composes them in exactly the order the Windows glue calls them.

use std::collections::BTreeMap;
use std::sync::Arc;

use kmcl::raw::{NTSTATUS, STATUS_INVALID_HANDLE, STATUS_INVALID_PARAMETER};

use super::faults::{FaultPoint, Faults};
use super::handle_table::{HandleEntry, HandleTable};
use super::object::{ObjectId, SectionObject, SecurityDescriptor};
use super::process::{ProcessObject, ProcessObjectId};
use super::{SYSTEM_PROCESS, SimCounters, ViewId};
use crate::memory::{ProcessId, ResolveError, SectionAccess, SectionMemory};

/// The access a `DuplicateHandle` asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DuplicateAccess {
    /// `DUPLICATE_SAME_ACCESS`: the source handle's access.
    Same,
    /// `dwDesiredAccess`.
    Desired(u32),
}

/// `STATUS_PROCESS_IS_TERMINATING` (ntstatus.h): no new handle in an exiting process.
pub const STATUS_PROCESS_IS_TERMINATING: NTSTATUS = 0xC000_010A_u32 as i32;

// The `SECTION_*` rights a handle needs for each mapping access (winnt.h values, exported by
// the driver).
use vmbmmio_core::sections::{SECTION_MAP_READ, SECTION_MAP_WRITE, SECTION_QUERY};

/// Page size: sections are whole pages (hdv.md §3.3 "Granularity").
const PAGE_SIZE: u64 = 4096;

#[derive(Debug)]
pub(super) struct Process {
    /// The process object this id currently names (a reused id names a new object).
    pub(super) object: ProcessObjectId,
    pub(super) handles: HandleTable,
    pub(super) views: BTreeMap<ViewId, ObjectId>,
    pub(super) exited: bool,
}

impl Process {
    pub(super) fn new(object: ProcessObjectId) -> Self {
        Self {
            object,
            handles: HandleTable::default(),
            views: BTreeMap::new(),
            exited: false,
        }
    }
}

#[derive(Debug)]
pub(super) struct State {
    pub(super) processes: BTreeMap<ProcessId, Process>,
    pub(super) objects: BTreeMap<ObjectId, SectionObject>,
    /// Event objects (module `events`); their ids share `next_object` with the sections.
    pub(super) events: BTreeMap<ObjectId, super::events::EventObject>,
    pub(super) current: ProcessId,
    pub(super) next_object: u64,
    pub(super) next_view: u64,
    pub(super) next_pid: u32,
    /// Every process object ever created, with its process id and pointer count (kernel
    /// references such as `ObReferenceObject` on `PsGetCurrentProcess()`).
    pub(super) process_objects: BTreeMap<ProcessObjectId, ProcessObject>,
    pub(super) next_process_object: u64,
    pub(super) faults: Faults,
    pub(super) counters: SimCounters,
}

/// Whether a handle's granted mask allows `access` (`SECTION_QUERY` only when asked for: HDV
/// asks for it, hdv.md §3.3; `MapViewOfFile` does not).
pub(super) fn mask_allows(mask: u32, access: SectionAccess) -> bool {
    (!access.read || mask & SECTION_MAP_READ != 0)
        && (!access.write || mask & SECTION_MAP_WRITE != 0)
        && (!access.query || mask & SECTION_QUERY != 0)
}

impl State {
    pub(super) fn new() -> Self {
        let mut processes = BTreeMap::new();
        let mut process_objects = BTreeMap::new();
        let system = ProcessObjectId(1);
        processes.insert(SYSTEM_PROCESS, Process::new(system));
        process_objects.insert(system, ProcessObject::new(SYSTEM_PROCESS));
        Self {
            processes,
            process_objects,
            next_process_object: 1,
            objects: BTreeMap::new(),
            events: BTreeMap::new(),
            current: SYSTEM_PROCESS,
            next_object: 0,
            next_view: 0,
            next_pid: 1000,
            faults: Faults::default(),
            counters: SimCounters::default(),
        }
    }

    fn live_process(&mut self, pid: ProcessId) -> Option<&mut Process> {
        self.processes.get_mut(&pid).filter(|p| !p.exited)
    }

    /// Destroys `object` if nothing references it any more.
    fn reap(&mut self, object: ObjectId) {
        if self
            .objects
            .get(&object)
            .is_some_and(SectionObject::unreferenced)
        {
            self.objects.remove(&object);
            self.counters.sections_destroyed += 1;
        }
    }

    /// `ZwCreateSection` with `OBJ_KERNEL_HANDLE`, `SEC_COMMIT`, `PAGE_READWRITE`, no file
    /// (windows-drivers-rs.md §3): a new object and a kernel handle to it in the System
    /// process's table, whatever process the caller runs in.
    ///
    /// Stricter than Windows, which rounds `MaximumSize` up to whole pages: the model refuses
    /// a size that is zero or not whole pages (hdv.md §3.3: everything HDV maps is pages), so a
    /// rounding bug in the driver shows up here.
    ///
    /// `security` is `OBJECT_ATTRIBUTES.SecurityDescriptor` (Microsoft, `ZwCreateSection`,
    /// `InitializeObjectAttributes`); the kernel handle itself is a kernel-mode open and gets
    /// its access without a check.
    pub(super) fn zw_create_section(
        &mut self,
        size: u64,
        security: SecurityDescriptor,
    ) -> Result<u64, NTSTATUS> {
        if let Some(status) = self.faults.hit(FaultPoint::CreateSection) {
            return Err(status);
        }
        if size == 0 || !size.is_multiple_of(PAGE_SIZE) {
            return Err(STATUS_INVALID_PARAMETER);
        }
        let bytes = usize::try_from(size).map_err(|_| STATUS_INVALID_PARAMETER)?;
        self.next_object += 1;
        let id = ObjectId(self.next_object);
        let mut object = SectionObject::new(bytes, security);
        object.handles = 1;
        self.objects.insert(id, object);
        self.counters.sections_created += 1;
        let entry = HandleEntry {
            object: id,
            access_mask: u32::MAX,
            kernel: true,
        };
        let handle = self
            .processes
            .get_mut(&SYSTEM_PROCESS)
            .map(|system| system.handles.insert(entry))
            .ok_or(STATUS_INVALID_HANDLE)?;
        self.counters.kernel_handles_opened += 1;
        Ok(handle)
    }

    /// `ObReferenceObjectByHandle(KernelMode)` on a kernel handle: +1 pointer count.
    pub(super) fn ob_reference_by_handle(&mut self, handle: u64) -> Result<ObjectId, NTSTATUS> {
        if let Some(status) = self.faults.hit(FaultPoint::ReferenceObject) {
            return Err(status);
        }
        let entry = self
            .processes
            .get(&SYSTEM_PROCESS)
            .and_then(|system| system.handles.get(handle))
            .filter(|entry| entry.kernel)
            .ok_or(STATUS_INVALID_HANDLE)?;
        let object = self
            .objects
            .get_mut(&entry.object)
            .ok_or(STATUS_INVALID_HANDLE)?;
        object.pointers += 1;
        self.counters.references_taken += 1;
        Ok(entry.object)
    }

    /// `ZwClose` of a kernel handle: -1 handle count; the object goes when nothing is left.
    pub(super) fn zw_close_kernel(&mut self, handle: u64) -> Result<(), NTSTATUS> {
        let entry = self
            .processes
            .get_mut(&SYSTEM_PROCESS)
            .and_then(|system| system.handles.remove(handle))
            .ok_or(STATUS_INVALID_HANDLE)?;
        self.counters.kernel_handles_closed += 1;
        self.drop_handle(entry.object);
        Ok(())
    }

    /// `ObOpenObjectByPointer(object, 0, NULL, mask, NULL, KernelMode)`: a new,
    /// non-inheritable user handle in the **current** process's table granting exactly `mask`.
    /// No access check against the descriptor: Microsoft's `ObOpenObjectByPointer` page (with
    /// `KernelMode` the requested access is granted without a check; `ObjectType` may then be
    /// NULL).
    pub(super) fn ob_open_by_pointer(
        &mut self,
        object: ObjectId,
        mask: u32,
    ) -> Result<u64, NTSTATUS> {
        if let Some(status) = self.faults.hit(FaultPoint::OpenUserHandle) {
            return Err(status);
        }
        let current = self.current;
        let target = self.objects.get_mut(&object).ok_or(STATUS_INVALID_HANDLE)?;
        if target.pointers == 0 {
            // The caller must hold a reference to pass the pointer at all.
            return Err(STATUS_INVALID_HANDLE);
        }
        let process = self
            .processes
            .get_mut(&current)
            .filter(|p| !p.exited)
            .ok_or(STATUS_PROCESS_IS_TERMINATING)?;
        let handle = process.handles.insert(HandleEntry {
            object,
            access_mask: mask,
            kernel: false,
        });
        target.handles += 1;
        self.counters.user_handles_opened += 1;
        Ok(handle)
    }

    /// `ObDereferenceObject` of a kernel reference.
    ///
    /// Panics on a reference the model never gave out: Windows would bugcheck on an
    /// over-dereference, and a test must fail loudly.
    pub(super) fn ob_dereference(&mut self, object: ObjectId) {
        let target = self.objects.get_mut(&object);
        let Some(target) = target.filter(|o| o.pointers > 0) else {
            panic!(
                "hvsim: ObDereferenceObject of {object:?} without a reference (bugcheck on Windows)"
            );
        };
        target.pointers -= 1;
        self.counters.references_released += 1;
        self.reap(object);
    }

    fn drop_handle(&mut self, object: ObjectId) {
        if let Some(target) = self.objects.get_mut(&object) {
            target.handles = target.handles.saturating_sub(1);
        }
        if let Some(event) = self.events.get_mut(&object) {
            event.handles = event.handles.saturating_sub(1);
            self.reap_event(object);
        }
        self.reap(object);
    }

    /// The user-mode entry behind `handle` in a live `process` (kernel handles are invisible to
    /// user mode).
    pub(super) fn user_entry(&self, process: ProcessId, handle: u64) -> Option<HandleEntry> {
        self.processes
            .get(&process)
            .filter(|p| !p.exited)
            .and_then(|p| p.handles.get(handle))
            .filter(|entry| !entry.kernel)
    }

    /// `CloseHandle` in `process`.
    pub(super) fn close_user_handle(
        &mut self,
        process: ProcessId,
        handle: u64,
    ) -> Result<(), ResolveError> {
        self.user_entry(process, handle)
            .ok_or(ResolveError::InvalidHandle)?;
        let entry = self
            .live_process(process)
            .and_then(|p| p.handles.remove(handle))
            .ok_or(ResolveError::InvalidHandle)?;
        self.counters.user_handles_closed += 1;
        self.drop_handle(entry.object);
        Ok(())
    }

    /// `DuplicateHandle(source, handle, target, access)` from user mode.
    ///
    /// Microsoft, Win32 `DuplicateHandle`: with `DUPLICATE_SAME_ACCESS` the copy gets the
    /// source's access; otherwise it gets `dwDesiredAccess`, and "in some cases, the new handle
    /// can have more access rights than the original handle". Strict reading: a desired access
    /// that is a subset of the source's is granted without a check; anything else is checked
    /// in full against the object's security descriptor ([`SecurityDescriptor::grants`]) and
    /// refused with nothing changed when the descriptor does not grant all of it.
    pub(super) fn duplicate(
        &mut self,
        source: ProcessId,
        handle: u64,
        target: ProcessId,
        access: DuplicateAccess,
    ) -> Result<u64, ResolveError> {
        let entry = self
            .user_entry(source, handle)
            .ok_or(ResolveError::InvalidHandle)?;
        let access_mask = match access {
            DuplicateAccess::Same => entry.access_mask,
            DuplicateAccess::Desired(desired) => {
                let within_source = desired & !entry.access_mask == 0;
                let granted = self
                    .objects
                    .get(&entry.object)
                    .is_some_and(|o| o.security.grants(desired));
                if !within_source && !granted {
                    return Err(ResolveError::AccessDenied);
                }
                desired
            }
        };
        let copy = self
            .live_process(target)
            .map(|p| {
                p.handles.insert(HandleEntry {
                    access_mask,
                    ..entry
                })
            })
            .ok_or(ResolveError::InvalidHandle)?;
        if let Some(object) = self.objects.get_mut(&entry.object) {
            object.handles += 1;
        }
        if let Some(event) = self.events.get_mut(&entry.object) {
            event.handles += 1;
        }
        self.counters.user_handles_opened += 1;
        Ok(copy)
    }

    /// `MapViewOfFile` through `handle` in `process`, with `access`.
    pub(super) fn map_view(
        &mut self,
        process: ProcessId,
        handle: u64,
        access: SectionAccess,
    ) -> Result<ViewId, ResolveError> {
        let entry = self
            .user_entry(process, handle)
            .ok_or(ResolveError::InvalidHandle)?;
        if !mask_allows(entry.access_mask, access) {
            return Err(ResolveError::AccessDenied);
        }
        self.next_view += 1;
        let view = ViewId(self.next_view);
        self.live_process(process)
            .map(|p| p.views.insert(view, entry.object))
            .ok_or(ResolveError::InvalidHandle)?;
        if let Some(object) = self.objects.get_mut(&entry.object) {
            object.views += 1;
        }
        self.counters.views_mapped += 1;
        Ok(view)
    }

    /// `UnmapViewOfFile` in `process`.
    pub(super) fn unmap_view(&mut self, process: ProcessId, view: ViewId) -> bool {
        let Some(object) = self
            .live_process(process)
            .and_then(|p| p.views.remove(&view))
        else {
            return false;
        };
        self.release_view(object);
        true
    }

    fn release_view(&mut self, object: ObjectId) {
        if let Some(target) = self.objects.get_mut(&object) {
            target.views = target.views.saturating_sub(1);
        }
        self.counters.views_unmapped += 1;
        self.reap(object);
    }

    /// The bytes behind a view mapped in `process`.
    pub(super) fn view_memory(
        &self,
        process: ProcessId,
        view: ViewId,
    ) -> Option<Arc<SectionMemory>> {
        let object = self.processes.get(&process)?.views.get(&view)?;
        self.objects.get(object).map(|o| Arc::clone(&o.memory))
    }

    /// Process exit: the OS unmaps every view and closes every handle of the process
    /// (general Windows semantics; hdv.md §3.3 relies on it for the device host's handles).
    pub(super) fn exit(&mut self, pid: ProcessId) -> (usize, usize) {
        if pid == SYSTEM_PROCESS {
            return (0, 0);
        }
        let Some(process) = self.live_process(pid) else {
            return (0, 0);
        };
        process.exited = true;
        let views: Vec<ObjectId> = std::mem::take(&mut process.views).into_values().collect();
        let handles = process.handles.drain();
        let counts = (handles.len(), views.len());
        for object in views {
            self.release_view(object);
        }
        for entry in handles {
            self.counters.user_handles_closed += 1;
            self.drop_handle(entry.object);
        }
        counts
    }
}
