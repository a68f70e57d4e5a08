//! The device host's IOCTLs, delivered in-process to the driver's real `ControlDevice`.
//!
//! On Windows the device host calls `DeviceIoControl` and the driver's glue, in
//! `EvtIoInCallerContext` and in the device host's process, first calls
//! `ControlDevice::precheck` with the code and the buffer lengths (before it touches a buffer),
//! then `ControlDevice::dispatch` with the bytes. Here the transport does the same, in the same
//! order: it marks the device-host process current in both the section model and the KMCL
//! model, prechecks, then dispatches the bytes the device host built.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use vmbmmio_core::control::{Caller, ControlDevice};
use vmbmmio_devhost::{IoctlFailure, IoctlTransport};

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
        let process = self.process;
        self.kernel.set_current_process(process);
        let control = &self.control;
        let caller = self.caller;
        let counts = &self.counts;
        counts.ioctls.set(counts.ioctls.get() + 1);
        self.sim
            .in_process(process, || {
                let mut control = control.borrow_mut();
                // The glue's order (src/glue/control.rs): code and lengths, then the bytes.
                counts.prechecked.set(counts.prechecked.get() + 1);
                control.precheck(caller, code, input.len(), output.len())?;
                control.dispatch(caller, code, input, output)
            })
            .map_err(|error| IoctlFailure::NtStatus(error.to_ntstatus()))
    }

    fn close_handle(&mut self, handle: u64) {
        let process = self.process;
        // A handle the client refused is closed by the device host, like any of its handles.
        let _ = self.kernel.close_handle(process, handle);
    }
}

impl Drop for InProcessTransport {
    /// The device host's handle to the control device closes: WDF runs file cleanup, which
    /// ends the session if CLOSE_SESSION was never sent (docs/ioctl.md).
    fn drop(&mut self) {
        self.control.borrow_mut().file_cleanup(self.caller.file());
    }
}
