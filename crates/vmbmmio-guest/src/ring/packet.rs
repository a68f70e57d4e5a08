//! Packets: what a caller sends and receives, their encoding, and the checks on a descriptor.
//!
//! A packet in the ring is `[descriptor][payload][zero padding to 8][u64 trailer]`
//! (`hv_ringbuffer_write` in torvalds/linux `drivers/hv/ring_buffer.c`; DPDK
//! `rte_vmbus_chan_send` in `drivers/bus/vmbus/vmbus_channel.c` builds the same three pieces).
//! `offset8` is 2 (the payload follows the descriptor) and `len8` counts descriptor, payload and
//! padding in 8-byte units; the trailer holds the packet's start index in its high 32 bits.
//!
//! The receiver cannot know how many of the last 7 bytes are padding: the format records only
//! `len8`, so a received payload is `(len8 - offset8) * 8` bytes and the message inside must
//! carry its own length (the guest protocol's header `size` does).
//!
//! A received descriptor is copied out of shared memory once and checked on that copy
//! (`validate`): `len8 * 8 >= offset8 * 8 >= 16`, packet plus trailer within the bytes the
//! host published, a known type and flags, and a payload within the caller's maximum. Linux
//! clamps bad lengths instead (`hv_pkt_iter_first`); refusing them is stricter and gives the
//! caller a typed error. OpenVMM refuses them too (`parse_packet` in microsoft/openvmm
//! `vm/devices/vmbus/vmbus_ring/src/lib.rs`), and refuses unknown flag bits; so does this.
//! Only the two packet types this protocol uses (in-band data and completions) are accepted.
//! The trailer is not read: Linux and DPDK ignore it (`vmbus_rxbr_read`: "useless to us").

use zerocopy::IntoBytes;
use zerocopy::byteorder::little_endian::{U16, U64};

use super::error::{Corruption, RecvError};
use super::layout::{
    DESCRIPTOR_SIZE, MAX_PACKET_LEN, PACKET_ALIGNMENT, PacketDescriptor, TRAILER_SIZE, VM_PKT_COMP,
    VM_PKT_DATA_INBAND, VMBUS_DATA_PACKET_FLAG_COMPLETION_REQUESTED, trailer,
};

/// A packet to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutgoingPacket<'a> {
    /// `VM_PKT_DATA_INBAND`: a payload in the ring.
    InBand {
        /// The transaction id; the completion echoes it.
        transaction_id: u64,
        /// Sets `VMBUS_DATA_PACKET_FLAG_COMPLETION_REQUESTED`.
        completion_requested: bool,
        /// The payload, padded with zeros to 8 bytes in the ring.
        payload: &'a [u8],
    },
    /// `VM_PKT_COMP`: the completion of an in-band packet (what a host sends).
    Completion {
        /// The completed packet's transaction id.
        transaction_id: u64,
        /// The completion's payload.
        payload: &'a [u8],
    },
}

impl<'a> OutgoingPacket<'a> {
    /// An in-band packet with a completion requested: how the guest sends each request of the
    /// guest protocol (`docs/protocol.md`, "Transport").
    pub const fn request(transaction_id: u64, payload: &'a [u8]) -> Self {
        Self::InBand {
            transaction_id,
            completion_requested: true,
            payload,
        }
    }

    /// The packet's payload.
    pub const fn payload(&self) -> &'a [u8] {
        match self {
            Self::InBand { payload, .. } | Self::Completion { payload, .. } => payload,
        }
    }

    /// The packet's descriptor fields: type, flags, transaction id.
    const fn header(&self) -> (u16, u16, u64) {
        match *self {
            Self::InBand {
                transaction_id,
                completion_requested,
                ..
            } => (
                VM_PKT_DATA_INBAND,
                if completion_requested {
                    VMBUS_DATA_PACKET_FLAG_COMPLETION_REQUESTED
                } else {
                    0
                },
                transaction_id,
            ),
            Self::Completion { transaction_id, .. } => (VM_PKT_COMP, 0, transaction_id),
        }
    }
}

/// A packet received, copied out of the ring.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IncomingPacket {
    /// `VM_PKT_DATA_INBAND`.
    InBand {
        /// The sender's transaction id.
        transaction_id: u64,
        /// The sender waits for a completion with this transaction id.
        completion_requested: bool,
        /// The payload, padding included (a multiple of 8 bytes).
        payload: Vec<u8>,
    },
    /// `VM_PKT_COMP`.
    Completion {
        /// The completed packet's transaction id.
        transaction_id: u64,
        /// The payload, padding included (a multiple of 8 bytes).
        payload: Vec<u8>,
    },
}

impl IncomingPacket {
    /// The transaction id.
    pub fn transaction_id(&self) -> u64 {
        match self {
            Self::InBand { transaction_id, .. } | Self::Completion { transaction_id, .. } => {
                *transaction_id
            }
        }
    }

    /// The payload, padding included.
    pub fn payload(&self) -> &[u8] {
        match self {
            Self::InBand { payload, .. } | Self::Completion { payload, .. } => payload,
        }
    }
}

/// Bytes a packet with a `payload_len`-byte payload occupies in the ring, trailer included, or
/// `None` if its `len8` would not fit in 16 bits.
pub fn ring_bytes(payload_len: usize) -> Option<usize> {
    let packet = padded(DESCRIPTOR_SIZE.checked_add(payload_len)?)?;
    if packet > MAX_PACKET_LEN {
        return None;
    }
    packet.checked_add(TRAILER_SIZE)
}

/// The packet's bytes as they go into the ring at `start_index`, trailer included; `None` if
/// the packet is too large for the format.
pub fn encode(packet: &OutgoingPacket<'_>, start_index: u32) -> Option<Vec<u8>> {
    let payload = packet.payload();
    let total = ring_bytes(payload.len())?;
    let packet_len = total.checked_sub(TRAILER_SIZE)?;
    let len8 = u16::try_from(packet_len.checked_div(PACKET_ALIGNMENT)?).ok()?;
    let offset8 = u16::try_from(DESCRIPTOR_SIZE.checked_div(PACKET_ALIGNMENT)?).ok()?;
    let (packet_type, flags, transaction_id) = packet.header();
    let descriptor = PacketDescriptor {
        packet_type: U16::new(packet_type),
        offset8: U16::new(offset8),
        len8: U16::new(len8),
        flags: U16::new(flags),
        trans_id: U64::new(transaction_id),
    };
    let mut bytes = Vec::with_capacity(total);
    bytes.extend_from_slice(descriptor.as_bytes());
    bytes.extend_from_slice(payload);
    bytes.resize(packet_len, 0);
    bytes.extend_from_slice(&trailer(start_index).to_le_bytes());
    Some(bytes)
}

/// A descriptor that passed [`validate`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Checked {
    /// `VM_PKT_DATA_INBAND` or `VM_PKT_COMP`.
    pub packet_type: u16,
    /// The flags (0 or completion requested).
    pub flags: u16,
    /// The transaction id.
    pub transaction_id: u64,
    /// Where the payload starts, from the descriptor's start.
    pub payload_offset: u32,
    /// The payload's length.
    pub payload_len: u32,
    /// The packet's bytes in the ring, trailer included.
    pub ring_bytes: u32,
}

/// Checks a descriptor copied out of the ring against the `available` bytes the host published
/// and the caller's `max_payload`.
pub(crate) fn validate(
    descriptor: &PacketDescriptor,
    available: u32,
    max_payload: usize,
) -> Result<Checked, RecvError> {
    let offset8 = descriptor.offset8.get();
    let len8 = descriptor.len8.get();
    let lengths = Corruption::DescriptorLengths {
        offset8,
        len8,
        available,
    };
    // Both fit easily: 65535 * 8 + 8 < 2^32.
    let payload_offset = u32::from(offset8).checked_mul(8).ok_or(lengths)?;
    let packet_len = u32::from(len8).checked_mul(8).ok_or(lengths)?;
    let ring_bytes = packet_len.checked_add(8).ok_or(lengths)?;
    let descriptor_size = u32::try_from(DESCRIPTOR_SIZE).map_err(|_| lengths)?;
    if payload_offset < descriptor_size || packet_len < payload_offset || ring_bytes > available {
        return Err(lengths.into());
    }
    let packet_type = descriptor.packet_type.get();
    if packet_type != VM_PKT_DATA_INBAND && packet_type != VM_PKT_COMP {
        return Err(Corruption::PacketType { value: packet_type }.into());
    }
    let flags = descriptor.flags.get();
    if flags & !VMBUS_DATA_PACKET_FLAG_COMPLETION_REQUESTED != 0 {
        return Err(Corruption::Flags { value: flags }.into());
    }
    let payload_len = packet_len.checked_sub(payload_offset).ok_or(lengths)?;
    if usize::try_from(payload_len)
        .ok()
        .is_none_or(|len| len > max_payload)
    {
        return Err(RecvError::PayloadTooLarge {
            len: payload_len,
            max: max_payload,
        });
    }
    Ok(Checked {
        packet_type,
        flags,
        transaction_id: descriptor.trans_id.get(),
        payload_offset,
        payload_len,
        ring_bytes,
    })
}

/// `len` rounded up to 8.
fn padded(len: usize) -> Option<usize> {
    len.checked_next_multiple_of(PACKET_ALIGNMENT)
}
