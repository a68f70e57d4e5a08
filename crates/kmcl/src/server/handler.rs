//! What the driver implements to receive KMCL callbacks, and what a callback may touch.
//!
//! # Why callbacks cannot disable, pause or start their own channel
//! `VmbChannelDisable` and `VmbChannelPause` wait for the state callbacks and for every delivered
//! packet, so calling them from a callback deadlocks; `VmbChannelStart`/`VmbChannelPause` must
//! not be called inside state callbacks at all (kmcl.md §4 "Not allowed inside callbacks").
//! The wrapper makes those calls unreachable from a callback by types:
//! - a callback receives only a [`ChannelRef`], which offers none of them;
//! - Disable (and Cleanup) exist only on the owner, `ServerChannel`, which is neither `Send` nor
//!   `Sync`, while a [`ChannelHandler`] must be `Send + Sync + 'static`. So no handler can own,
//!   borrow or share the owner: not directly, not through `Arc`, a lock or a `&'static`
//!   reference, because the standard thread-safe containers are `Sync` only for `Send`
//!   contents. The kernel build is `no_std`, so thread-locals, the one remaining safe back door
//!   (usable only in std test code), do not exist there.
//!
//! Getting around this needs `unsafe` (calling the raw table with [`ChannelRef::raw`]), which
//! is exactly what the simulator's "bad handler" test does to prove the model catches it.

use core::marker::PhantomData;

use crate::error::ErrorStatus;
use crate::raw::VMBCHANNEL;
use crate::server::packet::IncomingPacket;
use crate::table::KmclApi;

/// The driver's reaction to one channel's state changes and packets.
///
/// IRQL per method: every state callback (`opened`, `started`, `post_started`, `suspend`,
/// `closed`) runs at PASSIVE_LEVEL (kmcl.md §3 table). `process_packet` runs at IRQL <=
/// DISPATCH_LEVEL, or at PASSIVE_LEVEL when the channel was created with
/// `incoming_at_passive = true` (`VmbChannelSetIncomingProcessingAtPassive`, kmcl.md §2.1).
///
/// Callbacks may run on any thread, and `process_packet` may run concurrently with other
/// callbacks of the same channel, hence `Send + Sync` and `&self`.
pub trait ChannelHandler: Send + Sync + 'static {
    /// The guest opened the channel (kmcl.md §3 Opened). An error rolls the open back: no
    /// traffic flows. IRQL: PASSIVE_LEVEL.
    fn opened(&self, channel: &ChannelRef<'_>) -> Result<(), ErrorStatus> {
        let _ = channel;
        Ok(())
    }

    /// Open and started; no packet delivered yet. Do not wait for packets or completions here
    /// (kmcl.md §4). IRQL: PASSIVE_LEVEL.
    fn started(&self, channel: &ChannelRef<'_>) {
        let _ = channel;
    }

    /// Incoming packets are flowing (kmcl.md §3 PostStarted). IRQL: PASSIVE_LEVEL.
    fn post_started(&self, channel: &ChannelRef<'_>) {
        let _ = channel;
    }

    /// The channel is being paused, disabled or closed while running: no more packets will be
    /// delivered until the next `started`; every delivered packet must be completed; stop
    /// sending and retire outstanding transactions (kmcl.md §3 Suspend, §9 item 8). In
    /// particular, complete (or drop) every [`HeldPacket`](super::HeldPacket) here at the
    /// latest: KMCL waits for them, and after Closed their completion contexts are stale.
    /// IRQL: PASSIVE_LEVEL.
    fn suspend(&self, channel: &ChannelRef<'_>) {
        let _ = channel;
    }

    /// The guest closed the channel, or it was rescinded or disabled. Every GPADL must be torn
    /// down here (kmcl.md §3 Closed). IRQL: PASSIVE_LEVEL.
    fn closed(&self, channel: &ChannelRef<'_>) {
        let _ = channel;
    }

    /// One guest packet. It is completed exactly once: by [`IncomingPacket::complete`], or, if
    /// the handler drops it, with an empty completion; or later, through
    /// [`IncomingPacket::hold`] (complete the held packet by `suspend` at the latest).
    /// IRQL: <= DISPATCH_LEVEL, PASSIVE_LEVEL when incoming processing at passive was requested.
    fn process_packet(&self, channel: &ChannelRef<'_>, packet: IncomingPacket<'_>);
}

/// The guest MMIO range `VmbChannelGetMmioSpace` reported, as raw values.
///
/// On a server channel its meaning is **undocumented** (kmcl.md §5, §9 item 4: "kernel virtual
/// address" vs "physical address"; only a guest caller was observed). Treat it as a report,
/// never as an address to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MmioSpace {
    /// `*MmioAddress` after the call (0 if KMCL did not write it).
    pub address: u64,
    /// `*MmioSize` after the call (0 if KMCL did not write it).
    pub size: u64,
}

/// A channel as a callback sees it: what is allowed from inside a callback, nothing more.
///
/// Borrowed for the duration of one callback (or of a borrow of the owner); it cannot be stored.
pub struct ChannelRef<'a> {
    raw: VMBCHANNEL,
    api: &'static KmclApi,
    _borrow: PhantomData<&'a ()>,
}

impl ChannelRef<'_> {
    /// Wraps a channel handle KMCL passed to a callback (or the owner's handle).
    pub(crate) fn new(raw: VMBCHANNEL, api: &'static KmclApi) -> Self {
        Self {
            raw,
            api,
            _borrow: PhantomData,
        }
    }

    /// The raw `VMBCHANNEL`, for diagnostics and for tests that deliberately misuse KMCL.
    /// Calling the table with it is `unsafe` and bypasses every guarantee of this crate.
    pub fn raw(&self) -> VMBCHANNEL {
        self.raw
    }

    /// `VmbChannelGetMmioSpace`, or `None` when the table lacks it (it is an optional entry:
    /// docs-only, not imported on Windows). Valid only after Opened has returned (kmcl.md §4
    /// "Validity windows"), so never inside `opened`: from `started` or later, while the channel
    /// is open; on a server channel the values' meaning is uncertain (see [`MmioSpace`]).
    /// IRQL: not documented; call it at PASSIVE_LEVEL.
    pub fn get_mmio_space(&self) -> Option<MmioSpace> {
        let query = self.api.VmbChannelGetMmioSpace?;
        let mut address = 0_u64;
        let mut size = 0_u64;
        // SAFETY: `raw` is a live channel (a callback's argument, or the owner's channel while
        // it is borrowed); both out-pointers are valid, writable locals for the whole call.
        unsafe { query(self.raw, &raw mut address, &raw mut size) };
        Some(MmioSpace { address, size })
    }
}
