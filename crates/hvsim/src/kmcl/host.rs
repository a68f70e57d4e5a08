//! The simulated host's state: one per test thread.
//!
//! KMCL's functions carry no context argument the model could use (only the driver's channel
//! and packet handles), so the model's state is a thread-local: one simulated host per test
//! thread. Tests create a `Sim` first, which resets it. Callbacks into the driver are always
//! made with the state unborrowed, because the driver calls back into KMCL from them.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use kmcl::KmclFunction;
use kmcl::raw::{
    GUID, NTSTATUS, PFN_VMB_CHANNEL_PROCESS_PACKET, PFN_VMB_CHANNEL_PROCESSING_COMPLETE,
    PFN_VMB_PACKET_COMPLETION_ROUTINE, VMB_CHANNEL_STATE_CHANGE_CALLBACKS,
};

use super::assumptions::Assumption;
use super::guest::GuestState;
use super::log::{CallArgs, CallRecord, CallbackKind, LogEntry};
use super::mmio::GpaRange;
use super::rules::{Rule, Violation};
use super::{ChannelId, Counters, ServerMmioSpace, VmId};
use crate::memory::ProcessId;

/// The IRQL the simulated thread runs at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Irql {
    /// PASSIVE_LEVEL.
    Passive,
    /// DISPATCH_LEVEL (ProcessPacket without incoming processing at passive).
    Dispatch,
}

/// A server channel's lifecycle in the model (kmcl.md §4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lifecycle {
    /// Allocated, or after Disable: only Init calls are valid.
    Disabled,
    /// Offered (Enable succeeded).
    Enabled,
    /// Freed by Cleanup; any further use is a violation.
    CleanedUp,
}

/// What the Init calls set.
#[derive(Clone, Debug, Default)]
pub struct InitValues {
    /// `VmbServerChannelInitSetVmbusHandle`.
    pub vmbus_handle: Option<usize>,
    /// `VmbChannelInitSetMaximumPacketSize`.
    pub max_packet_size: Option<u32>,
    /// `VmbServerChannelInitSetTargetInterfaceId`.
    pub interface: Option<(GUID, GUID)>,
    /// `VmbChannelInitSetStateChangeCallbacks` (copied).
    pub state_callbacks: Option<VMB_CHANNEL_STATE_CHANGE_CALLBACKS>,
    /// The table's address as the driver passed it: the model reads the table through it again
    /// at every callback (stricter reading: KMCL may keep the pointer, `Rule::CallbackTableChanged`).
    pub state_callbacks_at: usize,
    /// `VmbChannelInitSetProcessPacketCallbacks`.
    pub process_packet: PFN_VMB_CHANNEL_PROCESS_PACKET,
    /// `VmbChannelInitSetProcessPacketCallbacks` (optional second callback).
    pub processing_complete: PFN_VMB_CHANNEL_PROCESSING_COMPLETE,
    /// `VmbServerChannelInitSetFlags`.
    pub server_flags: u32,
    /// `VmbChannelInitSetFlags`.
    pub channel_flags: u32,
    /// `VmbChannelInitSetFriendlyName`, decoded.
    pub friendly_name: Option<String>,
    /// `VmbServerChannelInitSetMmioMegabytes`.
    pub mmio: Option<(u16, u16)>,
    /// `VmbChannelSetIncomingProcessingAtPassive`.
    pub incoming_at_passive: bool,
}

/// One channel in the model.
#[derive(Clone, Debug)]
pub struct SimChannel {
    /// Lifecycle.
    pub lifecycle: Lifecycle,
    /// Init values.
    pub init: InitValues,
    /// `VmbChannelSetPointer` value.
    pub pointer: usize,
    /// Where the current offer went (set by Enable).
    pub target: Option<VmId>,
    /// `VmbChannelStart` was called and no Pause since (the host channel is not paused).
    pub host_started: bool,
    /// The guest has the channel open (Opened accepted).
    pub open: bool,
    /// Started ran: packets are deliverable.
    pub running: bool,
    /// PostStarted ran.
    pub post_started: bool,
    /// `VmbChannelPacketFail` stopped the incoming queue.
    pub incoming_stopped: bool,
    /// What `VmbChannelGetMmioSpace` reports while open (the guest's reservation).
    pub mmio_space: Option<GpaRange>,
    /// Host packets sent before the guest opened: (outgoing token, bytes).
    pub queued_sends: Vec<(u64, Vec<u8>)>,
}

/// One delivered incoming packet.
#[derive(Debug)]
pub(crate) struct PacketState {
    pub(crate) channel: ChannelId,
    /// Kept for the model's whole life, so a late read by a buggy driver stays in bounds.
    pub(crate) data: Box<[u8]>,
    pub(crate) completion: Option<Vec<u8>>,
    pub(crate) failed: bool,
    pub(crate) defer_requested: bool,
    /// Still outstanding when its channel reached Closed: its completion context is stale
    /// (`Rule::PacketCompletedAfterClosed`).
    pub(crate) retired: bool,
}

/// One outgoing packet (`VmbPacketAllocate`).
#[derive(Debug)]
pub(crate) struct OutgoingPacket {
    pub(crate) channel: ChannelId,
    pub(crate) routine: PFN_VMB_PACKET_COMPLETION_ROUTINE,
    pub(crate) sent: bool,
    pub(crate) released: bool,
}

/// One kernel VMBus handle.
#[derive(Clone, Debug)]
pub(crate) struct KernelHandleState {
    pub(crate) vm: VmId,
    pub(crate) open: bool,
}

/// One fault to inject.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Fault {
    pub(crate) function: KmclFunction,
    pub(crate) nth: u32,
    pub(crate) status: NTSTATUS,
}

/// The whole simulated host.
#[derive(Debug)]
pub(crate) struct HostState {
    /// Unique per host ever created (any thread): lets VM observers find their own host.
    pub(crate) generation: u64,
    pub(crate) channels: Vec<SimChannel>,
    pub(crate) guests: BTreeMap<VmId, GuestState>,
    pub(crate) current_process: ProcessId,
    /// (process, user handle value) -> VM whose VMBus it names.
    pub(crate) user_handles: BTreeMap<(ProcessId, usize), VmId>,
    pub(crate) kernel_handles: BTreeMap<usize, KernelHandleState>,
    pub(crate) next_kernel_handle: usize,
    pub(crate) next_process: u32,
    pub(crate) log: Vec<LogEntry>,
    pub(crate) assumptions: Vec<Assumption>,
    pub(crate) violations: Vec<Violation>,
    pub(crate) faults: Vec<Fault>,
    pub(crate) call_counts: BTreeMap<KmclFunction, u32>,
    pub(crate) counters: Counters,
    /// Callbacks running right now, innermost last.
    pub(crate) in_callbacks: Vec<(ChannelId, CallbackKind, Option<u64>)>,
    pub(crate) irql: Irql,
    pub(crate) server_mmio_space: ServerMmioSpace,
    pub(crate) packets: BTreeMap<u64, PacketState>,
    pub(crate) next_packet: u64,
    pub(crate) outgoing: BTreeMap<u64, OutgoingPacket>,
    pub(crate) next_outgoing: u64,
    /// Stop the start sequence after Started (packets flow, PostStarted not yet run).
    pub(crate) hold_post_started: bool,
    /// The last guest-side channel id (relid) an offer delivery used.
    pub(crate) next_relid: u32,
}

/// The generation of the next host.
static NEXT_GENERATION: AtomicU64 = AtomicU64::new(1);

thread_local! {
    static HOST: RefCell<HostState> = RefCell::new(HostState::new());
}

/// Runs `f` on this thread's host. Never call back into the driver from inside `f`. The
/// model's bookkeeping is not the driver's: `f` runs in the allocation model scope
/// (`crate::alloc_faults`).
pub(crate) fn with_host<R>(f: impl FnOnce(&mut HostState) -> R) -> R {
    crate::alloc_faults::model_scope(|| HOST.with(|host| f(&mut host.borrow_mut())))
}

/// Replaces this thread's host with a fresh one.
pub(crate) fn reset_host() {
    HOST.with(|host| *host.borrow_mut() = HostState::new());
}

/// The process the simulated threads run in by default (the System process).
pub const SYSTEM_PROCESS: ProcessId = ProcessId(4);

// Model handle values: never dereferenced by anyone, distinct ranges so a mix-up is visible.
const CHANNEL_BASE: usize = 0x7C00_0000_0000;
const CHANNEL_STRIDE: usize = 0x100;
const PACKET_BASE: usize = 0x7D00_0000_0000;
const OUTGOING_BASE: usize = 0x7E00_0000_0000;
const TOKEN_STRIDE: usize = 0x10;
/// Kernel handles look like real ones: high bit set, multiples of 4.
const KERNEL_HANDLE_BASE: usize = 0xFFFF_FFFF_8000_0000;

impl HostState {
    fn new() -> Self {
        Self {
            generation: NEXT_GENERATION.fetch_add(1, Ordering::Relaxed),
            channels: Vec::new(),
            guests: BTreeMap::new(),
            current_process: SYSTEM_PROCESS,
            user_handles: BTreeMap::new(),
            kernel_handles: BTreeMap::new(),
            next_kernel_handle: KERNEL_HANDLE_BASE + 0x40,
            next_process: 1000,
            log: Vec::new(),
            assumptions: Vec::new(),
            violations: Vec::new(),
            faults: Vec::new(),
            call_counts: BTreeMap::new(),
            counters: Counters::default(),
            in_callbacks: Vec::new(),
            irql: Irql::Passive,
            server_mmio_space: ServerMmioSpace::GuestReservation,
            packets: BTreeMap::new(),
            next_packet: 1,
            outgoing: BTreeMap::new(),
            next_outgoing: 1,
            hold_post_started: false,
            next_relid: 0,
        }
    }

    /// Records a violation.
    pub(crate) fn violate(
        &mut self,
        rule: Rule,
        channel: Option<ChannelId>,
        detail: impl Into<String>,
    ) {
        self.violations.push(Violation::new(rule, channel, detail));
    }

    /// Logs a call and returns its log index and the injected status, if this call is the
    /// one a fault targets.
    pub(crate) fn begin_call(
        &mut self,
        function: KmclFunction,
        channel: Option<ChannelId>,
        args: CallArgs,
    ) -> (usize, Option<NTSTATUS>) {
        let count = self.call_counts.entry(function).or_insert(0);
        *count += 1;
        let nth = *count;
        // Each fault fires once, at the call it targets.
        let injected = self
            .faults
            .iter()
            .position(|fault| fault.function == function && fault.nth == nth)
            .map(|index| self.faults.remove(index).status);
        self.log.push(LogEntry::Call(CallRecord {
            function,
            channel,
            args,
            status: None,
        }));
        (self.log.len() - 1, injected)
    }

    /// Stores the status a logged call returned.
    pub(crate) fn finish_call(&mut self, index: usize, status: NTSTATUS) -> NTSTATUS {
        if let Some(LogEntry::Call(record)) = self.log.get_mut(index) {
            record.status = Some(status);
        }
        status
    }

    /// Names the channel of a logged call once it exists (`VmbChannelAllocate`).
    pub(crate) fn set_call_channel(&mut self, index: usize, channel: ChannelId) {
        if let Some(LogEntry::Call(record)) = self.log.get_mut(index) {
            record.channel = Some(channel);
        }
    }

    /// The channel a raw `VMBCHANNEL` value names, if it was ever allocated.
    pub(crate) fn channel_id(&self, raw: usize) -> Option<ChannelId> {
        let offset = raw.checked_sub(CHANNEL_BASE)?;
        if offset % CHANNEL_STRIDE != 0 {
            return None;
        }
        let index = (offset / CHANNEL_STRIDE).checked_sub(1)?;
        (index < self.channels.len()).then_some(ChannelId(index as u32))
    }

    /// A live (allocated, not cleaned up) channel, or a recorded `UnknownChannel` violation.
    pub(crate) fn live_channel(&mut self, raw: usize, function: KmclFunction) -> Option<ChannelId> {
        match self.channel_id(raw) {
            Some(id) if self.channel(id).lifecycle != Lifecycle::CleanedUp => Some(id),
            Some(id) => {
                self.violate(
                    Rule::UnknownChannel,
                    Some(id),
                    format!("{function:?} on a channel after VmbChannelCleanup"),
                );
                None
            }
            None => {
                self.violate(
                    Rule::UnknownChannel,
                    None,
                    format!("{function:?} on {raw:#x}, which is not a channel"),
                );
                None
            }
        }
    }

    pub(crate) fn channel(&self, id: ChannelId) -> &SimChannel {
        &self.channels[id.0 as usize]
    }

    pub(crate) fn channel_mut(&mut self, id: ChannelId) -> &mut SimChannel {
        &mut self.channels[id.0 as usize]
    }

    /// Allocates a new, Disabled channel.
    pub(crate) fn allocate_channel(&mut self) -> (ChannelId, usize) {
        self.channels.push(SimChannel {
            lifecycle: Lifecycle::Disabled,
            init: InitValues::default(),
            pointer: 0,
            target: None,
            host_started: false,
            open: false,
            running: false,
            post_started: false,
            incoming_stopped: false,
            mmio_space: None,
            queued_sends: Vec::new(),
        });
        let id = ChannelId(self.channels.len() as u32 - 1);
        self.counters.channels_allocated += 1;
        (id, channel_raw(id))
    }

    /// Records a violation if called at DISPATCH_LEVEL; returns whether the IRQL is fine.
    pub(crate) fn require_passive(
        &mut self,
        function: KmclFunction,
        channel: Option<ChannelId>,
    ) -> bool {
        if self.irql == Irql::Passive {
            return true;
        }
        self.violate(
            Rule::PassiveCallAtDispatch,
            channel,
            format!("{function:?} called at DISPATCH_LEVEL"),
        );
        false
    }

    /// The innermost callback running on `channel`, if any.
    pub(crate) fn callback_on(&self, channel: ChannelId) -> Option<CallbackKind> {
        self.in_callbacks
            .iter()
            .rev()
            .find(|(id, _, _)| *id == channel)
            .map(|(_, kind, _)| *kind)
    }

    /// Packets of `channel` delivered but neither completed nor failed.
    pub(crate) fn outstanding_packets(&self, channel: ChannelId) -> usize {
        self.packets
            .values()
            .filter(|p| p.channel == channel && p.completion.is_none() && !p.failed)
            .count()
    }

    /// Marks every outstanding packet of `channel` as retired: the channel reached Closed, so
    /// a real host would have torn down what their completion contexts name.
    pub(crate) fn retire_outstanding_packets(&mut self, channel: ChannelId) {
        self.packets
            .values_mut()
            .filter(|p| p.channel == channel && p.completion.is_none() && !p.failed)
            .for_each(|p| p.retired = true);
    }

    /// A new packet-completion token.
    pub(crate) fn new_packet(&mut self, channel: ChannelId, data: &[u8]) -> u64 {
        let token = self.next_packet;
        self.next_packet += 1;
        self.packets.insert(
            token,
            PacketState {
                channel,
                data: data.into(),
                completion: None,
                failed: false,
                defer_requested: false,
                retired: false,
            },
        );
        self.counters.packets_delivered += 1;
        token
    }

    /// A new kernel handle for `vm`.
    pub(crate) fn new_kernel_handle(&mut self, vm: VmId) -> usize {
        let handle = self.next_kernel_handle;
        self.next_kernel_handle += 4;
        self.kernel_handles
            .insert(handle, KernelHandleState { vm, open: true });
        self.counters.kernel_handles_converted += 1;
        handle
    }

    /// Closes a kernel handle (the `KernelHandleCloser` model).
    pub(crate) fn close_kernel_handle(&mut self, handle: usize) {
        let Some(state) = self.kernel_handles.get_mut(&handle) else {
            self.violate(
                Rule::HandleClosedTwice,
                None,
                format!("close of unknown kernel handle {handle:#x}"),
            );
            return;
        };
        if !state.open {
            self.violate(
                Rule::HandleClosedTwice,
                None,
                format!("kernel handle {handle:#x} closed twice"),
            );
            return;
        }
        state.open = false;
        self.counters.kernel_handles_closed += 1;
        let bound: Vec<ChannelId> = (0..self.channels.len())
            .map(|i| ChannelId(i as u32))
            .filter(|id| {
                let channel = self.channel(*id);
                channel.init.vmbus_handle == Some(handle)
                    && channel.lifecycle != Lifecycle::CleanedUp
            })
            .collect();
        for id in bound {
            self.violate(
                Rule::HandleClosedBeforeCleanup,
                Some(id),
                format!("kernel handle {handle:#x} closed before VmbChannelCleanup of its channel"),
            );
        }
    }
}

/// The `VMBCHANNEL` value of a model channel.
pub(crate) fn channel_raw(id: ChannelId) -> usize {
    CHANNEL_BASE + (id.0 as usize + 1) * CHANNEL_STRIDE
}

/// The `VMBPACKETCOMPLETION` value of a packet token.
pub(crate) fn packet_raw(token: u64) -> usize {
    PACKET_BASE + token as usize * TOKEN_STRIDE
}

/// The packet token behind a `VMBPACKETCOMPLETION` value.
pub(crate) fn packet_token(raw: usize) -> Option<u64> {
    let offset = raw.checked_sub(PACKET_BASE)?;
    (offset % TOKEN_STRIDE == 0 && offset < OUTGOING_BASE - PACKET_BASE)
        .then_some((offset / TOKEN_STRIDE) as u64)
}

/// The `VMBPACKET` value of an outgoing packet token.
pub(crate) fn outgoing_raw(token: u64) -> usize {
    OUTGOING_BASE + token as usize * TOKEN_STRIDE
}

/// The outgoing packet token behind a `VMBPACKET` value.
pub(crate) fn outgoing_token(raw: usize) -> Option<u64> {
    let offset = raw.checked_sub(OUTGOING_BASE)?;
    (offset % TOKEN_STRIDE == 0 && offset < 0x1_0000_0000_0000)
        .then_some((offset / TOKEN_STRIDE) as u64)
}
