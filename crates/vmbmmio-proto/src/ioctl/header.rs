//! The header every message starts with, and the framing checks shared by every parser.
//!
//! A message is one fixed-size struct: the 16-byte [`MessageHeader`] followed by the body of its
//! [`MessageKind`]. Parsers accept a buffer only if it holds exactly one message of the expected
//! kind. The checks run in one fixed order, and the first that fails is reported:
//!
//! 1. at least 16 bytes (the header) — else [`ProtoError::TooShort`];
//! 2. `magic`, then `version`, then `kind`;
//! 3. the buffer length equals the message size — [`ProtoError::TooShort`] /
//!    [`ProtoError::TooLong`];
//! 4. the header's `size` field equals the message size, then `reserved` is zero;
//! 5. the body's fields, in wire order (done by each message's parser).
//!
//! The version is checked before the length on purpose: a device host that speaks a newer
//! version, whose messages may be longer, is told "wrong version" rather than "wrong size".

use zerocopy::byteorder::little_endian::{U16, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::error::{ProtoError, ProtoResult, ReservedField};

/// `magic` of every message: the bytes `b"VMBM"` read as a little-endian `u32`.
pub const MAGIC: u32 = u32::from_le_bytes(*b"VMBM");

/// The interface version this crate speaks: every message exists in it.
pub const VERSION: u16 = 1;

/// Version 2 of the interface, which only two requests have: REPORT_MAPPING (its request
/// carries `acted_on`) and OPEN_SESSION (the VM id and named regions), docs/ioctl.md
/// "Versioning policy"; every other message is version 1 only.
pub const VERSION_2: u16 = 2;

/// Size of [`MessageHeader`] in bytes.
pub const HEADER_SIZE: usize = 16;

/// Bit set in the kind of every reply; the low bits repeat the request's kind.
const REPLY_BIT: u16 = 0x8000;

/// What a message is; carried in the header's `kind`.
#[repr(u16)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MessageKind {
    /// OPEN_SESSION request.
    OpenSessionRequest = 0x0001,
    /// GET_REGION_SECTION request.
    GetRegionSectionRequest = 0x0002,
    /// REPORT_MAPPING request.
    ReportMappingRequest = 0x0003,
    /// QUERY_STATUS request.
    QueryStatusRequest = 0x0004,
    /// CLOSE_SESSION request.
    CloseSessionRequest = 0x0005,
    /// QUERY_DRIVER request.
    QueryDriverRequest = 0x0006,
    /// WAIT_GUEST_EVENT request.
    WaitGuestEventRequest = 0x0007,
    /// LIST_SESSIONS request.
    ListSessionsRequest = 0x0008,
    /// ATTACH_REGION request.
    AttachRegionRequest = 0x0009,
    /// DETACH_REGION request.
    DetachRegionRequest = 0x000A,
    /// SET_DOORBELL_EVENT request.
    SetDoorbellEventRequest = 0x000B,
    /// TAKE_DOORBELLS request.
    TakeDoorbellsRequest = 0x000C,
    /// RING_GUEST request.
    RingGuestRequest = 0x000D,
    /// OPEN_SESSION reply.
    OpenSessionReply = REPLY_BIT | 0x0001,
    /// GET_REGION_SECTION reply.
    GetRegionSectionReply = REPLY_BIT | 0x0002,
    /// REPORT_MAPPING reply.
    ReportMappingReply = REPLY_BIT | 0x0003,
    /// QUERY_STATUS reply.
    QueryStatusReply = REPLY_BIT | 0x0004,
    /// CLOSE_SESSION reply.
    CloseSessionReply = REPLY_BIT | 0x0005,
    /// QUERY_DRIVER reply.
    QueryDriverReply = REPLY_BIT | 0x0006,
    /// WAIT_GUEST_EVENT reply.
    WaitGuestEventReply = REPLY_BIT | 0x0007,
    /// LIST_SESSIONS reply.
    ListSessionsReply = REPLY_BIT | 0x0008,
    /// ATTACH_REGION reply.
    AttachRegionReply = REPLY_BIT | 0x0009,
    /// DETACH_REGION reply.
    DetachRegionReply = REPLY_BIT | 0x000A,
    /// SET_DOORBELL_EVENT reply.
    SetDoorbellEventReply = REPLY_BIT | 0x000B,
    /// TAKE_DOORBELLS reply.
    TakeDoorbellsReply = REPLY_BIT | 0x000C,
    /// RING_GUEST reply.
    RingGuestReply = REPLY_BIT | 0x000D,
}

impl MessageKind {
    /// Every kind, requests first.
    pub const ALL: [Self; 26] = [
        Self::OpenSessionRequest,
        Self::GetRegionSectionRequest,
        Self::ReportMappingRequest,
        Self::QueryStatusRequest,
        Self::CloseSessionRequest,
        Self::QueryDriverRequest,
        Self::WaitGuestEventRequest,
        Self::ListSessionsRequest,
        Self::AttachRegionRequest,
        Self::DetachRegionRequest,
        Self::SetDoorbellEventRequest,
        Self::TakeDoorbellsRequest,
        Self::RingGuestRequest,
        Self::OpenSessionReply,
        Self::GetRegionSectionReply,
        Self::ReportMappingReply,
        Self::QueryStatusReply,
        Self::CloseSessionReply,
        Self::QueryDriverReply,
        Self::WaitGuestEventReply,
        Self::ListSessionsReply,
        Self::AttachRegionReply,
        Self::DetachRegionReply,
        Self::SetDoorbellEventReply,
        Self::TakeDoorbellsReply,
        Self::RingGuestReply,
    ];

    /// The value of the header's `kind` field.
    pub const fn to_u16(self) -> u16 {
        self as u16
    }

    /// The kind with this `kind` value, if any.
    pub const fn from_u16(value: u16) -> Option<Self> {
        Some(match value {
            0x0001 => Self::OpenSessionRequest,
            0x0002 => Self::GetRegionSectionRequest,
            0x0003 => Self::ReportMappingRequest,
            0x0004 => Self::QueryStatusRequest,
            0x0005 => Self::CloseSessionRequest,
            0x0006 => Self::QueryDriverRequest,
            0x0007 => Self::WaitGuestEventRequest,
            0x0008 => Self::ListSessionsRequest,
            0x0009 => Self::AttachRegionRequest,
            0x000A => Self::DetachRegionRequest,
            0x000B => Self::SetDoorbellEventRequest,
            0x000C => Self::TakeDoorbellsRequest,
            0x000D => Self::RingGuestRequest,
            0x8001 => Self::OpenSessionReply,
            0x8002 => Self::GetRegionSectionReply,
            0x8003 => Self::ReportMappingReply,
            0x8004 => Self::QueryStatusReply,
            0x8005 => Self::CloseSessionReply,
            0x8006 => Self::QueryDriverReply,
            0x8007 => Self::WaitGuestEventReply,
            0x8008 => Self::ListSessionsReply,
            0x8009 => Self::AttachRegionReply,
            0x800A => Self::DetachRegionReply,
            0x800B => Self::SetDoorbellEventReply,
            0x800C => Self::TakeDoorbellsReply,
            0x800D => Self::RingGuestReply,
            _ => return None,
        })
    }

    /// Whether this kind is a reply (driver to device host).
    pub const fn is_reply(self) -> bool {
        self.to_u16() & REPLY_BIT != 0
    }
}

/// The 16-byte header that starts every message.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
pub struct MessageHeader {
    /// [`MAGIC`].
    pub magic: U32,
    /// [`VERSION`].
    pub version: U16,
    /// A [`MessageKind`].
    pub kind: U16,
    /// Size of the whole message in bytes, header included.
    pub size: U32,
    /// Must be zero.
    pub reserved: U32,
}

const _: () = assert!(size_of::<MessageHeader>() == HEADER_SIZE);

impl MessageHeader {
    /// The header of a message of `kind` that is `size` bytes long, in [`VERSION`].
    pub const fn new(kind: MessageKind, size: u32) -> Self {
        Self::versioned(kind, size, VERSION)
    }

    /// The header of a message of `kind` that is `size` bytes long, in `version`.
    pub const fn versioned(kind: MessageKind, size: u32, version: u16) -> Self {
        Self {
            magic: U32::new(MAGIC),
            version: U16::new(version),
            kind: U16::new(kind.to_u16()),
            size: U32::new(size),
            reserved: U32::new(0),
        }
    }
}

/// A complete message: a fixed-layout struct that starts with a [`MessageHeader`].
///
/// Implemented by every request and reply struct of this interface. Received bytes are meant to
/// go through the message's `parse_*` function, which returns checked values; reading the raw
/// struct with zerocopy would skip every check.
pub trait WireMessage: FromBytes + IntoBytes + KnownLayout + Immutable + Unaligned + Sized {
    /// The kind this message carries in its header.
    const KIND: MessageKind;
    /// The interface version this message belongs to ([`VERSION`] unless it says otherwise).
    const VERSION: u16 = VERSION;
    /// Exact size of the message in bytes.
    const SIZE: usize = size_of::<Self>();
    /// [`Self::SIZE`] as the header's `u32` field; every message is a few hundred bytes, and a
    /// larger one fails the build here.
    const SIZE_U32: u32 = {
        assert!(Self::SIZE <= u32::MAX as usize);
        #[allow(clippy::cast_possible_truncation)] // checked just above, at compile time
        let size = Self::SIZE as u32;
        size
    };

    /// The correct header of this message.
    fn header_for_kind() -> MessageHeader {
        MessageHeader::versioned(Self::KIND, Self::SIZE_U32, Self::VERSION)
    }

    /// Writes the message to the start of `out` and returns the number of bytes written.
    ///
    /// Fails with [`ProtoError::OutputTooSmall`] (and writes nothing) if `out` is shorter than
    /// [`Self::SIZE`].
    fn encode(&self, out: &mut [u8]) -> ProtoResult<usize> {
        let got = out.len();
        match self.write_to_prefix(out) {
            Ok(()) => Ok(Self::SIZE),
            Err(_) => Err(ProtoError::OutputTooSmall {
                needed: Self::SIZE,
                got,
            }),
        }
    }
}

/// Checks the framing of `bytes` as a `T` (header and exact length, in the order of the module
/// docs) and returns them as that message, whose body is not yet checked.
///
/// Crate-private on purpose: outside this crate a message body is only ever seen through a
/// parser that checked it.
pub(crate) fn unframe<T: WireMessage>(bytes: &[u8]) -> ProtoResult<&T> {
    let too_short = ProtoError::TooShort {
        expected: T::SIZE,
        got: bytes.len(),
    };
    let (header, _) = MessageHeader::ref_from_prefix(bytes).map_err(|_| too_short)?;
    check_header_identity(header, T::KIND, T::VERSION)?;
    if bytes.len() < T::SIZE {
        return Err(too_short);
    }
    if bytes.len() > T::SIZE {
        return Err(ProtoError::TooLong {
            expected: T::SIZE,
            got: bytes.len(),
        });
    }
    let size = header.size.get();
    // Every message is a few hundred bytes (const asserts next to each struct), so SIZE fits
    // a u32 and the comparison is exact.
    if size != T::SIZE_U32 {
        return Err(ProtoError::SizeFieldMismatch {
            expected: T::SIZE_U32,
            got: size,
        });
    }
    check_zero(ReservedField::Header, header.reserved.get().into())?;
    T::ref_from_bytes(bytes).map_err(|_| too_short)
}

/// Checks `magic`, `version` (against `version`) and `kind`, in that order.
fn check_header_identity(
    header: &MessageHeader,
    kind: MessageKind,
    version: u16,
) -> ProtoResult<()> {
    let magic = header.magic.get();
    if magic != MAGIC {
        return Err(ProtoError::BadMagic {
            expected: MAGIC,
            got: magic,
        });
    }
    let got = header.version.get();
    if got != version {
        return Err(ProtoError::UnsupportedVersion {
            expected: version,
            got,
        });
    }
    let got = header.kind.get();
    if got != kind.to_u16() {
        return Err(ProtoError::WrongKind {
            expected: kind,
            got,
        });
    }
    Ok(())
}

/// The `version` field of `bytes`, if they hold a header (the framing is not checked: this
/// only picks which version's parser checks them).
pub(crate) fn peek_version(bytes: &[u8]) -> Option<u16> {
    MessageHeader::ref_from_prefix(bytes)
        .ok()
        .map(|(header, _)| header.version.get())
}

/// `Ok` if the reserved `field` holds zero.
pub(crate) const fn check_zero(field: ReservedField, got: u64) -> ProtoResult<()> {
    if got == 0 {
        Ok(())
    } else {
        Err(ProtoError::ReservedNotZero { field, got })
    }
}
