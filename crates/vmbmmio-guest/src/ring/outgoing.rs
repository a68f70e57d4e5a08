//! The producer side of a ring: the guest's guest-to-host ring (or, for a simulated host, the
//! host-to-guest one).
//!
//! Rules, from `hv_ringbuffer_write` and `hv_signal_on_write` in torvalds/linux
//! `drivers/hv/ring_buffer.c` (DPDK's `vmbus_txbr_write` in `drivers/bus/vmbus/vmbus_bufring.c`
//! is the same in user space):
//! - A packet of `n` bytes (trailer included) is written only if **more** than `n` bytes are
//!   free: one byte always stays free, or a full ring would look empty (read == write).
//! - The bytes go in first; the write index is published after them, with release ordering.
//! - The trailer holds the write index at which the packet started, in its high 32 bits.
//! - Signal the consumer only if the ring was empty before this packet (its read index equals
//!   the old write index) and its `interrupt_mask` is 0, both loaded after a full barrier: a
//!   Windows host throttles guests that signal when it does not expect it.
//!
//! The write index is kept privately (as DPDK's `tbr->windex` does) and only stored to shared
//! memory: the host cannot move it under us. The host's `read_index` is validated before use.
//!
//! Waiting for space (`pending_send_sz`, the comment on `struct hv_ring_buffer` in
//! `include/linux/hyperv.h`): when asked, a `Full` send stores the bytes it needs in
//! `pending_send_sz`; the consumer signals once it frees enough (Linux's consumer rule,
//! `hv_pkt_iter_close`: more than `pending_send_sz` bytes free, which is exactly when this ring
//! accepts the packet). The send re-checks the space after setting it, so a consumer that freed
//! space in between is not missed, and the next successful send clears it.

use super::error::{AttachError, SendError};
use super::geometry::{ControlField, Ring};
use super::layout::{DESCRIPTOR_SIZE, MAX_PACKET_LEN, PACKET_ALIGNMENT, TRAILER_SIZE};
use super::memory::RingMemory;
use super::packet::{OutgoingPacket, encode, ring_bytes};

/// What a send does when the ring is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnFull {
    /// Just return [`SendError::Full`].
    Return,
    /// Store the needed bytes in `pending_send_sz` first, so the consumer signals when the
    /// packet fits; then return [`SendError::Full`] (or send, if space appeared meanwhile).
    RequestSpace,
}

/// A packet went into the ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub struct Sent {
    /// The consumer must be signalled (through the uio file, for the guest).
    pub signal: bool,
    /// The ring bytes the packet took, trailer included.
    pub bytes: u32,
}

/// The producer side of one ring.
#[derive(Debug)]
pub struct OutgoingRing<M> {
    ring: Ring<M>,
    write_index: u32,
    pending_set: bool,
}

impl<M: RingMemory> OutgoingRing<M> {
    /// Attaches to `ring` at its current write index, which must be valid.
    pub fn new(ring: Ring<M>) -> Result<Self, AttachError> {
        let write_index = ring.load_write_index()?.map_err(AttachError::Corrupt)?;
        Ok(Self {
            ring,
            write_index,
            pending_set: false,
        })
    }

    /// The ring.
    pub fn ring(&self) -> &Ring<M> {
        &self.ring
    }

    /// Where the next packet goes.
    pub fn write_index(&self) -> u32 {
        self.write_index
    }

    /// The largest payload this ring can ever take (with one byte left free): the packet
    /// (descriptor, payload, padding) and its trailer must stay below the data size, and `len8`
    /// must fit in 16 bits.
    pub fn max_payload(&self) -> usize {
        let data = usize::try_from(self.ring.data_size()).unwrap_or(0);
        let overhead = DESCRIPTOR_SIZE
            .saturating_add(TRAILER_SIZE)
            .saturating_add(PACKET_ALIGNMENT);
        data.saturating_sub(overhead)
            .min(MAX_PACKET_LEN.saturating_sub(DESCRIPTOR_SIZE))
    }

    /// Bytes free now (a packet of `n` ring bytes fits if `n` is smaller).
    pub fn free_bytes(&self) -> Result<u32, SendError> {
        let read = self.ring.load_read_index()??;
        Ok(self.ring.bytes_to_write(read, self.write_index))
    }

    /// Writes `packet` and publishes it. On `Full`, nothing was written (but `pending_send_sz`
    /// when `on_full` asks); on any other error, nothing at all.
    pub fn send(
        &mut self,
        packet: &OutgoingPacket<'_>,
        on_full: OnFull,
    ) -> Result<Sent, SendError> {
        let data_size = self.ring.data_size();
        let max = usize::try_from(data_size)
            .unwrap_or(usize::MAX)
            .saturating_sub(1);
        let len = packet.payload().len();
        let too_large = |len: usize| SendError::TooLarge {
            len: ring_bytes(len).unwrap_or(usize::MAX),
            max,
        };
        let needed = ring_bytes(len)
            .filter(|&n| n < usize::try_from(data_size).unwrap_or(usize::MAX))
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| too_large(len))?;

        let mut read = self.ring.load_read_index()??;
        let mut free = self.ring.bytes_to_write(read, self.write_index);
        if free <= needed {
            if on_full == OnFull::Return {
                return Err(SendError::Full { needed, free });
            }
            self.ring.store(ControlField::PendingSendSize, needed)?;
            self.pending_set = true;
            self.ring.fence();
            read = self.ring.load_read_index()??;
            free = self.ring.bytes_to_write(read, self.write_index);
            if free <= needed {
                return Err(SendError::Full { needed, free });
            }
        }

        let old_write = self.write_index;
        let bytes = encode(packet, old_write).ok_or_else(|| too_large(len))?;
        self.ring.write_data(old_write, &bytes)?;
        let new_write = self.ring.advance(old_write, needed)?;
        self.ring.store(ControlField::WriteIndex, new_write)?;
        self.write_index = new_write;

        if self.pending_set {
            // The packet is in: stop asking for space. A failure here leaves a stale request,
            // which only costs the host a spurious signal, so it is not an error.
            if self.ring.store(ControlField::PendingSendSize, 0).is_ok() {
                self.pending_set = false;
            }
        }

        self.ring.fence();
        let mask = self.ring.load(ControlField::InterruptMask)?;
        let signal = if mask != 0 {
            false
        } else {
            self.ring.load(ControlField::ReadIndex)? == old_write
        };
        Ok(Sent {
            signal,
            bytes: needed,
        })
    }
}
