//! Host → guest: the host's reply encoders and the guest's one parser for every reply.
//!
//! The guest must not trust the host either (a compromised or buggy host could otherwise
//! steer a guest driver to map the wrong memory), so [`parse_reply`] checks every reply as
//! strictly as the host checks requests, in the same order: length ≥ 16, a reply kind,
//! `flags` 0, `size` = packet length = the kind's size, reserved fields zero, then the body's
//! fields in wire order. The encoders refuse exactly what the parser would refuse, so the host
//! never sends a reply a guest rejects. Whether a reply answers the request it claims to (kind,
//! id, sequence) is the [`GuestClient`](super::GuestClient)'s check.
//!
//! What a reply may carry depends on the conversation's version: [`parse_reply_in`] takes it
//! (1.1 adds an `ACK` of `DOORBELL`, `ERROR` `RATE_LIMITED` and the `DOORBELL` event with its
//! `region` and `value`); [`parse_reply`] applies 1.0, where those bytes are reserved.

use core::mem::offset_of;

use zerocopy::byteorder::little_endian::{U32, U64};
use zerocopy::{FromBytes, FromZeros};

use super::ack::{Ack, AckReply};
use super::error::EncodeError;
use super::error_reply::{ErrorCode, ErrorInfo, ErrorReply};
use super::event::{Event, EventKind, EventReply};
use super::header::{GuestMessage, Header, Kind};
use super::hello::{HelloReply, HostInfo};
use super::layout::{
    Layout, LayoutReply, Region, RegionAccess, RegionFault, RegionName, RegionState, WireRegion,
    check_region,
};
use super::limits::{
    LARGEST_MESSAGE, MAX_REGIONS, MAX_REGIONS_U32, PROTOCOL_VERSION_1_0, has_doorbells,
};
use super::placement::check_bar_size;
use super::request::RequestError;
use crate::PAGE_SIZE;

/// A reply's content, checked.
// A `Layout` is about 1 KiB; the reply is moved once, and this crate cannot box.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReplyBody {
    /// `HELLO_REPLY`.
    HelloReply(HostInfo),
    /// `ACK`.
    Ack(Ack),
    /// `LAYOUT`.
    Layout(Layout),
    /// `EVENT`.
    Event(Event),
    /// `ERROR`.
    Error(ErrorInfo),
}

impl ReplyBody {
    /// The reply's kind.
    pub const fn kind(&self) -> Kind {
        match self {
            Self::HelloReply(_) => Kind::HelloReply,
            Self::Ack(_) => Kind::Ack,
            Self::Layout(_) => Kind::Layout,
            Self::Event(_) => Kind::Event,
            Self::Error(_) => Kind::Error,
        }
    }
}

/// A reply that passed every check of the parser.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Reply {
    /// The id of the request it answers.
    pub request_id: u64,
    /// The content.
    pub body: ReplyBody,
}

/// Why a reply was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyError {
    /// Shorter than the header.
    TooShort {
        /// Its length.
        got: usize,
    },
    /// Not a reply kind.
    NotAReply {
        /// The header's `kind`.
        kind: u16,
    },
    /// The header's `flags` is not 0.
    FlagsNotZero {
        /// Its value.
        got: u16,
    },
    /// The header's `size`, the packet's length and the kind's size disagree.
    SizeMismatch {
        /// The kind's size.
        expected: u32,
        /// The header's `size`.
        size_field: u32,
        /// The packet's length.
        packet: usize,
    },
    /// A reserved field is not zero.
    ReservedNotZero {
        /// Offset of the field in the message.
        offset: usize,
        /// Its value, widened.
        got: u64,
    },
    /// `HELLO_REPLY` states an empty or zero version range.
    BadVersionRange {
        /// `min_version`.
        min: u32,
        /// `max_version`.
        max: u32,
    },
    /// `HELLO_REPLY.max_packet_size` cannot carry the largest message.
    PacketSizeTooSmall {
        /// Its value.
        got: u32,
    },
    /// `HELLO_REPLY.max_regions` is 0 or above 16.
    BadMaxRegions {
        /// Its value.
        got: u32,
    },
    /// `HELLO_REPLY.error_limit` is 0.
    ZeroErrorLimit,
    /// `ACK.acked_kind` is not a kind answered with `ACK`.
    NotAcked {
        /// Its value.
        got: u16,
    },
    /// `LAYOUT.bar_size` is not a power of two of at least a page.
    BadBarSize {
        /// Its value.
        got: u64,
    },
    /// `LAYOUT.region_count` is above 16.
    TooManyRegions {
        /// Its value.
        got: u32,
    },
    /// A used region entry is refused.
    BadRegion {
        /// Its index.
        index: usize,
        /// Why.
        fault: RegionFault,
    },
    /// An entry at or after `region_count` is not all zero.
    UnusedRegionNotZero {
        /// Its index.
        index: usize,
    },
    /// `EVENT.sequence` is 0 (sequences start at 1).
    ZeroSequence,
    /// `EVENT.event` is not a known event.
    BadEventKind {
        /// Its value.
        got: u32,
    },
    /// `ERROR.code` is not a known code.
    BadErrorCode {
        /// Its value.
        got: u32,
    },
    /// A `DOORBELL` event (1.1) names a region at or above [`MAX_REGIONS`].
    BadDoorbellRegion {
        /// Its value.
        got: u32,
    },
}

const fn reserved(offset: usize, got: u64) -> Result<(), ReplyError> {
    if got == 0 {
        Ok(())
    } else {
        Err(ReplyError::ReservedNotZero { offset, got })
    }
}

/// Parses one reply in place with the rules of version 1.0 (also the rules before a version is
/// selected): [`parse_reply_in`] with 1.0.
pub fn parse_reply(bytes: &[u8]) -> Result<Reply, ReplyError> {
    parse_reply_in(bytes, PROTOCOL_VERSION_1_0)
}

/// Parses one reply in place in a conversation of `version`: every rule of the module docs,
/// first failure returned. A kind, code or event the version does not have is refused as in an
/// older guest (`NotAcked`, `BadErrorCode`, `BadEventKind`).
pub fn parse_reply_in(bytes: &[u8], version: u32) -> Result<Reply, ReplyError> {
    let too_short = ReplyError::TooShort { got: bytes.len() };
    let (header, _) = Header::ref_from_prefix(bytes).map_err(|_| too_short)?;
    let raw_kind = header.kind.get();
    let kind = match Kind::from_u16(raw_kind) {
        Some(kind) if kind.is_reply() => kind,
        _ => return Err(ReplyError::NotAReply { kind: raw_kind }),
    };
    let flags = header.flags.get();
    if flags != 0 {
        return Err(ReplyError::FlagsNotZero { got: flags });
    }
    let size_field = header.size.get();
    if size_field != kind.size_u32() || bytes.len() != kind.size() {
        return Err(ReplyError::SizeMismatch {
            expected: kind.size_u32(),
            size_field,
            packet: bytes.len(),
        });
    }
    let body = match kind {
        Kind::HelloReply => hello_reply(HelloReply::ref_from_bytes(bytes).map_err(|_| too_short)?),
        Kind::Ack => ack(
            AckReply::ref_from_bytes(bytes).map_err(|_| too_short)?,
            version,
        ),
        Kind::Layout => layout(LayoutReply::ref_from_bytes(bytes).map_err(|_| too_short)?),
        Kind::Event if has_doorbells(version) => {
            event_1_1(EventReply::ref_from_bytes(bytes).map_err(|_| too_short)?)
        }
        Kind::Event => event(EventReply::ref_from_bytes(bytes).map_err(|_| too_short)?),
        Kind::Error => error(
            ErrorReply::ref_from_bytes(bytes).map_err(|_| too_short)?,
            version,
        ),
        Kind::Hello
        | Kind::SelectVersion
        | Kind::ReportReservation
        | Kind::ReportDevice
        | Kind::Ready
        | Kind::Releasing
        | Kind::GetLayout
        | Kind::WaitEvent
        | Kind::Doorbell => Err(ReplyError::NotAReply { kind: raw_kind }),
    }?;
    Ok(Reply {
        request_id: header.request_id.get(),
        body,
    })
}

fn hello_reply(m: &HelloReply) -> Result<ReplyBody, ReplyError> {
    reserved(offset_of!(HelloReply, reserved0), m.reserved0.get().into())?;
    reserved(offset_of!(HelloReply, reserved1), m.reserved1.get())?;
    let info = HostInfo {
        min_version: m.min_version.get(),
        max_version: m.max_version.get(),
        max_packet_size: m.max_packet_size.get(),
        max_regions: m.max_regions.get(),
        error_limit: m.error_limit.get(),
    };
    if info.min_version == 0 || info.min_version > info.max_version {
        return Err(ReplyError::BadVersionRange {
            min: info.min_version,
            max: info.max_version,
        });
    }
    if (info.max_packet_size as usize) < LARGEST_MESSAGE {
        return Err(ReplyError::PacketSizeTooSmall {
            got: info.max_packet_size,
        });
    }
    if info.max_regions == 0 || info.max_regions > MAX_REGIONS_U32 {
        return Err(ReplyError::BadMaxRegions {
            got: info.max_regions,
        });
    }
    if info.error_limit == 0 {
        return Err(ReplyError::ZeroErrorLimit);
    }
    Ok(ReplyBody::HelloReply(info))
}

fn ack(m: &AckReply, version: u32) -> Result<ReplyBody, ReplyError> {
    reserved(offset_of!(AckReply, reserved0), m.reserved0.get().into())?;
    reserved(offset_of!(AckReply, reserved1), m.reserved1.get().into())?;
    let raw = m.acked_kind.get();
    match Kind::from_u16(raw) {
        Some(acked_kind) if Ack::acks(acked_kind) && acked_kind.exists_in(version) => {
            Ok(ReplyBody::Ack(Ack {
                acked_kind,
                generation: m.generation.get(),
            }))
        }
        _ => Err(ReplyError::NotAcked { got: raw }),
    }
}

fn layout(m: &LayoutReply) -> Result<ReplyBody, ReplyError> {
    reserved(offset_of!(LayoutReply, reserved), m.reserved.get().into())?;
    let bar_size = m.bar_size.get();
    check_bar_size(bar_size).map_err(|_| ReplyError::BadBarSize { got: bar_size })?;
    let bar_pages = bar_size.checked_div(PAGE_SIZE).unwrap_or(0);
    let raw_count = m.region_count.get();
    if raw_count > MAX_REGIONS_U32 {
        return Err(ReplyError::TooManyRegions { got: raw_count });
    }
    let count = usize::try_from(raw_count).unwrap_or(MAX_REGIONS);
    let mut regions = [Region::EMPTY; MAX_REGIONS];
    for (index, (slot, wire)) in regions.iter_mut().zip(&m.regions).enumerate() {
        if index >= count {
            if wire != &WireRegion::ZERO {
                return Err(ReplyError::UnusedRegionNotZero { index });
            }
            continue;
        }
        *slot = region_from_wire(wire, bar_pages)
            .map_err(|fault| ReplyError::BadRegion { index, fault })?;
    }
    let used = regions.get(..count).unwrap_or(&[]);
    let layout = Layout::new(m.generation.get(), bar_size, used).map_err(|_| {
        // Unreachable: every rule `Layout::new` applies was checked above.
        ReplyError::TooManyRegions { got: raw_count }
    })?;
    Ok(ReplyBody::Layout(layout))
}

fn region_from_wire(wire: &WireRegion, bar_pages: u64) -> Result<Region, RegionFault> {
    if wire.reserved0.get() != 0 {
        return Err(RegionFault::ReservedNotZero {
            offset: offset_of!(WireRegion, reserved0),
        });
    }
    if wire.reserved1.get() != 0 {
        return Err(RegionFault::ReservedNotZero {
            offset: offset_of!(WireRegion, reserved1),
        });
    }
    let access =
        RegionAccess::from_u8(wire.access).ok_or(RegionFault::BadAccess { got: wire.access })?;
    let state =
        RegionState::from_u8(wire.state).ok_or(RegionFault::BadState { got: wire.state })?;
    let region = Region {
        id: wire.id.get(),
        access,
        state,
        offset_pages: wire.offset_pages.get(),
        length_pages: wire.length_pages.get(),
        name: RegionName::EMPTY,
    };
    check_region(&region, bar_pages)?;
    let name = RegionName::from_wire(&wire.name).map_err(RegionFault::BadName)?;
    Ok(Region { name, ..region })
}

/// `EVENT` in 1.0: `region` and `value` are reserved, `DOORBELL` does not exist.
fn event(m: &EventReply) -> Result<ReplyBody, ReplyError> {
    reserved(offset_of!(EventReply, region), m.region.get().into())?;
    reserved(offset_of!(EventReply, value), m.value.get())?;
    let sequence = m.sequence.get();
    if sequence == 0 {
        return Err(ReplyError::ZeroSequence);
    }
    let raw = m.event.get();
    let kind = EventKind::from_u32(raw)
        .filter(|kind| kind.since() == PROTOCOL_VERSION_1_0)
        .ok_or(ReplyError::BadEventKind { got: raw })?;
    Ok(ReplyBody::Event(Event::new(
        sequence,
        kind,
        m.generation.get(),
    )))
}

/// `EVENT` in 1.1, fields in wire order: `sequence`, `event`, `region` (a `DOORBELL` event's
/// is below [`MAX_REGIONS`], every other event's 0), `value` (0 unless `DOORBELL`).
fn event_1_1(m: &EventReply) -> Result<ReplyBody, ReplyError> {
    let sequence = m.sequence.get();
    if sequence == 0 {
        return Err(ReplyError::ZeroSequence);
    }
    let raw = m.event.get();
    let kind = EventKind::from_u32(raw).ok_or(ReplyError::BadEventKind { got: raw })?;
    let (region, value) = (m.region.get(), m.value.get());
    if kind == EventKind::Doorbell {
        if region >= MAX_REGIONS_U32 {
            return Err(ReplyError::BadDoorbellRegion { got: region });
        }
    } else {
        reserved(offset_of!(EventReply, region), region.into())?;
        reserved(offset_of!(EventReply, value), value)?;
    }
    Ok(ReplyBody::Event(Event {
        sequence,
        kind,
        generation: m.generation.get(),
        region,
        value,
    }))
}

fn error(m: &ErrorReply, version: u32) -> Result<ReplyBody, ReplyError> {
    reserved(offset_of!(ErrorReply, reserved0), m.reserved0.get().into())?;
    reserved(offset_of!(ErrorReply, reserved1), m.reserved1.get().into())?;
    let raw = m.code.get();
    let code = ErrorCode::from_u32(raw)
        .filter(|code| code.since() <= version)
        .ok_or(ReplyError::BadErrorCode { got: raw })?;
    Ok(ReplyBody::Error(ErrorInfo {
        code,
        request_kind: m.request_kind.get(),
        errors_left: m.errors_left.get(),
    }))
}

/// Writes `HELLO_REPLY` answering `request_id`; refuses values a guest would refuse
/// ([`HostInfo`]'s rules).
pub fn encode_hello_reply(
    out: &mut [u8],
    request_id: u64,
    info: &HostInfo,
) -> Result<usize, EncodeError> {
    if !info.is_valid() {
        return Err(EncodeError::BadHostInfo);
    }
    info.to_wire(request_id).encode(out)
}

/// Writes `ACK` of a request of `acked_kind` answering `request_id`.
pub fn encode_ack(
    out: &mut [u8],
    request_id: u64,
    acked_kind: Kind,
    generation: u64,
) -> Result<usize, EncodeError> {
    if !Ack::acks(acked_kind) {
        return Err(EncodeError::NotAcked { kind: acked_kind });
    }
    Ack {
        acked_kind,
        generation,
    }
    .to_wire(request_id)
    .encode(out)
}

/// Writes `LAYOUT` answering `request_id`: `regions` (at most 16, each checked like the guest
/// checks it) in a BAR of `bar_size` bytes, the unused entries zero. Built in place in `out`,
/// so the 1064-byte message never sits on the stack.
pub fn encode_layout(
    out: &mut [u8],
    request_id: u64,
    generation: u64,
    bar_size: u64,
    regions: &[Region],
) -> Result<usize, EncodeError> {
    let count = u32::try_from(regions.len())
        .ok()
        .filter(|&count| count <= MAX_REGIONS_U32)
        .ok_or(EncodeError::TooManyRegions { got: regions.len() })?;
    check_bar_size(bar_size).map_err(|_| EncodeError::BadBarSize { got: bar_size })?;
    let bar_pages = bar_size.checked_div(PAGE_SIZE).unwrap_or(0);
    for (index, region) in regions.iter().enumerate() {
        check_region(region, bar_pages).map_err(|fault| EncodeError::BadRegion { index, fault })?;
    }
    let got = out.len();
    let (reply, _) =
        LayoutReply::mut_from_prefix(out).map_err(|_| EncodeError::OutputTooSmall {
            needed: Kind::Layout.size(),
            got,
        })?;
    reply.zero();
    reply.header = Header::new(Kind::Layout, request_id);
    reply.generation = U64::new(generation);
    reply.bar_size = U64::new(bar_size);
    reply.region_count = U32::new(count);
    for (slot, region) in reply.regions.iter_mut().zip(regions) {
        *slot = region.to_wire();
    }
    Ok(Kind::Layout.size())
}

/// Writes `EVENT` answering the `WAIT_EVENT` `request_id` in a 1.0 conversation:
/// [`encode_event_in`] with 1.0.
pub fn encode_event(out: &mut [u8], request_id: u64, event: &Event) -> Result<usize, EncodeError> {
    encode_event_in(out, request_id, event, PROTOCOL_VERSION_1_0)
}

/// Writes `EVENT` answering the `WAIT_EVENT` `request_id` in a conversation of `version`;
/// refuses sequence 0 and an event the version cannot carry ([`Event::fits`]: a `DOORBELL`
/// event before 1.1, doorbell fields on another event, a doorbell region ≥ 16).
pub fn encode_event_in(
    out: &mut [u8],
    request_id: u64,
    event: &Event,
    version: u32,
) -> Result<usize, EncodeError> {
    if event.sequence == 0 {
        return Err(EncodeError::ZeroSequence);
    }
    if !event.fits(version) {
        return Err(EncodeError::EventNotInVersion {
            kind: event.kind,
            version,
        });
    }
    event.to_wire(request_id).encode(out)
}

/// Writes `ERROR` answering `request_id`: `code`, the kind the guest sent as received, and the
/// errors it has left.
pub fn encode_error(
    out: &mut [u8],
    request_id: u64,
    code: ErrorCode,
    request_kind: u16,
    errors_left: u32,
) -> Result<usize, EncodeError> {
    ErrorInfo {
        code,
        request_kind,
        errors_left,
    }
    .to_wire(request_id)
    .encode(out)
}

/// Writes the `ERROR` that refuses a request: its code, its kind and id as received.
pub fn encode_refusal(
    out: &mut [u8],
    refusal: &RequestError,
    errors_left: u32,
) -> Result<usize, EncodeError> {
    encode_error(
        out,
        refusal.request_id,
        refusal.code(),
        refusal.received_kind,
        errors_left,
    )
}

/// Checks a name for a layout entry (`NUL`-free UTF-8 of at most 32 bytes); the same as
/// [`RegionName::new`].
pub fn region_name(name: &str) -> Result<RegionName, EncodeError> {
    RegionName::new(name).map_err(EncodeError::BadName)
}
