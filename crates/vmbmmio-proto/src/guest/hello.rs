//! Version negotiation: `HELLO` → `HELLO_REPLY` (the host's range and limits), then
//! `SELECT_VERSION` → `ACK`.
//!
//! The host states what it supports and the guest picks, so a newer guest can talk to an older
//! host and the reverse without either guessing. The limits travel with the range so a guest
//! learns the misbehaviour threshold before it can hit it.

use core::mem::offset_of;

use zerocopy::byteorder::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::header::{GuestMessage, Header, Kind, kind_size};
use super::limits::{
    ERROR_LIMIT, HOST_MAX_VERSION, HOST_MIN_VERSION, LARGEST_MESSAGE, MAX_PACKET_SIZE,
    MAX_REGIONS_U32, PROTOCOL_VERSION_1_0,
};

/// `HELLO`, 16 bytes: the header alone.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
pub struct HelloRequest {
    /// Kind [`Kind::Hello`].
    pub header: Header,
}

impl GuestMessage for HelloRequest {
    const KIND: Kind = Kind::Hello;
}
kind_size!(HelloRequest);

/// `SELECT_VERSION`, 24 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
pub struct SelectVersionRequest {
    /// Kind [`Kind::SelectVersion`].
    pub header: Header,
    /// The version the guest picked, within the host's range.
    pub version: U32,
    /// Must be 0.
    pub reserved: U32,
}

impl GuestMessage for SelectVersionRequest {
    const KIND: Kind = Kind::SelectVersion;
}
kind_size!(SelectVersionRequest);
const _: () = assert!(offset_of!(SelectVersionRequest, version) == 16);
const _: () = assert!(offset_of!(SelectVersionRequest, reserved) == 20);

/// `HELLO_REPLY`, 48 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
pub struct HelloReply {
    /// Kind [`Kind::HelloReply`].
    pub header: Header,
    /// Lowest version the host supports.
    pub min_version: U32,
    /// Highest version the host supports.
    pub max_version: U32,
    /// The channel's maximum packet size.
    pub max_packet_size: U32,
    /// Most regions a layout holds.
    pub max_regions: U32,
    /// Counted errors allowed per channel open.
    pub error_limit: U32,
    /// Must be 0.
    pub reserved0: U32,
    /// Must be 0.
    pub reserved1: U64,
}

impl GuestMessage for HelloReply {
    const KIND: Kind = Kind::HelloReply;
}
kind_size!(HelloReply);
const _: () = assert!(offset_of!(HelloReply, min_version) == 16);
const _: () = assert!(offset_of!(HelloReply, max_version) == 20);
const _: () = assert!(offset_of!(HelloReply, max_packet_size) == 24);
const _: () = assert!(offset_of!(HelloReply, max_regions) == 28);
const _: () = assert!(offset_of!(HelloReply, error_limit) == 32);
const _: () = assert!(offset_of!(HelloReply, reserved0) == 36);
const _: () = assert!(offset_of!(HelloReply, reserved1) == 40);

/// What the host states in `HELLO_REPLY`, checked.
///
/// The guest accepts it only if `0 < min_version ≤ max_version`, `max_packet_size` can carry
/// the largest message (1064 bytes), `1 ≤ max_regions ≤ 16` and `error_limit ≥ 1`; the host's
/// encoder refuses anything else, so it never states what a guest would refuse.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HostInfo {
    /// Lowest version the host supports.
    pub min_version: u32,
    /// Highest version the host supports.
    pub max_version: u32,
    /// The channel's maximum packet size.
    pub max_packet_size: u32,
    /// Most regions a layout holds.
    pub max_regions: u32,
    /// Counted errors allowed per channel open.
    pub error_limit: u32,
}

impl HostInfo {
    /// Version 1.0 only and the limits of `docs/protocol.md`: what a host without doorbells
    /// states.
    pub const V1: Self = Self {
        min_version: HOST_MIN_VERSION,
        max_version: PROTOCOL_VERSION_1_0,
        max_packet_size: MAX_PACKET_SIZE,
        max_regions: MAX_REGIONS_U32,
        error_limit: ERROR_LIMIT,
    };

    /// Versions 1.0 to 1.1 and the same limits: what a host with doorbells states.
    pub const V1_1: Self = Self {
        min_version: HOST_MIN_VERSION,
        max_version: HOST_MAX_VERSION,
        max_packet_size: MAX_PACKET_SIZE,
        max_regions: MAX_REGIONS_U32,
        error_limit: ERROR_LIMIT,
    };

    /// Whether a guest accepts these values (the rules in the type's docs).
    pub const fn is_valid(&self) -> bool {
        self.min_version != 0
            && self.min_version <= self.max_version
            && self.max_packet_size as usize >= LARGEST_MESSAGE
            && self.max_regions >= 1
            && self.max_regions <= MAX_REGIONS_U32
            && self.error_limit >= 1
    }

    /// Whether `version` is within the host's range.
    pub const fn supports(&self, version: u32) -> bool {
        self.min_version <= version && version <= self.max_version
    }

    /// The wire message answering `request_id`.
    pub const fn to_wire(&self, request_id: u64) -> HelloReply {
        HelloReply {
            header: Header::new(Kind::HelloReply, request_id),
            min_version: U32::new(self.min_version),
            max_version: U32::new(self.max_version),
            max_packet_size: U32::new(self.max_packet_size),
            max_regions: U32::new(self.max_regions),
            error_limit: U32::new(self.error_limit),
            reserved0: U32::new(0),
            reserved1: U64::new(0),
        }
    }
}
