//! The `extern "system"` functions KMCL calls, one instance per (provider, handler) pair.
//!
//! Each recovers the driver's context from the channel (`VmbChannelGetPointer`, set by
//! `ServerChannel::create` before any callback is registered) and dispatches to the
//! [`ChannelHandler`]. The context is freed only after `VmbChannelCleanup`, after which KMCL makes
//! no more callbacks, so the pointer is live whenever a trampoline runs. A panic cannot unwind
//! out of these functions: `extern "system"` aborts instead (and the driver is `panic = abort`).

use core::ffi::c_void;

use crate::provider::KmclProvider;
use crate::raw::{
    NTSTATUS, STATUS_INVALID_DEVICE_STATE, STATUS_SUCCESS, VMB_CHANNEL_STATE_CHANGE_CALLBACKS,
    VMB_CHANNEL_STATE_CHANGE_CALLBACKS_INIT, VMBCHANNEL, VMBPACKETCOMPLETION,
};
use crate::server::context::ChannelContext;
use crate::server::handler::{ChannelHandler, ChannelRef};
use crate::server::packet::IncomingPacket;

/// The state-change table pointing at this pair's trampolines.
pub(crate) fn state_callbacks<P: KmclProvider, H: ChannelHandler>()
-> VMB_CHANNEL_STATE_CHANGE_CALLBACKS {
    let mut callbacks = VMB_CHANNEL_STATE_CHANGE_CALLBACKS_INIT();
    callbacks.EvtChannelOpened = Some(opened::<P, H>);
    callbacks.EvtChannelClosed = Some(closed::<P, H>);
    callbacks.EvtChannelSuspend = Some(suspend::<P, H>);
    callbacks.EvtChannelStarted = Some(started::<P, H>);
    callbacks.EvtChannelPostStarted = Some(post_started::<P, H>);
    callbacks
}

/// The context behind `channel`, or `None` if its pointer is NULL.
///
/// # Safety
/// `channel` is a channel KMCL passed to a callback, created by `ServerChannel::<P, H>::create`
/// (so its pointer, if set, is a live `ChannelContext<H>` that outlives the callback).
unsafe fn context<'a, P: KmclProvider, H: ChannelHandler>(
    channel: VMBCHANNEL,
) -> Option<&'a ChannelContext<H>> {
    // SAFETY: `channel` is a live channel handle (caller contract); GetPointer only reads it.
    let pointer = unsafe { (P::api().VmbChannelGetPointer)(channel) };
    // SAFETY: the pointer is NULL or was set by `create` to a `ChannelContext<H>` that stays
    // allocated, and is never mutated, until after Cleanup (caller contract).
    unsafe { pointer.cast::<ChannelContext<H>>().as_ref() }
}

/// Runs `f` with the handler behind `channel`, if any.
///
/// # Safety
/// As for [`context`].
unsafe fn with_handler<P: KmclProvider, H: ChannelHandler, R>(
    channel: VMBCHANNEL,
    f: impl FnOnce(&H, &ChannelRef<'_>) -> R,
) -> Option<R> {
    // SAFETY: forwarded caller contract.
    let context = unsafe { context::<P, H>(channel) }?;
    let channel = ChannelRef::new(channel, P::api());
    Some(f(&context.handler, &channel))
}

/// `EvtChannelOpened`. IRQL: PASSIVE_LEVEL.
///
/// # Safety
/// Called by KMCL only, for a channel created by `ServerChannel::<P, H>::create`.
unsafe extern "system" fn opened<P: KmclProvider, H: ChannelHandler>(
    channel: VMBCHANNEL,
) -> NTSTATUS {
    // SAFETY: KMCL passes the channel these callbacks were registered for.
    let result = unsafe { with_handler::<P, H, _>(channel, |h, c| h.opened(c)) };
    match result {
        Some(Ok(())) => STATUS_SUCCESS,
        Some(Err(error)) => error.get(),
        // No context: refuse the open rather than run without a handler.
        None => STATUS_INVALID_DEVICE_STATE,
    }
}

/// `EvtChannelClosed`. IRQL: PASSIVE_LEVEL.
///
/// # Safety
/// As for [`opened`].
unsafe extern "system" fn closed<P: KmclProvider, H: ChannelHandler>(channel: VMBCHANNEL) {
    // SAFETY: KMCL passes the channel these callbacks were registered for.
    unsafe { with_handler::<P, H, _>(channel, |h, c| h.closed(c)) };
}

/// `EvtChannelSuspend`. IRQL: PASSIVE_LEVEL.
///
/// # Safety
/// As for [`opened`].
unsafe extern "system" fn suspend<P: KmclProvider, H: ChannelHandler>(channel: VMBCHANNEL) {
    // SAFETY: KMCL passes the channel these callbacks were registered for.
    unsafe { with_handler::<P, H, _>(channel, |h, c| h.suspend(c)) };
}

/// `EvtChannelStarted`. IRQL: PASSIVE_LEVEL.
///
/// # Safety
/// As for [`opened`].
unsafe extern "system" fn started<P: KmclProvider, H: ChannelHandler>(channel: VMBCHANNEL) {
    // SAFETY: KMCL passes the channel these callbacks were registered for.
    unsafe { with_handler::<P, H, _>(channel, |h, c| h.started(c)) };
}

/// `EvtChannelPostStarted`. IRQL: PASSIVE_LEVEL.
///
/// # Safety
/// As for [`opened`].
unsafe extern "system" fn post_started<P: KmclProvider, H: ChannelHandler>(channel: VMBCHANNEL) {
    // SAFETY: KMCL passes the channel these callbacks were registered for.
    unsafe { with_handler::<P, H, _>(channel, |h, c| h.post_started(c)) };
}

/// `EvtChannelProcessPacket`. IRQL: <= DISPATCH_LEVEL (PASSIVE_LEVEL with incoming processing at
/// passive).
///
/// # Safety
/// Called by KMCL only, for a channel created by `ServerChannel::<P, H>::create`, with `buffer`
/// readable for `length` bytes until `packet` is completed.
pub(crate) unsafe extern "system" fn process_packet<P: KmclProvider, H: ChannelHandler>(
    channel: VMBCHANNEL,
    packet: VMBPACKETCOMPLETION,
    buffer: *mut c_void,
    length: u32,
    flags: u32,
) {
    let length = usize::try_from(length).unwrap_or(0);
    let data: &[u8] = if buffer.is_null() || length == 0 {
        &[]
    } else {
        // SAFETY: KMCL guarantees `buffer` is readable for `length` bytes until the packet is
        // completed (`_In_reads_bytes_(BufferLength)`, kmcl.md §3). The slice is reachable only
        // through the `IncomingPacket` (its `data()` borrows the packet), which lives inside
        // this call only, and every way to complete it consumes it: inline completion, drop, or
        // `hold`, whose `HeldPacket` carries no data. So no reference to the buffer outlives
        // either this call or the completion.
        unsafe { core::slice::from_raw_parts(buffer.cast::<u8>(), length) }
    };
    let incoming = IncomingPacket::new(packet, data, flags, P::api());
    // SAFETY: KMCL passes the channel these callbacks were registered for. Without a context the
    // closure does not run and `incoming` is dropped here, which completes it (exactly once).
    unsafe { with_handler::<P, H, _>(channel, |h, c| h.process_packet(c, incoming)) };
}
