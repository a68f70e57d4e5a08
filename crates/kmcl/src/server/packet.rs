//! One incoming guest packet, completed exactly once.
//!
//! kmcl.md §2.2: every ProcessPacket delivery must be balanced by exactly one
//! `VmbChannelPacketComplete`, "either inline or later"; KMCL blocks Suspend until that happens
//! (§4 step 6), so a packet that is never completed hangs the channel's teardown.
//! [`IncomingPacket`] makes both mistakes impossible in safe code: completing consumes it, and
//! dropping it uncompleted completes it with an **empty** completion (no payload). The wrapper
//! cannot know the control protocol, so "empty" is its error signal: a guest that asked for a
//! completion gets zero bytes, which no protocol message can be.
//!
//! "Later" goes through [`IncomingPacket::hold`], which gives up the data and keeps only the
//! completion, as a `Send` [`HeldPacket`] (see `held.rs` for why it carries no data).

use core::marker::PhantomData;

use crate::error::KmclError;
use crate::raw::{VMBPACKETCOMPLETION, VMBUS_CHANNEL_PROCESS_PACKET_FLAG_EXTERNAL_DATA};
use crate::server::held::HeldPacket;
use crate::table::KmclApi;

/// A packet KMCL delivered to `process_packet`, valid until it is completed.
///
/// Borrowed for the callback and not `Send`: its data is KMCL's buffer, lent for the callback
/// only. Complete it inline ([`complete`](Self::complete), [`complete_empty`](Self::complete_empty),
/// or by dropping it), or [`hold`](Self::hold) it to complete it later.
pub struct IncomingPacket<'a> {
    data: &'a [u8],
    flags: u32,
    completion: HeldPacket,
    /// Keeps the packet on the callback's thread (`*const ()` is neither `Send` nor `Sync`).
    _not_send: PhantomData<*const ()>,
}

impl<'a> IncomingPacket<'a> {
    /// Wraps one delivery. `data` must stay valid until completion (KMCL guarantees it).
    pub(crate) fn new(
        completion: VMBPACKETCOMPLETION,
        data: &'a [u8],
        flags: u32,
        api: &'static KmclApi,
    ) -> Self {
        Self {
            data,
            flags,
            completion: HeldPacket::new(completion, api),
            _not_send: PhantomData,
        }
    }

    /// The packet's payload (VMBus and KMCL headers excluded, kmcl.md §3). Guest-controlled:
    /// validate everything. Borrowed from the packet: it ends when the packet is completed or
    /// held.
    pub fn data(&self) -> &[u8] {
        self.data
    }

    /// ProcessPacket's `Flags` (`VMBUS_CHANNEL_PROCESS_PACKET_FLAGS`).
    pub fn flags(&self) -> u32 {
        self.flags
    }

    /// Whether the packet carries external data (`VMBUS_CHANNEL_PROCESS_PACKET_FLAG_EXTERNAL_DATA`).
    pub fn has_external_data(&self) -> bool {
        self.flags & VMBUS_CHANNEL_PROCESS_PACKET_FLAG_EXTERNAL_DATA != 0
    }

    /// Completes the packet with `response` as the completion payload (sent to the guest if it
    /// asked for a completion). IRQL: <= DISPATCH_LEVEL.
    ///
    /// A response longer than `u32::MAX` bytes cannot be described to KMCL: the packet is then
    /// completed empty and the error names `VmbChannelPacketComplete` with
    /// `STATUS_INVALID_BUFFER_SIZE`.
    pub fn complete(self, response: &[u8]) -> Result<(), KmclError> {
        self.completion.complete(response)
    }

    /// Completes the packet without a payload. IRQL: <= DISPATCH_LEVEL.
    pub fn complete_empty(self) {
        self.completion.complete_empty();
    }

    /// Keeps the packet uncompleted past the callback: returns its completion as an owned,
    /// `Send` [`HeldPacket`] and gives up the data (KMCL's buffer is lent for the callback only,
    /// so parse [`data`](Self::data) first; the borrow checker ends that borrow here).
    ///
    /// The held packet must be completed (or dropped, which completes it empty) no later than in
    /// the channel's `suspend` callback: KMCL waits there for every delivered packet (kmcl.md §3
    /// Suspend, §4 step 6). IRQL: any at which `process_packet` runs (this makes no KMCL call).
    ///
    /// Parse, then hold:
    /// ```
    /// # use kmcl::server::{HeldPacket, IncomingPacket};
    /// fn wait_event(packet: IncomingPacket<'_>) -> (usize, HeldPacket) {
    ///     let request_len = packet.data().len(); // parse while the data is lent
    ///     (request_len, packet.hold())
    /// }
    /// ```
    /// The data cannot outlive the hold (the borrow ends when `hold` moves the packet):
    /// ```compile_fail,E0505
    /// # use kmcl::server::{HeldPacket, IncomingPacket};
    /// fn stale<'a>(packet: IncomingPacket<'a>) -> (HeldPacket, usize) {
    ///     let data = packet.data();
    ///     let held = packet.hold();
    ///     (held, data.len())
    /// }
    /// ```
    /// and the packet itself cannot leave the callback's thread (only its `HeldPacket` can):
    /// ```compile_fail,E0277
    /// # use kmcl::server::IncomingPacket;
    /// fn send<T: Send>(_: T) {}
    /// fn escape(packet: IncomingPacket<'static>) { send(packet) }
    /// ```
    pub fn hold(self) -> HeldPacket {
        self.completion
    }
}
