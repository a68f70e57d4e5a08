//! Kernel sections, handles and views: the model behind `vmbmmio_core::sections::SectionBackend`
//! and `memory::SectionResolver`.
//!
//! # What it models, and from where
//! - The calls the Windows glue makes, in the same order (windows-drivers-rs.md §3):
//!   `ZwCreateSection` with `OBJ_KERNEL_HANDLE` and the driver's security descriptor (the
//!   kernel handle lands in the System process's table), `ObReferenceObjectByHandle` (the
//!   driver's kernel reference), `ZwClose` of the kernel handle, `ObOpenObjectByPointer
//!   (KernelMode)` into the **current** process's table, `ObDereferenceObject`.
//! - Security descriptors on section objects ([`SecurityDescriptor`]) and the one user-mode
//!   access check the device host can trigger on them: `DuplicateHandle` asking for more than
//!   the source handle grants (Microsoft, Win32 `DuplicateHandle`).
//! - The device host's side (hdv.md §3.3 "Section handle"): a user-mode handle valid only in
//!   the process it was opened in, with `SECTION_MAP_*` rights that decide how it may be
//!   mapped; `CloseHandle`, `DuplicateHandle` (HDV marshals the handle to the VM worker),
//!   `MapViewOfFile`, `UnmapViewOfFile`.
//! - General Windows object-manager semantics, not in `shared/reference/` (each place says
//!   so): objects live while a kernel reference, handle or view exists; process exit closes
//!   every handle and unmaps every view of that process; handle values are reused after close.
//! - Byte accuracy: each section is one `memory::SectionMemory`.
//! - Fault injection ([`FaultPoint`]) and counters ([`SimCounters`]) so tests can prove that
//!   every path releases what it made.
//! - Event objects (module `events`): a consumer's `CreateEvent`, the driver's reference,
//!   `KeSetEvent` and release, in the same handle tables (SET_DOORBELL_EVENT).
//! - A test facility ([`SimKernel::on_section_call`], module `call_hook`) that runs a callback
//!   inside `create_section` and `close_section`, to prove the driver holds no lock there.
//!
//! - Process objects (`process`): every spawned process is a new object, its
//!   [`vmbmmio_core::sections::ProcessKey`] is the object's identity, and process ids are
//!   reused ([`SimKernel::spawn_process_reusing`]) as soon as the process has exited: the
//!   strict reading of Microsoft's "Process Handles and Identifiers" ("the identifier is valid
//!   from the time the process is created until the process has been terminated"); Windows
//!   may keep the id reserved longer while the object is referenced, the model does not.
//!
//! # What it does not model
//! Access checks other than `DuplicateHandle`'s (the driver makes no user-mode open), tokens
//! and groups (the model assumes the checking caller owns the object: strict), commit charge,
//! and the thread-context switch itself: the test says which process the current
//! thread runs in with [`SimKernel::set_current_process`].

mod call_hook;
mod events;
mod faults;
mod handle_table;
mod object;
mod process;
mod state;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use kmcl::raw::NTSTATUS;
use vmbmmio_core::sections::{ProcessKey, SectionBackend, UserHandle};

pub use call_hook::{SectionCall, SectionCallHook};
pub use events::{EVENT_ALL_ACCESS, STATUS_OBJECT_TYPE_MISMATCH, SYNCHRONIZE};
pub use faults::FaultPoint;
pub use handle_table::KERNEL_HANDLE_BIT;
pub use object::{ObjectId, SECTION_ALL_ACCESS, SecurityDescriptor, WRITE_DAC};
pub use process::{ProcessObjectId, SimProcessRef};
pub use state::{DuplicateAccess, STATUS_PROCESS_IS_TERMINATING};

use crate::memory::{ProcessId, ResolveError, SectionAccess, SectionMemory, SectionResolver};
use call_hook::CallHook;
use state::State;

use crate::alloc_faults::ModelScope;

/// The locked state of the object-manager model, in the allocation model scope until dropped
/// (the guard is released first, then the scope).
struct Locked<'a> {
    guard: MutexGuard<'a, State>,
    _scope: ModelScope,
}

impl std::ops::Deref for Locked<'_> {
    type Target = State;

    fn deref(&self) -> &State {
        &self.guard
    }
}

impl std::ops::DerefMut for Locked<'_> {
    fn deref_mut(&mut self) -> &mut State {
        &mut self.guard
    }
}

/// The System process (PID 4 on Windows): owner of kernel handles and of driver threads that
/// do not run in a caller's context.
pub const SYSTEM_PROCESS: ProcessId = ProcessId(4);

/// A mapped view in one process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ViewId(pub u64);

/// The driver's kernel reference to a section (the object pointer the glue keeps).
/// Not `Clone`: released once, by `SectionBackend::close_section`.
#[derive(Debug, PartialEq, Eq)]
pub struct SimSection(ObjectId);

impl SimSection {
    /// The object it references.
    pub fn object(&self) -> ObjectId {
        self.0
    }
}

/// Everything the model created and released, for leak checks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SimCounters {
    /// Section objects created.
    pub sections_created: u64,
    /// Process-object references taken (`ObReferenceObject` on `PsGetCurrentProcess()`).
    pub process_references_taken: u64,
    /// Process-object references released (`ObDereferenceObject`).
    pub process_references_released: u64,
    /// Section objects destroyed (last reference, handle and view gone).
    pub sections_destroyed: u64,
    /// Kernel handles opened (`ZwCreateSection`).
    pub kernel_handles_opened: u64,
    /// Kernel handles closed (`ZwClose`).
    pub kernel_handles_closed: u64,
    /// Kernel references taken (`ObReferenceObjectByHandle`).
    pub references_taken: u64,
    /// Kernel references released (`ObDereferenceObject`).
    pub references_released: u64,
    /// User handles opened (`ObOpenObjectByPointer`, `DuplicateHandle`).
    pub user_handles_opened: u64,
    /// User handles closed (`CloseHandle`, process exit).
    pub user_handles_closed: u64,
    /// Views mapped.
    pub views_mapped: u64,
    /// Views unmapped (`UnmapViewOfFile`, process exit).
    pub views_unmapped: u64,
    /// Event objects created (`CreateEvent`, module `events`).
    pub events_created: u64,
    /// Event objects destroyed (last reference and handle gone).
    pub events_destroyed: u64,
    /// Event references taken by the driver (`ObReferenceObjectByHandle`).
    pub event_references_taken: u64,
    /// Event references released (`ObDereferenceObject`).
    pub event_references_released: u64,
    /// `KeSetEvent` calls.
    pub event_signals: u64,
}

impl SimCounters {
    /// Whether every object, handle, reference and view ever made has been released.
    pub fn all_released(&self) -> bool {
        self.sections_created == self.sections_destroyed
            && self.kernel_handles_opened == self.kernel_handles_closed
            && self.references_taken == self.references_released
            && self.process_references_taken == self.process_references_released
            && self.user_handles_opened == self.user_handles_closed
            && self.views_mapped == self.views_unmapped
            && self.events_created == self.events_destroyed
            && self.event_references_taken == self.event_references_released
    }
}

/// The simulated kernel's section, handle and view state. Cheap to clone: every clone is the
/// same kernel (hand one to the driver's `SectionManager`, one to the HDV model, keep one).
#[derive(Clone, Debug)]
pub struct SimKernel {
    state: Arc<Mutex<State>>,
    hook: CallHook,
    /// The machine's monotonic clock (`KeQueryInterruptTime`), manual: [`SimKernel::clock`].
    clock: crate::clock::SimClock,
}

impl Default for SimKernel {
    fn default() -> Self {
        Self::new()
    }
}

impl SimKernel {
    /// A kernel with only the System process; the current thread runs in it.
    pub fn new() -> Self {
        Self {
            state: Arc::new(Mutex::new(State::new())),
            hook: CallHook::default(),
            clock: crate::clock::SimClock::new(),
        }
    }

    /// The machine's monotonic clock (every clone is the same clock): the driver's
    /// `Platform::Clock`; tests advance it.
    pub fn clock(&self) -> crate::clock::SimClock {
        self.clock.clone()
    }

    /// **Test facility** (module `call_hook`): runs `hook` at the start of every
    /// `create_section` and `close_section`, on the calling thread, with no model lock held,
    /// until [`SimKernel::clear_section_hook`]. Replaces any hook installed before.
    pub fn on_section_call(&self, hook: impl Fn(SectionCall) + Send + Sync + 'static) {
        self.hook.set(Some(Arc::new(hook)));
    }

    /// Removes the hook of [`SimKernel::on_section_call`].
    pub fn clear_section_hook(&self) {
        self.hook.set(None);
    }

    /// The model's state, locked, in the allocation model scope (`crate::alloc_faults`): what
    /// the object manager allocates for itself is never the driver's allocation.
    fn lock(&self) -> Locked<'_> {
        let scope = ModelScope::enter();
        // A failed assertion in another test thread must not hide the state from later checks.
        let guard = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        Locked {
            guard,
            _scope: scope,
        }
    }

    /// Starts a user-mode process (a device host, a VM worker) and returns its id. Every
    /// process is a new process object ([`SimKernel::process_key`]).
    pub fn spawn_process(&self) -> ProcessId {
        let mut state = self.lock();
        state.next_pid += 4;
        let pid = ProcessId(state.next_pid);
        state.insert_process(pid);
        pid
    }

    /// The process exits (or crashes): the OS unmaps all its views and closes all its handles.
    /// Returns `(handles closed, views unmapped)`. The System process never exits.
    pub fn exit_process(&self, pid: ProcessId) -> (usize, usize) {
        self.lock().exit(pid)
    }

    /// Says which process the current thread runs in (the driver's IOCTL handler runs in the
    /// requester's context only from `EvtIoInCallerContext`; elsewhere it may be any process).
    pub fn set_current_process(&self, pid: ProcessId) {
        self.lock().current = pid;
    }

    /// Arms `point` to fail its `nth` call from now (1-based) with `status`, once.
    pub fn fail_nth(&self, point: FaultPoint, nth: u64, status: NTSTATUS) {
        self.lock().faults.arm(point, nth, status);
    }

    /// Calls of `point` so far (failed ones included).
    pub fn calls(&self, point: FaultPoint) -> u64 {
        self.lock().faults.calls(point)
    }

    /// What was created and released so far.
    pub fn counters(&self) -> SimCounters {
        self.lock().counters
    }

    /// Section objects alive now.
    pub fn live_sections(&self) -> usize {
        self.lock().objects.len()
    }

    /// Whether `object` is still alive.
    pub fn is_alive(&self, object: ObjectId) -> bool {
        self.lock().objects.contains_key(&object)
    }

    /// Open handles (user and kernel) in `pid`'s table.
    pub fn handle_count(&self, pid: ProcessId) -> usize {
        self.lock()
            .processes
            .get(&pid)
            .map_or(0, |p| p.handles.len())
    }

    /// Whether `pid` holds no handle and maps no view (true after it exits).
    pub fn process_is_clean(&self, pid: ProcessId) -> bool {
        self.lock()
            .processes
            .get(&pid)
            .is_none_or(|p| p.handles.is_empty() && p.views.is_empty())
    }

    /// Views mapped in `pid`.
    pub fn view_count(&self, pid: ProcessId) -> usize {
        self.lock().processes.get(&pid).map_or(0, |p| p.views.len())
    }

    /// The object and granted `ACCESS_MASK` behind a user handle in `pid`.
    pub fn handle_info(&self, pid: ProcessId, handle: u64) -> Option<(ObjectId, u32)> {
        self.lock()
            .user_entry(pid, handle)
            .map(|e| (e.object, e.access_mask))
    }

    /// The bytes of a section, seen through the driver's kernel reference (what the driver
    /// would map with `MmMapViewInSystemSpace`).
    pub fn kernel_memory(&self, section: &SimSection) -> Option<Arc<SectionMemory>> {
        self.lock()
            .objects
            .get(&section.0)
            .map(|o| Arc::clone(&o.memory))
    }

    /// `CloseHandle(handle)` in `pid`.
    pub fn close_handle(&self, pid: ProcessId, handle: u64) -> Result<(), ResolveError> {
        self.lock().close_user_handle(pid, handle)
    }

    /// `DuplicateHandle` from `source` to `target` with the same access (how HDV passes the
    /// section to the VM worker, hdv.md §3.3 "system_handle(sh_section)").
    pub fn duplicate_handle(
        &self,
        source: ProcessId,
        handle: u64,
        target: ProcessId,
    ) -> Result<u64, ResolveError> {
        self.lock()
            .duplicate(source, handle, target, DuplicateAccess::Same)
    }

    /// `DuplicateHandle` from `source` to `target` asking for `access` (Microsoft, Win32
    /// `DuplicateHandle`): access beyond the source handle's is checked against the section's
    /// security descriptor; a refusal (`AccessDenied`) changes nothing.
    pub fn duplicate_handle_with(
        &self,
        source: ProcessId,
        handle: u64,
        target: ProcessId,
        access: DuplicateAccess,
    ) -> Result<u64, ResolveError> {
        self.lock().duplicate(source, handle, target, access)
    }

    /// The security descriptor of a live section object.
    pub fn security_of(&self, object: ObjectId) -> Option<SecurityDescriptor> {
        self.lock().objects.get(&object).map(|o| o.security)
    }

    /// Creates a section the way the driver did before it passed a descriptor (the creator's
    /// default DACL), with the glue's call sequence; for tests that show what the descriptor
    /// prevents.
    pub fn create_section_with_default_dacl(&self, size: u64) -> Result<SimSection, NTSTATUS> {
        let mut state = self.lock();
        let kernel_handle = state.zw_create_section(size, SecurityDescriptor::CreatorDefault)?;
        let referenced = state.ob_reference_by_handle(kernel_handle);
        state.zw_close_kernel(kernel_handle)?;
        referenced.map(SimSection)
    }

    /// `MapViewOfFile` of the whole section through `handle` in `pid`; needs the handle to grant
    /// `access` (hdv.md §3.3: the rights must allow the mapping).
    pub fn map_view(
        &self,
        pid: ProcessId,
        handle: u64,
        access: SectionAccess,
    ) -> Result<ViewId, ResolveError> {
        self.lock().map_view(pid, handle, access)
    }

    /// `UnmapViewOfFile` in `pid`; false when no such view is mapped there.
    pub fn unmap_view(&self, pid: ProcessId, view: ViewId) -> bool {
        self.lock().unmap_view(pid, view)
    }

    /// The bytes behind a view mapped in `pid`.
    pub fn view_memory(&self, pid: ProcessId, view: ViewId) -> Option<Arc<SectionMemory>> {
        self.lock().view_memory(pid, view)
    }
}

impl SectionBackend for SimKernel {
    type Section = SimSection;

    /// The glue's sequence: `ZwCreateSection(OBJ_KERNEL_HANDLE)` with the driver's descriptor
    /// ([`SecurityDescriptor::DRIVER`]), `ObReferenceObjectByHandle`, then `ZwClose` of the
    /// kernel handle whether or not the reference was taken.
    fn create_section(&self, size: u64) -> Result<SimSection, NTSTATUS> {
        self.hook.run(SectionCall::Create { size });
        let mut state = self.lock();
        let kernel_handle = state.zw_create_section(size, SecurityDescriptor::DRIVER)?;
        let referenced = state.ob_reference_by_handle(kernel_handle);
        state.zw_close_kernel(kernel_handle)?;
        referenced.map(SimSection)
    }

    /// The current process's **object** identity (`PsGetCurrentProcess`), not its id.
    fn current_process(&self) -> ProcessKey {
        let state = self.lock();
        state
            .processes
            .get(&state.current)
            .map_or(ProcessKey(0), |p| p.object.key())
    }

    fn open_user_handle(
        &self,
        section: &SimSection,
        access_mask: u32,
    ) -> Result<UserHandle, NTSTATUS> {
        self.lock()
            .ob_open_by_pointer(section.0, access_mask)
            .map(UserHandle)
    }

    fn close_section(&self, section: SimSection) {
        self.hook.run(SectionCall::Close { object: section.0 });
        self.lock().ob_dereference(section.0);
    }
}

impl SectionResolver for SimKernel {
    /// The section behind a user handle in `process`, if the handle grants `access`
    /// (hdv.md §3.3: HDV only sees the section through a handle valid in the device host).
    fn resolve(
        &self,
        process: ProcessId,
        handle: u64,
        access: SectionAccess,
    ) -> Result<Arc<SectionMemory>, ResolveError> {
        let state = self.lock();
        let entry = state
            .user_entry(process, handle)
            .ok_or(ResolveError::InvalidHandle)?;
        if !state::mask_allows(entry.access_mask, access) {
            return Err(ResolveError::AccessDenied);
        }
        state
            .objects
            .get(&entry.object)
            .map(|o| Arc::clone(&o.memory))
            .ok_or(ResolveError::InvalidHandle)
    }

    fn spawn_process(&self) -> ProcessId {
        SimKernel::spawn_process(self)
    }

    fn duplicate_handle(
        &self,
        source: ProcessId,
        handle: u64,
        target: ProcessId,
    ) -> Result<u64, ResolveError> {
        SimKernel::duplicate_handle(self, source, handle, target)
    }

    fn close_handle(&self, process: ProcessId, handle: u64) -> Result<(), ResolveError> {
        SimKernel::close_handle(self, process, handle)
    }

    fn exit_process(&self, process: ProcessId) {
        SimKernel::exit_process(self, process);
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod events_tests;
