//! Host-to-guest packets (`VmbPacketAllocate`, `VmbPacketSend`, ...), modelled simply.
//!
//! kmcl.md §2.3: packets come from a lookaside list; the default completion routine frees the
//! packet; `VmbPacketFree` only for packets never sent or with a replaced routine; sends before
//! Opened are queued and transmitted once open (§4 "Validity windows"). Simplification: the
//! completion routine runs when the simulated guest reads the packet (`SimGuest::receive`),
//! whether or not `WAIT_FOR_COMPLETION` was set; external-data MDLs are not modelled
//! (`STATUS_NOT_SUPPORTED`). The driver does not send packets yet.

use std::ffi::c_void;
use std::ptr;

use kmcl::KmclFunction;
use kmcl::raw::{
    NTSTATUS, PFN_VMB_PACKET_COMPLETION_ROUTINE, PMDL, STATUS_INVALID_PARAMETER_1,
    STATUS_INVALID_PARAMETER_2, STATUS_INVALID_PARAMETER_3, STATUS_INVALID_PARAMETER_5,
    STATUS_NOT_SUPPORTED, STATUS_SUCCESS, VMBCHANNEL, VMBPACKET, VMBUS_CHANNEL_FORMAT_FLAGS,
};

use super::ChannelId;
use super::host::{OutgoingPacket, outgoing_raw, outgoing_token, with_host};
use super::log::{CallArgs, CallbackKind, LogEntry};
use super::rules::Rule;

/// `VmbPacketAllocate`: NULL for an unknown channel.
pub(crate) unsafe extern "system" fn packet_allocate(channel: VMBCHANNEL) -> VMBPACKET {
    with_host(|h| {
        let id = h.channel_id(channel.addr());
        h.begin_call(KmclFunction::VmbPacketAllocate, id, CallArgs::None);
        let Some(id) = h.live_channel(channel.addr(), KmclFunction::VmbPacketAllocate) else {
            return ptr::null_mut();
        };
        let token = h.next_outgoing;
        h.next_outgoing += 1;
        h.outgoing.insert(
            token,
            OutgoingPacket {
                channel: id,
                routine: None,
                sent: false,
                released: false,
            },
        );
        h.counters.outgoing_packets_allocated += 1;
        ptr::without_provenance_mut(outgoing_raw(token))
    })
}

/// `VmbPacketFree`.
pub(crate) unsafe extern "system" fn packet_free(packet: VMBPACKET) {
    with_host(|h| {
        let token = outgoing_token(packet.addr());
        h.begin_call(
            KmclFunction::VmbPacketFree,
            None,
            CallArgs::Packet(token.unwrap_or(0)),
        );
        let Some(state) = token.and_then(|t| h.outgoing.get_mut(&t)) else {
            h.violate(
                Rule::OutgoingPacketMisuse,
                None,
                "VmbPacketFree of an unknown packet",
            );
            return;
        };
        let channel = state.channel;
        if state.released {
            h.violate(
                Rule::OutgoingPacketMisuse,
                Some(channel),
                "VmbPacketFree of a freed packet",
            );
            return;
        }
        if state.sent && state.routine.is_none() {
            h.violate(
                Rule::OutgoingPacketMisuse,
                Some(channel),
                "VmbPacketFree of a sent packet whose default completion routine frees it",
            );
            return;
        }
        state.released = true;
        h.counters.outgoing_packets_released += 1;
    });
}

/// `VmbPacketSetCompletionRoutine`.
pub(crate) unsafe extern "system" fn packet_set_completion_routine(
    packet: VMBPACKET,
    routine: PFN_VMB_PACKET_COMPLETION_ROUTINE,
) {
    with_host(|h| {
        let token = outgoing_token(packet.addr());
        h.begin_call(
            KmclFunction::VmbPacketSetCompletionRoutine,
            None,
            CallArgs::Packet(token.unwrap_or(0)),
        );
        match token.and_then(|t| h.outgoing.get_mut(&t)) {
            Some(state) if !state.released => state.routine = routine,
            _ => h.violate(
                Rule::OutgoingPacketMisuse,
                None,
                "completion routine on an unknown or freed packet",
            ),
        }
    });
}

/// `VmbPacketSend`.
pub(crate) unsafe extern "system" fn packet_send(
    packet: VMBPACKET,
    buffer: *mut c_void,
    length: u32,
    mdl: PMDL,
    flags: u32,
) -> NTSTATUS {
    // The model's own bookkeeping, not the driver's allocation (`crate::alloc_faults`).
    let _model = crate::alloc_faults::ModelScope::enter();
    let bytes = if buffer.is_null() || length == 0 {
        None
    } else {
        // SAFETY: `_In_reads_bytes_(BufferLength)`: the driver passes `length` readable bytes.
        Some(unsafe { std::slice::from_raw_parts(buffer.cast::<u8>(), length as usize) }.to_vec())
    };
    with_host(|h| {
        let token = outgoing_token(packet.addr());
        let channel = token.and_then(|t| h.outgoing.get(&t)).map(|s| s.channel);
        let (index, injected) =
            h.begin_call(KmclFunction::VmbPacketSend, channel, CallArgs::Size(length));
        if let Some(status) = injected {
            return h.finish_call(index, status);
        }
        let (Some(token), Some(channel)) = (token, channel) else {
            h.violate(
                Rule::OutgoingPacketMisuse,
                None,
                "VmbPacketSend of an unknown packet",
            );
            return h.finish_call(index, STATUS_INVALID_PARAMETER_1);
        };
        let status = send_checked(h, token, channel, bytes, length, mdl, flags);
        h.finish_call(index, status)
    })
}

fn send_checked(
    h: &mut super::host::HostState,
    token: u64,
    channel: ChannelId,
    bytes: Option<Vec<u8>>,
    length: u32,
    mdl: PMDL,
    flags: u32,
) -> NTSTATUS {
    let released_or_sent = h.outgoing.get(&token).is_none_or(|s| s.released || s.sent);
    if released_or_sent {
        h.violate(
            Rule::OutgoingPacketMisuse,
            Some(channel),
            "VmbPacketSend of a freed or already sent packet",
        );
        return STATUS_INVALID_PARAMETER_1;
    }
    if flags & !VMBUS_CHANNEL_FORMAT_FLAGS != 0 {
        h.violate(
            Rule::InvalidFlags,
            Some(channel),
            format!("VmbPacketSend flags {flags:#x}"),
        );
        return STATUS_INVALID_PARAMETER_5;
    }
    if bytes.is_none() && length != 0 {
        h.violate(
            Rule::NullArgument,
            Some(channel),
            "VmbPacketSend with a NULL buffer",
        );
        return STATUS_INVALID_PARAMETER_2;
    }
    if !mdl.is_null() {
        return STATUS_NOT_SUPPORTED;
    }
    if h.channel(channel)
        .init
        .max_packet_size
        .is_some_and(|max| length > max)
    {
        // kmcl.md §2.1: MaximumPacketSize is the largest payload ever passed to VmbPacketSend.
        // The status for breaking it is not documented; the model answers _PARAMETER_3.
        h.violate(
            Rule::OutgoingPacketMisuse,
            Some(channel),
            format!("VmbPacketSend of {length} bytes exceeds the maximum packet size"),
        );
        return STATUS_INVALID_PARAMETER_3;
    }
    if let Some(state) = h.outgoing.get_mut(&token) {
        state.sent = true;
    }
    let bytes = bytes.unwrap_or_default();
    let c = h.channel(channel);
    match (c.open, c.target) {
        (true, Some(vm)) => {
            if let Some(guest) = h.guests.get_mut(&vm) {
                guest.inbox.push_back((channel, token, bytes));
            }
        }
        _ => h.channel_mut(channel).queued_sends.push((token, bytes)),
    }
    STATUS_SUCCESS
}

/// The guest read the packet: run its completion routine, or free it (default routine).
pub(crate) fn complete_received(channel: ChannelId, token: u64) {
    let routine = with_host(|h| {
        let state = h.outgoing.get_mut(&token)?;
        match state.routine {
            Some(routine) => Some(routine),
            None => {
                state.released = true;
                h.counters.outgoing_packets_released += 1;
                None
            }
        }
    });
    if let Some(routine) = routine {
        with_host(|h| {
            h.in_callbacks
                .push((channel, CallbackKind::PacketCompletion, Some(token)))
        });
        // SAFETY: the driver set this routine for this packet; the model calls it once, with
        // the packet's own handle and no completion payload, with no model state borrowed.
        crate::alloc_faults::driver_scope(|| unsafe {
            routine(
                ptr::without_provenance_mut(outgoing_raw(token)),
                STATUS_SUCCESS,
                ptr::null_mut(),
                0,
            )
        });
        with_host(|h| {
            h.in_callbacks.pop();
            h.log.push(LogEntry::Callback {
                channel,
                kind: CallbackKind::PacketCompletion,
                status: None,
            });
        });
    }
}
