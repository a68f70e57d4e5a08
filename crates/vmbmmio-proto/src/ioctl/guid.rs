//! GUIDs on the wire, in the Windows in-memory layout.
//!
//! A Windows `GUID` is `{ Data1: u32, Data2: u16, Data3: u16, Data4: [u8; 8] }` with the three
//! integers in the machine's (little-endian) byte order. The device host passes GUIDs straight
//! from Windows APIs and the driver passes them straight to KMCL, so the wire keeps that layout
//! instead of the big-endian RFC 4122 byte order. In Rust code a GUID is spelled as one `u128`
//! read like the canonical text: `{6ba7b810-9dad-11d1-80b4-00c04fd430c8}` is
//! `0x6ba7b810_9dad_11d1_80b4_00c04fd430c8`.

use zerocopy::byteorder::little_endian::{U16, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// A GUID in the Windows layout: 16 bytes, alignment 1.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
pub struct WireGuid {
    /// First 8 hex digits, little-endian.
    pub data1: U32,
    /// Next 4 hex digits, little-endian.
    pub data2: U16,
    /// Next 4 hex digits, little-endian.
    pub data3: U16,
    /// Last 16 hex digits, in text order.
    pub data4: [u8; 8],
}

impl WireGuid {
    /// The all-zero GUID.
    pub const NIL: Self = Self::from_u128(0);

    /// The GUID whose canonical text, without dashes, is the hex spelling of `value`.
    pub const fn from_u128(value: u128) -> Self {
        let b = value.to_be_bytes();
        Self {
            data1: U32::new(u32::from_be_bytes([b[0], b[1], b[2], b[3]])),
            data2: U16::new(u16::from_be_bytes([b[4], b[5]])),
            data3: U16::new(u16::from_be_bytes([b[6], b[7]])),
            data4: [b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]],
        }
    }

    /// The canonical spelling of this GUID as one number (inverse of [`Self::from_u128`]).
    pub const fn to_u128(&self) -> u128 {
        ((self.data1.get() as u128) << 96)
            | ((self.data2.get() as u128) << 80)
            | ((self.data3.get() as u128) << 64)
            | (u64::from_be_bytes(self.data4) as u128)
    }

    /// Whether this is the all-zero GUID.
    pub const fn is_nil(&self) -> bool {
        self.to_u128() == 0
    }
}

impl From<u128> for WireGuid {
    fn from(value: u128) -> Self {
        Self::from_u128(value)
    }
}

impl From<WireGuid> for u128 {
    fn from(guid: WireGuid) -> Self {
        guid.to_u128()
    }
}

const _: () = assert!(size_of::<WireGuid>() == 16);
