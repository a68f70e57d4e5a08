//! QUERY_DRIVER: facts about the whole driver, not about one session.
//!
//! # Why a message of its own
//! The driver resolves its KMCL entry points at load time; an *optional* entry that the host's
//! `vmbkmclr.sys` lacks leaves a driver that works and must say so. That is a fact about the
//! driver, not about the session of one file handle, and QUERY_STATUS's version-1 layout is
//! pinned (new meaning in its reserved words would need a new version). So, as the versioning
//! policy in `docs/ioctl.md` prescribes for a new request, this is a new message kind with its
//! own IOCTL function number (0x905); the interface version stays 1.
//!
//! The KMCL word is a plain bit set: bit `i` stands for entry `i` of the driver's KMCL table in
//! its documented order (`docs/ioctl.md` lists it; in the driver it is `kmcl::KmclFunction::ALL`,
//! to which entries are only ever appended). This crate knows nothing about KMCL (see the crate
//! docs): it checks only that the bits fit the table width the reply states, and that width
//! itself fits the 32-bit word. The request works on a file handle without a session.

use zerocopy::byteorder::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::error::{ProtoError, ProtoResult, ReservedField};
use super::header::{MessageHeader, MessageKind, WireMessage, check_zero, unframe};

/// Number of reserved 64-bit words at the end of the QUERY_DRIVER reply.
pub const DRIVER_RESERVED_WORDS: usize = 4;

/// Most KMCL entries a QUERY_DRIVER reply can describe: the width of `kmcl_missing_optional`.
pub const MAX_KMCL_ENTRIES: u32 = 32;

/// QUERY_DRIVER request: the header alone, 16 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
pub struct QueryDriverRequest {
    /// Kind [`MessageKind::QueryDriverRequest`].
    pub header: MessageHeader,
}

/// QUERY_DRIVER reply, 64 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
pub struct QueryDriverReply {
    /// Kind [`MessageKind::QueryDriverReply`].
    pub header: MessageHeader,
    /// Number of entries in the driver's KMCL table: the number of meaningful bits of
    /// `kmcl_missing_optional`. At most [`MAX_KMCL_ENTRIES`].
    pub kmcl_entries: U32,
    /// Bit `i` set: entry `i` of the table (documented order) is optional and unavailable, so
    /// the driver runs without it. No bit at or above `kmcl_entries`.
    pub kmcl_missing_optional: U32,
    /// File handles open on the control device, the caller's included.
    pub open_files: U32,
    /// Sessions established (an open or close in progress is not counted).
    pub live_sessions: U32,
    /// Must be zero: room for later facts.
    pub reserved: [U64; DRIVER_RESERVED_WORDS],
}

const _: () = assert!(size_of::<QueryDriverRequest>() == 16);
const _: () = assert!(size_of::<QueryDriverReply>() == 64);

impl WireMessage for QueryDriverRequest {
    const KIND: MessageKind = MessageKind::QueryDriverRequest;
}

impl WireMessage for QueryDriverReply {
    const KIND: MessageKind = MessageKind::QueryDriverReply;
}

impl QueryDriverRequest {
    /// The request.
    pub fn new() -> Self {
        Self {
            header: Self::header_for_kind(),
        }
    }
}

impl Default for QueryDriverRequest {
    fn default() -> Self {
        Self::new()
    }
}

/// The content of a QUERY_DRIVER reply, checked: built with [`DriverFacts::new`] (driver side)
/// or returned by [`parse_query_driver_reply`] (device-host side), which apply the same rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DriverFacts {
    kmcl_entries: u32,
    kmcl_missing_optional: u32,
    open_files: u32,
    live_sessions: u32,
}

impl DriverFacts {
    /// Checked facts: `kmcl_entries` ≤ [`MAX_KMCL_ENTRIES`]
    /// ([`ProtoError::TooManyKmclEntries`]) and no bit of `kmcl_missing_optional` at or above
    /// `kmcl_entries` ([`ProtoError::KmclBitsBeyondTable`]), in that order.
    pub const fn new(
        kmcl_entries: u32,
        kmcl_missing_optional: u32,
        open_files: u32,
        live_sessions: u32,
    ) -> ProtoResult<Self> {
        if kmcl_entries > MAX_KMCL_ENTRIES {
            return Err(ProtoError::TooManyKmclEntries {
                max: MAX_KMCL_ENTRIES,
                got: kmcl_entries,
            });
        }
        // Bits at positions >= kmcl_entries; none when the table fills the whole word.
        let beyond = match u32::MAX.checked_shl(kmcl_entries) {
            Some(mask) => kmcl_missing_optional & mask,
            None => 0,
        };
        if beyond != 0 {
            return Err(ProtoError::KmclBitsBeyondTable {
                entries: kmcl_entries,
                bits: beyond,
            });
        }
        Ok(Self {
            kmcl_entries,
            kmcl_missing_optional,
            open_files,
            live_sessions,
        })
    }

    /// Entries in the driver's KMCL table (the width of [`Self::kmcl_missing_optional`]).
    pub const fn kmcl_entries(&self) -> u32 {
        self.kmcl_entries
    }

    /// Bit `i` set: optional KMCL entry `i` (documented order) is unavailable.
    pub const fn kmcl_missing_optional(&self) -> u32 {
        self.kmcl_missing_optional
    }

    /// File handles open on the control device.
    pub const fn open_files(&self) -> u32 {
        self.open_files
    }

    /// Sessions established.
    pub const fn live_sessions(&self) -> u32 {
        self.live_sessions
    }

    /// The wire reply.
    pub fn to_reply(&self) -> QueryDriverReply {
        QueryDriverReply {
            header: QueryDriverReply::header_for_kind(),
            kmcl_entries: U32::new(self.kmcl_entries),
            kmcl_missing_optional: U32::new(self.kmcl_missing_optional),
            open_files: U32::new(self.open_files),
            live_sessions: U32::new(self.live_sessions),
            reserved: [U64::new(0); DRIVER_RESERVED_WORDS],
        }
    }

    /// Writes the reply to the start of `out`; returns its length or
    /// [`ProtoError::OutputTooSmall`].
    pub fn encode(&self, out: &mut [u8]) -> ProtoResult<usize> {
        self.to_reply().encode(out)
    }
}

/// Validates a QUERY_DRIVER input buffer: framing only.
pub fn parse_query_driver(bytes: &[u8]) -> ProtoResult<()> {
    unframe::<QueryDriverRequest>(bytes).map(|_| ())
}

/// Validates a QUERY_DRIVER output buffer (device-host side): framing, then `kmcl_entries`
/// against [`MAX_KMCL_ENTRIES`], `kmcl_missing_optional` against `kmcl_entries`, and the
/// reserved tail, in wire order.
pub fn parse_query_driver_reply(bytes: &[u8]) -> ProtoResult<DriverFacts> {
    let reply = unframe::<QueryDriverReply>(bytes)?;
    let facts = DriverFacts::new(
        reply.kmcl_entries.get(),
        reply.kmcl_missing_optional.get(),
        reply.open_files.get(),
        reply.live_sessions.get(),
    )?;
    for (index, word) in (0u32..).zip(reply.reserved.iter()) {
        check_zero(ReservedField::QueryDriverTail { index }, word.get())?;
    }
    Ok(facts)
}
