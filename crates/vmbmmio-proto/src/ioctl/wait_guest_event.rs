//! WAIT_GUEST_EVENT: the device host learns what the guest reported over the channel.
//!
//! # Why a pending request
//! The guest reports over the channel (docs/protocol.md) where it placed its MMIO reservation and
//! the paired PCI function's BAR, and when it is ready or releasing; the device host must map or
//! unmap at those moments. A driver cannot call user mode, so the device host keeps one request
//! pending that the driver completes when there is news: the pattern Windows drivers use toward
//! user mode (an "inverted call"). Added to version 1 as a new message kind with its own IOCTL
//! function number (0x906), as the versioning policy in `docs/ioctl.md` prescribes.
//!
//! # Exactly once, in order
//! Every event carries a sequence number (1, 2, 3, … per session, no gaps). The request names the
//! highest sequence the device host has seen (`last_seen`, 0 for none) and is completed with the
//! **first** event after it. The driver keeps an event until a later request's `last_seen`
//! acknowledges it, so a completion lost to cancellation, or to a device host that exited, is
//! delivered again; the device host discards nothing and sees nothing twice.
//!
//! # Level, not only edge
//! Each event also carries a snapshot of everything the guest has reported so far
//! ([`GuestSnapshot`]), taken when the event happened. A device host that restarts, or that gets a
//! [`GuestEventKind::Resync`], can act on the snapshot alone.

use zerocopy::byteorder::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::error::{AbsentReport, ProtoError, ProtoResult, ReservedField};
use super::header::{MessageHeader, MessageKind, WireMessage, check_zero, unframe};
use super::limits::{MAX_BAR_SIZE, is_page_aligned};

/// Number of reserved 64-bit words at the end of the WAIT_GUEST_EVENT reply.
pub const GUEST_EVENT_RESERVED_WORDS: usize = 4;

/// Guest physical addresses end below 2^52 (the protocol's bound, docs/protocol.md).
pub const GUEST_PHYSICAL_LIMIT: u64 = 1 << 52;

/// Highest BAR index of a PCI type-0 function.
pub const MAX_BAR_INDEX: u8 = 5;

/// `flags` bit of a [`GuestEventKind::GuestReport`]: the reservation report changed.
pub const EVENT_FLAG_RESERVATION: u32 = 1 << 0;
/// `flags` bit of a [`GuestEventKind::GuestReport`]: the device report changed.
pub const EVENT_FLAG_DEVICE: u32 = 1 << 1;
/// Every defined `flags` bit.
const EVENT_FLAGS_ALL: u32 = EVENT_FLAG_RESERVATION | EVENT_FLAG_DEVICE;

/// `reservation_flags` bit: the guest reported a reservation.
pub const RESERVATION_PRESENT: u32 = 1 << 0;

/// `device_flags` bit: the guest reported the paired device.
pub const DEVICE_PRESENT: u32 = 1 << 0;
/// `device_flags` bit: memory decode is on in the function's command register.
pub const DEVICE_DECODE_ON: u32 = 1 << 1;
/// `device_flags` bit: the guest sent READY (wants the BAR backed).
pub const DEVICE_READY: u32 = 1 << 2;
/// `device_flags` bit: the guest sent RELEASING (is about to stop using the BAR).
pub const DEVICE_RELEASING: u32 = 1 << 3;
/// Every defined `device_flags` bit.
const DEVICE_FLAGS_ALL: u32 = DEVICE_PRESENT | DEVICE_DECODE_ON | DEVICE_READY | DEVICE_RELEASING;

/// WAIT_GUEST_EVENT request, 24 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
pub struct WaitGuestEventRequest {
    /// Kind [`MessageKind::WaitGuestEventRequest`].
    pub header: MessageHeader,
    /// The highest event sequence the device host has seen; 0 for none.
    pub last_seen: U64,
}

/// WAIT_GUEST_EVENT reply, 136 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
pub struct WaitGuestEventReply {
    /// Kind [`MessageKind::WaitGuestEventReply`].
    pub header: MessageHeader,
    /// The event's sequence number, ≥ 1.
    pub sequence: U64,
    /// A [`GuestEventKind`].
    pub event: U32,
    /// [`EVENT_FLAG_RESERVATION`] | [`EVENT_FLAG_DEVICE`] with a guest report, else 0.
    pub flags: U32,
    /// [`RESERVATION_PRESENT`] or 0.
    pub reservation_flags: U32,
    /// [`DEVICE_PRESENT`], [`DEVICE_DECODE_ON`], [`DEVICE_READY`], [`DEVICE_RELEASING`].
    pub device_flags: U32,
    /// Guest physical base of the channel's MMIO reservation.
    pub reservation_base: U64,
    /// Its size in bytes.
    pub reservation_size: U64,
    /// Guest physical base of the paired function's BAR.
    pub bar_base: U64,
    /// Its size in bytes.
    pub bar_size: U64,
    /// Which BAR (0–5).
    pub bar_index: u8,
    /// Must be zero.
    pub reserved0: u8,
    /// Must be zero.
    pub reserved1: U16,
    /// The protocol version the guest selected; 0 while none is.
    pub protocol_version: U32,
    /// Packets the guest sent on the channel since it was opened.
    pub guest_packets: U64,
    /// Counted (misbehaviour) errors since the channel was opened.
    pub counted_errors: U64,
    /// Errors the guest may still make before the host stops answering it.
    pub errors_left: U32,
    /// Must be zero.
    pub reserved2: U32,
    /// Must be zero: room for later facts.
    pub reserved: [U64; GUEST_EVENT_RESERVED_WORDS],
}

const _: () = assert!(size_of::<WaitGuestEventRequest>() == 24);
const _: () = assert!(size_of::<WaitGuestEventReply>() == 136);

impl WireMessage for WaitGuestEventRequest {
    const KIND: MessageKind = MessageKind::WaitGuestEventRequest;
}

impl WireMessage for WaitGuestEventReply {
    const KIND: MessageKind = MessageKind::WaitGuestEventReply;
}

impl WaitGuestEventRequest {
    /// The request acknowledging every event up to `last_seen`.
    pub fn new(last_seen: u64) -> Self {
        Self {
            header: Self::header_for_kind(),
            last_seen: U64::new(last_seen),
        }
    }
}

/// What happened; the reply's `event`.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GuestEventKind {
    /// The guest's reservation report and/or device report changed (`flags` say which).
    GuestReport = 1,
    /// The guest sent READY: it reported its BAR with decode on and wants it backed.
    GuestReady = 2,
    /// The guest sent RELEASING: it is about to stop using the BAR.
    GuestReleasing = 3,
    /// The guest started over: it sent HELLO again, or closed and reopened the channel. Its
    /// earlier reports are forgotten.
    GuestReset = 4,
    /// The host stopped answering the guest (it misbehaved past the threshold).
    GuestStopped = 5,
    /// The guest closed the channel.
    ChannelClosed = 6,
    /// The device host's `last_seen` is older than the events the driver still keeps (it
    /// acknowledged more before): the snapshot is the current state, and `sequence` the newest
    /// event's, from which the device host goes on.
    Resync = 7,
}

impl GuestEventKind {
    /// Every kind, in value order.
    pub const ALL: [Self; 7] = [
        Self::GuestReport,
        Self::GuestReady,
        Self::GuestReleasing,
        Self::GuestReset,
        Self::GuestStopped,
        Self::ChannelClosed,
        Self::Resync,
    ];

    /// The kind with this wire value, if any.
    pub const fn from_u32(value: u32) -> Option<Self> {
        Some(match value {
            1 => Self::GuestReport,
            2 => Self::GuestReady,
            3 => Self::GuestReleasing,
            4 => Self::GuestReset,
            5 => Self::GuestStopped,
            6 => Self::ChannelClosed,
            7 => Self::Resync,
            _ => return None,
        })
    }

    /// The wire value.
    pub const fn to_u32(self) -> u32 {
        self as u32
    }
}

/// The channel's MMIO reservation as the guest reported it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GuestReservation {
    /// Guest physical base: page-aligned, non-zero.
    pub base: u64,
    /// Size: a non-zero multiple of 4096; `base + size` ≤ 2^52.
    pub size: u64,
}

impl GuestReservation {
    /// [`ProtoError::BadGuestReservation`] unless the rules of the fields hold.
    pub const fn check(&self) -> ProtoResult<()> {
        let bad = ProtoError::BadGuestReservation {
            base: self.base,
            size: self.size,
        };
        if self.base == 0
            || self.size == 0
            || !is_page_aligned(self.base)
            || !is_page_aligned(self.size)
        {
            return Err(bad);
        }
        match self.base.checked_add(self.size) {
            Some(end) if end <= GUEST_PHYSICAL_LIMIT => Ok(()),
            _ => Err(bad),
        }
    }
}

/// The paired PCI function's BAR as the guest reported it, and what it said since.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GuestDevice {
    /// Which BAR (0–5).
    pub bar_index: u8,
    /// Guest physical base; with decode on non-zero and aligned to `bar_size`.
    pub bar_base: u64,
    /// Size: a power of two, at most [`MAX_BAR_SIZE`]; `bar_base + bar_size` ≤ 2^52.
    pub bar_size: u64,
    /// Memory decode is on.
    pub decode_on: bool,
    /// The guest sent READY (needs decode on).
    pub ready: bool,
    /// The guest sent RELEASING (never together with `ready`).
    pub releasing: bool,
}

impl GuestDevice {
    /// The device's `device_flags` (with [`DEVICE_PRESENT`]).
    pub const fn flags(&self) -> u32 {
        let mut flags = DEVICE_PRESENT;
        if self.decode_on {
            flags |= DEVICE_DECODE_ON;
        }
        if self.ready {
            flags |= DEVICE_READY;
        }
        if self.releasing {
            flags |= DEVICE_RELEASING;
        }
        flags
    }

    /// Checks, in this order: the flags ([`ProtoError::DeviceFlagsContradict`]: READY without
    /// decode on, or READY with RELEASING), `bar_index` ([`ProtoError::BadBarIndex`]), then the
    /// BAR ([`ProtoError::BadGuestBar`]).
    pub const fn check(&self) -> ProtoResult<()> {
        if self.ready && (!self.decode_on || self.releasing) {
            return Err(ProtoError::DeviceFlagsContradict { got: self.flags() });
        }
        if self.bar_index > MAX_BAR_INDEX {
            return Err(ProtoError::BadBarIndex {
                got: self.bar_index,
            });
        }
        let bad = ProtoError::BadGuestBar {
            base: self.bar_base,
            size: self.bar_size,
        };
        if !self.bar_size.is_power_of_two() || self.bar_size > MAX_BAR_SIZE {
            return Err(bad);
        }
        if self.decode_on && (self.bar_base == 0 || !self.bar_base.is_multiple_of(self.bar_size)) {
            return Err(bad);
        }
        match self.bar_base.checked_add(self.bar_size) {
            Some(end) if end <= GUEST_PHYSICAL_LIMIT => Ok(()),
            _ => Err(bad),
        }
    }

    /// Whether the device host should back the BAR: the guest is ready and decodes it.
    pub const fn wants_backing(&self) -> bool {
        self.ready && self.decode_on && !self.releasing
    }
}

/// What the guest has reported so far (a level, not an edge): the state of the guest's
/// conversation on the channel when an event happened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct GuestSnapshot {
    /// The reservation report, if the guest made one.
    pub reservation: Option<GuestReservation>,
    /// The device report, if the guest made one.
    pub device: Option<GuestDevice>,
    /// The protocol version the guest selected; 0 while none is.
    pub protocol_version: u32,
    /// Packets the guest sent since the channel opened.
    pub guest_packets: u64,
    /// Counted errors since the channel opened.
    pub counted_errors: u64,
    /// Errors left before the host stops answering.
    pub errors_left: u32,
}

impl GuestSnapshot {
    /// Checks the reservation, then the device.
    pub const fn check(&self) -> ProtoResult<()> {
        if let Some(reservation) = &self.reservation
            && let Err(error) = reservation.check()
        {
            return Err(error);
        }
        if let Some(device) = &self.device
            && let Err(error) = device.check()
        {
            return Err(error);
        }
        Ok(())
    }
}

/// The content of a WAIT_GUEST_EVENT reply, checked: built with [`GuestEvent::new`] (driver
/// side) or returned by [`parse_wait_guest_event_reply`] (device-host side), which apply the
/// same rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GuestEvent {
    sequence: u64,
    kind: GuestEventKind,
    flags: u32,
    snapshot: GuestSnapshot,
}

impl GuestEvent {
    /// A checked event, in wire order: `sequence` ≥ 1 ([`ProtoError::ZeroEventSequence`]),
    /// `flags` ([`ProtoError::EventFlagsReserved`], then [`ProtoError::EventFlagsMismatch`]: a
    /// [`GuestEventKind::GuestReport`] names at least one report, every other kind none), then
    /// the snapshot ([`GuestSnapshot::check`]).
    pub const fn new(
        sequence: u64,
        kind: GuestEventKind,
        flags: u32,
        snapshot: GuestSnapshot,
    ) -> ProtoResult<Self> {
        if sequence == 0 {
            return Err(ProtoError::ZeroEventSequence);
        }
        if let Err(error) = check_event_flags(kind, flags) {
            return Err(error);
        }
        if let Err(error) = snapshot.check() {
            return Err(error);
        }
        Ok(Self {
            sequence,
            kind,
            flags,
            snapshot,
        })
    }

    /// The event's sequence number.
    pub const fn sequence(&self) -> u64 {
        self.sequence
    }

    /// What happened.
    pub const fn kind(&self) -> GuestEventKind {
        self.kind
    }

    /// [`EVENT_FLAG_RESERVATION`] / [`EVENT_FLAG_DEVICE`] of a guest report, else 0.
    pub const fn flags(&self) -> u32 {
        self.flags
    }

    /// What the guest had reported when the event happened.
    pub const fn snapshot(&self) -> &GuestSnapshot {
        &self.snapshot
    }

    /// The wire reply.
    pub fn to_reply(&self) -> WaitGuestEventReply {
        let s = &self.snapshot;
        let (reservation_flags, reservation_base, reservation_size) = match s.reservation {
            Some(r) => (RESERVATION_PRESENT, r.base, r.size),
            None => (0, 0, 0),
        };
        let (device_flags, bar_index, bar_base, bar_size) = match s.device {
            Some(d) => (d.flags(), d.bar_index, d.bar_base, d.bar_size),
            None => (0, 0, 0, 0),
        };
        WaitGuestEventReply {
            header: WaitGuestEventReply::header_for_kind(),
            sequence: U64::new(self.sequence),
            event: U32::new(self.kind.to_u32()),
            flags: U32::new(self.flags),
            reservation_flags: U32::new(reservation_flags),
            device_flags: U32::new(device_flags),
            reservation_base: U64::new(reservation_base),
            reservation_size: U64::new(reservation_size),
            bar_base: U64::new(bar_base),
            bar_size: U64::new(bar_size),
            bar_index,
            reserved0: 0,
            reserved1: U16::new(0),
            protocol_version: U32::new(s.protocol_version),
            guest_packets: U64::new(s.guest_packets),
            counted_errors: U64::new(s.counted_errors),
            errors_left: U32::new(s.errors_left),
            reserved2: U32::new(0),
            reserved: [U64::new(0); GUEST_EVENT_RESERVED_WORDS],
        }
    }

    /// Writes the reply to the start of `out`; returns its length or
    /// [`ProtoError::OutputTooSmall`].
    pub fn encode(&self, out: &mut [u8]) -> ProtoResult<usize> {
        self.to_reply().encode(out)
    }
}

/// `flags` against `kind`: no undefined bit ([`ProtoError::EventFlagsReserved`]); a
/// [`GuestEventKind::GuestReport`] names at least one report, every other kind none
/// ([`ProtoError::EventFlagsMismatch`]).
const fn check_event_flags(kind: GuestEventKind, flags: u32) -> ProtoResult<()> {
    if flags & !EVENT_FLAGS_ALL != 0 {
        return Err(ProtoError::EventFlagsReserved { got: flags });
    }
    let is_report = matches!(kind, GuestEventKind::GuestReport);
    if is_report == (flags == 0) {
        return Err(ProtoError::EventFlagsMismatch {
            event: kind.to_u32(),
            got: flags,
        });
    }
    Ok(())
}

/// Validates a WAIT_GUEST_EVENT input buffer and returns `last_seen`: framing only (every value
/// of `last_seen` is well-formed; whether it fits the session's events is the driver's check).
pub fn parse_wait_guest_event(bytes: &[u8]) -> ProtoResult<u64> {
    unframe::<WaitGuestEventRequest>(bytes).map(|request| request.last_seen.get())
}

/// Validates a WAIT_GUEST_EVENT output buffer (device-host side), in wire order: framing,
/// `sequence`, `event` ([`ProtoError::BadGuestEvent`]), `flags`, `reservation_flags`
/// ([`ProtoError::ReservationFlagsReserved`]), `device_flags`
/// ([`ProtoError::DeviceFlagsReserved`]), an absent reservation's fields
/// ([`ProtoError::AbsentReportNotZero`]) or a present one's rules, an absent device's fields or
/// a present one's rules, then the reserved fields.
pub fn parse_wait_guest_event_reply(bytes: &[u8]) -> ProtoResult<GuestEvent> {
    let reply = unframe::<WaitGuestEventReply>(bytes)?;
    let sequence = reply.sequence.get();
    if sequence == 0 {
        return Err(ProtoError::ZeroEventSequence);
    }
    let raw_event = reply.event.get();
    let kind =
        GuestEventKind::from_u32(raw_event).ok_or(ProtoError::BadGuestEvent { got: raw_event })?;
    let flags = reply.flags.get();
    check_event_flags(kind, flags)?;
    let reservation_flags = reply.reservation_flags.get();
    if reservation_flags & !RESERVATION_PRESENT != 0 {
        return Err(ProtoError::ReservationFlagsReserved {
            got: reservation_flags,
        });
    }
    let device_flags = reply.device_flags.get();
    if device_flags & !DEVICE_FLAGS_ALL != 0 {
        return Err(ProtoError::DeviceFlagsReserved { got: device_flags });
    }
    let reservation = if reservation_flags & RESERVATION_PRESENT != 0 {
        Some(GuestReservation {
            base: reply.reservation_base.get(),
            size: reply.reservation_size.get(),
        })
    } else {
        if reply.reservation_base.get() != 0 || reply.reservation_size.get() != 0 {
            return Err(ProtoError::AbsentReportNotZero {
                report: AbsentReport::Reservation,
            });
        }
        None
    };
    let device = if device_flags & DEVICE_PRESENT != 0 {
        Some(GuestDevice {
            bar_index: reply.bar_index,
            bar_base: reply.bar_base.get(),
            bar_size: reply.bar_size.get(),
            decode_on: device_flags & DEVICE_DECODE_ON != 0,
            ready: device_flags & DEVICE_READY != 0,
            releasing: device_flags & DEVICE_RELEASING != 0,
        })
    } else {
        if device_flags != 0
            || reply.bar_index != 0
            || reply.bar_base.get() != 0
            || reply.bar_size.get() != 0
        {
            return Err(ProtoError::AbsentReportNotZero {
                report: AbsentReport::Device,
            });
        }
        None
    };
    let snapshot = GuestSnapshot {
        reservation,
        device,
        protocol_version: reply.protocol_version.get(),
        guest_packets: reply.guest_packets.get(),
        counted_errors: reply.counted_errors.get(),
        errors_left: reply.errors_left.get(),
    };
    let event = GuestEvent::new(sequence, kind, flags, snapshot)?;
    check_zero(
        ReservedField::GuestEventPad,
        u64::from(reply.reserved0) | (u64::from(reply.reserved1.get()) << 8),
    )?;
    check_zero(ReservedField::GuestEventPad2, reply.reserved2.get().into())?;
    for (index, word) in (0u32..).zip(reply.reserved.iter()) {
        check_zero(ReservedField::GuestEventTail { index }, word.get())?;
    }
    Ok(event)
}
