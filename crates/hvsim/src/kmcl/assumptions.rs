//! Assumptions the simulated host makes that no public source supports, named so that tests
//! and the demo can state them in plain words instead of hiding them in a setup call.

use std::fmt;

use super::VmId;
use crate::memory::ProcessId;

/// What an assumption is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AssumptionKind {
    /// A process other than the VM worker owns the VM's VMBus user handle.
    VmbusHandleOwner,
}

/// One assumption the simulation made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assumption {
    /// What it is about.
    pub kind: AssumptionKind,
    /// The assumption itself, for this run.
    pub statement: String,
    /// Why it is only an assumption: what the public sources say and do not say.
    pub why_unproven: &'static str,
}

impl fmt::Display for Assumption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ASSUMPTION: {} ({})", self.statement, self.why_unproven)
    }
}

/// Why the VMBus-handle assumption is unproven (kmcl.md §6 "Who supplies the handle: NOT
/// FOUND"; platform-paths.md Q1 F4, F5, I2, I3).
pub const VMBUS_HANDLE_UNPROVEN: &str = "no documented way exists for a third party to obtain a \
     VM's VMBus handle: Microsoft's VmbConvertVmbusHandleToKernelHandle page says the user-mode \
     handle is opened in the VM worker process (vmwp.exe), and HCS, HDV and WMI expose no \
     VMBus handle; on a real host the device host would need the handle duplicated out of \
     vmwp.exe or a VMM it controls (OpenVMM's \\Device\\VmbusProxy handle), neither of which is \
     a supported, tested path";

impl Assumption {
    /// `process` owns `vm`'s VMBus user handle `user_handle`.
    pub(crate) fn vmbus_handle(vm: VmId, process: ProcessId, user_handle: u64) -> Self {
        Self {
            kind: AssumptionKind::VmbusHandleOwner,
            statement: format!(
                "process {} is handed VM {}'s VMBus user handle {user_handle:#x} and converts it \
                 in its own context, as if it were the VM worker process",
                process.0, vm.0
            ),
            why_unproven: VMBUS_HANDLE_UNPROVEN,
        }
    }
}
