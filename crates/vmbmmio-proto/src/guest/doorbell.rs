//! `DOORBELL` (version 1.1): the guest rings the host for one region.
//!
//! Host consumers attached to the region (docs/ioctl.md, "Host consumers") see a count and the
//! latest value, and their registered event is signalled. A doorbell is an interrupt, not a
//! message: the latest value wins and data goes through the shared memory. The host answers
//! `ACK`, or `ERROR` `RATE_LIMITED` (not counted) when the guest rings faster than its limit.

use core::mem::offset_of;

use zerocopy::byteorder::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::header::{GuestMessage, Header, Kind, kind_size};

/// `DOORBELL`, 32 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
pub struct DoorbellRequest {
    /// Kind [`Kind::Doorbell`].
    pub header: Header,
    /// The region's id (its index in the session); below the session's region count.
    pub region: U32,
    /// Must be 0.
    pub reserved: U32,
    /// The value consumers read as `last_value` (any).
    pub value: U64,
}

impl GuestMessage for DoorbellRequest {
    const KIND: Kind = Kind::Doorbell;
}
kind_size!(DoorbellRequest);
const _: () = assert!(offset_of!(DoorbellRequest, region) == 16);
const _: () = assert!(offset_of!(DoorbellRequest, reserved) == 20);
const _: () = assert!(offset_of!(DoorbellRequest, value) == 24);
