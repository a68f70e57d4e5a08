//! The consumer side of a ring: the guest's host-to-guest ring (or, for a simulated host, the
//! guest-to-host one).
//!
//! Rules, from `hv_pkt_iter_first`, `__hv_pkt_iter_next` and `hv_pkt_iter_close` in
//! torvalds/linux `drivers/hv/ring_buffer.c` (DPDK's `rte_vmbus_chan_recv` and
//! `rte_vmbus_chan_signal_read` in `drivers/bus/vmbus/vmbus_channel.c` do the same):
//! - Load the producer's `write_index` with acquire ordering before reading the bytes it
//!   publishes; the bytes between the read index and it are the packets available.
//! - A packet takes `len8 * 8` bytes plus the 8-byte trailer; the read index moves past both,
//!   wrapping at the data size, and is published with release ordering after the bytes were
//!   copied (the producer may reuse them as soon as it sees it).
//! - After publishing, if the ring's `feature_bits` has `feat_pending_send_sz` and the producer
//!   set `pending_send_sz`, signal it only on the transition from "not more than
//!   `pending_send_sz` free" (before this packet was consumed) to "more than `pending_send_sz`
//!   free" (now), with the write index reloaded after `pending_send_sz` (full barrier between
//!   the store and these loads): a Windows host throttles guests that signal needlessly.
//!
//! Trusting nothing: the write index is validated (inside the data area, 8-aligned) before it
//! is used; the read index is kept privately (Linux's `priv_read_index`) and only stored; the
//! descriptor is copied out once and checked on the copy ([`super::packet`]); the payload is
//! copied into a fresh buffer, never lent out of memory the host can change. A check that fails
//! returns an error before anything is stored, so the ring is left as it was. Fewer published
//! bytes than a descriptor and a trailer is an error here, where Linux reports "nothing to
//! read": a producer publishes whole packets, so a partial one is a broken producer, and
//! reporting it beats waiting forever.

use zerocopy::FromBytes;

use super::error::{AttachError, Corruption, RecvError};
use super::geometry::{ControlField, Ring};
use super::layout::{DESCRIPTOR_SIZE, FEATURE_PENDING_SEND_SIZE, PacketDescriptor, TRAILER_SIZE};
use super::memory::{MemoryError, RingMemory};
use super::packet::{IncomingPacket, validate};

/// A packet taken from the ring.
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
pub struct Received {
    /// The packet.
    pub packet: IncomingPacket,
    /// The producer waits for space and now has it: signal it (through the uio file, for the
    /// guest).
    pub signal: bool,
}

/// The consumer side of one ring.
#[derive(Debug)]
pub struct IncomingRing<M> {
    ring: Ring<M>,
    read_index: u32,
}

impl<M: RingMemory> IncomingRing<M> {
    /// Attaches to `ring` at its current read index, which must be valid.
    pub fn new(ring: Ring<M>) -> Result<Self, AttachError> {
        let read_index = ring.load_read_index()?.map_err(AttachError::Corrupt)?;
        Ok(Self { ring, read_index })
    }

    /// The ring.
    pub fn ring(&self) -> &Ring<M> {
        &self.ring
    }

    /// Where the next packet is read.
    pub fn read_index(&self) -> u32 {
        self.read_index
    }

    /// Bytes the producer has published and not yet consumed.
    pub fn available(&self) -> Result<u32, RecvError> {
        let write = self.ring.load_write_index()??;
        Ok(self.ring.bytes_to_read(self.read_index, write))
    }

    /// Whether nothing is published: the check to repeat after re-enabling the interrupt and
    /// before waiting, so a packet that arrived in between is not missed.
    pub fn is_empty(&self) -> Result<bool, RecvError> {
        Ok(self.available()? == 0)
    }

    /// Takes the next packet, whose payload must not exceed `max_payload` bytes; `None` if the
    /// ring is empty. On error nothing was consumed.
    pub fn recv(&mut self, max_payload: usize) -> Result<Option<Received>, RecvError> {
        let write = self.ring.load_write_index()??;
        let read = self.read_index;
        let available = self.ring.bytes_to_read(read, write);
        if available == 0 {
            return Ok(None);
        }
        let minimum = DESCRIPTOR_SIZE.saturating_add(TRAILER_SIZE);
        if usize::try_from(available).is_ok_and(|a| a < minimum) {
            return Err(Corruption::Truncated { available }.into());
        }

        let mut raw = [0u8; DESCRIPTOR_SIZE];
        self.ring.read_data(read, &mut raw)?;
        let descriptor =
            PacketDescriptor::read_from_bytes(&raw).map_err(|_| MemoryError::OutOfBounds {
                offset: 0,
                len: DESCRIPTOR_SIZE,
                size: raw.len(),
            })?;
        let checked = validate(&descriptor, available, max_payload)?;

        let payload_len =
            usize::try_from(checked.payload_len).map_err(|_| RecvError::PayloadTooLarge {
                len: checked.payload_len,
                max: max_payload,
            })?;
        let mut payload = vec![0u8; payload_len];
        let payload_index = self.ring.advance(read, checked.payload_offset)?;
        self.ring.read_data(payload_index, &mut payload)?;
        let new_read = self.ring.advance(read, checked.ring_bytes)?;

        self.ring.store(ControlField::ReadIndex, new_read)?;
        self.read_index = new_read;

        let packet = if checked.packet_type == super::layout::VM_PKT_COMP {
            IncomingPacket::Completion {
                transaction_id: checked.transaction_id,
                payload,
            }
        } else {
            IncomingPacket::InBand {
                transaction_id: checked.transaction_id,
                completion_requested: checked.flags != 0,
                payload,
            }
        };
        let signal = self.should_signal(checked.ring_bytes);
        Ok(Some(Received { packet, signal }))
    }

    /// The signalling decision after consuming `consumed` bytes (already published).
    ///
    /// Errors here cannot undo the consumed packet, so they decide for a signal: a spurious
    /// signal costs the host a wake-up, a missed one could stall it forever, and a broken index
    /// is reported by the next [`Self::recv`].
    fn should_signal(&self, consumed: u32) -> bool {
        match self.ring.load(ControlField::FeatureBits) {
            Ok(bits) if bits & FEATURE_PENDING_SEND_SIZE == 0 => return false,
            Ok(_) => {}
            Err(_) => return true,
        }
        self.ring.fence();
        let pending = match self.ring.load(ControlField::PendingSendSize) {
            Ok(0) => return false,
            Ok(p) => p,
            Err(_) => return true,
        };
        let write = match self.ring.load_write_index() {
            Ok(Ok(w)) => w,
            Ok(Err(_)) | Err(_) => return true,
        };
        let free_now = self.ring.bytes_to_write(self.read_index, write);
        let free_before = free_now.saturating_sub(consumed);
        free_before <= pending && free_now > pending
    }
}
