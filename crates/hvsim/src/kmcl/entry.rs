//! The model's `extern "system"` KMCL entry points (channel lifetime, Init, packets, handles).
//!
//! Each entry point logs itself, honours fault injection (an injected status is returned
//! before any validation or side effect), checks the rules of `rules.rs` and then acts.

use std::ffi::c_void;
use std::ptr;

use kmcl::KmclFunction;
use kmcl::raw::{
    BOOLEAN, GUID, HANDLE, NTSTATUS, PCUNICODE_STRING, PDEVICE_OBJECT,
    PFN_VMB_CHANNEL_PROCESS_PACKET, PFN_VMB_CHANNEL_PROCESSING_COMPLETE,
    PVMB_CHANNEL_STATE_CHANGE_CALLBACKS, STATUS_INVALID_DEVICE_STATE, STATUS_INVALID_HANDLE,
    STATUS_INVALID_PARAMETER, STATUS_INVALID_PARAMETER_1, STATUS_INVALID_PARAMETER_2,
    STATUS_INVALID_PARAMETER_3, STATUS_NOT_SUPPORTED, STATUS_SUCCESS,
    VMB_CHANNEL_STATE_CHANGE_CALLBACKS, VMB_CHANNEL_STATE_CHANGE_CALLBACKS_VERSION, VMBCHANNEL,
    VMBPACKETCOMPLETION, VMBUS_CHANNEL_INIT_FLAGS, VMBUS_SERVER_CHANNEL_INIT_FLAG_LOOPBACK_OFFER,
    VMBUS_SERVER_CHANNEL_INIT_FLAGS,
};

use super::flows::{close_if_open, start_if_ready, suspend_if_running};
use super::host::{HostState, Lifecycle, packet_token, with_host};
use super::log::{CallArgs, CallbackKind};
use super::rules::{ENABLE_INCOMPLETE_STATUS, Rule};
use super::vm_link::deliver_if_running;
use super::{ChannelId, ServerMmioSpace, VmId};

type F = KmclFunction;

/// Runs an Init call: logs it, injects faults, requires a live Disabled channel (kmcl.md
/// §2.0: `STATUS_INVALID_PARAMETER_1` otherwise), then runs `body`.
fn init_call(
    function: KmclFunction,
    channel: VMBCHANNEL,
    args: CallArgs,
    body: impl FnOnce(&mut HostState, ChannelId) -> NTSTATUS,
) -> NTSTATUS {
    with_host(|h| {
        let known = h.channel_id(channel.addr());
        let (index, injected) = h.begin_call(function, known, args);
        if let Some(status) = injected {
            return h.finish_call(index, status);
        }
        let Some(id) = h.live_channel(channel.addr(), function) else {
            return h.finish_call(index, STATUS_INVALID_PARAMETER_1);
        };
        if h.channel(id).lifecycle != Lifecycle::Disabled {
            h.violate(
                Rule::InitWhileNotDisabled,
                Some(id),
                format!("{function:?} on an enabled channel"),
            );
            return h.finish_call(index, STATUS_INVALID_PARAMETER_1);
        }
        let status = body(h, id);
        h.finish_call(index, status)
    })
}

/// Logs a `VOID` call on a channel and returns the live channel, if any.
fn void_call(function: KmclFunction, channel: VMBCHANNEL, args: CallArgs) -> Option<ChannelId> {
    with_host(|h| {
        let known = h.channel_id(channel.addr());
        h.begin_call(function, known, args);
        h.live_channel(channel.addr(), function)
    })
}

pub(crate) unsafe extern "system" fn channel_allocate(
    parent: PDEVICE_OBJECT,
    is_server: BOOLEAN,
    out: *mut VMBCHANNEL,
) -> NTSTATUS {
    with_host(|h| {
        let args = CallArgs::Allocate {
            is_server: is_server != 0,
        };
        let (index, injected) = h.begin_call(F::VmbChannelAllocate, None, args);
        if let Some(status) = injected {
            return h.finish_call(index, status);
        }
        // kmcl.md §2.1: _IRQL_requires_(PASSIVE_LEVEL).
        if !h.require_passive(F::VmbChannelAllocate, None) {
            return h.finish_call(index, STATUS_INVALID_DEVICE_STATE);
        }
        if parent.is_null() || out.is_null() {
            h.violate(
                Rule::NullArgument,
                None,
                "VmbChannelAllocate with a NULL device or out-pointer",
            );
            let status = if parent.is_null() {
                STATUS_INVALID_PARAMETER_1
            } else {
                STATUS_INVALID_PARAMETER_3
            };
            return h.finish_call(index, status);
        }
        if is_server == 0 {
            // Client channels are outside this model (a host driver only serves).
            return h.finish_call(index, STATUS_NOT_SUPPORTED);
        }
        let (id, raw) = h.allocate_channel();
        h.set_call_channel(index, id);
        // SAFETY: `out` is non-NULL and, per the prototype (`_Out_`), writable.
        unsafe { out.write(ptr::without_provenance_mut(raw)) };
        h.finish_call(index, STATUS_SUCCESS)
    })
}

pub(crate) unsafe extern "system" fn channel_cleanup(channel: VMBCHANNEL) {
    let Some(id) = void_call(F::VmbChannelCleanup, channel, CallArgs::None) else {
        return;
    };
    with_host(|h| {
        // kmcl.md §4 step 8: Cleanup only when Disabled. A real KMCL would free an enabled
        // channel under the guest's feet; the model refuses and leaks it (visible in counters).
        if h.channel(id).lifecycle != Lifecycle::Disabled {
            h.violate(
                Rule::CleanupWhileEnabled,
                Some(id),
                "VmbChannelCleanup on an enabled channel",
            );
            return;
        }
        let outstanding = h.outstanding_packets(id);
        if outstanding > 0 {
            h.violate(
                Rule::PacketsOutstandingAtCleanup,
                Some(id),
                format!("{outstanding} delivered packet(s) never completed"),
            );
        }
        h.channel_mut(id).lifecycle = Lifecycle::CleanedUp;
        h.counters.channels_cleaned_up += 1;
    });
}

pub(crate) unsafe extern "system" fn channel_enable(channel: VMBCHANNEL) -> NTSTATUS {
    crate::lock_rules::blocking_call("VmbChannelEnable");
    with_host(|h| {
        let known = h.channel_id(channel.addr());
        let (index, injected) = h.begin_call(F::VmbChannelEnable, known, CallArgs::None);
        if let Some(status) = injected {
            return h.finish_call(index, status);
        }
        let Some(id) = h.live_channel(channel.addr(), F::VmbChannelEnable) else {
            return h.finish_call(index, STATUS_INVALID_PARAMETER_1);
        };
        // kmcl.md §9 item 18: Enable implied PASSIVE_LEVEL.
        if !h.require_passive(F::VmbChannelEnable, Some(id)) {
            return h.finish_call(index, STATUS_INVALID_DEVICE_STATE);
        }
        let status = enable(h, id);
        h.finish_call(index, status)
    })
}

/// What every observed host VSP sets before Enable and this channel lacks ([`Rule::EnableIncomplete`]).
fn missing_before_enable(h: &HostState, id: ChannelId) -> Vec<&'static str> {
    let init = &h.channel(id).init;
    let mut missing = Vec::new();
    if init.interface.is_none() {
        missing.push("VmbServerChannelInitSetTargetInterfaceId");
    }
    if init.state_callbacks.is_none() {
        missing.push("VmbChannelInitSetStateChangeCallbacks");
    }
    if init.process_packet.is_none() {
        missing.push("VmbChannelInitSetProcessPacketCallbacks");
    }
    if init.max_packet_size.is_none() {
        missing.push("VmbChannelInitSetMaximumPacketSize");
    }
    missing
}

/// Enable proper: check the Init calls, find the partition (kmcl.md §6), and make the offer. It
/// reaches the guest now if its VM runs, else when the VM starts running (`vm_link`).
fn enable(h: &mut HostState, id: ChannelId) -> NTSTATUS {
    if h.channel(id).lifecycle != Lifecycle::Disabled {
        h.violate(
            Rule::EnableWhileEnabled,
            Some(id),
            "VmbChannelEnable on an enabled channel",
        );
        return STATUS_INVALID_PARAMETER_1;
    }
    let missing = missing_before_enable(h, id);
    if !missing.is_empty() {
        h.violate(
            Rule::EnableIncomplete,
            Some(id),
            format!("VmbChannelEnable before {}", missing.join(", ")),
        );
        return ENABLE_INCOMPLETE_STATUS;
    }
    let init = &h.channel(id).init;
    let loopback = init.server_flags & VMBUS_SERVER_CHANNEL_INIT_FLAG_LOOPBACK_OFFER != 0;
    let vm = match (init.vmbus_handle, loopback) {
        (Some(handle), false) => match h.kernel_handles.get(&handle) {
            Some(state) if state.open => state.vm,
            _ => {
                h.violate(
                    Rule::InvalidKernelHandle,
                    Some(id),
                    "Enable with a closed VMBus handle",
                );
                return STATUS_INVALID_HANDLE;
            }
        },
        (None, true) => VmId::LOOPBACK,
        (Some(_), true) => {
            h.violate(
                Rule::NoPartitionTarget,
                Some(id),
                "both a VMBus handle and LOOPBACK_OFFER",
            );
            return STATUS_INVALID_DEVICE_STATE;
        }
        (None, false) => {
            h.violate(
                Rule::NoPartitionTarget,
                Some(id),
                "neither a VMBus handle nor LOOPBACK_OFFER",
            );
            return STATUS_INVALID_DEVICE_STATE;
        }
    };
    if !h.guests.contains_key(&vm) {
        return STATUS_INVALID_HANDLE;
    }
    let c = h.channel_mut(id);
    c.lifecycle = Lifecycle::Enabled;
    c.target = Some(vm);
    deliver_if_running(h, id, vm);
    STATUS_SUCCESS
}

pub(crate) unsafe extern "system" fn channel_disable(channel: VMBCHANNEL) {
    crate::lock_rules::blocking_call("VmbChannelDisable");
    let Some(id) = void_call(F::VmbChannelDisable, channel, CallArgs::None) else {
        return;
    };
    let allowed = with_host(|h| {
        if let Some(kind) = h.callback_on(id) {
            h.violate(
                Rule::BlockingCallInCallback,
                Some(id),
                format!("VmbChannelDisable inside {kind:?}: would deadlock; ignored"),
            );
            return false;
        }
        // kmcl.md §2.1 / §9 item 18: Disable blocks, so PASSIVE_LEVEL.
        h.require_passive(F::VmbChannelDisable, Some(id))
    });
    if !allowed || with_host(|h| h.channel(id).lifecycle) != Lifecycle::Enabled {
        return;
    }
    // kmcl.md §4: "VmbChannelDisable waits until the channel is paused and closed (offer
    // rescinded)": Suspend and Closed run before Disable returns.
    close_if_open(id);
    with_host(|h| {
        let target = h.channel(id).target;
        if let Some(guest) = target.and_then(|vm| h.guests.get_mut(&vm)) {
            guest.rescind(id);
        }
        let c = h.channel_mut(id);
        c.lifecycle = Lifecycle::Disabled;
        c.host_started = false;
        c.target = None;
        c.queued_sends.clear();
    });
}

pub(crate) unsafe extern "system" fn channel_start(channel: VMBCHANNEL) {
    let Some(id) = void_call(F::VmbChannelStart, channel, CallArgs::None) else {
        return;
    };
    let allowed = with_host(|h| {
        if let Some(kind) = h.callback_on(id).filter(|k| k.is_state_change()) {
            h.violate(
                Rule::StartOrPauseInStateCallback,
                Some(id),
                format!("VmbChannelStart inside {kind:?}; ignored"),
            );
            return false;
        }
        if h.channel(id).lifecycle != Lifecycle::Enabled {
            h.violate(
                Rule::StartOutsideEnabled,
                Some(id),
                "VmbChannelStart on a disabled channel; ignored",
            );
            return false;
        }
        h.channel_mut(id).host_started = true;
        true
    });
    if allowed {
        start_if_ready(id);
    }
}

pub(crate) unsafe extern "system" fn channel_pause(channel: VMBCHANNEL) {
    crate::lock_rules::blocking_call("VmbChannelPause");
    let Some(id) = void_call(F::VmbChannelPause, channel, CallArgs::None) else {
        return;
    };
    let allowed = with_host(|h| {
        match h.callback_on(id) {
            Some(kind) if kind.is_state_change() => {
                h.violate(
                    Rule::StartOrPauseInStateCallback,
                    Some(id),
                    format!("VmbChannelPause inside {kind:?}; ignored"),
                );
                return false;
            }
            Some(kind) => {
                h.violate(
                    Rule::BlockingCallInCallback,
                    Some(id),
                    format!("VmbChannelPause inside {kind:?}: would deadlock; ignored"),
                );
                return false;
            }
            None => {}
        }
        if !h.require_passive(F::VmbChannelPause, Some(id)) {
            return false;
        }
        // kmcl.md §2.1: Pause on a disabled channel makes it start paused when enabled.
        h.channel_mut(id).host_started = false;
        h.channel(id).lifecycle == Lifecycle::Enabled
    });
    if allowed {
        suspend_if_running(id);
    }
}

pub(crate) unsafe extern "system" fn init_set_maximum_packet_size(
    channel: VMBCHANNEL,
    size: u32,
) -> NTSTATUS {
    init_call(
        F::VmbChannelInitSetMaximumPacketSize,
        channel,
        CallArgs::Size(size),
        |h, id| {
            if size == 0 {
                // kmcl.md §2.1: _PARAMETER_2 (PacketSize is 0).
                h.violate(Rule::InvalidInitArgument, Some(id), "maximum packet size 0");
                return STATUS_INVALID_PARAMETER_2;
            }
            h.channel_mut(id).init.max_packet_size = Some(size);
            STATUS_SUCCESS
        },
    )
}

pub(crate) unsafe extern "system" fn init_set_state_change_callbacks(
    channel: VMBCHANNEL,
    callbacks: PVMB_CHANNEL_STATE_CHANGE_CALLBACKS,
) -> NTSTATUS {
    let table = (!callbacks.is_null()).then(|| {
        // SAFETY: non-NULL, and `_In_`: the driver passes a readable table.
        unsafe { callbacks.read() }
    });
    init_call(
        F::VmbChannelInitSetStateChangeCallbacks,
        channel,
        CallArgs::None,
        |h, id| {
            let Some(table) = table else {
                h.violate(
                    Rule::NullArgument,
                    Some(id),
                    "NULL state-change callback table",
                );
                return STATUS_INVALID_PARAMETER_2;
            };
            let size = std::mem::size_of::<VMB_CHANNEL_STATE_CHANGE_CALLBACKS>();
            if table.Version != VMB_CHANNEL_STATE_CHANGE_CALLBACKS_VERSION
                || table.Size as usize != size
            {
                // kmcl.md §2.1: _PARAMETER_2 (wrong Version or Size).
                h.violate(
                    Rule::InvalidInitArgument,
                    Some(id),
                    format!(
                        "callback table Version {} Size {}",
                        table.Version, table.Size
                    ),
                );
                return STATUS_INVALID_PARAMETER_2;
            }
            let init = &mut h.channel_mut(id).init;
            init.state_callbacks = Some(table);
            init.state_callbacks_at = callbacks.expose_provenance();
            STATUS_SUCCESS
        },
    )
}

pub(crate) unsafe extern "system" fn init_set_process_packet_callbacks(
    channel: VMBCHANNEL,
    process: PFN_VMB_CHANNEL_PROCESS_PACKET,
    complete: PFN_VMB_CHANNEL_PROCESSING_COMPLETE,
) -> NTSTATUS {
    init_call(
        F::VmbChannelInitSetProcessPacketCallbacks,
        channel,
        CallArgs::None,
        |h, id| {
            if process.is_none() {
                h.violate(
                    Rule::NullArgument,
                    Some(id),
                    "NULL ProcessPacket callback (_In_)",
                );
                return STATUS_INVALID_PARAMETER_2;
            }
            let init = &mut h.channel_mut(id).init;
            init.process_packet = process;
            init.processing_complete = complete;
            STATUS_SUCCESS
        },
    )
}

pub(crate) unsafe extern "system" fn init_set_friendly_name(
    channel: VMBCHANNEL,
    name: PCUNICODE_STRING,
) -> NTSTATUS {
    // The model's own bookkeeping, not the driver's allocation (`crate::alloc_faults`).
    let _model = crate::alloc_faults::ModelScope::enter();
    // Decoded before the checks so the log shows it.
    let decoded = (!name.is_null()).then(|| {
        // SAFETY: non-NULL and `_In_`: a readable UNICODE_STRING.
        let string = unsafe { name.read() };
        let well_formed = string.Length % 2 == 0
            && string.Length <= string.MaximumLength
            && (string.Length == 0 || !string.Buffer.is_null());
        well_formed.then(|| {
            let units = if string.Length == 0 {
                &[][..]
            } else {
                // SAFETY: a well-formed UNICODE_STRING's buffer holds `Length` bytes.
                unsafe { std::slice::from_raw_parts(string.Buffer, usize::from(string.Length / 2)) }
            };
            String::from_utf16_lossy(units)
        })
    });
    let args = CallArgs::Name(decoded.clone().flatten().unwrap_or_default());
    init_call(
        F::VmbChannelInitSetFriendlyName,
        channel,
        args,
        |h, id| match decoded {
            Some(Some(text)) => {
                h.channel_mut(id).init.friendly_name = Some(text);
                STATUS_SUCCESS
            }
            Some(None) => {
                h.violate(
                    Rule::InvalidInitArgument,
                    Some(id),
                    "malformed UNICODE_STRING",
                );
                STATUS_INVALID_PARAMETER_2
            }
            None => {
                h.violate(Rule::NullArgument, Some(id), "NULL friendly name");
                STATUS_INVALID_PARAMETER_2
            }
        },
    )
}

pub(crate) unsafe extern "system" fn init_set_flags(channel: VMBCHANNEL, flags: u32) -> NTSTATUS {
    init_call(
        F::VmbChannelInitSetFlags,
        channel,
        CallArgs::Flags(flags),
        |h, id| {
            if flags & !VMBUS_CHANNEL_INIT_FLAGS != 0 {
                h.violate(
                    Rule::InvalidFlags,
                    Some(id),
                    format!("channel flags {flags:#x}"),
                );
                return STATUS_INVALID_PARAMETER_2;
            }
            h.channel_mut(id).init.channel_flags = flags;
            STATUS_SUCCESS
        },
    )
}

pub(crate) unsafe extern "system" fn server_init_set_flags(
    channel: VMBCHANNEL,
    flags: u32,
) -> NTSTATUS {
    init_call(
        F::VmbServerChannelInitSetFlags,
        channel,
        CallArgs::Flags(flags),
        |h, id| {
            if flags & !VMBUS_SERVER_CHANNEL_INIT_FLAGS != 0 {
                h.violate(
                    Rule::InvalidFlags,
                    Some(id),
                    format!("server flags {flags:#x}"),
                );
                return STATUS_INVALID_PARAMETER_2;
            }
            h.channel_mut(id).init.server_flags = flags;
            STATUS_SUCCESS
        },
    )
}

pub(crate) unsafe extern "system" fn server_init_set_mmio_megabytes(
    channel: VMBCHANNEL,
    megabytes: u16,
    optional: u16,
) -> NTSTATUS {
    let args = CallArgs::Mmio {
        megabytes,
        optional,
    };
    init_call(
        F::VmbServerChannelInitSetMmioMegabytes,
        channel,
        args,
        |h, id| {
            if megabytes == 0 {
                // kmcl.md §5: both 0 -> STATUS_INVALID_PARAMETER; §9 item 5: the SAL requires
                // MmioMegabytes > 0, so the model (stricter reading) rejects 0 even with optional > 0.
                h.violate(
                    Rule::MmioMegabytesZero,
                    Some(id),
                    format!("MmioMegabytes 0 (optional {optional})"),
                );
                return STATUS_INVALID_PARAMETER;
            }
            h.channel_mut(id).init.mmio = Some((megabytes, optional));
            STATUS_SUCCESS
        },
    )
}

pub(crate) unsafe extern "system" fn server_init_set_target_interface_id(
    channel: VMBCHANNEL,
    interface_type: GUID,
    interface_instance: GUID,
) -> NTSTATUS {
    let args = CallArgs::InterfaceId {
        interface_type,
        interface_instance,
    };
    init_call(
        F::VmbServerChannelInitSetTargetInterfaceId,
        channel,
        args,
        |h, id| {
            h.channel_mut(id).init.interface = Some((interface_type, interface_instance));
            STATUS_SUCCESS
        },
    )
}

pub(crate) unsafe extern "system" fn server_init_set_vmbus_handle(
    channel: VMBCHANNEL,
    handle: HANDLE,
) -> NTSTATUS {
    let value = handle.addr();
    init_call(
        F::VmbServerChannelInitSetVmbusHandle,
        channel,
        CallArgs::Handle(value),
        |h, id| {
            if !h.kernel_handles.get(&value).is_some_and(|s| s.open) {
                h.violate(
                    Rule::InvalidKernelHandle,
                    Some(id),
                    format!("{value:#x} is not an open kernel VMBus handle"),
                );
                return STATUS_INVALID_HANDLE;
            }
            h.channel_mut(id).init.vmbus_handle = Some(value);
            STATUS_SUCCESS
        },
    )
}

pub(crate) unsafe extern "system" fn convert_vmbus_handle(
    user: HANDLE,
    out: *mut HANDLE,
) -> NTSTATUS {
    crate::lock_rules::blocking_call("VmbConvertVmbusHandleToKernelHandle");
    with_host(|h| {
        let value = user.addr();
        let (index, injected) = h.begin_call(
            F::VmbConvertVmbusHandleToKernelHandle,
            None,
            CallArgs::Handle(value),
        );
        if let Some(status) = injected {
            return h.finish_call(index, status);
        }
        if !h.require_passive(F::VmbConvertVmbusHandleToKernelHandle, None) {
            return h.finish_call(index, STATUS_INVALID_DEVICE_STATE);
        }
        if out.is_null() {
            h.violate(Rule::NullArgument, None, "NULL KernelHandle out-pointer");
            return h.finish_call(index, STATUS_INVALID_PARAMETER_2);
        }
        let process = h.current_process;
        let Some(vm) = h.user_handles.get(&(process, value)).copied() else {
            // kmcl.md §6: the handle is looked up in the *current* process. If it is a VMBus
            // handle of another process, the caller ran in the wrong process context.
            if let Some(owner) = h
                .user_handles
                .keys()
                .find(|(_, v)| *v == value)
                .map(|(p, _)| *p)
            {
                h.violate(
                    Rule::ConvertOutsideOwningProcess,
                    None,
                    format!("user handle {value:#x} belongs to process {owner:?}, converted in {process:?}"),
                );
            }
            return h.finish_call(index, STATUS_INVALID_HANDLE);
        };
        let kernel = h.new_kernel_handle(vm);
        // SAFETY: `out` is non-NULL and, per the prototype (`_Out_`), writable.
        unsafe { out.write(ptr::without_provenance_mut(kernel)) };
        h.finish_call(index, STATUS_SUCCESS)
    })
}

pub(crate) unsafe extern "system" fn channel_set_pointer(
    channel: VMBCHANNEL,
    pointer: *mut c_void,
) {
    // kmcl.md §2.1: "It can be called at any time". The address is exposed so that GetPointer can
    // hand the driver back a pointer with the same provenance.
    let value = pointer.expose_provenance();
    if let Some(id) = void_call(F::VmbChannelSetPointer, channel, CallArgs::Pointer(value)) {
        with_host(|h| h.channel_mut(id).pointer = value);
    }
}

pub(crate) unsafe extern "system" fn channel_get_pointer(channel: VMBCHANNEL) -> *mut c_void {
    match void_call(F::VmbChannelGetPointer, channel, CallArgs::None) {
        Some(id) => ptr::with_exposed_provenance_mut(with_host(|h| h.channel(id).pointer)),
        None => ptr::null_mut(),
    }
}

pub(crate) unsafe extern "system" fn channel_set_incoming_processing_at_passive(
    channel: VMBCHANNEL,
    require: BOOLEAN,
) {
    let Some(id) = void_call(
        F::VmbChannelSetIncomingProcessingAtPassive,
        channel,
        CallArgs::Bool(require != 0),
    ) else {
        return;
    };
    with_host(|h| {
        // kmcl.md §4 "Optional extras, also before Enable": an Init-time setting.
        if h.channel(id).lifecycle != Lifecycle::Disabled {
            h.violate(
                Rule::InitWhileNotDisabled,
                Some(id),
                "SetIncomingProcessingAtPassive after Enable; ignored",
            );
            return;
        }
        h.channel_mut(id).init.incoming_at_passive = require != 0;
    });
}

pub(crate) unsafe extern "system" fn channel_get_mmio_space(
    channel: VMBCHANNEL,
    address: *mut u64,
    size: *mut u64,
) {
    let Some(id) = void_call(F::VmbChannelGetMmioSpace, channel, CallArgs::None) else {
        return;
    };
    let (value_address, value_size) = with_host(|h| {
        // kmcl.md §4 "Validity windows" / §5: valid only *after* Opened.
        if h.callback_on(id) == Some(CallbackKind::Opened) {
            h.violate(
                Rule::MmioSpaceBeforeOpened,
                Some(id),
                "VmbChannelGetMmioSpace inside the Opened callback (valid only after it)",
            );
            return (0, 0);
        }
        let c = h.channel(id);
        if !c.open {
            h.violate(
                Rule::MmioSpaceBeforeOpened,
                Some(id),
                "VmbChannelGetMmioSpace while not open",
            );
            return (0, 0);
        }
        let reservation = c.mmio_space;
        match (h.server_mmio_space, reservation) {
            (ServerMmioSpace::GuestReservation, Some(range)) => (range.base, range.size),
            (ServerMmioSpace::KernelVirtualAddress, Some(range)) => {
                (0xFFFF_9A00_0000_0000, range.size)
            }
            (ServerMmioSpace::Zeros, _) | (_, None) => (0, 0),
        }
    });
    if address.is_null() || size.is_null() {
        with_host(|h| {
            h.violate(
                Rule::NullArgument,
                Some(id),
                "NULL GetMmioSpace out-pointer",
            )
        });
        return;
    }
    // SAFETY: both out-pointers are non-NULL and writable (`UINT64 *` outputs, kmcl.md §5).
    unsafe { address.write(value_address) };
    // SAFETY: as above.
    unsafe { size.write(value_size) };
}

/// The packet behind a completion context, checked for "delivered, not yet completed, and not
/// outstanding past its channel's Closed".
fn open_packet(
    h: &mut HostState,
    function: KmclFunction,
    packet: VMBPACKETCOMPLETION,
) -> Option<u64> {
    let token = packet_token(packet.addr()).filter(|t| h.packets.contains_key(t));
    let channel = token.and_then(|t| h.packets.get(&t)).map(|p| p.channel);
    h.begin_call(function, channel, CallArgs::Packet(token.unwrap_or(0)));
    let Some(token) = token else {
        h.violate(
            Rule::UnknownPacket,
            None,
            format!("{function:?} on {:#x}", packet.addr()),
        );
        return None;
    };
    let done = h
        .packets
        .get(&token)
        .is_some_and(|p| p.completion.is_some() || p.failed);
    if done {
        h.violate(
            Rule::PacketCompletedTwice,
            channel,
            format!("{function:?} on a completed packet"),
        );
        return None;
    }
    if h.packets.get(&token).is_some_and(|p| p.retired) {
        h.violate(
            Rule::PacketCompletedAfterClosed,
            channel,
            format!("{function:?} on a packet still outstanding when its channel closed"),
        );
        return None;
    }
    Some(token)
}

pub(crate) unsafe extern "system" fn channel_packet_complete(
    packet: VMBPACKETCOMPLETION,
    buffer: *mut c_void,
    size: u32,
) {
    // The model's own bookkeeping, not the driver's allocation (`crate::alloc_faults`).
    let _model = crate::alloc_faults::ModelScope::enter();
    let bytes = if buffer.is_null() || size == 0 {
        Vec::new()
    } else {
        // SAFETY: `_In_reads_bytes_opt_(BufSize)`: a non-NULL buffer holds `size` bytes.
        unsafe { std::slice::from_raw_parts(buffer.cast::<u8>(), size as usize) }.to_vec()
    };
    with_host(|h| {
        let Some(token) = open_packet(h, F::VmbChannelPacketComplete, packet) else {
            return;
        };
        if buffer.is_null() && size != 0 {
            h.violate(
                Rule::NullArgument,
                None,
                "NULL completion buffer with a non-zero size",
            );
        }
        if let Some(state) = h.packets.get_mut(&token) {
            state.completion = Some(bytes);
        }
        h.counters.packets_completed += 1;
    });
}

pub(crate) unsafe extern "system" fn channel_packet_defer_to_passive(packet: VMBPACKETCOMPLETION) {
    with_host(|h| {
        let Some(token) = open_packet(h, F::VmbChannelPacketDeferToPassive, packet) else {
            return;
        };
        let inline = matches!(
            h.in_callbacks.last(),
            Some((_, CallbackKind::ProcessPacket, Some(t))) if *t == token
        );
        if !inline {
            h.violate(
                Rule::DeferOutsideProcessPacket,
                None,
                "defer outside its ProcessPacket call",
            );
            return;
        }
        if let Some(state) = h.packets.get_mut(&token) {
            state.defer_requested = true;
        }
    });
}

pub(crate) unsafe extern "system" fn channel_packet_fail(packet: VMBPACKETCOMPLETION) {
    with_host(|h| {
        let Some(token) = open_packet(h, F::VmbChannelPacketFail, packet) else {
            return;
        };
        // kmcl.md §2.2: "This stops the incoming queue." The failed packet counts as retired.
        let channel = h.packets.get_mut(&token).map(|state| {
            state.failed = true;
            state.channel
        });
        if let Some(channel) = channel {
            h.channel_mut(channel).incoming_stopped = true;
        }
        h.counters.packets_failed += 1;
    });
}
