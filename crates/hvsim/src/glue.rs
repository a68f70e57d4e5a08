//! The driver's glue as the simulator plays it: how `src/glue/control.rs` calls the portable
//! `ControlDevice` for a user-mode file handle (create, each IOCTL, cleanup), in one place for
//! every simulated caller (the demo's device host, `demo::transport`, and host consumers,
//! `host_sim`).
//!
//! - **Create** (`EvtDeviceFileCreate`, in the opener's context): the glue references the
//!   opener's process object (`Opener::admit` with `PsGetCurrentProcess`), then
//!   `ControlDevice::file_create` under the table lock.
//! - **IOCTL** (`EvtIoInCallerContext`, in the caller's process): a run-down reference, then
//!   `precheck` with the code and the buffer lengths under the table lock, then the whole
//!   request through `serve::handle` (which takes the table lock only around table work).
//! - **Cleanup** (`EvtFileCleanup`): `serve::file_cleanup` under a run-down reference.
//!
//! The simulated current process is set in both models (object manager and KMCL) for the call.

use std::cell::RefCell;
use std::rc::Rc;

use kmcl::raw::NTSTATUS;
use vmbmmio_core::control::serve::{self, TableLock};
use vmbmmio_core::control::{
    Caller, ControlDevice, ControlError, FileKey, Handled, Opener, RequestorMode, Rundown,
};

use crate::alloc_faults::driver_scope;
use crate::kmcl::Sim;
use crate::memory::ProcessId;
use crate::platform::SimPlatform;
use crate::sections::{SYSTEM_PROCESS, SimKernel};
use crate::table_lock::SimTableLock;

/// What the glue reaches: the driver's state behind its table lock, the run-down protection
/// (a `static` in the glue) and the two platform models. Clones share everything.
#[derive(Clone)]
pub struct SimGlue {
    /// The driver's control state (the table lock's contents).
    pub control: Rc<RefCell<ControlDevice<SimPlatform>>>,
    /// The KMCL model of this thread.
    pub sim: Rc<Sim>,
    /// The object-manager model.
    pub kernel: SimKernel,
    /// The control state's run-down protection.
    pub rundown: Rc<Rundown>,
}

impl SimGlue {
    /// `EvtDeviceFileCreate`: `process` opens `\\.\vmbmmio` from user mode as file `file`.
    pub fn open_file(&self, process: ProcessId, file: FileKey) -> Result<Caller, NTSTATUS> {
        self.kernel.set_current_process(process);
        let kernel = &self.kernel;
        let opener = Opener::admit(file, RequestorMode::UserMode, || {
            kernel.reference_current_process()
        });
        self.kernel.set_current_process(SYSTEM_PROCESS);
        let opener = opener.map_err(|error| error.to_ntstatus())?;
        let caller = opener.caller();
        let in_flight = self
            .rundown
            .acquire()
            .ok_or(ControlError::ShuttingDown)
            .map_err(|error| error.to_ntstatus())?;
        let lock = SimTableLock(self.control.clone());
        driver_scope(|| serve::file_create(&in_flight, &lock, opener))
            .map(|()| caller)
            .map_err(|error| error.to_ntstatus())
    }

    /// `EvtIoInCallerContext`: one IOCTL of `caller`, a thread of `process`, in the glue's
    /// order. A WAIT_GUEST_EVENT with nothing to report comes back pending.
    pub fn ioctl(
        &self,
        caller: Caller,
        process: ProcessId,
        code: u32,
        input: &[u8],
        output: &mut [u8],
    ) -> Result<Handled<SimPlatform>, ControlError> {
        self.kernel.set_current_process(process);
        let lock = SimTableLock(self.control.clone());
        let rundown = &self.rundown;
        let result = self.sim.in_process(process, || {
            let in_flight = rundown.acquire().ok_or(ControlError::ShuttingDown)?;
            driver_scope(|| {
                lock.locked(|control| control.precheck(caller, code, input.len(), output.len()))
                    .ok_or(ControlError::NotReady)??;
                serve::handle(&in_flight, &lock, caller, code, input, output)
            })
        });
        self.kernel.set_current_process(SYSTEM_PROCESS);
        result
    }

    /// `EvtFileCleanup`: the last handle to `file` closed.
    pub fn cleanup(&self, file: FileKey) {
        if let Some(in_flight) = self.rundown.acquire() {
            let lock = SimTableLock(self.control.clone());
            driver_scope(|| serve::file_cleanup(&in_flight, &lock, file));
        }
    }
}
