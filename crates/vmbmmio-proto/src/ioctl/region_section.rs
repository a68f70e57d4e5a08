//! GET_REGION_SECTION: a handle to one region's section, opened in the device host's process.
//!
//! `HdvCreateSectionBackedMmioRange` takes a section `HANDLE` valid in the calling process and
//! marshals it on to the VM worker (hdv.md §3.3), so the driver opens a user-mode handle in the
//! caller's handle table with the rights asked for here. The handle value in the reply means
//! nothing in any other process. Whether the index names a region of the session, and whether
//! map-write is allowed for it, depends on the session: the driver checks that; this module only
//! checks what the bytes alone decide.

use core::num::NonZeroU64;

use zerocopy::byteorder::little_endian::{U32, U64};
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::error::{PagedField, ProtoError, ProtoResult, ReservedField};
use super::header::{MessageHeader, MessageKind, WireMessage, check_zero, unframe};
use super::limits::{MAX_BAR_SIZE, MAX_REGIONS_U32, is_page_aligned};

/// `access` bit 0: the handle may be used to map the section for reading.
pub const ACCESS_MAP_READ: u32 = 1;
/// `access` bit 1: the handle may be used to map the section for writing.
pub const ACCESS_MAP_WRITE: u32 = 2;

/// GET_REGION_SECTION request, 32 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
pub struct GetRegionSectionRequest {
    /// Kind [`MessageKind::GetRegionSectionRequest`].
    pub header: MessageHeader,
    /// Index of the region in the OPEN_SESSION request; below [`MAX_REGIONS`](super::MAX_REGIONS).
    pub region_index: U32,
    /// [`ACCESS_MAP_READ`], optionally with [`ACCESS_MAP_WRITE`].
    pub access: U32,
    /// Must be zero.
    pub reserved: U64,
}

/// GET_REGION_SECTION reply, 40 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
pub struct GetRegionSectionReply {
    /// Kind [`MessageKind::GetRegionSectionReply`].
    pub header: MessageHeader,
    /// Section handle value, valid only in the process that sent the request; non-zero.
    pub section_handle: U64,
    /// Size of the section in bytes; a non-zero multiple of the page size.
    pub size: U64,
    /// Byte offset of the region in the BAR; a multiple of the page size.
    pub offset_in_bar: U64,
}

const _: () = assert!(size_of::<GetRegionSectionRequest>() == 32);
const _: () = assert!(size_of::<GetRegionSectionReply>() == 40);

impl WireMessage for GetRegionSectionRequest {
    const KIND: MessageKind = MessageKind::GetRegionSectionRequest;
}

impl WireMessage for GetRegionSectionReply {
    const KIND: MessageKind = MessageKind::GetRegionSectionReply;
}

/// The rights the section handle is opened with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SectionAccess {
    /// Map for reading only.
    Read,
    /// Map for reading and writing.
    ReadWrite,
}

impl SectionAccess {
    /// The wire `access` bits.
    pub const fn bits(self) -> u32 {
        match self {
            Self::Read => ACCESS_MAP_READ,
            Self::ReadWrite => ACCESS_MAP_READ | ACCESS_MAP_WRITE,
        }
    }

    /// Whether map-write is asked for.
    pub const fn writes(self) -> bool {
        matches!(self, Self::ReadWrite)
    }

    /// The rights of the wire `access` bits: [`ProtoError::AccessReservedBits`] for a bit other
    /// than map-read and map-write, then [`ProtoError::AccessWithoutRead`] without map-read.
    pub const fn from_bits(bits: u32) -> ProtoResult<Self> {
        if bits & !(ACCESS_MAP_READ | ACCESS_MAP_WRITE) != 0 {
            return Err(ProtoError::AccessReservedBits { got: bits });
        }
        if bits & ACCESS_MAP_READ == 0 {
            return Err(ProtoError::AccessWithoutRead { got: bits });
        }
        Ok(if bits & ACCESS_MAP_WRITE != 0 {
            Self::ReadWrite
        } else {
            Self::Read
        })
    }
}

/// A validated GET_REGION_SECTION request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GetRegionSectionParams {
    /// Index of the region; below [`MAX_REGIONS`](super::MAX_REGIONS).
    pub region_index: u32,
    /// Rights asked for.
    pub access: SectionAccess,
}

/// Validates a GET_REGION_SECTION input buffer: framing, then `region_index`, `access`
/// (reserved bits, then map-read present), `reserved`.
pub fn parse_get_region_section(bytes: &[u8]) -> ProtoResult<GetRegionSectionParams> {
    let request = unframe::<GetRegionSectionRequest>(bytes)?;
    let region_index = check_region_index(request.region_index.get())?;
    let access = SectionAccess::from_bits(request.access.get())?;
    check_zero(ReservedField::GetRegionSection, request.reserved.get())?;
    Ok(GetRegionSectionParams {
        region_index,
        access,
    })
}

/// `Ok(index)` if `index` is below [`MAX_REGIONS`](super::MAX_REGIONS).
pub(crate) const fn check_region_index(index: u32) -> ProtoResult<u32> {
    if index < MAX_REGIONS_U32 {
        Ok(index)
    } else {
        Err(ProtoError::RegionIndexOutOfRange {
            limit: MAX_REGIONS_U32,
            got: index,
        })
    }
}

impl GetRegionSectionRequest {
    /// Builds a request; fails if `region_index` is not below
    /// [`MAX_REGIONS`](super::MAX_REGIONS).
    pub fn build(region_index: u32, access: SectionAccess) -> ProtoResult<Self> {
        let mut request = Self::new_zeroed();
        request.header = Self::header_for_kind();
        request.region_index = U32::new(check_region_index(region_index)?);
        request.access = U32::new(access.bits());
        Ok(request)
    }
}

/// The content of a GET_REGION_SECTION reply, validated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegionSection {
    section_handle: NonZeroU64,
    size: u64,
    offset_in_bar: u64,
}

impl RegionSection {
    /// The reply content, checked by the same rules as [`parse_get_region_section_reply`].
    pub fn new(section_handle: u64, size: u64, offset_in_bar: u64) -> ProtoResult<Self> {
        let section_handle =
            NonZeroU64::new(section_handle).ok_or(ProtoError::NullSectionHandle)?;
        if size == 0 {
            return Err(ProtoError::EmptySection);
        }
        if !is_page_aligned(size) {
            return Err(ProtoError::NotPageAligned {
                field: PagedField::SectionSize,
                got: size,
            });
        }
        if !is_page_aligned(offset_in_bar) {
            return Err(ProtoError::NotPageAligned {
                field: PagedField::SectionOffset,
                got: offset_in_bar,
            });
        }
        match offset_in_bar.checked_add(size) {
            Some(end) if end <= MAX_BAR_SIZE => {}
            _ => {
                return Err(ProtoError::SectionOutsideBar {
                    offset: offset_in_bar,
                    size,
                });
            }
        }
        Ok(Self {
            section_handle,
            size,
            offset_in_bar,
        })
    }

    /// Section handle value, valid only in the process that sent the request.
    pub const fn section_handle(&self) -> u64 {
        self.section_handle.get()
    }

    /// Size of the section in bytes.
    pub const fn size(&self) -> u64 {
        self.size
    }

    /// Byte offset of the region in the BAR.
    pub const fn offset_in_bar(&self) -> u64 {
        self.offset_in_bar
    }

    /// The wire reply.
    pub fn to_reply(&self) -> GetRegionSectionReply {
        GetRegionSectionReply {
            header: GetRegionSectionReply::header_for_kind(),
            section_handle: U64::new(self.section_handle.get()),
            size: U64::new(self.size),
            offset_in_bar: U64::new(self.offset_in_bar),
        }
    }

    /// Writes the reply to the start of `out`; returns its length or
    /// [`ProtoError::OutputTooSmall`].
    pub fn encode(&self, out: &mut [u8]) -> ProtoResult<usize> {
        self.to_reply().encode(out)
    }
}

/// Validates a GET_REGION_SECTION output buffer (device-host side): framing, then
/// `section_handle` non-zero, `size` non-zero and page-aligned, `offset_in_bar` page-aligned,
/// and the end at most [`MAX_BAR_SIZE`].
pub fn parse_get_region_section_reply(bytes: &[u8]) -> ProtoResult<RegionSection> {
    let reply = unframe::<GetRegionSectionReply>(bytes)?;
    RegionSection::new(
        reply.section_handle.get(),
        reply.size.get(),
        reply.offset_in_bar.get(),
    )
}
