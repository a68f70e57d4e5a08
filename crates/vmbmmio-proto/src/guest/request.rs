//! Guest → host: the host's one parser for every request, and the guest's encoder.
//!
//! # The check order (`docs/protocol.md`, "Message header")
//! The first failure is the reply's error:
//! 1. length ≥ 16 ([`RequestFault::TooShort`]);
//! 2. a known request kind of the conversation's version ([`RequestFault::UnknownKind`]; reply
//!    kinds are not requests; `DOORBELL` exists from 1.1: the `*_in` functions take the
//!    version, the others apply 1.0);
//! 3. header `flags` 0 ([`RequestFault::FlagsNotZero`]);
//! 4. header `size` = packet length = the kind's size ([`RequestFault::SizeMismatch`]);
//! 5. `request_id` greater than the last accepted one ([`RequestFault::Replayed`]) — only the
//!    host's engine knows the last one: [`FramedRequest::check_order`] or
//!    [`parse_request_after`];
//! 6. reserved fields zero ([`RequestFault::ReservedNotZero`]);
//! 7. the body's fields in wire order: `REPORT_RESERVATION` flags, then the reservation
//!    (absent: base and size 0; present: [`check_reservation`]); `REPORT_DEVICE` `bar_index`,
//!    flags, then the BAR ([`check_bar_size`], then [`check_placement`] against its own size);
//!    `DOORBELL` `region` below [`MAX_REGIONS`](super::MAX_REGIONS) (the session's count is the engine's check).
//!
//! The conversation's rules (version range, order, pairing, the session's BAR size, the
//! reservation overlap, `BUSY`) come after, in the host's engine; their faults are here too, so
//! one [`RequestError`] and one [`ErrorCode`] cover every reply. Parsing reads the packet in
//! place, allocates nothing and returns only checked values.

use core::mem::offset_of;

use zerocopy::FromBytes;

use super::doorbell::DoorbellRequest;
use super::error::EncodeError;
use super::error_reply::ErrorCode;
use super::event::WaitEventRequest;
use super::header::{GuestMessage, Header, Kind};
use super::hello::{HelloRequest, SelectVersionRequest};
use super::layout::GetLayoutRequest;
use super::limits::{MAX_BAR_INDEX, MAX_REGIONS_U32, PROTOCOL_VERSION_1_0};
use super::placement::{
    BarPlacement, GuestRange, PlacementError, check_bar_size, check_placement, check_reservation,
};
use super::report::{
    DEVICE_DECODE_ON, DeviceReport, RESERVATION_PRESENT, ReadyRequest, ReleasingRequest,
    ReportDeviceRequest, ReportReservationRequest, reservation_to_wire,
};

/// A request's content, checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RequestBody {
    /// `HELLO`.
    Hello,
    /// `SELECT_VERSION`.
    SelectVersion {
        /// The version picked (whether it is in the host's range is the engine's check).
        version: u32,
    },
    /// `REPORT_RESERVATION`: where the reservation is, or `None` if the guest made none.
    ReportReservation(Option<GuestRange>),
    /// `REPORT_DEVICE`.
    ReportDevice(DeviceReport),
    /// `READY`.
    Ready,
    /// `RELEASING`.
    Releasing,
    /// `GET_LAYOUT`.
    GetLayout,
    /// `WAIT_EVENT`.
    WaitEvent {
        /// The highest event sequence the guest has seen.
        last_seen: u64,
    },
    /// `DOORBELL` (version 1.1).
    Doorbell {
        /// The region's id: below [`MAX_REGIONS`](super::MAX_REGIONS) (whether below the session's region count is
        /// the engine's check).
        region: u32,
        /// The value rung.
        value: u64,
    },
}

impl RequestBody {
    /// The request's kind.
    pub const fn kind(&self) -> Kind {
        match self {
            Self::Hello => Kind::Hello,
            Self::SelectVersion { .. } => Kind::SelectVersion,
            Self::ReportReservation(_) => Kind::ReportReservation,
            Self::ReportDevice(_) => Kind::ReportDevice,
            Self::Ready => Kind::Ready,
            Self::Releasing => Kind::Releasing,
            Self::GetLayout => Kind::GetLayout,
            Self::WaitEvent { .. } => Kind::WaitEvent,
            Self::Doorbell { .. } => Kind::Doorbell,
        }
    }
}

/// A request that passed every check of the parser.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Request {
    /// The guest's id, echoed by the reply.
    pub request_id: u64,
    /// The content.
    pub body: RequestBody,
}

impl Request {
    /// The error refusing this request for a conversation rule (`fault` is one of the
    /// engine's: [`RequestFault::UnsupportedVersion`], [`RequestFault::OutOfOrder`], …).
    pub const fn refuse(&self, fault: RequestFault) -> RequestError {
        RequestError {
            received_kind: self.body.kind().to_u16(),
            request_id: self.request_id,
            fault,
        }
    }
}

/// Why a request was refused: the parser's faults first, then the engine's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestFault {
    /// The packet is shorter than the header.
    TooShort {
        /// Its length.
        got: usize,
    },
    /// Not a request kind of this version (the kind is in [`RequestError::received_kind`]).
    UnknownKind,
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
    /// `request_id` is not greater than the last accepted one (the engine's check).
    Replayed {
        /// The last accepted id (0: none yet).
        last_accepted: u64,
    },
    /// A reserved field is not zero.
    ReservedNotZero {
        /// Offset of the field in the message.
        offset: usize,
        /// Its value, widened.
        got: u64,
    },
    /// `REPORT_RESERVATION.flags` has a bit other than `PRESENT`.
    ReservationFlags {
        /// Its value.
        got: u32,
    },
    /// `REPORT_RESERVATION` without `PRESENT` has a non-zero base or size.
    AbsentReservationNotZero {
        /// `base`.
        base: u64,
        /// `size`.
        size: u64,
    },
    /// `REPORT_RESERVATION` with `PRESENT` names an impossible reservation.
    BadReservation(PlacementError),
    /// `REPORT_DEVICE.bar_index` is above 5.
    BadBarIndex {
        /// Its value.
        got: u8,
    },
    /// `REPORT_DEVICE.flags` has a bit other than `DECODE_ON`.
    DeviceFlags {
        /// Its value.
        got: u8,
    },
    /// `REPORT_DEVICE` names an impossible BAR: here, or in the engine (the session's BAR size,
    /// the overlap with the reported reservation).
    BadPlacement(PlacementError),
    /// `SELECT_VERSION` outside the host's range (the engine's check).
    UnsupportedVersion {
        /// The version asked for.
        version: u32,
    },
    /// Not allowed in the conversation's current state (the engine's check).
    OutOfOrder,
    /// `REPORT_DEVICE` names another channel's instance GUID (the engine's check).
    NotPaired,
    /// A `WAIT_EVENT` is already outstanding, or the device host has not taken the previous
    /// report (the engine's check).
    Busy,
    /// The channel is suspending or closing, or the host stopped answering (the engine's).
    ChannelClosing,
    /// `DOORBELL` names a region the session does not have: at or above `limit` (the parser
    /// checks [`MAX_REGIONS`](super::MAX_REGIONS), the engine the session's region count).
    BadDoorbellRegion {
        /// The region named.
        region: u32,
        /// Regions must be below this.
        limit: u32,
    },
    /// `DOORBELL` refused by the guest's rate limit (the engine's check; not counted).
    RateLimited,
}

impl RequestFault {
    /// The code the `ERROR` reply carries.
    pub const fn code(&self) -> ErrorCode {
        match self {
            Self::TooShort { .. }
            | Self::FlagsNotZero { .. }
            | Self::SizeMismatch { .. }
            | Self::ReservedNotZero { .. }
            | Self::ReservationFlags { .. }
            | Self::AbsentReservationNotZero { .. }
            | Self::BadBarIndex { .. }
            | Self::DeviceFlags { .. }
            | Self::BadDoorbellRegion { .. } => ErrorCode::Malformed,
            Self::UnknownKind => ErrorCode::UnknownKind,
            Self::Replayed { .. } => ErrorCode::Replayed,
            Self::BadReservation(_) | Self::BadPlacement(_) => ErrorCode::BadPlacement,
            Self::UnsupportedVersion { .. } => ErrorCode::UnsupportedVersion,
            Self::OutOfOrder => ErrorCode::OutOfOrder,
            Self::NotPaired => ErrorCode::NotPaired,
            Self::Busy => ErrorCode::Busy,
            Self::ChannelClosing => ErrorCode::ChannelClosing,
            Self::RateLimited => ErrorCode::RateLimited,
        }
    }
}

/// A refused request: why, and what the `ERROR` reply must echo.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestError {
    /// The header's `kind` as received (0 if the packet is too short to hold it); the reply's
    /// `request_kind`.
    pub received_kind: u16,
    /// The header's `request_id` as received (0 if the packet is too short to hold it); the
    /// reply's header echoes it.
    pub request_id: u64,
    /// Why.
    pub fault: RequestFault,
}

impl RequestError {
    /// The code the `ERROR` reply carries.
    pub const fn code(&self) -> ErrorCode {
        self.fault.code()
    }

    /// Whether this error counts against the guest's allowance.
    pub const fn counted(&self) -> bool {
        self.code().counted()
    }
}

/// A request whose header passed checks 1–4; its body is not checked yet.
#[derive(Clone, Copy, Debug)]
pub struct FramedRequest<'a> {
    kind: Kind,
    request_id: u64,
    bytes: &'a [u8],
}

impl FramedRequest<'_> {
    /// The request's kind.
    pub const fn kind(&self) -> Kind {
        self.kind
    }

    /// The request's id.
    pub const fn request_id(&self) -> u64 {
        self.request_id
    }

    /// The error refusing this request with `fault`.
    pub const fn refuse(&self, fault: RequestFault) -> RequestError {
        RequestError {
            received_kind: self.kind.to_u16(),
            request_id: self.request_id,
            fault,
        }
    }

    /// Check 5: `request_id` must be greater than `last_accepted` (0 before any), so 0 is
    /// never accepted.
    pub const fn check_order(&self, last_accepted: u64) -> Result<(), RequestError> {
        if self.request_id > last_accepted {
            Ok(())
        } else {
            Err(self.refuse(RequestFault::Replayed { last_accepted }))
        }
    }

    /// Checks 6 and 7: the reserved fields, then the body's fields in wire order.
    pub fn parse_body(&self) -> Result<Request, RequestError> {
        let body = match self.kind {
            Kind::Hello => self.view::<HelloRequest>().map(|_| RequestBody::Hello),
            Kind::Ready => self.view::<ReadyRequest>().map(|_| RequestBody::Ready),
            Kind::Releasing => self
                .view::<ReleasingRequest>()
                .map(|_| RequestBody::Releasing),
            Kind::GetLayout => self
                .view::<GetLayoutRequest>()
                .map(|_| RequestBody::GetLayout),
            Kind::SelectVersion => self.select_version(),
            Kind::ReportReservation => self.report_reservation(),
            Kind::ReportDevice => self.report_device(),
            Kind::WaitEvent => self
                .view::<WaitEventRequest>()
                .map(|m| RequestBody::WaitEvent {
                    last_seen: m.last_seen.get(),
                }),
            Kind::Doorbell => self.doorbell(),
            // `frame_request` admits request kinds only.
            Kind::HelloReply | Kind::Ack | Kind::Layout | Kind::Event | Kind::Error => {
                Err(RequestFault::UnknownKind)
            }
        };
        match body {
            Ok(body) => Ok(Request {
                request_id: self.request_id,
                body,
            }),
            Err(fault) => Err(self.refuse(fault)),
        }
    }

    fn view<T: GuestMessage>(&self) -> Result<&T, RequestFault> {
        // The framing checked the exact length; this cannot fail, but is not trusted to.
        T::ref_from_bytes(self.bytes).map_err(|_| RequestFault::TooShort {
            got: self.bytes.len(),
        })
    }

    fn select_version(&self) -> Result<RequestBody, RequestFault> {
        let m = self.view::<SelectVersionRequest>()?;
        reserved(
            offset_of!(SelectVersionRequest, reserved),
            m.reserved.get().into(),
        )?;
        Ok(RequestBody::SelectVersion {
            version: m.version.get(),
        })
    }

    fn doorbell(&self) -> Result<RequestBody, RequestFault> {
        let m = self.view::<DoorbellRequest>()?;
        reserved(
            offset_of!(DoorbellRequest, reserved),
            m.reserved.get().into(),
        )?;
        let region = m.region.get();
        if region >= MAX_REGIONS_U32 {
            return Err(RequestFault::BadDoorbellRegion {
                region,
                limit: MAX_REGIONS_U32,
            });
        }
        Ok(RequestBody::Doorbell {
            region,
            value: m.value.get(),
        })
    }

    fn report_reservation(&self) -> Result<RequestBody, RequestFault> {
        let m = self.view::<ReportReservationRequest>()?;
        reserved(
            offset_of!(ReportReservationRequest, reserved),
            m.reserved.get().into(),
        )?;
        let flags = m.flags.get();
        if flags & !RESERVATION_PRESENT != 0 {
            return Err(RequestFault::ReservationFlags { got: flags });
        }
        let (base, size) = (m.base.get(), m.size.get());
        if flags & RESERVATION_PRESENT == 0 {
            if base != 0 || size != 0 {
                return Err(RequestFault::AbsentReservationNotZero { base, size });
            }
            return Ok(RequestBody::ReportReservation(None));
        }
        check_reservation(GuestRange { base, size })
            .map(|range| RequestBody::ReportReservation(Some(range)))
            .map_err(RequestFault::BadReservation)
    }

    fn report_device(&self) -> Result<RequestBody, RequestFault> {
        let m = self.view::<ReportDeviceRequest>()?;
        reserved(
            offset_of!(ReportDeviceRequest, reserved),
            m.reserved.get().into(),
        )?;
        if m.bar_index > MAX_BAR_INDEX {
            return Err(RequestFault::BadBarIndex { got: m.bar_index });
        }
        if m.flags & !DEVICE_DECODE_ON != 0 {
            return Err(RequestFault::DeviceFlags { got: m.flags });
        }
        let bar = BarPlacement {
            base: m.bar_base.get(),
            size: m.bar_size.get(),
            memory_decode: m.flags & DEVICE_DECODE_ON != 0,
        };
        check_bar_size(bar.size).map_err(RequestFault::BadPlacement)?;
        check_placement(&bar, bar.size).map_err(RequestFault::BadPlacement)?;
        Ok(RequestBody::ReportDevice(DeviceReport {
            instance: m.instance,
            segment: m.segment.get(),
            bus: m.bus,
            devfn: m.devfn,
            bar_index: m.bar_index,
            bar,
        }))
    }
}

const fn reserved(offset: usize, got: u64) -> Result<(), RequestFault> {
    if got == 0 {
        Ok(())
    } else {
        Err(RequestFault::ReservedNotZero { offset, got })
    }
}

/// The kind and request id of `bytes` as received, 0 for what a packet too short for the header
/// does not hold: what an `ERROR` reply echoes (docs/protocol.md).
pub fn received(bytes: &[u8]) -> (u16, u64) {
    let kind = bytes
        .first_chunk::<2>()
        .map_or(0, |kind| u16::from_le_bytes(*kind));
    let id = Header::ref_from_prefix(bytes).map_or(0, |(header, _)| header.request_id.get());
    (kind, id)
}

/// Checks 1–4 of the module docs: the header of a request, without its body, in a 1.0
/// conversation (or one without a selected version): [`frame_request_in`] with 1.0.
pub fn frame_request(bytes: &[u8]) -> Result<FramedRequest<'_>, RequestError> {
    frame_request_in(bytes, PROTOCOL_VERSION_1_0)
}

/// Checks 1–4 of the module docs in a conversation of `version`: a kind the version does not
/// have (`DOORBELL` before 1.1) is [`RequestFault::UnknownKind`], as in an older host.
pub fn frame_request_in(bytes: &[u8], version: u32) -> Result<FramedRequest<'_>, RequestError> {
    let Ok((header, _)) = Header::ref_from_prefix(bytes) else {
        let (received_kind, request_id) = received(bytes);
        return Err(RequestError {
            received_kind,
            request_id,
            fault: RequestFault::TooShort { got: bytes.len() },
        });
    };
    let received_kind = header.kind.get();
    let request_id = header.request_id.get();
    let refuse = |fault| RequestError {
        received_kind,
        request_id,
        fault,
    };
    let kind = match Kind::from_u16(received_kind) {
        Some(kind) if kind.is_request() && kind.exists_in(version) => kind,
        _ => return Err(refuse(RequestFault::UnknownKind)),
    };
    let flags = header.flags.get();
    if flags != 0 {
        return Err(refuse(RequestFault::FlagsNotZero { got: flags }));
    }
    let size_field = header.size.get();
    if size_field != kind.size_u32() || bytes.len() != kind.size() {
        return Err(refuse(RequestFault::SizeMismatch {
            expected: kind.size_u32(),
            size_field,
            packet: bytes.len(),
        }));
    }
    Ok(FramedRequest {
        kind,
        request_id,
        bytes,
    })
}

/// Checks every rule of the parser (1–4, 6, 7 of the module docs) except the request-id order,
/// which needs the conversation: the host's engine uses [`parse_request_after`].
pub fn parse_request(bytes: &[u8]) -> Result<Request, RequestError> {
    frame_request(bytes)?.parse_body()
}

/// [`parse_request`] with check 5 in its place: `request_id` must exceed `last_accepted`.
pub fn parse_request_after(bytes: &[u8], last_accepted: u64) -> Result<Request, RequestError> {
    parse_request_after_in(bytes, last_accepted, PROTOCOL_VERSION_1_0)
}

/// [`parse_request`] in a conversation of `version` (`DOORBELL` from 1.1).
pub fn parse_request_in(bytes: &[u8], version: u32) -> Result<Request, RequestError> {
    frame_request_in(bytes, version)?.parse_body()
}

/// [`parse_request_after`] in a conversation of `version` (`DOORBELL` from 1.1).
pub fn parse_request_after_in(
    bytes: &[u8],
    last_accepted: u64,
    version: u32,
) -> Result<Request, RequestError> {
    let framed = frame_request_in(bytes, version)?;
    framed.check_order(last_accepted)?;
    framed.parse_body()
}

/// Writes the request `body` with `request_id` to the start of `out` and returns its length.
///
/// A plain encoder: it writes whatever it is given, so a test can send what the host must
/// refuse. [`GuestClient`](super::GuestClient) checks its requests with [`parse_request`]
/// before it hands them out.
pub fn encode_request(
    out: &mut [u8],
    request_id: u64,
    body: &RequestBody,
) -> Result<usize, EncodeError> {
    let header = Header::new(body.kind(), request_id);
    match body {
        RequestBody::Hello => HelloRequest { header }.encode(out),
        RequestBody::Ready => ReadyRequest { header }.encode(out),
        RequestBody::Releasing => ReleasingRequest { header }.encode(out),
        RequestBody::GetLayout => GetLayoutRequest { header }.encode(out),
        RequestBody::SelectVersion { version } => SelectVersionRequest {
            header,
            version: (*version).into(),
            reserved: 0.into(),
        }
        .encode(out),
        RequestBody::ReportReservation(reservation) => {
            reservation_to_wire(*reservation, request_id).encode(out)
        }
        RequestBody::ReportDevice(report) => report.to_wire(request_id).encode(out),
        RequestBody::WaitEvent { last_seen } => WaitEventRequest {
            header,
            last_seen: (*last_seen).into(),
        }
        .encode(out),
        RequestBody::Doorbell { region, value } => DoorbellRequest {
            header,
            region: (*region).into(),
            reserved: 0.into(),
            value: (*value).into(),
        }
        .encode(out),
    }
}
