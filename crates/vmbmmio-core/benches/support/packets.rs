//! Guest packets in steady state, one per message type, for the benchmarks (`benches/`) and the
//! allocation test (`tests/packet_allocations.rs`).
//!
//! Each [`Case`] is prepared by playing a real conversation into a fresh
//! [`GuestShared`] (the lock section the channel's ProcessPacket runs, with a stand-in for KMCL's
//! held packet, as `tests/loom_guest_events.rs` does) up to the point where the packet under test
//! is the next one; the packet itself carries the next request id. Measuring then covers exactly
//! one call of [`GuestShared::packet`]: validate, dispatch, reply (and the device host's event
//! where the message makes one). Preparing is never measured.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use vmbmmio_core::control::FileKey;
use vmbmmio_core::guest::{GuestPacket, GuestShared, HeldCompletion, SessionContext};
use vmbmmio_core::mmio_plan::MmioPlan;
use vmbmmio_proto::guest::{
    BarPlacement, DeviceReport, GuestRange, LARGEST_MESSAGE, RequestBody, encode_request,
};
use vmbmmio_proto::ioctl::{ActedOn, MappingState, WireGuid};

/// The channel instance the guest's pairing capability names.
pub const INSTANCE: WireGuid = WireGuid::from_u128(0x5EED_0000_0000_0000_0000_0000_0000_0013);
/// Two regions (64 KiB read-write, 16 KiB read-only) in a 128 KiB BAR.
pub const REGIONS: [u64; 2] = [64 << 10, 16 << 10];
/// Where the guest put the BAR.
pub const BAR_BASE: u64 = 0xF800_0000;

/// A held guest packet that completes nowhere (KMCL's `HeldPacket` in the driver).
#[derive(Debug)]
pub struct Held;

impl HeldCompletion for Held {
    fn complete(self, reply: &[u8]) {
        std::hint::black_box(reply);
    }

    fn complete_empty(self) {}
}

/// A guest packet's bytes (KMCL's `IncomingPacket` in the driver).
pub struct Packet<'a>(pub &'a [u8]);

impl GuestPacket for Packet<'_> {
    type Held = Held;

    fn data(&self) -> &[u8] {
        self.0
    }

    fn hold(self) -> Held {
        Held
    }
}

/// One message type in its steady state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Case {
    /// `HELLO` on a freshly opened channel: `HELLO_REPLY`.
    Hello,
    /// `SELECT_VERSION` after `HELLO`: `ACK`.
    SelectVersion,
    /// `REPORT_RESERVATION` (a 1 MiB range): `ACK` and a `GUEST_REPORT` for the device host.
    ReportReservation,
    /// `REPORT_DEVICE` (BAR decoded, paired): `ACK` and a `GUEST_REPORT`.
    ReportDevice,
    /// `READY` after the device report: `ACK` and a `GUEST_READY`.
    Ready,
    /// `RELEASING` after `READY`: `ACK` and a `GUEST_RELEASING`.
    Releasing,
    /// `GET_LAYOUT` once mapped: `LAYOUT` (1064 bytes).
    GetLayout,
    /// `WAIT_EVENT` with `REGIONS_MAPPED` newer than `last_seen`: `EVENT` at once.
    WaitEventReply,
    /// `WAIT_EVENT` with nothing newer: held.
    WaitEventHeld,
    /// 16 bytes of garbage (an unknown kind): `ERROR`.
    Garbage,
}

impl Case {
    /// Every case, in protocol order.
    pub const ALL: [Self; 10] = [
        Self::Hello,
        Self::SelectVersion,
        Self::ReportReservation,
        Self::ReportDevice,
        Self::Ready,
        Self::Releasing,
        Self::GetLayout,
        Self::WaitEventReply,
        Self::WaitEventHeld,
        Self::Garbage,
    ];

    /// The benchmark id.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Hello => "hello",
            Self::SelectVersion => "select_version",
            Self::ReportReservation => "report_reservation",
            Self::ReportDevice => "report_device",
            Self::Ready => "ready",
            Self::Releasing => "releasing",
            Self::GetLayout => "get_layout",
            Self::WaitEventReply => "wait_event_reply",
            Self::WaitEventHeld => "wait_event_held",
            Self::Garbage => "garbage",
        }
    }
}

fn device() -> DeviceReport {
    DeviceReport {
        instance: INSTANCE,
        segment: 0,
        bus: 0,
        devfn: 0,
        bar_index: 0,
        bar: BarPlacement {
            base: BAR_BASE,
            size: MmioPlan::new(&REGIONS).unwrap().bar_size(),
            memory_decode: true,
        },
    }
}

fn reservation() -> Option<GuestRange> {
    Some(GuestRange {
        base: 0xE000_0000,
        size: 1 << 20,
    })
}

/// The session state before the packet and the packet's bytes.
pub struct Prepared {
    /// The session's guest-facing state (boxed: several KiB).
    pub shared: Box<GuestShared<Held>>,
    /// The packet under test.
    pub packet: Vec<u8>,
    /// The reply buffer (the channel callback's stack buffer in the driver).
    pub reply: Box<[u8; LARGEST_MESSAGE]>,
}

struct Player {
    shared: Box<GuestShared<Held>>,
    next_id: u64,
}

impl Player {
    fn send(&mut self, body: &RequestBody) {
        let bytes = self.encode(body);
        let mut reply = [0u8; LARGEST_MESSAGE];
        let (now, _wake) = self.shared.packet(Packet(&bytes), &mut reply);
        if let Some((_, len)) = now {
            // Every prefix step is accepted: an ERROR here means the case is built wrong.
            assert_ne!(
                u16::from_le_bytes([reply[0], reply[1]]),
                0x80FF,
                "prefix refused: {body:?}"
            );
            assert!(len > 0);
        }
    }

    fn encode(&mut self, body: &RequestBody) -> Vec<u8> {
        let mut buf = [0u8; LARGEST_MESSAGE];
        let len = encode_request(&mut buf, self.next_id, body).unwrap();
        self.next_id += 1;
        buf[..len].to_vec()
    }
}

/// A fresh session in the state `case` measures, and its packet.
pub fn prepare(case: Case) -> Prepared {
    let plan = MmioPlan::new(&REGIONS).unwrap();
    let context = SessionContext::new(INSTANCE, &plan, &[true, false]);
    let mut shared = Box::new(GuestShared::<Held>::new(FileKey(1), context));
    shared.opened();
    shared.started();
    let mut player = Player { shared, next_id: 1 };
    let version = RequestBody::SelectVersion {
        version: vmbmmio_proto::guest::PROTOCOL_VERSION_1_0,
    };
    let steps: &[RequestBody] = match case {
        Case::Hello | Case::Garbage => &[],
        Case::SelectVersion => &[RequestBody::Hello],
        Case::ReportReservation | Case::ReportDevice => &[RequestBody::Hello, version],
        Case::Ready => &[
            RequestBody::Hello,
            version,
            RequestBody::ReportDevice(device()),
        ],
        _ => &[
            RequestBody::Hello,
            version,
            RequestBody::ReportReservation(reservation()),
            RequestBody::ReportDevice(device()),
            RequestBody::Ready,
        ],
    };
    for step in steps {
        player.send(step);
    }
    if matches!(case, Case::GetLayout | Case::WaitEventReply) {
        for region in 0..REGIONS.len() {
            player
                .shared
                .mapping_changed(region, MappingState::SectionBacked, ActedOn::Unknown)
                .unwrap();
        }
    }
    let packet = match case {
        Case::Hello => player.encode(&RequestBody::Hello),
        Case::SelectVersion => player.encode(&version),
        Case::ReportReservation => player.encode(&RequestBody::ReportReservation(reservation())),
        Case::ReportDevice => player.encode(&RequestBody::ReportDevice(device())),
        Case::Ready => player.encode(&RequestBody::Ready),
        Case::Releasing => player.encode(&RequestBody::Releasing),
        Case::GetLayout => player.encode(&RequestBody::GetLayout),
        Case::WaitEventReply | Case::WaitEventHeld => {
            player.encode(&RequestBody::WaitEvent { last_seen: 0 })
        }
        Case::Garbage => {
            let mut bytes = vec![0u8; 16];
            bytes[0] = 0x77;
            bytes[8] = 1;
            bytes[4] = 16;
            bytes
        }
    };
    Prepared {
        shared: player.shared,
        packet,
        reply: Box::new([0u8; LARGEST_MESSAGE]),
    }
}

/// The measured step: the channel's ProcessPacket lock section for one packet. Returns the
/// reply's length (0 when held).
#[inline(never)]
pub fn handle(prepared: &mut Prepared) -> usize {
    let (now, wake) = prepared
        .shared
        .packet(Packet(&prepared.packet), &mut prepared.reply);
    std::hint::black_box(wake);
    now.map_or(0, |(_, len)| len)
}

/// The baseline: copying the packet's bytes into the reply buffer, a copy of the packet's
/// (run-time) length as the driver's ring copy is: one call of `memcpy` (glibc's; the
/// instruction benches pin its variant, `callgrind.rs`).
#[inline(never)]
pub fn copy(prepared: &mut Prepared) -> usize {
    let len = prepared.packet.len();
    prepared.reply[..len].copy_from_slice(&prepared.packet);
    len
}

/// The cheapest copy of the same bytes, for reference: a copy whose size is fixed at compile
/// time ([`copy_fixed`]: the compiler inlines two to four 16-byte moves, no call). Packets are
/// 16 to 56 bytes, a multiple of 8.
pub fn copy_inline(prepared: &mut Prepared) -> usize {
    let (packet, reply) = (&prepared.packet, &mut *prepared.reply);
    match packet.len() {
        16 => fixed::<16>(packet, reply),
        24 => fixed::<24>(packet, reply),
        32 => fixed::<32>(packet, reply),
        40 => fixed::<40>(packet, reply),
        48 => fixed::<48>(packet, reply),
        56 => fixed::<56>(packet, reply),
        len => panic!("no fixed-size copy for a {len}-byte packet"),
    }
}

fn fixed<const N: usize>(packet: &[u8], reply: &mut [u8; LARGEST_MESSAGE]) -> usize {
    let from: &[u8; N] = packet.try_into().unwrap();
    let to: &mut [u8; N] = (&mut reply[..N]).try_into().unwrap();
    copy_fixed(from, to);
    N
}

/// The measured step of [`copy_inline`]: copying `N` bytes.
#[inline(never)]
pub fn copy_fixed<const N: usize>(from: &[u8; N], to: &mut [u8; N]) {
    *to = *from;
}

/// What the reply's kind must be for `case` (checked once per run, so a benchmark never measures
/// a refusal by mistake).
pub fn check(case: Case) {
    let mut prepared = prepare(case);
    let len = handle(&mut prepared);
    verify(case, &prepared, len);
}

/// Checks the reply `handle` left in `prepared` (its length `len`) is the one `case` expects.
pub fn verify(case: Case, prepared: &Prepared, len: usize) {
    let kind = u16::from_le_bytes([prepared.reply[0], prepared.reply[1]]);
    let expected = match case {
        Case::Hello => Some(0x8001),
        Case::GetLayout => Some(0x8007),
        Case::WaitEventReply => Some(0x8008),
        Case::WaitEventHeld => None,
        Case::Garbage => Some(0x80FF),
        _ => Some(0x8000),
    };
    match expected {
        Some(kind_expected) => {
            assert!(len > 0, "{case:?}: no reply");
            assert_eq!(kind, kind_expected, "{case:?}: reply kind {kind:#x}");
        }
        None => assert_eq!(len, 0, "{case:?}: not held"),
    }
}
