//! The model's calls into the driver: state callbacks and packet delivery, in the documented
//! order (kmcl.md §4 steps 4–7).
//!
//! Every function here borrows the host state only between callbacks, never across one: the
//! driver calls KMCL from inside its callbacks. Each call into the driver runs in the
//! allocation driver scope (`crate::alloc_faults`).

use std::ffi::c_void;
use std::ptr;

use kmcl::raw::{NT_SUCCESS, NTSTATUS, VMB_CHANNEL_STATE_CHANGE_CALLBACKS, VMBCHANNEL};

use crate::alloc_faults::driver_scope;

use super::host::{Irql, channel_raw, packet_raw, with_host};
use super::log::{CallbackKind, LogEntry};
use super::rules::Rule;
use super::{ChannelId, GuestError, PacketOutcome};

/// Runs one state callback of `channel` (NULL entries are skipped: kmcl.md §3 says dxgkrnl's
/// VAIL path leaves two NULL, so NULL is accepted). Returns Opened's status.
pub(crate) fn run_state_callback(channel: ChannelId, kind: CallbackKind) -> Option<NTSTATUS> {
    let (registered, at) = with_host(|h| {
        h.in_callbacks.push((channel, kind, None));
        let init = &h.channel(channel).init;
        (init.state_callbacks, init.state_callbacks_at)
    });
    let table = registered.map(|registered| {
        if at == 0 {
            return registered;
        }
        // SAFETY: under the stricter reading this model enforces, the driver keeps the table it
        // registered alive until Cleanup (the kmcl wrapper keeps it in the channel context,
        // freed only after Cleanup), so `at` still points at a readable table.
        let current = unsafe {
            ptr::with_exposed_provenance::<VMB_CHANNEL_STATE_CHANGE_CALLBACKS>(at).read()
        };
        if !same_table(&current, &registered) {
            with_host(|h| {
                h.violate(
                    Rule::CallbackTableChanged,
                    Some(channel),
                    "the state-change callback table changed after Init",
                );
            });
        }
        current
    });
    let raw = ptr::without_provenance_mut(channel_raw(channel));
    let status = table.and_then(|table| match kind {
        CallbackKind::Opened => table.EvtChannelOpened.map(|f| {
            // SAFETY: the driver registered this callback for this channel; the model calls it
            // with the channel's own handle, at PASSIVE_LEVEL, with no model state borrowed.
            driver_scope(|| unsafe { f(raw) })
        }),
        CallbackKind::Started
        | CallbackKind::PostStarted
        | CallbackKind::Suspend
        | CallbackKind::Closed => {
            let f = match kind {
                CallbackKind::Started => table.EvtChannelStarted,
                CallbackKind::PostStarted => table.EvtChannelPostStarted,
                CallbackKind::Suspend => table.EvtChannelSuspend,
                _ => table.EvtChannelClosed,
            };
            if let Some(f) = f {
                // SAFETY: as above.
                driver_scope(|| unsafe { f(raw) });
            }
            None
        }
        CallbackKind::ProcessPacket | CallbackKind::PacketCompletion => None,
    });
    with_host(|h| {
        h.in_callbacks.pop();
        h.log.push(LogEntry::Callback {
            channel,
            kind,
            status,
        });
    });
    status
}

/// Whether two callback tables hold the same version, size and callbacks.
fn same_table(
    a: &VMB_CHANNEL_STATE_CHANGE_CALLBACKS,
    b: &VMB_CHANNEL_STATE_CHANGE_CALLBACKS,
) -> bool {
    let address = |f: Option<unsafe extern "system" fn(VMBCHANNEL)>| f.map(|f| f as usize);
    a.Version == b.Version
        && a.Size == b.Size
        && a.EvtChannelOpened.map(|f| f as usize) == b.EvtChannelOpened.map(|f| f as usize)
        && address(a.EvtChannelClosed) == address(b.EvtChannelClosed)
        && address(a.EvtChannelSuspend) == address(b.EvtChannelSuspend)
        && address(a.EvtChannelStarted) == address(b.EvtChannelStarted)
        && address(a.EvtChannelPostStarted) == address(b.EvtChannelPostStarted)
}

/// Open and started, not yet running: Started, then the incoming queue opens, then
/// PostStarted (kmcl.md §4 step 5).
pub(crate) fn start_if_ready(channel: ChannelId) {
    let ready = with_host(|h| {
        let c = h.channel(channel);
        c.open && c.host_started && !c.running
    });
    if !ready {
        return;
    }
    run_state_callback(channel, CallbackKind::Started);
    // "KMCL then enables the incoming queue, so EvtChannelProcessPacket calls begin."
    let hold = with_host(|h| {
        h.channel_mut(channel).running = true;
        h.hold_post_started
    });
    if !hold {
        run_post_started(channel);
    }
}

/// "Then EvtChannelPostStarted runs" (kmcl.md §4 step 5), if the channel is still running and
/// PostStarted has not run yet.
pub(crate) fn run_post_started(channel: ChannelId) {
    let due = with_host(|h| {
        let c = h.channel(channel);
        c.running && !c.post_started
    });
    if due {
        run_state_callback(channel, CallbackKind::PostStarted);
        with_host(|h| h.channel_mut(channel).post_started = true);
    }
}

/// Stops a running channel: Suspend, after which every delivered packet must be completed
/// (kmcl.md §3 Suspend, §4 step 6). KMCL would block forever on an outstanding packet; the
/// model records a violation instead.
pub(crate) fn suspend_if_running(channel: ChannelId) {
    let running = with_host(|h| h.channel(channel).running);
    if !running {
        return;
    }
    // "After it, no ProcessPacket calls are running or will be queued."
    with_host(|h| {
        let c = h.channel_mut(channel);
        c.running = false;
        c.post_started = false;
    });
    run_state_callback(channel, CallbackKind::Suspend);
    with_host(|h| {
        let outstanding = h.outstanding_packets(channel);
        if outstanding > 0 {
            h.violate(
                Rule::PacketsOutstandingAtSuspend,
                Some(channel),
                format!("{outstanding} delivered packet(s) not completed when Suspend returned"),
            );
        }
    });
}

/// Closes an open channel: Suspend if running, then Closed (kmcl.md §4 steps 6–7).
///
/// A real KMCL would still be blocked at Suspend if a packet were outstanding; the model goes
/// on, and from Closed on any use of such a packet's completion context is a violation
/// (`Rule::PacketCompletedAfterClosed`).
pub(crate) fn close_if_open(channel: ChannelId) {
    let open = with_host(|h| h.channel(channel).open);
    if !open {
        return;
    }
    suspend_if_running(channel);
    with_host(|h| h.retire_outstanding_packets(channel));
    run_state_callback(channel, CallbackKind::Closed);
    with_host(|h| {
        let c = h.channel_mut(channel);
        c.open = false;
        c.mmio_space = None;
    });
}

/// Delivers one guest packet through ProcessPacket; redelivers at PASSIVE_LEVEL if the driver
/// deferred it (kmcl.md §2.2 `VmbChannelPacketDeferToPassive`).
pub(crate) fn deliver_packet(
    channel: ChannelId,
    bytes: &[u8],
) -> Result<PacketOutcome, GuestError> {
    let (callback, at_passive, token, buffer, length) = with_host(|h| {
        let c = h.channel(channel);
        if !c.open {
            return Err(GuestError::NotOpen);
        }
        if !c.running {
            return Err(GuestError::NotRunning);
        }
        if c.incoming_stopped {
            return Err(GuestError::QueueStopped);
        }
        let callback = c.init.process_packet.ok_or(GuestError::NotRunning)?;
        let at_passive = c.init.incoming_at_passive;
        let length = u32::try_from(bytes.len()).map_err(|_| GuestError::PacketTooLarge)?;
        if c.init.max_packet_size.is_some_and(|max| length > max) {
            return Err(GuestError::PacketTooLarge);
        }
        let token = h.new_packet(channel, bytes);
        // The bytes live in a Box that the model never frees or moves while it exists.
        let buffer = h
            .packets
            .get_mut(&token)
            .map_or(ptr::null_mut(), |p| p.data.as_mut_ptr());
        Ok((callback, at_passive, token, buffer, length))
    })?;
    let mut irql = if at_passive {
        Irql::Passive
    } else {
        Irql::Dispatch
    };
    loop {
        with_host(|h| {
            h.in_callbacks
                .push((channel, CallbackKind::ProcessPacket, Some(token)));
            h.irql = irql;
        });
        // SAFETY: the driver registered this callback for this channel; `buffer` points to
        // `length` bytes the model keeps alive and unmoved; no model state is borrowed.
        driver_scope(|| unsafe {
            callback(
                ptr::without_provenance_mut(channel_raw(channel)),
                ptr::without_provenance_mut(packet_raw(token)),
                buffer.cast::<c_void>(),
                length,
                0,
            )
        });
        let redeliver = with_host(|h| {
            h.in_callbacks.pop();
            h.irql = Irql::Passive;
            h.log.push(LogEntry::Callback {
                channel,
                kind: CallbackKind::ProcessPacket,
                status: None,
            });
            let packet = h.packets.get_mut(&token)?;
            let defer = packet.defer_requested && packet.completion.is_none() && !packet.failed;
            packet.defer_requested = false;
            Some(defer)
        });
        if redeliver == Some(true) {
            irql = Irql::Passive;
            continue;
        }
        break;
    }
    Ok(with_host(|h| match h.packets.get(&token) {
        Some(packet) if packet.failed => PacketOutcome::Failed,
        Some(packet) => match &packet.completion {
            Some(bytes) => PacketOutcome::Completed(bytes.clone()),
            None => PacketOutcome::Pending(token),
        },
        None => PacketOutcome::Pending(token),
    }))
}

/// Whether an Opened status accepts the open.
pub(crate) fn accepted(status: Option<NTSTATUS>) -> bool {
    status.is_none_or(NT_SUCCESS)
}
