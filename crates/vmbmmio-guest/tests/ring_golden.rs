//! Golden bytes of the documented VMBus ring layouts (torvalds/linux `include/linux/hyperv.h`:
//! `struct hv_ring_buffer`, `struct vmpacket_descriptor`; `drivers/hv/ring_buffer.c`: the
//! trailer). Never edit an existing array: a change here is a wire-format change.

use core::mem::offset_of;

use vmbmmio_guest::ring::layout::{
    CONTROL_HEADER_SIZE, CONTROL_PAGE_SIZE, DESCRIPTOR_SIZE, FEATURE_BITS_OFFSET,
    FEATURE_PENDING_SEND_SIZE, INTERRUPT_MASK_OFFSET, MAX_PACKET_LEN, PACKET_ALIGNMENT,
    PENDING_SEND_SIZE_OFFSET, READ_INDEX_OFFSET, TRAILER_SIZE, VM_PKT_COMP, VM_PKT_DATA_INBAND,
    VMBUS_DATA_PACKET_FLAG_COMPLETION_REQUESTED, WRITE_INDEX_OFFSET, trailer,
};
use vmbmmio_guest::ring::packet::{encode, ring_bytes};
use vmbmmio_guest::ring::{
    ControlField, ControlHeader, OnFull, OutgoingPacket, OutgoingRing, PacketDescriptor, Ring,
    RingMemory, VecRingMemory,
};
use zerocopy::IntoBytes;
use zerocopy::byteorder::little_endian::{U16, U32, U64};

#[test]
fn constants_match_linux() {
    assert_eq!(CONTROL_PAGE_SIZE, 4096);
    assert_eq!(CONTROL_HEADER_SIZE, 68);
    assert_eq!(DESCRIPTOR_SIZE, 16);
    assert_eq!(PACKET_ALIGNMENT, 8);
    assert_eq!(TRAILER_SIZE, 8);
    assert_eq!(VM_PKT_DATA_INBAND, 6);
    assert_eq!(VM_PKT_COMP, 11);
    assert_eq!(VMBUS_DATA_PACKET_FLAG_COMPLETION_REQUESTED, 1);
    assert_eq!(FEATURE_PENDING_SEND_SIZE, 1);
    assert_eq!(MAX_PACKET_LEN, 0xffff * 8);
}

#[test]
fn control_header_offsets() {
    assert_eq!(size_of::<ControlHeader>(), 68);
    assert_eq!(offset_of!(ControlHeader, write_index), 0);
    assert_eq!(offset_of!(ControlHeader, read_index), 4);
    assert_eq!(offset_of!(ControlHeader, interrupt_mask), 8);
    assert_eq!(offset_of!(ControlHeader, pending_send_sz), 12);
    assert_eq!(offset_of!(ControlHeader, reserved1), 16);
    assert_eq!(offset_of!(ControlHeader, feature_bits), 64);
    assert_eq!(WRITE_INDEX_OFFSET, 0);
    assert_eq!(READ_INDEX_OFFSET, 4);
    assert_eq!(INTERRUPT_MASK_OFFSET, 8);
    assert_eq!(PENDING_SEND_SIZE_OFFSET, 12);
    assert_eq!(FEATURE_BITS_OFFSET, 64);
    assert_eq!(ControlField::WriteIndex.offset(), 0);
    assert_eq!(ControlField::ReadIndex.offset(), 4);
    assert_eq!(ControlField::InterruptMask.offset(), 8);
    assert_eq!(ControlField::PendingSendSize.offset(), 12);
    assert_eq!(ControlField::FeatureBits.offset(), 64);
}

#[test]
fn control_header_bytes() {
    let header = ControlHeader {
        write_index: U32::new(0x0000_1230),
        read_index: U32::new(0x0000_0ff8),
        interrupt_mask: U32::new(1),
        pending_send_sz: U32::new(0x0000_0218),
        reserved1: [U32::new(0); 12],
        feature_bits: U32::new(1),
    };
    #[rustfmt::skip]
    let golden: [u8; 68] = [
        0x30, 0x12, 0x00, 0x00, // write_index
        0xf8, 0x0f, 0x00, 0x00, // read_index
        0x01, 0x00, 0x00, 0x00, // interrupt_mask
        0x18, 0x02, 0x00, 0x00, // pending_send_sz
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // reserved1[0..4]
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // reserved1[4..8]
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // reserved1[8..12]
        0x01, 0x00, 0x00, 0x00, // feature_bits
    ];
    assert_eq!(header.as_bytes(), &golden);
}

#[test]
fn descriptor_bytes() {
    assert_eq!(size_of::<PacketDescriptor>(), 16);
    assert_eq!(offset_of!(PacketDescriptor, packet_type), 0);
    assert_eq!(offset_of!(PacketDescriptor, offset8), 2);
    assert_eq!(offset_of!(PacketDescriptor, len8), 4);
    assert_eq!(offset_of!(PacketDescriptor, flags), 6);
    assert_eq!(offset_of!(PacketDescriptor, trans_id), 8);
    let descriptor = PacketDescriptor {
        packet_type: U16::new(6),
        offset8: U16::new(2),
        len8: U16::new(5),
        flags: U16::new(1),
        trans_id: U64::new(0x0102_0304_0506_0708),
    };
    let golden: [u8; 16] = [
        0x06, 0x00, 0x02, 0x00, 0x05, 0x00, 0x01, 0x00, 0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02,
        0x01,
    ];
    assert_eq!(descriptor.as_bytes(), &golden);
}

#[test]
fn trailer_holds_start_index_in_high_half() {
    assert_eq!(trailer(0x40), 0x0000_0040_0000_0000);
    assert_eq!(trailer(0x40).to_le_bytes(), [0, 0, 0, 0, 0x40, 0, 0, 0]);
}

#[test]
fn request_packet_bytes() {
    let packet = OutgoingPacket::request(0x1122_3344_5566_7788, b"hello");
    let bytes = encode(&packet, 0x40).expect("small packet encodes");
    #[rustfmt::skip]
    let golden: [u8; 32] = [
        0x06, 0x00,             // VM_PKT_DATA_INBAND
        0x02, 0x00,             // offset8: the payload follows the 16-byte descriptor
        0x03, 0x00,             // len8: 16 + 5 bytes padded to 24
        0x01, 0x00,             // completion requested
        0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, // trans_id
        b'h', b'e', b'l', b'l', b'o', 0, 0, 0,          // payload and zero padding
        0, 0, 0, 0, 0x40, 0, 0, 0,                      // trailer: start index << 32
    ];
    assert_eq!(bytes, golden);
    assert_eq!(ring_bytes(5), Some(32));
}

#[test]
fn completion_packet_bytes() {
    let packet = OutgoingPacket::Completion {
        transaction_id: 7,
        payload: &[0xaa; 8],
    };
    let bytes = encode(&packet, 0).expect("small packet encodes");
    #[rustfmt::skip]
    let golden: [u8; 32] = [
        0x0b, 0x00, 0x02, 0x00, 0x03, 0x00, 0x00, 0x00, // VM_PKT_COMP, offset8 2, len8 3, flags 0
        0x07, 0, 0, 0, 0, 0, 0, 0,                      // trans_id
        0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, // payload
        0, 0, 0, 0, 0, 0, 0, 0,                         // trailer: started at 0
    ];
    assert_eq!(bytes, golden);
}

#[test]
fn sent_packet_lands_after_the_control_page() {
    let memory = VecRingMemory::new(CONTROL_PAGE_SIZE + 64);
    let mut ring = OutgoingRing::new(Ring::new(&memory).expect("ring")).expect("attach");
    let sent = ring
        .send(&OutgoingPacket::request(9, b"hi"), OnFull::Return)
        .expect("fits");
    assert_eq!(sent.bytes, 32);
    assert!(sent.signal, "empty ring, mask 0: signal");
    let bytes = memory.snapshot();
    #[rustfmt::skip]
    let golden: [u8; 32] = [
        0x06, 0x00, 0x02, 0x00, 0x03, 0x00, 0x01, 0x00,
        0x09, 0, 0, 0, 0, 0, 0, 0,
        b'h', b'i', 0, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 0, 0, 0, 0,
    ];
    assert_eq!(
        bytes.get(CONTROL_PAGE_SIZE..CONTROL_PAGE_SIZE + 32),
        Some(&golden[..])
    );
    assert_eq!(
        bytes.get(0..4),
        Some(&[32, 0, 0, 0][..]),
        "write_index published"
    );
    assert_eq!(memory.load_acquire(READ_INDEX_OFFSET), Ok(0));
}
