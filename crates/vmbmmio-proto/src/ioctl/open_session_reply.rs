//! OPEN_SESSION reply: the session id, the guest MMIO reservation and where each region lives in
//! the emulated PCI BAR.
//!
//! The driver fills it from its MMIO plan; the device host reads it to size the BAR it reports
//! to HDV and to place each section with `HdvCreateSectionBackedMmioRange`, whose offsets are in
//! pages (hdv.md §3.3). The parser enforces what the device host relies on: a power-of-two BAR,
//! page-aligned regions in ascending order without overlap, all inside the BAR.

use zerocopy::byteorder::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::error::{PagedField, ProtoError, ProtoResult};
use super::header::{MessageHeader, MessageKind, WireMessage, unframe};
use super::limits::{MAX_BAR_SIZE, MAX_REGIONS, MAX_REGIONS_U32, is_page_aligned};
use crate::PAGE_SIZE;

/// One entry of the reply's region array.
#[repr(C)]
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    FromBytes,
    IntoBytes,
    KnownLayout,
    Immutable,
    Unaligned,
)]
pub struct WireBarRegion {
    /// Byte offset of the region in the BAR; a multiple of the page size.
    pub offset: U64,
    /// Size in bytes; a non-zero multiple of the page size.
    pub size: U64,
}

/// OPEN_SESSION reply, 296 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
pub struct OpenSessionReply {
    /// Kind [`MessageKind::OpenSessionReply`].
    pub header: MessageHeader,
    /// Driver-chosen id of the session.
    pub session_id: U64,
    /// `MmioMegabytes` given to `VmbServerChannelInitSetMmioMegabytes`; non-zero.
    pub mmio_megabytes: U16,
    /// `MmioMegabytesOptional` given to the same call.
    pub mmio_megabytes_optional: U16,
    /// Number of used entries of `regions`, 1..=[`MAX_REGIONS`].
    pub region_count: U32,
    /// Size of the BAR in bytes: a power of two, at least one page.
    pub bar_size: U64,
    /// Placement of each region; entries at and past `region_count` are all zero.
    pub regions: [WireBarRegion; MAX_REGIONS],
}

const _: () = assert!(size_of::<WireBarRegion>() == 16);
const _: () = assert!(size_of::<OpenSessionReply>() == 296);

impl WireMessage for OpenSessionReply {
    const KIND: MessageKind = MessageKind::OpenSessionReply;
}

/// Where one region lives in the BAR.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BarRegion {
    /// Byte offset from the start of the BAR.
    pub offset: u64,
    /// Size in bytes.
    pub size: u64,
}

impl BarRegion {
    /// Offset in pages, the unit of `HdvCreateSectionBackedMmioRange`.
    pub const fn offset_pages(&self) -> u64 {
        self.offset / PAGE_SIZE
    }

    /// Size in pages.
    pub const fn pages(&self) -> u64 {
        self.size / PAGE_SIZE
    }
}

/// The content of an OPEN_SESSION reply, validated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionOpened {
    session_id: u64,
    mmio_megabytes: u16,
    mmio_megabytes_optional: u16,
    bar_size: u64,
    regions: [BarRegion; MAX_REGIONS],
    region_count: usize,
}

impl SessionOpened {
    /// The reply content, checked by the same rules as [`parse_open_session_reply`].
    pub fn new(
        session_id: u64,
        mmio_megabytes: u16,
        mmio_megabytes_optional: u16,
        bar_size: u64,
        regions: &[BarRegion],
    ) -> ProtoResult<Self> {
        if regions.len() > MAX_REGIONS {
            return Err(ProtoError::TooManyRegions {
                max: MAX_REGIONS_U32,
                got: u32::try_from(regions.len()).unwrap_or(u32::MAX),
            });
        }
        let mut reply = OpenSessionReply::new_zeroed();
        reply.header = OpenSessionReply::header_for_kind();
        reply.session_id = U64::new(session_id);
        reply.mmio_megabytes = U16::new(mmio_megabytes);
        reply.mmio_megabytes_optional = U16::new(mmio_megabytes_optional);
        // regions.len() <= MAX_REGIONS was checked above; the fallback is unreachable.
        reply.region_count = U32::new(u32::try_from(regions.len()).unwrap_or(u32::MAX));
        reply.bar_size = U64::new(bar_size);
        for (wire, region) in reply.regions.iter_mut().zip(regions) {
            wire.offset = U64::new(region.offset);
            wire.size = U64::new(region.size);
        }
        parse_open_session_reply(reply.as_bytes())
    }

    /// Driver-chosen id of the session.
    pub const fn session_id(&self) -> u64 {
        self.session_id
    }

    /// `MmioMegabytes` of the offer.
    pub const fn mmio_megabytes(&self) -> u16 {
        self.mmio_megabytes
    }

    /// `MmioMegabytesOptional` of the offer.
    pub const fn mmio_megabytes_optional(&self) -> u16 {
        self.mmio_megabytes_optional
    }

    /// Size of the BAR in bytes.
    pub const fn bar_size(&self) -> u64 {
        self.bar_size
    }

    /// The regions, in the order of the request.
    pub fn regions(&self) -> &[BarRegion] {
        self.regions.get(..self.region_count).unwrap_or(&[])
    }

    /// The wire reply.
    pub fn to_reply(&self) -> OpenSessionReply {
        let mut reply = OpenSessionReply::new_zeroed();
        reply.header = OpenSessionReply::header_for_kind();
        reply.session_id = U64::new(self.session_id);
        reply.mmio_megabytes = U16::new(self.mmio_megabytes);
        reply.mmio_megabytes_optional = U16::new(self.mmio_megabytes_optional);
        // region_count <= MAX_REGIONS by construction; the fallback is unreachable.
        reply.region_count = U32::new(u32::try_from(self.region_count).unwrap_or(u32::MAX));
        reply.bar_size = U64::new(self.bar_size);
        for (wire, region) in reply.regions.iter_mut().zip(self.regions()) {
            wire.offset = U64::new(region.offset);
            wire.size = U64::new(region.size);
        }
        reply
    }

    /// Writes the reply to the start of `out`; returns its length or
    /// [`ProtoError::OutputTooSmall`].
    pub fn encode(&self, out: &mut [u8]) -> ProtoResult<usize> {
        self.to_reply().encode(out)
    }
}

/// Validates an OPEN_SESSION output buffer (device-host side).
///
/// After the framing checks, in wire order: `mmio_megabytes` non-zero, `region_count`,
/// `bar_size` (a power of two, at most [`MAX_BAR_SIZE`]; the channel's reservation is separate
/// from the BAR, so the two are not compared), then each region: offset page-aligned, size non-zero and page-aligned, not before the
/// previous region's end, end inside the BAR; unused entries all zero.
pub fn parse_open_session_reply(bytes: &[u8]) -> ProtoResult<SessionOpened> {
    let reply = unframe::<OpenSessionReply>(bytes)?;

    let mmio_megabytes = reply.mmio_megabytes.get();
    if mmio_megabytes == 0 {
        return Err(ProtoError::ZeroMmioMegabytes);
    }
    let region_count = reply.region_count.get();
    if region_count == 0 {
        return Err(ProtoError::NoRegions);
    }
    if region_count > MAX_REGIONS_U32 {
        return Err(ProtoError::TooManyRegions {
            max: MAX_REGIONS_U32,
            got: region_count,
        });
    }
    let bar_size = reply.bar_size.get();
    if bar_size < PAGE_SIZE || !bar_size.is_power_of_two() || bar_size > MAX_BAR_SIZE {
        return Err(ProtoError::BadBarSize { got: bar_size });
    }

    let mut regions = [BarRegion::default(); MAX_REGIONS];
    let mut previous_end: u64 = 0;
    for ((index, wire), slot) in (0u32..).zip(reply.regions.iter()).zip(regions.iter_mut()) {
        if index >= region_count {
            if *wire != WireBarRegion::default() {
                return Err(ProtoError::UnusedRegionNotZero { index });
            }
            continue;
        }
        let region = BarRegion {
            offset: wire.offset.get(),
            size: wire.size.get(),
        };
        if !is_page_aligned(region.offset) {
            return Err(ProtoError::NotPageAligned {
                field: PagedField::RegionOffset { index },
                got: region.offset,
            });
        }
        if region.size == 0 {
            return Err(ProtoError::EmptyRegion { index });
        }
        if !is_page_aligned(region.size) {
            return Err(ProtoError::NotPageAligned {
                field: PagedField::RegionSize { index },
                got: region.size,
            });
        }
        if region.offset < previous_end {
            return Err(ProtoError::RegionsOverlap { index });
        }
        let end = region
            .offset
            .checked_add(region.size)
            .filter(|&end| end <= bar_size)
            .ok_or(ProtoError::RegionOutsideBar { index })?;
        previous_end = end;
        *slot = region;
    }

    Ok(SessionOpened {
        session_id: reply.session_id.get(),
        mmio_megabytes,
        mmio_megabytes_optional: reply.mmio_megabytes_optional.get(),
        bar_size,
        regions,
        // region_count <= MAX_REGIONS, so the conversion is lossless.
        region_count: region_count as usize,
    })
}
