//! `GET_LAYOUT` → `LAYOUT`: where the shared regions are in the BAR, what the guest may do with
//! them and whether they are backed yet.
//!
//! The guest finds the memory only through this reply: region `id`, `name`, offset and length
//! in pages from the BAR's start, access, and state (unmapped, section-backed, or served by the
//! device host's intercept fallback). The reply has a fixed size with room for
//! [`MAX_REGIONS`] entries; the entries after `region_count` are all zero, so the message has one
//! encoding per layout. Both sides apply the same region rules ([`Layout::new`] for the host,
//! [`parse_reply`](super::parse_reply) for the guest): `id` below 16, at least one page, inside
//! the BAR, names UTF-8 and NUL-padded.

use core::mem::offset_of;

use zerocopy::byteorder::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::error::EncodeError;
use super::header::{GuestMessage, Header, Kind, kind_size};
use super::limits::{MAX_REGIONS, MAX_REGIONS_U32, REGION_NAME_LEN};
use super::placement::check_bar_size;
use crate::PAGE_SIZE;

/// `GET_LAYOUT`, 16 bytes: the header alone.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
pub struct GetLayoutRequest {
    /// Kind [`Kind::GetLayout`].
    pub header: Header,
}

impl GuestMessage for GetLayoutRequest {
    const KIND: Kind = Kind::GetLayout;
}
kind_size!(GetLayoutRequest);

/// One region entry of `LAYOUT`, 64 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
pub struct WireRegion {
    /// The region's index in the session.
    pub id: U32,
    /// A [`RegionAccess`].
    pub access: u8,
    /// A [`RegionState`].
    pub state: u8,
    /// Must be 0.
    pub reserved0: U16,
    /// Offset from the BAR's start, in pages.
    pub offset_pages: U64,
    /// Length in pages.
    pub length_pages: U64,
    /// UTF-8, NUL-padded; all zero for an unnamed region.
    pub name: [u8; REGION_NAME_LEN],
    /// Must be 0.
    pub reserved1: U64,
}

/// Size of a [`WireRegion`].
pub const REGION_ENTRY_SIZE: usize = 64;

const _: () = assert!(size_of::<WireRegion>() == REGION_ENTRY_SIZE);
const _: () = assert!(offset_of!(WireRegion, id) == 0);
const _: () = assert!(offset_of!(WireRegion, access) == 4);
const _: () = assert!(offset_of!(WireRegion, state) == 5);
const _: () = assert!(offset_of!(WireRegion, reserved0) == 6);
const _: () = assert!(offset_of!(WireRegion, offset_pages) == 8);
const _: () = assert!(offset_of!(WireRegion, length_pages) == 16);
const _: () = assert!(offset_of!(WireRegion, name) == 24);
const _: () = assert!(offset_of!(WireRegion, reserved1) == 56);

impl WireRegion {
    /// An unused entry: all zero.
    pub const ZERO: Self = Self {
        id: U32::new(0),
        access: 0,
        state: 0,
        reserved0: U16::new(0),
        offset_pages: U64::new(0),
        length_pages: U64::new(0),
        name: [0; REGION_NAME_LEN],
        reserved1: U64::new(0),
    };
}

/// `LAYOUT`, 1064 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
pub struct LayoutReply {
    /// Kind [`Kind::Layout`]; echoes the request's id.
    pub header: Header,
    /// Increases with every change of the layout or of a region's state.
    pub generation: U64,
    /// The BAR's size in bytes.
    pub bar_size: U64,
    /// Regions used, 0 to 16.
    pub region_count: U32,
    /// Must be 0.
    pub reserved: U32,
    /// The regions; entries at and after `region_count` are all zero.
    pub regions: [WireRegion; MAX_REGIONS],
}

impl GuestMessage for LayoutReply {
    const KIND: Kind = Kind::Layout;
}
kind_size!(LayoutReply);
const _: () = assert!(offset_of!(LayoutReply, generation) == 16);
const _: () = assert!(offset_of!(LayoutReply, bar_size) == 24);
const _: () = assert!(offset_of!(LayoutReply, region_count) == 32);
const _: () = assert!(offset_of!(LayoutReply, reserved) == 36);
const _: () = assert!(offset_of!(LayoutReply, regions) == 40);

/// What the guest may do with a region.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RegionAccess {
    /// Read-only.
    ReadOnly = 1,
    /// Read/write.
    ReadWrite = 2,
}

impl RegionAccess {
    /// The access with this wire value, if any.
    pub const fn from_u8(value: u8) -> Option<Self> {
        match value {
            1 => Some(Self::ReadOnly),
            2 => Some(Self::ReadWrite),
            _ => None,
        }
    }

    /// The wire value.
    pub const fn to_u8(self) -> u8 {
        self as u8
    }
}

/// Whether a region is backed.
#[repr(u8)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum RegionState {
    /// Not backed: the guest must not touch it.
    #[default]
    Unmapped = 0,
    /// Section-backed.
    Mapped = 1,
    /// Served by the device host's intercept fallback (slow but correct).
    Intercepted = 2,
}

impl RegionState {
    /// The state with this wire value, if any.
    pub const fn from_u8(value: u8) -> Option<Self> {
        match value {
            0 => Some(Self::Unmapped),
            1 => Some(Self::Mapped),
            2 => Some(Self::Intercepted),
            _ => None,
        }
    }

    /// The wire value.
    pub const fn to_u8(self) -> u8 {
        self as u8
    }
}

/// Why a region name cannot be carried or was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameError {
    /// Longer than [`REGION_NAME_LEN`] bytes of UTF-8.
    TooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// A NUL byte followed by something else than NUL padding (or, for a `&str`, any NUL).
    InteriorNul {
        /// Offset of the NUL.
        at: usize,
    },
    /// The bytes before the padding are not UTF-8.
    NotUtf8,
    /// Empty where a name is required (the IOCTL interface's named regions).
    Empty,
    /// An ASCII control character (0x01..=0x1F or 0x7F), refused where a name is required
    /// (the IOCTL interface's named regions: names end up in logs and consoles).
    ControlCharacter {
        /// Offset of the character.
        at: usize,
    },
}

/// A region's name: at most [`REGION_NAME_LEN`] bytes of UTF-8 without NUL, NUL-padded on the
/// wire. The empty name is the unnamed region.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RegionName {
    bytes: [u8; REGION_NAME_LEN],
    len: usize,
}

impl RegionName {
    /// The empty name (an unnamed region).
    pub const EMPTY: Self = Self {
        bytes: [0; REGION_NAME_LEN],
        len: 0,
    };

    /// The name `name`, or why it cannot be carried.
    pub fn new(name: &str) -> Result<Self, NameError> {
        let src = name.as_bytes();
        if let Some(at) = src.iter().position(|&b| b == 0) {
            return Err(NameError::InteriorNul { at });
        }
        let mut bytes = [0; REGION_NAME_LEN];
        let dst = bytes
            .get_mut(..src.len())
            .ok_or(NameError::TooLong { len: src.len() })?;
        dst.copy_from_slice(src);
        Ok(Self {
            bytes,
            len: src.len(),
        })
    }

    /// The name carried by a wire entry, checked: UTF-8 up to the first NUL, then only NUL.
    pub fn from_wire(bytes: &[u8; REGION_NAME_LEN]) -> Result<Self, NameError> {
        let len = bytes
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(REGION_NAME_LEN);
        let (text, padding) = bytes.split_at_checked(len).ok_or(NameError::NotUtf8)?;
        if padding.iter().any(|&b| b != 0) {
            return Err(NameError::InteriorNul { at: len });
        }
        core::str::from_utf8(text).map_err(|_| NameError::NotUtf8)?;
        Ok(Self { bytes: *bytes, len })
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        self.bytes
            .get(..self.len)
            .and_then(|text| core::str::from_utf8(text).ok())
            .unwrap_or("")
    }

    /// The wire bytes (NUL-padded).
    pub const fn to_wire(&self) -> [u8; REGION_NAME_LEN] {
        self.bytes
    }

    /// Whether this is the unnamed region's name.
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// `Ok` if this name may name a region for host consumers (the IOCTL interface,
    /// docs/ioctl.md "Region names"): not empty and without ASCII control characters. Names
    /// are compared bytewise.
    pub fn check_required(&self) -> Result<(), NameError> {
        if self.len == 0 {
            return Err(NameError::Empty);
        }
        match self
            .bytes
            .get(..self.len)
            .and_then(|text| text.iter().position(|b| b.is_ascii_control()))
        {
            Some(at) => Err(NameError::ControlCharacter { at }),
            None => Ok(()),
        }
    }

    /// [`Self::new`], then [`Self::check_required`]: a name a consumer may attach by.
    pub fn required(name: &str) -> Result<Self, NameError> {
        let name = Self::new(name)?;
        name.check_required()?;
        Ok(name)
    }

    /// [`Self::from_wire`], then [`Self::check_required`].
    pub fn required_from_wire(bytes: &[u8; REGION_NAME_LEN]) -> Result<Self, NameError> {
        let name = Self::from_wire(bytes)?;
        name.check_required()?;
        Ok(name)
    }
}

impl Default for RegionName {
    fn default() -> Self {
        Self::EMPTY
    }
}

/// One region of a layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Region {
    /// The region's index in the session (below [`MAX_REGIONS`]).
    pub id: u32,
    /// What the guest may do with it.
    pub access: RegionAccess,
    /// Whether it is backed.
    pub state: RegionState,
    /// Offset from the BAR's start, in pages.
    pub offset_pages: u64,
    /// Length in pages (at least one).
    pub length_pages: u64,
    /// Its name.
    pub name: RegionName,
}

impl Region {
    /// An unused slot of a region table (all zero on the wire).
    pub const EMPTY: Self = Self {
        id: 0,
        access: RegionAccess::ReadOnly,
        state: RegionState::Unmapped,
        offset_pages: 0,
        length_pages: 0,
        name: RegionName::EMPTY,
    };

    /// The wire entry.
    pub const fn to_wire(&self) -> WireRegion {
        WireRegion {
            id: U32::new(self.id),
            access: self.access.to_u8(),
            state: self.state.to_u8(),
            reserved0: U16::new(0),
            offset_pages: U64::new(self.offset_pages),
            length_pages: U64::new(self.length_pages),
            name: self.name.to_wire(),
            reserved1: U64::new(0),
        }
    }

    /// Its byte offset from the BAR's start (`None` if it overflows).
    pub const fn offset_bytes(&self) -> Option<u64> {
        self.offset_pages.checked_mul(PAGE_SIZE)
    }

    /// Its length in bytes (`None` if it overflows).
    pub const fn length_bytes(&self) -> Option<u64> {
        self.length_pages.checked_mul(PAGE_SIZE)
    }
}

/// What is wrong with a region entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegionFault {
    /// `id` is not below [`MAX_REGIONS`].
    IdOutOfRange {
        /// The id.
        got: u32,
    },
    /// `access` is neither 1 nor 2.
    BadAccess {
        /// The value.
        got: u8,
    },
    /// `state` is not 0, 1 or 2.
    BadState {
        /// The value.
        got: u8,
    },
    /// A reserved field of the entry is not zero.
    ReservedNotZero {
        /// Offset of the field within the entry.
        offset: usize,
    },
    /// `length_pages` is 0.
    Empty,
    /// The region does not lie inside the BAR (or its end overflows).
    OutsideBar {
        /// `offset_pages`.
        offset_pages: u64,
        /// `length_pages`.
        length_pages: u64,
    },
    /// The name is refused.
    BadName(NameError),
}

/// The region rules both sides apply: `id` below 16, at least one page, inside a BAR of
/// `bar_pages` pages.
pub(crate) const fn check_region(region: &Region, bar_pages: u64) -> Result<(), RegionFault> {
    if region.id >= MAX_REGIONS_U32 {
        return Err(RegionFault::IdOutOfRange { got: region.id });
    }
    if region.length_pages == 0 {
        return Err(RegionFault::Empty);
    }
    match region.offset_pages.checked_add(region.length_pages) {
        Some(end) if end <= bar_pages => Ok(()),
        _ => Err(RegionFault::OutsideBar {
            offset_pages: region.offset_pages,
            length_pages: region.length_pages,
        }),
    }
}

/// A checked layout: the BAR's size and up to 16 regions inside it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Layout {
    generation: u64,
    bar_size: u64,
    count: usize,
    regions: [Region; MAX_REGIONS],
}

impl Layout {
    /// A layout of `regions` in a BAR of `bar_size` bytes at `generation`, or why a guest would
    /// refuse it: more than 16 regions, a BAR size that is not a power of two of at least a
    /// page, or a region that breaks the rules in the module docs.
    pub fn new(generation: u64, bar_size: u64, regions: &[Region]) -> Result<Self, EncodeError> {
        if regions.len() > MAX_REGIONS {
            return Err(EncodeError::TooManyRegions { got: regions.len() });
        }
        check_bar_size(bar_size).map_err(|_| EncodeError::BadBarSize { got: bar_size })?;
        let bar_pages = bar_size / PAGE_SIZE;
        let mut table = [Region::EMPTY; MAX_REGIONS];
        for (index, (slot, region)) in table.iter_mut().zip(regions).enumerate() {
            check_region(region, bar_pages)
                .map_err(|fault| EncodeError::BadRegion { index, fault })?;
            *slot = *region;
        }
        Ok(Self {
            generation,
            bar_size,
            count: regions.len(),
            regions: table,
        })
    }

    /// The layout generation.
    pub const fn generation(&self) -> u64 {
        self.generation
    }

    /// The BAR's size in bytes.
    pub const fn bar_size(&self) -> u64 {
        self.bar_size
    }

    /// The regions, in wire order.
    pub fn regions(&self) -> &[Region] {
        self.regions.get(..self.count).unwrap_or(&[])
    }

    /// The region with `id`, if the layout has it.
    pub fn region(&self, id: u32) -> Option<&Region> {
        self.regions().iter().find(|region| region.id == id)
    }

    /// The wire message answering `request_id`.
    pub fn to_wire(&self, request_id: u64) -> LayoutReply {
        let mut regions = [WireRegion::ZERO; MAX_REGIONS];
        for (slot, region) in regions.iter_mut().zip(self.regions()) {
            *slot = region.to_wire();
        }
        LayoutReply {
            header: Header::new(Kind::Layout, request_id),
            generation: U64::new(self.generation),
            bar_size: U64::new(self.bar_size),
            // At most MAX_REGIONS (16), checked in `new`.
            region_count: U32::new(u32::try_from(self.count).unwrap_or(MAX_REGIONS_U32)),
            reserved: U32::new(0),
            regions,
        }
    }
}
