//! The test's handle on the simulated host.

use std::marker::PhantomData;

use kmcl::KmclFunction;
use kmcl::raw::NTSTATUS;
use kmcl::server::ParentDevice;

use super::guest::{GuestConfig, GuestState, OptionalMmio, SimGuest};
use super::host::{Fault, SYSTEM_PROCESS, SimChannel, reset_host, with_host};
use super::log::{CallRecord, LogEntry};
use super::mmio::GpaRange;
use super::rules::Violation;
use super::{ChannelId, Counters, ServerMmioSpace, VmId};
use crate::memory::ProcessId;

/// A VM the simulated host runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SimVm {
    /// The VM.
    pub id: VmId,
    /// Its worker process (vmwp.exe), which owns its VMBus user handle.
    pub worker: ProcessId,
    /// The VMBus user handle value, valid only in `worker`.
    pub user_handle: u64,
}

/// The simulated host of this thread. Creating one resets the model.
#[derive(Debug)]
pub struct Sim {
    _this_thread: PhantomData<*const ()>,
}

impl Default for Sim {
    fn default() -> Self {
        Self::new()
    }
}

impl Sim {
    /// A fresh host with no VMs except the loopback "guest" (the host itself, kmcl.md §6,
    /// UNCERTAIN), whose MMIO window is 64 GiB at 256 GiB.
    pub fn new() -> Self {
        reset_host();
        with_host(|h| {
            let loopback = GuestConfig {
                mmio_window: GpaRange {
                    base: 256 << 30,
                    size: 64 << 30,
                },
                alignment: 4096,
                optional_mmio: OptionalMmio::Grant,
            };
            h.guests.insert(VmId::LOOPBACK, GuestState::new(loopback));
        });
        Self {
            _this_thread: PhantomData,
        }
    }

    /// The parent device object for `VmbChannelAllocate`.
    pub fn parent_device(&self) -> ParentDevice {
        super::parent_device()
    }

    /// Adds a VM with its own worker process, VMBus user handle and guest.
    ///
    /// User handle values differ per VM (`0x1a4 + 4 * id`), so a conversion in another VM's
    /// worker process, or in the System process, does not find the handle.
    pub fn add_vm(&self, guest: GuestConfig) -> SimVm {
        let worker = with_host(|h| {
            let worker = ProcessId(h.next_process);
            h.next_process += 4;
            worker
        });
        self.add_vm_for_process(guest, worker)
    }

    /// Adds a VM whose VMBus user handle lives in `process` (e.g. a device-host process the
    /// section model spawned), so one process can both convert the VMBus handle and receive
    /// section handles. kmcl.md §6 only requires that the conversion runs in the process that
    /// owns the handle; how a device host comes to own one is NOT FOUND in the reference.
    pub fn add_vm_for_process(&self, guest: GuestConfig, worker: ProcessId) -> SimVm {
        with_host(|h| {
            let id = VmId(h.guests.len() as u32);
            let user_handle = 0x1a4 + 4 * u64::from(id.0);
            h.user_handles.insert((worker, user_handle as usize), id);
            h.guests.insert(id, GuestState::new(guest));
            SimVm {
                id,
                worker,
                user_handle,
            }
        })
    }

    /// The guest VMBus driver of `vm`.
    pub fn guest(&self, vm: VmId) -> SimGuest {
        SimGuest { vm }
    }

    /// The loopback "guest" (the host's own VMBus client side, UNCERTAIN).
    pub fn loopback_guest(&self) -> SimGuest {
        SimGuest { vm: VmId::LOOPBACK }
    }

    /// The process the simulated thread runs in (initially the System process).
    pub fn current_process(&self) -> ProcessId {
        with_host(|h| h.current_process)
    }

    /// Switches the simulated thread to `process` (as `EvtIoInCallerContext` runs in the
    /// requester's process).
    pub fn set_current_process(&self, process: ProcessId) {
        with_host(|h| h.current_process = process);
    }

    /// Runs `f` in `process`, then returns to the previous process.
    pub fn in_process<R>(&self, process: ProcessId, f: impl FnOnce() -> R) -> R {
        let previous = self.current_process();
        self.set_current_process(process);
        let result = f();
        self.set_current_process(previous);
        result
    }

    /// The System process.
    pub fn system_process(&self) -> ProcessId {
        SYSTEM_PROCESS
    }

    /// Makes the `nth` call of `function` (1-based, counted since this `Sim` was created)
    /// return `status` without doing anything.
    ///
    /// # Panics
    /// If `function` returns no NTSTATUS (a `VOID` function cannot report a failure).
    pub fn fail_nth(&self, function: KmclFunction, nth: u32, status: NTSTATUS) {
        assert!(
            function.returns_status(),
            "{function:?} cannot fail: it returns no NTSTATUS"
        );
        with_host(|h| {
            h.faults.push(Fault {
                function,
                nth,
                status,
            })
        });
    }

    /// With `true`, the start sequence stops after Started: the incoming queue is open, so the
    /// guest can send packets before PostStarted runs (kmcl.md §4 step 5 allows exactly that);
    /// [`Sim::run_post_started`] then runs it.
    pub fn hold_post_started(&self, hold: bool) {
        with_host(|h| h.hold_post_started = hold);
    }

    /// Runs a held PostStarted of `channel` (nothing if not due).
    pub fn run_post_started(&self, channel: ChannelId) {
        super::flows::run_post_started(channel);
    }

    /// Chooses what `VmbChannelGetMmioSpace` reports on a server channel.
    pub fn set_server_mmio_space(&self, behaviour: ServerMmioSpace) {
        with_host(|h| h.server_mmio_space = behaviour);
    }

    /// The whole log: KMCL calls and callbacks, in order.
    pub fn log(&self) -> Vec<LogEntry> {
        with_host(|h| h.log.clone())
    }

    /// The KMCL calls, in order.
    pub fn calls(&self) -> Vec<CallRecord> {
        with_host(|h| {
            h.log
                .iter()
                .filter_map(|entry| match entry {
                    LogEntry::Call(record) => Some(record.clone()),
                    LogEntry::Callback { .. } => None,
                })
                .collect()
        })
    }

    /// The names of the KMCL calls, in order, without the ones made from callbacks and
    /// trampolines (`VmbChannelGetPointer`, `VmbChannelGetMmioSpace`, packet completion).
    pub fn call_names(&self) -> Vec<KmclFunction> {
        self.calls()
            .into_iter()
            .map(|record| record.function)
            .filter(|function| {
                !matches!(
                    function,
                    KmclFunction::VmbChannelGetPointer
                        | KmclFunction::VmbChannelGetMmioSpace
                        | KmclFunction::VmbChannelPacketComplete
                )
            })
            .collect()
    }

    /// Forgets the log (calls and callbacks so far).
    pub fn clear_log(&self) {
        with_host(|h| h.log.clear());
    }

    /// The rule violations so far.
    pub fn violations(&self) -> Vec<Violation> {
        with_host(|h| h.violations.clone())
    }

    /// Takes the violations so far (for tests that provoke one on purpose).
    pub fn take_violations(&self) -> Vec<Violation> {
        with_host(|h| std::mem::take(&mut h.violations))
    }

    /// The resource counters.
    pub fn counters(&self) -> Counters {
        with_host(|h| h.counters)
    }

    /// A snapshot of one channel's model state.
    pub fn channel(&self, id: ChannelId) -> Option<SimChannel> {
        with_host(|h| h.channels.get(id.0 as usize).cloned())
    }

    /// Every channel ever allocated, in order.
    pub fn channel_ids(&self) -> Vec<ChannelId> {
        with_host(|h| (0..h.channels.len()).map(|i| ChannelId(i as u32)).collect())
    }

    /// Closes a kernel handle directly (as the glue's `ZwClose` would).
    pub fn close_kernel_handle(&self, handle: usize) {
        with_host(|h| h.close_kernel_handle(handle));
    }

    /// Panics unless no rule was broken and every resource was released.
    pub fn assert_clean(&self) {
        let violations = self.violations();
        assert!(
            violations.is_empty(),
            "KMCL rule violations: {violations:#?}"
        );
        let counters = self.counters();
        assert!(counters.balanced(), "unbalanced resources: {counters:#?}");
    }
}
