//! The ring's documented rules, one case each: the one free byte, the signalling decisions on
//! both sides (torvalds/linux `drivers/hv/ring_buffer.c`: `hv_signal_on_write`,
//! `hv_pkt_iter_close`), `pending_send_sz`, and the checks on what the host writes.

use vmbmmio_guest::ring::layout::{CONTROL_PAGE_SIZE, FEATURE_PENDING_SEND_SIZE};
use vmbmmio_guest::ring::packet::ring_bytes;
use vmbmmio_guest::ring::{
    AttachError, ControlField, Corruption, IncomingPacket, IncomingRing, OnFull, OutgoingPacket,
    OutgoingRing, RecvError, Ring, RingMemory, RingPair, SendError, TxRxLayout, VecRingMemory,
};

const DATA: usize = 256;

fn memory() -> VecRingMemory {
    VecRingMemory::new(CONTROL_PAGE_SIZE + DATA)
}

fn ring(memory: &VecRingMemory) -> Ring<&VecRingMemory> {
    Ring::new(memory).expect("valid ring")
}

/// Both sides of one ring (a loopback): what the guest writes, the same code reads back.
fn loopback(
    memory: &VecRingMemory,
) -> (OutgoingRing<&VecRingMemory>, IncomingRing<&VecRingMemory>) {
    (
        OutgoingRing::new(ring(memory)).expect("attach"),
        IncomingRing::new(ring(memory)).expect("attach"),
    )
}

/// A payload whose packet takes exactly `bytes` ring bytes, trailer included.
fn payload_for(bytes: usize) -> Vec<u8> {
    vec![0x5a; bytes - 16 - 8]
}

#[test]
fn one_byte_always_stays_free() {
    let m = memory();
    let (mut tx, _) = loopback(&m);
    // A packet as large as the whole data area never fits: it would leave read == write.
    assert_eq!(
        tx.send(
            &OutgoingPacket::request(1, &payload_for(DATA)),
            OnFull::Return
        ),
        Err(SendError::TooLarge {
            len: DATA,
            max: DATA - 1
        })
    );
    // The largest that fits leaves 8 bytes (the alignment unit) free.
    assert_eq!(tx.max_payload(), DATA - 32);
    let sent = tx
        .send(
            &OutgoingPacket::request(1, &payload_for(DATA - 8)),
            OnFull::Return,
        )
        .expect("largest packet fits an empty ring");
    assert_eq!(sent.bytes, u32::try_from(DATA - 8).unwrap());
    assert_eq!(tx.free_bytes(), Ok(8));
}

#[test]
fn full_exactly_one_byte_short_and_exactly_fitting() {
    let m = memory();
    let (mut tx, mut rx) = loopback(&m);
    // Fill 128 bytes: 128 free.
    let _ = tx
        .send(
            &OutgoingPacket::request(1, &payload_for(128)),
            OnFull::Return,
        )
        .expect("fits");
    assert_eq!(tx.free_bytes(), Ok(128));
    // Needs 128: free == needed is one byte short (one must stay free).
    assert_eq!(
        tx.send(
            &OutgoingPacket::request(2, &payload_for(128)),
            OnFull::Return
        ),
        Err(SendError::Full {
            needed: 128,
            free: 128
        })
    );
    // Needs 120: free is needed + 8, the least that fits.
    let _ = tx
        .send(
            &OutgoingPacket::request(3, &payload_for(120)),
            OnFull::Return,
        )
        .expect("exactly fits");
    assert_eq!(tx.free_bytes(), Ok(8));
    // The refused send wrote nothing: the reader sees 1 then 3.
    let ids: Vec<u64> = std::iter::from_fn(|| {
        rx.recv(DATA)
            .expect("valid")
            .map(|r| r.packet.transaction_id())
    })
    .collect();
    assert_eq!(ids, [1, 3]);
}

#[test]
fn send_signals_only_when_ring_was_empty_and_mask_clear() {
    let m = memory();
    let (mut tx, mut rx) = loopback(&m);
    let first = tx
        .send(&OutgoingPacket::request(1, b"a"), OnFull::Return)
        .unwrap();
    assert!(first.signal, "empty before, mask 0");
    let second = tx
        .send(&OutgoingPacket::request(2, b"b"), OnFull::Return)
        .unwrap();
    assert!(
        !second.signal,
        "not empty before: the host is already due to read"
    );
    while rx.recv(DATA).unwrap().is_some() {}
    m.store_release(ControlField::InterruptMask.offset(), 1)
        .unwrap();
    let masked = tx
        .send(&OutgoingPacket::request(3, b"c"), OnFull::Return)
        .unwrap();
    assert!(
        !masked.signal,
        "the host is draining and asked not to be signalled"
    );
}

#[test]
fn request_space_sets_pending_send_size_and_the_next_send_clears_it() {
    let m = memory();
    let (mut tx, mut rx) = loopback(&m);
    let _ = tx
        .send(
            &OutgoingPacket::request(1, &payload_for(200)),
            OnFull::Return,
        )
        .unwrap();
    let pending = ControlField::PendingSendSize.offset();
    assert_eq!(
        tx.send(
            &OutgoingPacket::request(2, &payload_for(64)),
            OnFull::Return
        ),
        Err(SendError::Full {
            needed: 64,
            free: 56
        })
    );
    assert_eq!(m.load_acquire(pending), Ok(0), "Return does not ask");
    assert_eq!(
        tx.send(
            &OutgoingPacket::request(2, &payload_for(64)),
            OnFull::RequestSpace
        ),
        Err(SendError::Full {
            needed: 64,
            free: 56
        })
    );
    assert_eq!(m.load_acquire(pending), Ok(64));
    let _ = rx.recv(DATA).unwrap().expect("packet 1");
    let _ = tx
        .send(
            &OutgoingPacket::request(2, &payload_for(64)),
            OnFull::RequestSpace,
        )
        .expect("fits now");
    assert_eq!(m.load_acquire(pending), Ok(0), "cleared once sent");
}

#[test]
fn recv_signals_on_the_transition_to_enough_space() {
    let m = memory();
    let (mut tx, mut rx) = loopback(&m);
    let feature = ControlField::FeatureBits.offset();
    let pending = ControlField::PendingSendSize.offset();
    // Three 64-byte packets: 64 free. The producer waits for 100.
    for id in 1..=3 {
        let _ = tx
            .send(
                &OutgoingPacket::request(id, &payload_for(64)),
                OnFull::Return,
            )
            .unwrap();
    }
    m.store_release(pending, 100).unwrap();

    // Without the feature bit nobody signals.
    let r = rx.recv(DATA).unwrap().unwrap();
    assert!(!r.signal, "no feat_pending_send_sz");

    // With it: 128 free now, 64 before: crossing 100 signals.
    let m2 = memory();
    let (mut tx2, mut rx2) = loopback(&m2);
    m2.store_release(feature, FEATURE_PENDING_SEND_SIZE)
        .unwrap();
    for id in 1..=3 {
        let _ = tx2
            .send(
                &OutgoingPacket::request(id, &payload_for(64)),
                OnFull::Return,
            )
            .unwrap();
    }
    m2.store_release(pending, 100).unwrap();
    assert!(
        rx2.recv(DATA).unwrap().unwrap().signal,
        "64 -> 128 crosses 100"
    );
    assert!(
        !rx2.recv(DATA).unwrap().unwrap().signal,
        "128 -> 192: already enough"
    );
    m2.store_release(pending, 0).unwrap();
    assert!(!rx2.recv(DATA).unwrap().unwrap().signal, "nobody waits");

    // Not enough yet: 64 -> 128 does not cross 200.
    let m3 = memory();
    let (mut tx3, mut rx3) = loopback(&m3);
    m3.store_release(feature, FEATURE_PENDING_SEND_SIZE)
        .unwrap();
    for id in 1..=3 {
        let _ = tx3
            .send(
                &OutgoingPacket::request(id, &payload_for(64)),
                OnFull::Return,
            )
            .unwrap();
    }
    m3.store_release(pending, 200).unwrap();
    assert!(!rx3.recv(DATA).unwrap().unwrap().signal, "64 -> 128");
    assert!(!rx3.recv(DATA).unwrap().unwrap().signal, "128 -> 192");
    // The last packet frees 64 more: 192 -> 256 crosses 200.
    assert!(rx3.recv(DATA).unwrap().unwrap().signal, "192 -> 256");
}

#[test]
fn received_packets_carry_type_id_flags_and_padded_payload() {
    let m = memory();
    let (mut tx, mut rx) = loopback(&m);
    let _ = tx
        .send(&OutgoingPacket::request(0xabc, b"12345"), OnFull::Return)
        .unwrap();
    let _ = tx
        .send(
            &OutgoingPacket::Completion {
                transaction_id: 0xabc,
                payload: b"reply!!!",
            },
            OnFull::Return,
        )
        .unwrap();
    let _ = tx
        .send(
            &OutgoingPacket::InBand {
                transaction_id: 5,
                completion_requested: false,
                payload: b"",
            },
            OnFull::Return,
        )
        .unwrap();
    assert_eq!(
        rx.recv(DATA).unwrap().unwrap().packet,
        IncomingPacket::InBand {
            transaction_id: 0xabc,
            completion_requested: true,
            payload: b"12345\0\0\0".to_vec()
        }
    );
    assert_eq!(
        rx.recv(DATA).unwrap().unwrap().packet,
        IncomingPacket::Completion {
            transaction_id: 0xabc,
            payload: b"reply!!!".to_vec()
        }
    );
    assert_eq!(
        rx.recv(DATA).unwrap().unwrap().packet,
        IncomingPacket::InBand {
            transaction_id: 5,
            completion_requested: false,
            payload: vec![]
        }
    );
    assert_eq!(rx.recv(DATA), Ok(None));
    assert_eq!(rx.is_empty(), Ok(true));
}

/// Writes a descriptor at data offset 0 and publishes `published` bytes.
fn host_packet(m: &VecRingMemory, descriptor: [u8; 16], published: u32) {
    m.write(CONTROL_PAGE_SIZE, &descriptor).unwrap();
    m.store_release(ControlField::WriteIndex.offset(), published)
        .unwrap();
}

fn descriptor(packet_type: u16, offset8: u16, len8: u16, flags: u16) -> [u8; 16] {
    let mut d = [0u8; 16];
    d[0..2].copy_from_slice(&packet_type.to_le_bytes());
    d[2..4].copy_from_slice(&offset8.to_le_bytes());
    d[4..6].copy_from_slice(&len8.to_le_bytes());
    d[6..8].copy_from_slice(&flags.to_le_bytes());
    d[8..16].copy_from_slice(&77u64.to_le_bytes());
    d
}

#[test]
fn hostile_descriptors_are_typed_errors_that_consume_nothing() {
    let cases: [([u8; 16], u32, RecvError); 8] = [
        (
            descriptor(6, 2, 3, 0),
            8,
            RecvError::Corrupt(Corruption::Truncated { available: 8 }),
        ),
        (
            descriptor(6, 1, 3, 0),
            32,
            RecvError::Corrupt(Corruption::DescriptorLengths {
                offset8: 1,
                len8: 3,
                available: 32,
            }),
        ),
        (
            descriptor(6, 4, 3, 0),
            32,
            RecvError::Corrupt(Corruption::DescriptorLengths {
                offset8: 4,
                len8: 3,
                available: 32,
            }),
        ),
        (
            descriptor(6, 2, 4, 0),
            32,
            RecvError::Corrupt(Corruption::DescriptorLengths {
                offset8: 2,
                len8: 4,
                available: 32,
            }),
        ),
        (
            descriptor(6, 2, 0xffff, 0),
            248,
            RecvError::Corrupt(Corruption::DescriptorLengths {
                offset8: 2,
                len8: 0xffff,
                available: 248,
            }),
        ),
        (
            descriptor(7, 2, 3, 0),
            32,
            RecvError::Corrupt(Corruption::PacketType { value: 7 }),
        ),
        (
            descriptor(11, 2, 3, 2),
            32,
            RecvError::Corrupt(Corruption::Flags { value: 2 }),
        ),
        (
            descriptor(11, 2, 30, 0),
            248,
            RecvError::PayloadTooLarge { len: 224, max: 100 },
        ),
    ];
    for (d, published, expected) in cases {
        let m = memory();
        let mut rx = IncomingRing::new(ring(&m)).unwrap();
        host_packet(&m, d, published);
        let before = m.snapshot();
        assert_eq!(rx.recv(100), Err(expected));
        assert_eq!(m.snapshot(), before, "nothing stored");
        assert_eq!(rx.read_index(), 0, "nothing consumed");
    }
}

#[test]
fn hostile_indices_are_typed_errors() {
    let m = memory();
    let (mut tx, mut rx) = loopback(&m);
    let data_size = u32::try_from(DATA).unwrap();
    for bad in [4, 12, data_size, data_size + 8, u32::MAX] {
        m.store_release(ControlField::WriteIndex.offset(), bad)
            .unwrap();
        assert_eq!(
            rx.recv(DATA),
            Err(RecvError::Corrupt(Corruption::WriteIndex {
                value: bad,
                data_size
            }))
        );
        m.store_release(ControlField::WriteIndex.offset(), 0)
            .unwrap();
        m.store_release(ControlField::ReadIndex.offset(), bad)
            .unwrap();
        let before = m.snapshot();
        assert_eq!(
            tx.send(&OutgoingPacket::request(1, b"x"), OnFull::Return),
            Err(SendError::Corrupt(Corruption::ReadIndex {
                value: bad,
                data_size
            }))
        );
        assert_eq!(m.snapshot(), before);
        m.store_release(ControlField::ReadIndex.offset(), 0)
            .unwrap();
    }
    // Attaching refuses a ring whose own index is already broken.
    m.store_release(ControlField::WriteIndex.offset(), 3)
        .unwrap();
    assert!(matches!(
        OutgoingRing::new(ring(&m)),
        Err(AttachError::Corrupt(Corruption::WriteIndex {
            value: 3,
            ..
        }))
    ));
}

#[test]
fn txrx_map_puts_the_guest_to_host_ring_first() {
    let map = VecRingMemory::new(4 * 4096);
    assert_eq!(TxRxLayout::new(map.size()).unwrap().ring_size(), 8192);
    assert!(TxRxLayout::new(3 * 4096).is_err());
    assert!(TxRxLayout::new(2 * 4096).is_err());
    let mut guest = RingPair::guest(&map).unwrap();
    let mut host = RingPair::host(&map).unwrap();
    let _ = guest
        .outgoing
        .send(&OutgoingPacket::request(42, b"ping"), OnFull::Return)
        .unwrap();
    // The packet is in the first ring's data area.
    let bytes = map.snapshot();
    assert_eq!(bytes[4096 + 16..4096 + 20], *b"ping");
    let got = host.incoming.recv(64).unwrap().unwrap().packet;
    assert_eq!(got.transaction_id(), 42);
    let _ = host
        .outgoing
        .send(
            &OutgoingPacket::Completion {
                transaction_id: 42,
                payload: b"pong",
            },
            OnFull::Return,
        )
        .unwrap();
    assert_eq!(bytes.len(), 16384);
    assert_eq!(map.snapshot()[8192 + 4096 + 16..8192 + 4096 + 20], *b"pong");
    assert_eq!(
        guest.incoming.recv(64).unwrap().unwrap().packet,
        IncomingPacket::Completion {
            transaction_id: 42,
            payload: b"pong\0\0\0\0".to_vec()
        }
    );
}

#[test]
fn ring_geometry_is_checked() {
    assert!(Ring::new(VecRingMemory::new(CONTROL_PAGE_SIZE + 24)).is_err());
    assert!(Ring::new(VecRingMemory::new(CONTROL_PAGE_SIZE + 36)).is_err());
    assert!(Ring::new(VecRingMemory::new(100)).is_err());
    assert_eq!(
        Ring::new(VecRingMemory::new(CONTROL_PAGE_SIZE + 32))
            .unwrap()
            .data_size(),
        32
    );
    assert_eq!(ring_bytes(0), Some(24));
    assert_eq!(ring_bytes(65535 * 8 - 16), Some(65535 * 8 + 8));
    assert_eq!(ring_bytes(65535 * 8 - 15), None);
}
