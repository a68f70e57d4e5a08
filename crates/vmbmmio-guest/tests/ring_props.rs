//! Property tests of the ring: round trips with wrap-around at every offset, the full ring,
//! a host written here independently (a reference writer and reader following torvalds/linux
//! `drivers/hv/ring_buffer.c` byte by byte), torn headers, and a hostile host whose indices,
//! descriptors and interleaved writes never make the guest access memory outside its rings'
//! data areas and control fields, panic, or store anything when it reports an error.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::Mutex;

use proptest::prelude::*;
use vmbmmio_guest::ring::layout::{CONTROL_PAGE_SIZE, FEATURE_PENDING_SEND_SIZE};
use vmbmmio_guest::ring::packet::ring_bytes;
use vmbmmio_guest::ring::{
    ControlField, IncomingPacket, IncomingRing, MemoryError, OnFull, OutgoingPacket, OutgoingRing,
    RecvError, Ring, RingMemory, SendError, VecRingMemory, Window,
};

// ---------------------------------------------------------------------------------------------
// A memory that records and bounds-checks every access, and lets a hostile host write between
// any two of them.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Read,
    Write,
    Load,
    Store,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Access {
    kind: Kind,
    offset: usize,
    len: usize,
}

struct RecordingMemory {
    inner: VecRingMemory,
    log: Mutex<Vec<Access>>,
    /// Host writes applied one per access, before it: the host racing the guest.
    chaos: Mutex<VecDeque<(usize, Vec<u8>)>>,
}

impl RecordingMemory {
    fn new(size: usize) -> Self {
        Self {
            inner: VecRingMemory::new(size),
            log: Mutex::new(Vec::new()),
            chaos: Mutex::new(VecDeque::new()),
        }
    }

    fn record(&self, kind: Kind, offset: usize, len: usize) {
        if let Some((at, bytes)) = self.chaos.lock().unwrap().pop_front() {
            let end = (at + bytes.len()).min(self.inner.size());
            let at = at.min(end);
            self.inner.write(at, &bytes[..end - at]).unwrap();
        }
        self.log.lock().unwrap().push(Access { kind, offset, len });
    }

    fn take_log(&self) -> Vec<Access> {
        std::mem::take(&mut *self.log.lock().unwrap())
    }
}

impl RingMemory for RecordingMemory {
    fn size(&self) -> usize {
        self.inner.size()
    }
    fn read(&self, offset: usize, buf: &mut [u8]) -> Result<(), MemoryError> {
        self.record(Kind::Read, offset, buf.len());
        self.inner.read(offset, buf)
    }
    fn write(&self, offset: usize, data: &[u8]) -> Result<(), MemoryError> {
        self.record(Kind::Write, offset, data.len());
        self.inner.write(offset, data)
    }
    fn load_acquire(&self, offset: usize) -> Result<u32, MemoryError> {
        self.record(Kind::Load, offset, 4);
        self.inner.load_acquire(offset)
    }
    fn store_release(&self, offset: usize, value: u32) -> Result<(), MemoryError> {
        self.record(Kind::Store, offset, 4);
        self.inner.store_release(offset, value)
    }
}

/// Where a ring of `data` data bytes starting at `base` lets the guest go: byte accesses in
/// its data area, u32 accesses at its control fields.
fn check_accesses(log: &[Access], rings: &[Range<usize>]) -> Result<(), TestCaseError> {
    const FIELDS: [ControlField; 5] = [
        ControlField::WriteIndex,
        ControlField::ReadIndex,
        ControlField::InterruptMask,
        ControlField::PendingSendSize,
        ControlField::FeatureBits,
    ];
    for a in log {
        let ok = rings.iter().any(|r| match a.kind {
            Kind::Read | Kind::Write => {
                a.offset >= r.start + CONTROL_PAGE_SIZE && a.offset + a.len <= r.end
            }
            Kind::Load | Kind::Store => {
                a.len == 4 && FIELDS.iter().any(|f| a.offset == r.start + f.offset())
            }
        });
        prop_assert!(ok, "access outside the rings' data areas and fields: {a:?}");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// A reference host, written from Linux's description with plain modular arithmetic on raw
// offsets, independent of the crate's ring code.

struct RefRing<'a> {
    m: &'a VecRingMemory,
    base: usize,
    dsize: usize,
}

impl RefRing<'_> {
    fn load(&self, field: usize) -> usize {
        self.m.load_acquire(self.base + field).unwrap() as usize
    }
    fn store(&self, field: usize, v: usize) {
        self.m.store_release(self.base + field, v as u32).unwrap();
    }
    fn put(&self, index: usize, bytes: &[u8]) {
        for (i, b) in bytes.iter().enumerate() {
            let at = (index + i) % self.dsize;
            self.m
                .write(self.base + CONTROL_PAGE_SIZE + at, &[*b])
                .unwrap();
        }
    }
    fn get(&self, index: usize, len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| {
                let mut b = [0u8];
                let at = (index + i) % self.dsize;
                self.m
                    .read(self.base + CONTROL_PAGE_SIZE + at, &mut b)
                    .unwrap();
                b[0]
            })
            .collect()
    }

    fn packet_bytes(ty: u16, flags: u16, tid: u64, payload: &[u8], start: usize) -> Vec<u8> {
        let packet_len = (16 + payload.len()).div_ceil(8) * 8;
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&ty.to_le_bytes());
        bytes.extend_from_slice(&2u16.to_le_bytes());
        bytes.extend_from_slice(&((packet_len / 8) as u16).to_le_bytes());
        bytes.extend_from_slice(&flags.to_le_bytes());
        bytes.extend_from_slice(&tid.to_le_bytes());
        bytes.extend_from_slice(payload);
        bytes.resize(packet_len, 0);
        bytes.extend_from_slice(&((start as u64) << 32).to_le_bytes());
        bytes
    }

    /// `hv_ringbuffer_write`: refuses unless more than the packet's bytes are free.
    fn write(&self, ty: u16, flags: u16, tid: u64, payload: &[u8]) -> bool {
        let w = self.load(0);
        let r = self.load(4);
        let free = if w >= r { self.dsize - (w - r) } else { r - w };
        let bytes = Self::packet_bytes(ty, flags, tid, payload, w);
        if free <= bytes.len() {
            return false;
        }
        self.put(w, &bytes);
        self.store(0, (w + bytes.len()) % self.dsize);
        true
    }

    /// Reads the next packet the guest wrote, checking its trailer.
    fn read(&self) -> Option<(u16, u16, u64, Vec<u8>)> {
        let w = self.load(0);
        let r = self.load(4);
        if w == r {
            return None;
        }
        let d = self.get(r, 16);
        let ty = u16::from_le_bytes([d[0], d[1]]);
        let offset8 = u16::from_le_bytes([d[2], d[3]]) as usize;
        let len8 = u16::from_le_bytes([d[4], d[5]]) as usize;
        let flags = u16::from_le_bytes([d[6], d[7]]);
        let tid = u64::from_le_bytes(d[8..16].try_into().unwrap());
        assert_eq!(offset8, 2);
        let payload = self.get(r + 16, len8 * 8 - 16);
        let trailer = u64::from_le_bytes(self.get(r + len8 * 8, 8).try_into().unwrap());
        assert_eq!(trailer, (r as u64) << 32, "trailer holds the start index");
        self.store(4, (r + len8 * 8 + 8) % self.dsize);
        Some((ty, flags, tid, payload))
    }
}

fn padded(payload: &[u8]) -> Vec<u8> {
    let mut p = payload.to_vec();
    p.resize(payload.len().div_ceil(8) * 8, 0);
    p
}

/// A single ring of `dsize` data bytes whose empty state starts at `start`.
fn ring_at(dsize: usize, start: u32) -> VecRingMemory {
    let m = VecRingMemory::new(CONTROL_PAGE_SIZE + dsize);
    m.store_release(0, start).unwrap();
    m.store_release(4, start).unwrap();
    m
}

// ---------------------------------------------------------------------------------------------
// Round trips.

/// Every start offset and every payload length of a 256-byte ring: what is sent is received,
/// and the reference reader agrees.
#[test]
fn every_offset_every_length_round_trips() {
    let dsize = 256;
    for start in (0..dsize as u32).step_by(8) {
        for len in 0..=dsize - 32 {
            let payload: Vec<u8> = (0..len).map(|i| (i as u8) ^ 0xa5).collect();
            let m = ring_at(dsize, start);
            let mut tx = OutgoingRing::new(Ring::new(&m).unwrap()).unwrap();
            let mut rx = IncomingRing::new(Ring::new(&m).unwrap()).unwrap();
            let sent = tx
                .send(
                    &OutgoingPacket::request(u64::from(start) << 16 | len as u64, &payload),
                    OnFull::Return,
                )
                .unwrap();
            assert!(sent.signal);
            // The reference reader sees the same packet (on a copy).
            let copy = VecRingMemory::from_bytes(m.snapshot());
            let reference = RefRing {
                m: &copy,
                base: 0,
                dsize,
            };
            let (ty, flags, tid, got) = reference.read().unwrap();
            assert_eq!(
                (ty, flags, tid),
                (6, 1, u64::from(start) << 16 | len as u64)
            );
            assert_eq!(got, padded(&payload));
            // The crate's reader too.
            let r = rx.recv(dsize).unwrap().unwrap();
            assert_eq!(r.packet.payload(), &padded(&payload)[..]);
            assert_eq!(rx.recv(dsize), Ok(None));
            assert_eq!(rx.read_index(), tx.write_index());
            assert_eq!(reference.load(4), rx.read_index() as usize);
        }
    }
}

#[derive(Clone, Debug)]
enum Op {
    Send { len: usize, on_full: OnFull },
    Recv,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0usize..300, any::<bool>()).prop_map(|(len, ask)| Op::Send {
            len,
            on_full: if ask { OnFull::RequestSpace } else { OnFull::Return },
        }),
        2 => Just(Op::Recv),
    ]
}

proptest! {
    /// Interleaved sends and receives on one ring against a queue model: sends succeed exactly
    /// when more than their bytes are free, and packets come back in order, wrapping anywhere.
    #[test]
    fn sends_and_receives_match_a_queue_model(
        dsize8 in 4usize..64,
        start8 in 0usize..64,
        ops in proptest::collection::vec(op(), 1..80),
    ) {
        let dsize = dsize8 * 8;
        let start = ((start8 % dsize8) * 8) as u32;
        let m = ring_at(dsize, start);
        let mut tx = OutgoingRing::new(Ring::new(&m).unwrap()).unwrap();
        let mut rx = IncomingRing::new(Ring::new(&m).unwrap()).unwrap();
        let mut model: VecDeque<(u64, Vec<u8>, usize)> = VecDeque::new();
        let mut used = 0usize;
        let mut next_id = 1u64;
        for op in ops {
            match op {
                Op::Send { len, on_full } => {
                    let payload: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(7) ^ next_id as u8).collect();
                    let needed = ring_bytes(len).unwrap();
                    let result = tx.send(&OutgoingPacket::request(next_id, &payload), on_full);
                    if needed >= dsize {
                        prop_assert!(matches!(result, Err(SendError::TooLarge { .. })), "{result:?}");
                    } else if dsize - used > needed {
                        prop_assert!(result.is_ok(), "{result:?}");
                        prop_assert_eq!(result.unwrap().signal, used == 0);
                        model.push_back((next_id, padded(&payload), needed));
                        used += needed;
                        next_id += 1;
                    } else {
                        prop_assert_eq!(result, Err(SendError::Full { needed: needed as u32, free: (dsize - used) as u32 }));
                        let pending = m.load_acquire(ControlField::PendingSendSize.offset()).unwrap();
                        if on_full == OnFull::RequestSpace {
                            prop_assert_eq!(pending as usize, needed);
                        }
                    }
                }
                Op::Recv => {
                    let got = rx.recv(dsize).unwrap();
                    match model.pop_front() {
                        None => prop_assert!(got.is_none()),
                        Some((id, payload, needed)) => {
                            let got = got.unwrap().packet;
                            prop_assert_eq!(got, IncomingPacket::InBand { transaction_id: id, completion_requested: true, payload });
                            used -= needed;
                        }
                    }
                }
            }
            prop_assert_eq!(rx.available().unwrap() as usize, used);
            prop_assert_eq!(tx.free_bytes().unwrap() as usize, dsize - used);
        }
    }

    /// The reference host writes completions and in-band packets into the guest's incoming ring
    /// (any start offset, wrapping); the guest reads them back, in order, and the reference
    /// reader decodes every request the guest sends.
    #[test]
    fn reference_host_and_guest_agree(
        start8 in 0usize..32,
        batches in proptest::collection::vec(
            proptest::collection::vec((any::<u64>(), any::<bool>(), proptest::collection::vec(any::<u8>(), 0..90)), 0..6),
            1..12,
        ),
    ) {
        let dsize = 256;
        let start = (start8 * 8) as u32;
        // Two rings in one region: guest-to-host first, then host-to-guest.
        let half = CONTROL_PAGE_SIZE + dsize;
        let region = RecordingMemory::new(2 * half);
        for base in [0, half] {
            region.inner.store_release(base, start).unwrap();
            region.inner.store_release(base + 4, start).unwrap();
        }
        region.inner.store_release(half + ControlField::FeatureBits.offset(), FEATURE_PENDING_SEND_SIZE).unwrap();
        let mut tx = OutgoingRing::new(Ring::new(Window::new(&region, 0, half).unwrap()).unwrap()).unwrap();
        let mut rx = IncomingRing::new(Ring::new(Window::new(&region, half, half).unwrap()).unwrap()).unwrap();
        let host_out = RefRing { m: &region.inner, base: half, dsize };
        let host_in = RefRing { m: &region.inner, base: 0, dsize };
        let mut expected = VecDeque::new();
        for batch in batches {
            for (tid, completion, payload) in batch {
                let ty = if completion { 11 } else { 6 };
                if host_out.write(ty, 0, tid, &payload) {
                    expected.push_back((completion, tid, padded(&payload)));
                }
            }
            // The guest drains what the host wrote and answers each in-band packet.
            while let Some(r) = rx.recv(dsize).unwrap() {
                let (completion, tid, payload) = expected.pop_front().unwrap();
                prop_assert_eq!(r.packet.transaction_id(), tid);
                prop_assert_eq!(r.packet.payload(), &payload[..]);
                prop_assert_eq!(matches!(r.packet, IncomingPacket::Completion { .. }), completion);
                if !completion {
                    let sent = tx.send(&OutgoingPacket::request(tid, &payload), OnFull::Return);
                    if sent.is_ok() {
                        let (ty, flags, got_tid, got) = host_in.read().unwrap();
                        prop_assert_eq!((ty, flags, got_tid), (6, 1, tid));
                        prop_assert_eq!(got, payload);
                    }
                }
            }
            prop_assert!(expected.is_empty());
            check_accesses(&region.take_log(), &[0..half, half..2 * half])?;
        }
    }

    /// A packet the host has only partly written (its descriptor torn at any byte) is invisible
    /// until published; a write index published too early is an error that consumes nothing;
    /// once the host finishes, the packet reads normally.
    #[test]
    fn torn_headers(
        start8 in 0usize..32,
        len in 0usize..100,
        torn in 0usize..24,
        early8 in 1usize..16,
    ) {
        let dsize = 256;
        let start = start8 * 8;
        let m = ring_at(dsize, start as u32);
        let mut rx = IncomingRing::new(Ring::new(&m).unwrap()).unwrap();
        let host = RefRing { m: &m, base: 0, dsize };
        let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
        let bytes = RefRing::packet_bytes(11, 0, 99, &payload, start);
        // Part of the descriptor, not published.
        host.put(start, &bytes[..torn.min(bytes.len())]);
        let before = m.snapshot();
        prop_assert_eq!(rx.recv(dsize), Ok(None));
        prop_assert_eq!(m.snapshot(), before);
        // Published too early: fewer bytes than the packet and its trailer.
        let early = (early8 * 8).min(bytes.len() - 8);
        host.store(0, (start + early) % dsize);
        let before = m.snapshot();
        let result = rx.recv(dsize);
        prop_assert!(matches!(result, Err(RecvError::Corrupt(_))), "{result:?}");
        prop_assert_eq!(m.snapshot(), before);
        prop_assert_eq!(rx.read_index() as usize, start);
        // Finished and published: read normally.
        host.put(start, &bytes);
        host.store(0, (start + bytes.len()) % dsize);
        let got = rx.recv(dsize).unwrap().unwrap().packet;
        prop_assert_eq!(got, IncomingPacket::Completion { transaction_id: 99, payload: padded(&payload) });
    }
}

// ---------------------------------------------------------------------------------------------
// A hostile host.

/// A control value: most often a valid index of whatever ring it lands in (resolved once the
/// ring's size is known), else anything, including off-by-a-little and huge values.
#[derive(Clone, Copy, Debug)]
enum Value {
    Valid(u32),
    Raw(u32),
}

impl Value {
    fn resolve(self, dsize: usize) -> u32 {
        match self {
            Self::Valid(seed) => (seed % (dsize as u32 / 8)) * 8,
            Self::Raw(v) => v,
        }
    }
}

fn index_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        6 => any::<u32>().prop_map(Value::Valid),
        1 => any::<u32>().prop_map(Value::Raw),
        1 => (0u32..640).prop_map(Value::Raw),
        1 => (0u32..8).prop_map(|x| Value::Raw(u32::MAX - x)),
    ]
}

fn plausible_descriptor() -> impl Strategy<Value = [u8; 16]> {
    (
        prop_oneof![Just(6u16), Just(11u16), any::<u16>()],
        prop_oneof![0u16..6, any::<u16>()],
        prop_oneof![0u16..48, any::<u16>()],
        prop_oneof![0u16..4, any::<u16>()],
        any::<u64>(),
    )
        .prop_map(|(ty, off, len, flags, tid)| {
            let mut d = [0u8; 16];
            d[0..2].copy_from_slice(&ty.to_le_bytes());
            d[2..4].copy_from_slice(&off.to_le_bytes());
            d[4..6].copy_from_slice(&len.to_le_bytes());
            d[6..8].copy_from_slice(&flags.to_le_bytes());
            d[8..16].copy_from_slice(&tid.to_le_bytes());
            d
        })
}

#[derive(Clone, Debug)]
enum HostileOp {
    Recv {
        max: usize,
    },
    Send {
        len: usize,
        on_full: OnFull,
    },
    /// The host writes between two guest calls.
    Write {
        at: usize,
        bytes: Vec<u8>,
    },
    /// The host writes a descriptor at the guest's read position.
    Descriptor {
        d: [u8; 16],
    },
    /// The host writes a well-formed packet, as a correct host would.
    Packet {
        completion: bool,
        len: usize,
    },
    /// The host sets a control field of either ring.
    Field {
        incoming: bool,
        field: usize,
        value: Value,
    },
    /// The host will write during the next guest call, between its accesses.
    Race {
        writes: Vec<(usize, Vec<u8>)>,
    },
}

fn hostile_op(region: usize) -> impl Strategy<Value = HostileOp> {
    let write = (0..region, proptest::collection::vec(any::<u8>(), 1..24));
    prop_oneof![
        4 => (0usize..400).prop_map(|max| HostileOp::Recv { max }),
        3 => (0usize..160, any::<bool>()).prop_map(|(len, ask)| HostileOp::Send {
            len,
            on_full: if ask { OnFull::RequestSpace } else { OnFull::Return },
        }),
        2 => write.clone().prop_map(|(at, bytes)| HostileOp::Write { at, bytes }),
        3 => plausible_descriptor().prop_map(|d| HostileOp::Descriptor { d }),
        4 => (any::<bool>(), 0usize..120).prop_map(|(completion, len)| HostileOp::Packet { completion, len }),
        3 => (any::<bool>(), 0usize..5, index_value())
            .prop_map(|(incoming, field, value)| HostileOp::Field { incoming, field, value }),
        2 => proptest::collection::vec(write, 1..8).prop_map(|writes| HostileOp::Race { writes }),
    ]
}

const FIELDS: [ControlField; 5] = [
    ControlField::WriteIndex,
    ControlField::ReadIndex,
    ControlField::InterruptMask,
    ControlField::PendingSendSize,
    ControlField::FeatureBits,
];

/// The circular range `start..start + len` of a data area of `dsize` bytes, as region offsets.
fn in_window(
    offset: usize,
    len: usize,
    base: usize,
    start: usize,
    window: usize,
    dsize: usize,
) -> bool {
    let data = base + CONTROL_PAGE_SIZE;
    if offset < data || offset + len > data + dsize {
        return false;
    }
    let rel = offset - data;
    let skip = (rel + dsize - start) % dsize;
    skip + len <= window
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Whatever the host writes, whenever: the guest accesses only its rings' data areas and
    /// control fields, never panics, reads only what was published and writes only free space
    /// (when the host is not racing), keeps its own indices valid, and stores nothing when it
    /// reports an error (but `pending_send_sz`, which a `RequestSpace` send may set).
    #[test]
    fn hostile_host_never_breaks_the_guest(
        dsize8 in 4usize..40,
        initial in proptest::collection::vec(index_value(), 10),
        start_empty in any::<bool>(),
        data in proptest::collection::vec(any::<u8>(), 640),
        ops in proptest::collection::vec(hostile_op(2 * (CONTROL_PAGE_SIZE + 320)), 1..60),
    ) {
        let dsize = dsize8 * 8;
        let half = CONTROL_PAGE_SIZE + dsize;
        let region = RecordingMemory::new(2 * half);
        // Hostile starting state: every control field and every data byte.
        for (i, value) in initial.iter().enumerate() {
            let base = if i < 5 { 0 } else { half };
            let value = match (i, value) {
                // The guest's own indices (the outgoing write index, the incoming read index)
                // were set by its kernel: valid unless the case says otherwise.
                (0 | 6, Value::Raw(v)) if v % 3 != 0 => Value::Valid(*v),
                _ => *value,
            };
            region.inner.store_release(base + FIELDS[i % 5].offset(), value.resolve(dsize)).unwrap();
        }
        if start_empty {
            // Both rings empty: the host's index equals the guest's (a correct start).
            let own_write = region.inner.load_acquire(0).unwrap();
            region.inner.store_release(4, own_write).unwrap();
            let own_read = region.inner.load_acquire(half + 4).unwrap();
            region.inner.store_release(half, own_read).unwrap();
        }
        region.inner.write(CONTROL_PAGE_SIZE, &data[..dsize]).unwrap();
        region.inner.write(half + CONTROL_PAGE_SIZE, &data[dsize..2 * dsize]).unwrap();
        let rings = [0..half, half..2 * half];

        let tx = OutgoingRing::new(Ring::new(Window::new(&region, 0, half).unwrap()).unwrap());
        let rx = IncomingRing::new(Ring::new(Window::new(&region, half, half).unwrap()).unwrap());
        let log = region.take_log();
        check_accesses(&log, &rings)?;
        prop_assert!(log.iter().all(|a| matches!(a.kind, Kind::Load | Kind::Read)), "attach only loads");
        let (Ok(mut tx), Ok(mut rx)) = (tx, rx) else {
            // Refused at attach (an own index already broken): nothing else to do.
            return Ok(());
        };

        for op in ops {
            match op {
                HostileOp::Write { at, bytes } => {
                    let end = (at + bytes.len()).min(2 * half);
                    let at = at.min(end);
                    region.inner.write(at, &bytes[..end - at]).unwrap();
                }
                HostileOp::Descriptor { d } => {
                    let at = rx.read_index() as usize;
                    for (i, b) in d.iter().enumerate() {
                        region.inner.write(half + CONTROL_PAGE_SIZE + (at + i) % dsize, &[*b]).unwrap();
                    }
                }
                HostileOp::Packet { completion, len } => {
                    let host = RefRing { m: &region.inner, base: half, dsize };
                    let (w, r) = (host.load(0), host.load(4));
                    if w < dsize && r < dsize && w % 8 == 0 && r % 8 == 0 {
                        let ty = if completion { 11 } else { 6 };
                        host.write(ty, u16::from(!completion), 5, &vec![0xe1; len]);
                    }
                }
                HostileOp::Field { incoming, field, value } => {
                    let base = if incoming { half } else { 0 };
                    region.inner.store_release(base + FIELDS[field].offset(), value.resolve(dsize)).unwrap();
                }
                HostileOp::Race { writes } => {
                    region.chaos.lock().unwrap().extend(writes.into_iter().map(|(at, b)| (at.min(2 * half), b)));
                }
                HostileOp::Recv { max } => {
                    let racing = !region.chaos.lock().unwrap().is_empty();
                    let read = rx.read_index() as usize;
                    let write = region.inner.load_acquire(half).unwrap() as usize;
                    let published = (write + dsize - read) % dsize;
                    let result = rx.recv(max);
                    let log = region.take_log();
                    region.chaos.lock().unwrap().clear();
                    check_accesses(&log, &rings)?;
                    prop_assert!(rx.read_index() % 8 == 0 && (rx.read_index() as usize) < dsize);
                    match result {
                        Err(_) | Ok(None) => {
                            prop_assert!(log.iter().all(|a| matches!(a.kind, Kind::Load | Kind::Read)), "stored on {result:?}");
                            prop_assert_eq!(rx.read_index() as usize, read);
                        }
                        Ok(Some(r)) => {
                            prop_assert!(r.packet.payload().len() <= max);
                            prop_assert!(r.packet.payload().len() % 8 == 0);
                            if !racing {
                                for a in log.iter().filter(|a| a.kind == Kind::Read) {
                                    prop_assert!(in_window(a.offset, a.len, half, read, published, dsize),
                                        "read outside the published bytes: {a:?}");
                                }
                            }
                        }
                    }
                }
                HostileOp::Send { len, on_full } => {
                    let racing = !region.chaos.lock().unwrap().is_empty();
                    let write = tx.write_index() as usize;
                    let read = region.inner.load_acquire(4).unwrap() as usize;
                    let free = if write >= read { dsize - (write - read) } else { read - write };
                    let payload = vec![0x3c; len];
                    let result = tx.send(&OutgoingPacket::request(1, &payload), on_full);
                    let log = region.take_log();
                    region.chaos.lock().unwrap().clear();
                    check_accesses(&log, &rings)?;
                    prop_assert!(tx.write_index() % 8 == 0 && (tx.write_index() as usize) < dsize);
                    match result {
                        Err(e) => {
                            let pending = ControlField::PendingSendSize.offset();
                            prop_assert!(log.iter().all(|a| matches!(a.kind, Kind::Load | Kind::Read)
                                || (a.kind == Kind::Store && a.offset == pending && on_full == OnFull::RequestSpace)),
                                "stored on {e:?}");
                            prop_assert_eq!(tx.write_index() as usize, write);
                        }
                        Ok(sent) => {
                            prop_assert!((sent.bytes as usize) < dsize);
                            if !racing {
                                prop_assert!((sent.bytes as usize) < free);
                                for a in log.iter().filter(|a| a.kind == Kind::Write) {
                                    prop_assert!(in_window(a.offset, a.len, 0, write, free - 1, dsize),
                                        "wrote outside the free bytes: {a:?}");
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
