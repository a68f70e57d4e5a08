//! The device host's IOCTLs, delivered in-process to the driver's real `ControlDevice`.
//!
//! On Windows the device host calls `DeviceIoControl` and the driver's glue, in
//! `EvtIoInCallerContext` and in the device host's process, first calls
//! `ControlDevice::precheck` with the code and the buffer lengths (before it touches a buffer),
//! then `ControlDevice::dispatch` with the bytes. Here the transport does the same, in the same
//! order: it marks the device-host process current in both the section model and the KMCL
//! model, prechecks, then dispatches the bytes the device host built.
//!
//! WAIT_GUEST_EVENT may pend. The glue would park the request in a manual WDF queue; here the
//! transport keeps it in a [`WaitSlot`] (one per file handle, as the driver allows one pending
//! request per session) and answers `STATUS_PENDING` at once, since the simulator is single-
//! threaded and nothing could complete a blocked call. The demo or a test then polls the slot
//! ([`InProcessTransport::poll_guest_event`]) after the guest did something, or cancels it
//! ([`InProcessTransport::cancel_guest_event`]); dropping the transport cancels it like the
//! device host's exit does.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use kmcl::raw::{NTSTATUS, STATUS_PENDING};
use vmbmmio_core::control::{
    Caller, ControlDevice, ControlError, Delivered, Handled, PendingWait, Rundown,
};
use vmbmmio_devhost::{IoctlFailure, IoctlTransport};

use crate::alloc_faults::driver_scope;
use crate::glue::SimGlue;
use crate::kmcl::Sim;
use crate::memory::ProcessId;
use crate::platform::SimPlatform;
use crate::sections::SimKernel;

/// The driver as the simulated device host reaches it.
pub struct InProcessTransport {
    pub(super) control: Rc<RefCell<ControlDevice<SimPlatform>>>,
    pub(super) sim: Rc<Sim>,
    pub(super) kernel: SimKernel,
    pub(super) caller: Caller,
    /// The device host's process id (the caller's process object runs under it).
    pub(super) process: ProcessId,
    /// IOCTLs delivered, and how many went through `precheck` first (always all of them: the
    /// demo reports both so a test can see it).
    pub(super) counts: Rc<TransportCounts>,
    /// The pending WAIT_GUEST_EVENT, if any.
    pub(super) pending_wait: WaitSlot,
    /// Whether dropping this transport closes the file (the device host's own handle); a
    /// [`InProcessTransport::share`]d one does not, like a second handle to the same file.
    pub(super) owns_file: bool,
    /// Set once the device's removal started (KMDF's remove lock, see [`Removal`]).
    pub(super) removal: Removal,
    /// The control state's run-down protection, shared by every transport of one device (a
    /// `static` in the glue).
    pub(super) rundown: Rc<Rundown>,
}

/// `STATUS_DELETE_PENDING` (ntstatus.h): a request reached a device whose removal started.
pub const STATUS_DELETE_PENDING: NTSTATUS = 0xC000_0056_u32 as NTSTATUS;

/// Whether the control device's removal has started. With `WDF_REMOVE_LOCK_OPTION_ACQUIRE_FOR_IO`
/// KMDF fails every request that arrives after removal started with `STATUS_DELETE_PENDING`
/// (Microsoft Learn, `WDF_REMOVE_LOCK_OPTIONS_FLAGS`), before the driver sees it; file cleanup
/// still runs for handles that close. Shared by every transport of one control device.
#[derive(Clone, Debug, Default)]
pub struct Removal(Rc<Cell<bool>>);

impl Removal {
    /// Removal starts: later requests fail.
    pub fn begin(&self) {
        self.0.set(true);
    }

    /// Whether removal started.
    pub fn started(&self) -> bool {
        self.0.get()
    }
}

/// Where a pending WAIT_GUEST_EVENT waits: the simulated counterpart of the glue's manual
/// queue. Empty by default.
#[derive(Default)]
pub struct WaitSlot(Option<PendingWait<SimPlatform>>);

impl WaitSlot {
    /// Whether a request waits.
    pub fn is_pending(&self) -> bool {
        self.0.is_some()
    }
}

/// What the transport delivered.
#[derive(Debug, Default)]
pub struct TransportCounts {
    /// IOCTLs the device host sent.
    pub ioctls: Cell<u64>,
    /// IOCTLs that went through `ControlDevice::precheck` before `dispatch`.
    pub prechecked: Cell<u64>,
}

impl IoctlTransport for InProcessTransport {
    fn ioctl(&mut self, code: u32, input: &[u8], output: &mut [u8]) -> Result<usize, IoctlFailure> {
        if self.removal.started() {
            return Err(IoctlFailure::NtStatus(STATUS_DELETE_PENDING));
        }
        let counts = &self.counts;
        counts.ioctls.set(counts.ioctls.get() + 1);
        let handled = self
            .glue()
            .ioctl(self.caller, self.process, code, input, output);
        if !matches!(handled, Err(ControlError::ShuttingDown)) {
            // Past the run-down reference: the glue prechecked it.
            counts.prechecked.set(counts.prechecked.get() + 1);
        }
        let handled = handled.map_err(|error| IoctlFailure::NtStatus(error.to_ntstatus()))?;
        match handled {
            Handled::Done(written) => Ok(written),
            Handled::Pending(pending) => {
                // Parked in the slot; an event that came meanwhile is found by the next poll.
                let _ = driver_scope(|| pending.parked());
                self.pending_wait = WaitSlot(Some(pending));
                Err(IoctlFailure::NtStatus(STATUS_PENDING))
            }
        }
    }

    fn close_handle(&mut self, handle: u64) {
        let process = self.process;
        // A handle the client refused is closed by the device host, like any of its handles.
        let _ = self.kernel.close_handle(process, handle);
    }
}

impl InProcessTransport {
    /// The device host's own handle to the control device (`caller`'s file, opened in
    /// `process`): dropping it runs the driver's file cleanup.
    pub(crate) fn new(
        control: Rc<RefCell<ControlDevice<SimPlatform>>>,
        sim: Rc<Sim>,
        kernel: SimKernel,
        caller: Caller,
        process: ProcessId,
        removal: Removal,
        rundown: Rc<Rundown>,
    ) -> Self {
        Self {
            control,
            sim,
            kernel,
            caller,
            process,
            counts: Rc::default(),
            pending_wait: WaitSlot::default(),
            owns_file: true,
            removal,
            rundown,
        }
    }

    /// A second transport on the same file, for the device host's waiting loop (the Windows
    /// transport's `share()`): its own pending slot; dropping it cancels its pending request
    /// but does not close the file.
    pub fn share(&self) -> Self {
        Self {
            control: self.control.clone(),
            sim: self.sim.clone(),
            kernel: self.kernel.clone(),
            caller: self.caller,
            process: self.process,
            counts: self.counts.clone(),
            pending_wait: WaitSlot::default(),
            owns_file: false,
            removal: self.removal.clone(),
            rundown: self.rundown.clone(),
        }
    }

    /// The pending WAIT_GUEST_EVENT's completion, if it has one now: the reply's length in
    /// `output`, or the status it failed with (`STATUS_CANCELLED` once the session closed).
    /// `None` while it keeps waiting (or none is pending).
    pub fn poll_guest_event(&mut self, output: &mut [u8]) -> Option<Result<usize, IoctlFailure>> {
        let pending = self.pending_wait.0.as_ref()?;
        match driver_scope(|| pending.deliver(output)) {
            Delivered::Requeue => {
                let _ = driver_scope(|| pending.parked());
                None
            }
            Delivered::Completed(written) => {
                self.pending_wait = WaitSlot::default();
                Some(Ok(written))
            }
            Delivered::Failed(error) => {
                self.pending_wait = WaitSlot::default();
                Some(Err(IoctlFailure::NtStatus(error.to_ntstatus())))
            }
        }
    }

    /// Cancels the pending WAIT_GUEST_EVENT (the device host's `CancelIoEx`): nothing is
    /// consumed. Returns whether one was pending.
    pub fn cancel_guest_event(&mut self) -> bool {
        match self.pending_wait.0.take() {
            Some(pending) => {
                driver_scope(|| pending.cancel());
                true
            }
            None => false,
        }
    }

    /// The glue's calls over this transport's driver and models.
    fn glue(&self) -> SimGlue {
        SimGlue {
            control: self.control.clone(),
            sim: self.sim.clone(),
            kernel: self.kernel.clone(),
            rundown: self.rundown.clone(),
        }
    }

    /// Whether a WAIT_GUEST_EVENT is pending.
    pub fn guest_event_pending(&self) -> bool {
        self.pending_wait.is_pending()
    }
}

impl Drop for InProcessTransport {
    /// The device host's handle to the control device closes: WDF runs file cleanup, which
    /// ends the session if CLOSE_SESSION was never sent (docs/ioctl.md).
    fn drop(&mut self) {
        // A pending request is cancelled by the I/O manager when its process exits.
        self.cancel_guest_event();
        if self.owns_file {
            self.glue().cleanup(self.caller.file());
        }
    }
}
