//! The documented fixed layouts: the ring's control page and the packet descriptor.
//!
//! Both are copied field for field from Linux, `include/linux/hyperv.h` (torvalds/linux):
//! `struct hv_ring_buffer` (the control page; its `reserved2` pads it to the page size, and the
//! data area starts right after it) and `struct vmpacket_descriptor` (the 16 bytes in front of
//! every packet), with `enum vmbus_packet_type` and
//! `VMBUS_DATA_PACKET_FLAG_COMPLETION_REQUESTED`. Every integer is little-endian: Hyper-V runs
//! only little-endian guests (x86-64, AArch64). The ring code derives its field offsets from these
//! structs, so the golden tests (`tests/ring_golden.rs`) pin both at once.

use zerocopy::byteorder::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// Size of a ring's control page; the data area starts at this offset.
///
/// `struct hv_ring_buffer` is padded to `PAGE_SIZE` (`reserved2[PAGE_SIZE - 68]`), which is
/// 4 KiB on the guests this agent supports (x86-64, and AArch64 with 4 KiB pages). A kernel built
/// with larger pages pads the header to its own page size; such guests are not supported (the
/// ring would refuse nothing, but every offset would be wrong), and the caller must check the
/// kernel's page size before mapping the rings.
pub const CONTROL_PAGE_SIZE: usize = 4096;

/// Bytes of [`ControlHeader`]: the fields before the page's padding.
pub const CONTROL_HEADER_SIZE: usize = 68;

/// `feature_bits` bit 0, `feat_pending_send_sz`: the ring's owner uses `pending_send_sz`
/// (`include/linux/hyperv.h`, the comment on `struct hv_ring_buffer`).
pub const FEATURE_PENDING_SEND_SIZE: u32 = 1;

/// Size of [`PacketDescriptor`] in bytes.
pub const DESCRIPTOR_SIZE: usize = 16;

/// Every packet starts and ends on this alignment; `offset8` and `len8` count its units.
pub const PACKET_ALIGNMENT: usize = 8;

/// Size of the `u64` written after every packet (`drivers/hv/ring_buffer.c`,
/// `VMBUS_PKT_TRAILER`): the write index at which the packet started, in the high 32 bits.
pub const TRAILER_SIZE: usize = 8;

/// `VM_PKT_DATA_INBAND`: a packet whose payload is in the ring.
pub const VM_PKT_DATA_INBAND: u16 = 0x6;

/// `VM_PKT_COMP`: the completion of a packet sent with a completion requested.
pub const VM_PKT_COMP: u16 = 0xb;

/// `VMBUS_DATA_PACKET_FLAG_COMPLETION_REQUESTED`: the sender waits for a [`VM_PKT_COMP`]
/// carrying the same transaction id.
pub const VMBUS_DATA_PACKET_FLAG_COMPLETION_REQUESTED: u16 = 1;

/// The largest `len8`: a packet (descriptor, payload and padding, not the trailer) is at most
/// `u16::MAX * 8` bytes.
pub const MAX_PACKET_LEN: usize = 65535 * PACKET_ALIGNMENT;

/// The start of a ring's control page (`struct hv_ring_buffer` up to `feature_bits`).
///
/// Who writes what: the ring's producer owns `write_index`; its consumer owns `read_index` and
/// `interrupt_mask` ("do not signal me, I am draining"); the producer sets `pending_send_sz` when
/// it waits for space; each side's kernel sets `feature_bits` at open.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
pub struct ControlHeader {
    /// Offset in the data area where the producer writes next.
    pub write_index: U32,
    /// Offset in the data area where the consumer reads next.
    pub read_index: U32,
    /// Nonzero while the consumer does not want to be signalled.
    pub interrupt_mask: U32,
    /// Bytes the producer waits to have free (0: not waiting).
    pub pending_send_sz: U32,
    /// `reserved1[12]`: nothing here reads or writes them.
    pub reserved1: [U32; 12],
    /// [`FEATURE_PENDING_SEND_SIZE`] and reserved bits.
    pub feature_bits: U32,
}

const _: () = assert!(size_of::<ControlHeader>() == CONTROL_HEADER_SIZE);
const _: () = assert!(CONTROL_HEADER_SIZE <= CONTROL_PAGE_SIZE);

/// Offset of `write_index` in the control page.
pub const WRITE_INDEX_OFFSET: usize = core::mem::offset_of!(ControlHeader, write_index);
/// Offset of `read_index` in the control page.
pub const READ_INDEX_OFFSET: usize = core::mem::offset_of!(ControlHeader, read_index);
/// Offset of `interrupt_mask` in the control page.
pub const INTERRUPT_MASK_OFFSET: usize = core::mem::offset_of!(ControlHeader, interrupt_mask);
/// Offset of `pending_send_sz` in the control page.
pub const PENDING_SEND_SIZE_OFFSET: usize = core::mem::offset_of!(ControlHeader, pending_send_sz);
/// Offset of `feature_bits` in the control page.
pub const FEATURE_BITS_OFFSET: usize = core::mem::offset_of!(ControlHeader, feature_bits);

/// The descriptor in front of every packet (`struct vmpacket_descriptor`).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
pub struct PacketDescriptor {
    /// A `VM_PKT_*` type: [`VM_PKT_DATA_INBAND`] or [`VM_PKT_COMP`] here.
    pub packet_type: U16,
    /// Where the payload starts, in 8-byte units from the descriptor's start (2 for in-band).
    pub offset8: U16,
    /// The packet's length (descriptor, payload, padding; not the trailer) in 8-byte units.
    pub len8: U16,
    /// [`VMBUS_DATA_PACKET_FLAG_COMPLETION_REQUESTED`] or 0.
    pub flags: U16,
    /// The transaction id; a completion echoes the request's.
    pub trans_id: U64,
}

const _: () = assert!(size_of::<PacketDescriptor>() == DESCRIPTOR_SIZE);

/// The trailer written after a packet that started at `start_index`
/// (`hv_get_ring_bufferindices` in `drivers/hv/ring_buffer.c`: `(u64)write_index << 32`).
pub const fn trailer(start_index: u32) -> u64 {
    (start_index as u64) << 32
}
