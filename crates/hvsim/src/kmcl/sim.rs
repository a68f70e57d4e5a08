//! The test's handle on the simulated host.

use std::marker::PhantomData;

use kmcl::KmclFunction;
use kmcl::raw::NTSTATUS;
use kmcl::server::ParentDevice;

use super::assumptions::Assumption;
use super::guest::{GuestState, SimGuest};
use super::host::{Fault, SYSTEM_PROCESS, SimChannel, reset_host, with_host};
use super::log::{CallRecord, CallbackKind, LogEntry};
use super::rules::Violation;
use super::vm_link::link;
use super::{ChannelId, Counters, ServerMmioSpace, VmId};
use crate::memory::ProcessId;
use crate::vm::{GuestKind, GuestVm, Power};

/// A VM the simulated host runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SimVm {
    /// The VM.
    pub id: VmId,
    /// The process that owns its VMBus user handle: its worker process (vmwp.exe), or, only
    /// under a named [`Assumption`], another process.
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
    /// UNCERTAIN): a Windows-like guest (the root partition runs Windows) with the model's
    /// default pool, always running.
    pub fn new() -> Self {
        reset_host();
        let loopback = GuestVm::with_default_pool(GuestKind::Windows);
        loopback.set_power(Power::Running);
        with_host(|h| {
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

    /// Adds a KMCL VM for `guest`, with its own worker process (vmwp.exe) owning its VMBus user
    /// handle, as kmcl.md §6 describes ("the user-mode handle opened in the VM worker
    /// process"). Offers reach the guest only while `guest` runs.
    ///
    /// User handle values differ per VM (`0x1a4 + 4 * id`), so a conversion in another VM's
    /// worker process, or in the System process, does not find the handle.
    ///
    /// # Panics
    /// If `guest` is already linked to a VM of this host (one KMCL VM per `GuestVm`).
    pub fn add_vm(&self, guest: GuestVm) -> SimVm {
        let worker = with_host(|h| {
            let worker = ProcessId(h.next_process);
            h.next_process += 4;
            worker
        });
        self.link_vm(guest, worker)
    }

    /// **ASSUMPTION, not a documented path.** Adds a KMCL VM for `guest` whose VMBus user
    /// handle lives in `process` (e.g. the device-host process), so that process can convert
    /// it itself and offer the channel.
    ///
    /// No documented way exists for a third party to obtain a VM's VMBus handle (kmcl.md §6
    /// "Who supplies the handle": NOT FOUND; platform-paths.md Q1: HCS, HDV and WMI expose none,
    /// KMCL has no setter by VM id, and the known routes are undocumented). The conversion rule
    /// still holds: `VmbConvertVmbusHandleToKernelHandle` succeeds only in `process`. The
    /// returned [`Assumption`] (also kept in [`Sim::assumptions`]) says this in plain words, for
    /// the demo to print.
    ///
    /// # Panics
    /// As [`Sim::add_vm`].
    pub fn add_vm_assuming_vmbus_handle_in(
        &self,
        guest: GuestVm,
        process: ProcessId,
    ) -> (SimVm, Assumption) {
        let vm = self.link_vm(guest, process);
        let assumption = Assumption::vmbus_handle(vm.id, process, vm.user_handle);
        with_host(|h| h.assumptions.push(assumption.clone()));
        (vm, assumption)
    }

    /// Hands `process` its own VMBus user handle to the already linked `vm` (a device host
    /// that attaches after another one exited), under the same [`Assumption`] as
    /// [`Sim::add_vm_assuming_vmbus_handle_in`]. The handle converts only in `process`.
    pub fn grant_vmbus_handle(&self, vm: VmId, process: ProcessId) -> (SimVm, Assumption) {
        let granted = with_host(|h| {
            let user_handle = 0x1a4 + 4 * (h.user_handles.len() as u64 + 0x100);
            h.user_handles.insert((process, user_handle as usize), vm);
            SimVm {
                id: vm,
                worker: process,
                user_handle,
            }
        });
        let assumption = Assumption::vmbus_handle(vm, process, granted.user_handle);
        with_host(|h| h.assumptions.push(assumption.clone()));
        (granted, assumption)
    }

    fn link_vm(&self, guest: GuestVm, worker: ProcessId) -> SimVm {
        let vm = with_host(|h| {
            assert!(
                h.guests.values().all(|g| !g.vm.same_vm(&guest)),
                "this GuestVm is already linked to a KMCL VM"
            );
            let id = VmId(h.guests.len() as u32);
            let user_handle = 0x1a4 + 4 * u64::from(id.0);
            h.user_handles.insert((worker, user_handle as usize), id);
            h.guests.insert(id, GuestState::new(guest.clone()));
            SimVm {
                id,
                worker,
                user_handle,
            }
        });
        link(&guest, vm.id);
        vm
    }

    /// Every assumption this host was asked to make, in order.
    pub fn assumptions(&self) -> Vec<Assumption> {
        with_host(|h| h.assumptions.clone())
    }

    /// The guest VMBus driver of `vm`.
    pub fn guest(&self, vm: VmId) -> SimGuest {
        SimGuest { vm }
    }

    /// The shared VM behind `vm`.
    pub fn guest_vm(&self, vm: VmId) -> Option<GuestVm> {
        with_host(|h| h.guests.get(&vm).map(|g| g.vm.clone()))
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

    /// Makes the `nth` call of `function` from now (1-based; like `SimKernel::fail_nth` and
    /// `HdvSim::fail_nth`) return `status` without doing anything, once. Explorers draw from
    /// `KmclFunction::ALL` filtered by `KmclFunction::returns_status`.
    ///
    /// # Panics
    /// If `function` returns no NTSTATUS (a `VOID` function cannot report a failure).
    pub fn fail_nth(&self, function: KmclFunction, nth: u32, status: NTSTATUS) {
        assert!(
            function.returns_status(),
            "{function:?} cannot fail: it returns no NTSTATUS"
        );
        with_host(|h| {
            let base = h.call_counts.get(&function).copied().unwrap_or(0);
            h.faults.push(Fault {
                function,
                nth: base.saturating_add(nth.max(1)),
                status,
            })
        });
    }

    /// Calls of `function` so far (since this `Sim` was created), failed ones included.
    pub fn calls_of(&self, function: KmclFunction) -> u32 {
        with_host(|h| h.call_counts.get(&function).copied().unwrap_or(0))
    }

    /// **Model's reading, no source.** `vm`'s VMBus is restored in place (same VM, same VMBus
    /// handle), as KMCL would after restoring a saved guest into the partition its channels are
    /// bound to: every Enabled channel the guest knew loses its connection (Suspend, Closed);
    /// with `FORCE_NEW_CHANNEL` it is offered again as a new channel (new relid), without it
    /// (and without save/restore callbacks) the model records
    /// [`super::Rule::RestoredChannelNotSaved`]. A compute system restored through
    /// `HdvSim::restore_compute_system` gets a new VMBus instead (link it with
    /// [`Sim::add_vm`] or [`Sim::add_vm_assuming_vmbus_handle_in`]).
    pub fn restore_vmbus_in_place(&self, vm: VmId) {
        super::restore::restore_in_place(vm);
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

    /// The state-change callbacks the model made, in order.
    pub fn callbacks(&self) -> Vec<CallbackKind> {
        self.log()
            .into_iter()
            .filter_map(|entry| match entry {
                LogEntry::Callback { kind, .. } => Some(kind),
                LogEntry::Call(_) => None,
            })
            .collect()
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
