//! LIST_SESSIONS: which running sessions a host consumer may attach to, one per call.
//!
//! Only version-2 sessions (module `open_session_v2`) are listed: they carry the VM's id and
//! region names. The consumer walks a cursor from 0; the reply for cursor `i` describes the
//! `i`-th such session in session-id order and says how many there are now (`total`). The list
//! may change between calls (sessions open and close), so a walk is a best-effort snapshot:
//! a session may be skipped or seen twice, and `cursor >= total` ends the walk with
//! `STATUS_NO_MORE_ENTRIES` instead of a reply (docs/ioctl.md).

use zerocopy::byteorder::little_endian::{U32, U64};
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::error::{GuidField, ProtoError, ProtoResult, ReservedField};
use super::guid::WireGuid;
use super::header::{MessageHeader, MessageKind, WireMessage, check_zero, unframe};
use super::limits::{MAX_REGION_SIZE, MAX_REGIONS, MAX_REGIONS_U32, is_page_aligned};
use super::open_session::{REGION_FLAG_CONSUMER_WRITABLE, REGION_FLAG_GUEST_WRITABLE};
use super::open_session_v2::{HasWireName, check_unique_name};
use crate::guest::{REGION_NAME_LEN, RegionName, RegionState};

/// LIST_SESSIONS request, 32 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
pub struct ListSessionsRequest {
    /// Kind [`MessageKind::ListSessionsRequest`].
    pub header: MessageHeader,
    /// Position in the list, from 0.
    pub cursor: U32,
    /// Must be zero.
    pub reserved0: U32,
    /// Must be zero.
    pub reserved1: U64,
}

/// One region of a LIST_SESSIONS reply, 48 bytes.
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
pub struct WireListedRegion {
    /// Size of the region's section in bytes (page-rounded, as the session holds it).
    pub size: U64,
    /// The region's `flags` as opened ([`REGION_FLAG_GUEST_WRITABLE`],
    /// [`REGION_FLAG_CONSUMER_WRITABLE`]).
    pub flags: U32,
    /// What the device host reported of its BAR mapping: 0 unmapped, 1 mapped, 2 intercepted.
    pub state: U32,
    /// The region's name, NUL-padded.
    pub name: [u8; REGION_NAME_LEN],
}

/// LIST_SESSIONS reply, 824 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
pub struct ListSessionsReply {
    /// Kind [`MessageKind::ListSessionsReply`].
    pub header: MessageHeader,
    /// Number of attachable (version-2) sessions now.
    pub total: U32,
    /// Position of this session in the list (= the request's `cursor`); below `total`.
    pub index: U32,
    /// The session's VM id; not nil.
    pub vm_id: WireGuid,
    /// Number of used entries of `regions`, 1..=[`MAX_REGIONS`].
    pub region_count: U32,
    /// Must be zero.
    pub reserved: U32,
    /// The driver's id of the session.
    pub session_id: U64,
    /// The regions, in session order; entries at and past `region_count` are all zero.
    pub regions: [WireListedRegion; MAX_REGIONS],
}

const _: () = assert!(size_of::<ListSessionsRequest>() == 32);
const _: () = assert!(size_of::<WireListedRegion>() == 48);
const _: () = assert!(size_of::<ListSessionsReply>() == 824);

impl WireMessage for ListSessionsRequest {
    const KIND: MessageKind = MessageKind::ListSessionsRequest;
}

impl WireMessage for ListSessionsReply {
    const KIND: MessageKind = MessageKind::ListSessionsReply;
}

impl HasWireName for WireListedRegion {
    fn wire_name(&self) -> &[u8; REGION_NAME_LEN] {
        &self.name
    }
}

impl ListSessionsRequest {
    /// The request for position `cursor`.
    pub fn build(cursor: u32) -> Self {
        let mut request = Self::new_zeroed();
        request.header = Self::header_for_kind();
        request.cursor = U32::new(cursor);
        request
    }
}

/// Validates a LIST_SESSIONS input buffer: framing, then both reserved fields zero. Returns
/// the cursor (any value: the driver answers one at or past the end with
/// `STATUS_NO_MORE_ENTRIES`).
pub fn parse_list_sessions(bytes: &[u8]) -> ProtoResult<u32> {
    let request = unframe::<ListSessionsRequest>(bytes)?;
    check_zero(
        ReservedField::ListSessions { index: 0 },
        request.reserved0.get().into(),
    )?;
    check_zero(
        ReservedField::ListSessions { index: 1 },
        request.reserved1.get(),
    )?;
    Ok(request.cursor.get())
}

/// One region of a listed session.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ListedRegion {
    /// Size of its section in bytes: non-zero, page-aligned, at most [`MAX_REGION_SIZE`].
    pub size: u64,
    /// Whether the guest may write it.
    pub guest_writable: bool,
    /// Whether a consumer may attach it for writing.
    pub consumer_writable: bool,
    /// What the device host reported of its BAR mapping.
    pub state: RegionState,
    /// Its name (required, unique in the session).
    pub name: RegionName,
}

impl ListedRegion {
    /// The wire `flags`.
    pub const fn flags(&self) -> u32 {
        let mut flags = 0;
        if self.guest_writable {
            flags |= REGION_FLAG_GUEST_WRITABLE;
        }
        if self.consumer_writable {
            flags |= REGION_FLAG_CONSUMER_WRITABLE;
        }
        flags
    }

    fn to_wire(self) -> WireListedRegion {
        WireListedRegion {
            size: U64::new(self.size),
            flags: U32::new(self.flags()),
            state: U32::new(u32::from(self.state.to_u8())),
            name: self.name.to_wire(),
        }
    }
}

/// The content of a LIST_SESSIONS reply, validated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionListing {
    total: u32,
    index: u32,
    vm_id: WireGuid,
    session_id: u64,
    regions: [ListedRegion; MAX_REGIONS],
    region_count: usize,
}

impl SessionListing {
    /// The reply content, checked by the same rules as [`parse_list_sessions_reply`].
    pub fn new(
        total: u32,
        index: u32,
        vm_id: WireGuid,
        session_id: u64,
        regions: &[ListedRegion],
    ) -> ProtoResult<Self> {
        let count = u32::try_from(regions.len()).unwrap_or(u32::MAX);
        if count > MAX_REGIONS_U32 {
            return Err(ProtoError::TooManyRegions {
                max: MAX_REGIONS_U32,
                got: count,
            });
        }
        let mut reply = ListSessionsReply::new_zeroed();
        reply.header = ListSessionsReply::header_for_kind();
        reply.total = U32::new(total);
        reply.index = U32::new(index);
        reply.vm_id = vm_id;
        reply.region_count = U32::new(count);
        reply.session_id = U64::new(session_id);
        for (wire, region) in reply.regions.iter_mut().zip(regions) {
            *wire = region.to_wire();
        }
        parse_list_sessions_reply(reply.as_bytes())
    }

    /// Number of attachable sessions when the reply was made.
    pub const fn total(&self) -> u32 {
        self.total
    }

    /// Position of this session in the list; below [`Self::total`].
    pub const fn index(&self) -> u32 {
        self.index
    }

    /// The session's VM id (never nil).
    pub const fn vm_id(&self) -> WireGuid {
        self.vm_id
    }

    /// The driver's id of the session.
    pub const fn session_id(&self) -> u64 {
        self.session_id
    }

    /// The regions, in session order; 1..=[`MAX_REGIONS`] of them.
    pub fn regions(&self) -> &[ListedRegion] {
        self.regions.get(..self.region_count).unwrap_or(&[])
    }

    /// The wire reply.
    pub fn to_reply(&self) -> ListSessionsReply {
        let mut reply = ListSessionsReply::new_zeroed();
        reply.header = ListSessionsReply::header_for_kind();
        reply.total = U32::new(self.total);
        reply.index = U32::new(self.index);
        reply.vm_id = self.vm_id;
        // region_count <= MAX_REGIONS by construction; the fallback is unreachable.
        reply.region_count = U32::new(u32::try_from(self.region_count).unwrap_or(u32::MAX));
        reply.session_id = U64::new(self.session_id);
        for (wire, region) in reply.regions.iter_mut().zip(self.regions()) {
            *wire = region.to_wire();
        }
        reply
    }

    /// Writes the reply to the start of `out`; returns its length or
    /// [`ProtoError::OutputTooSmall`].
    pub fn encode(&self, out: &mut [u8]) -> ProtoResult<usize> {
        self.to_reply().encode(out)
    }
}

/// Validates a LIST_SESSIONS output buffer (consumer side).
///
/// After the framing checks, in wire order: `index` below `total`, `vm_id` not nil,
/// `region_count` 1..=[`MAX_REGIONS`], `reserved` zero, then each region in index order: a used
/// entry's size (non-zero, page-aligned, at most [`MAX_REGION_SIZE`]), flags (bits 0 and 1),
/// state (0..=2), name (required), name unique among the earlier entries; an unused entry must
/// be all zero.
pub fn parse_list_sessions_reply(bytes: &[u8]) -> ProtoResult<SessionListing> {
    let reply = unframe::<ListSessionsReply>(bytes)?;
    let total = reply.total.get();
    let index = reply.index.get();
    if index >= total {
        return Err(ProtoError::ListIndexBeyondTotal { index, total });
    }
    if reply.vm_id.is_nil() {
        return Err(ProtoError::NilGuid {
            field: GuidField::VmId,
        });
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
    check_zero(
        ReservedField::ListSessionsReply,
        reply.reserved.get().into(),
    )?;

    let mut regions = [ListedRegion::default(); MAX_REGIONS];
    for ((index, wire), slot) in (0u32..).zip(reply.regions.iter()).zip(regions.iter_mut()) {
        if index >= region_count {
            if *wire != WireListedRegion::default() {
                return Err(ProtoError::UnusedRegionNotZero { index });
            }
            continue;
        }
        *slot = check_listed_region(index, wire)?;
        check_unique_name(&reply.regions, index, &wire.name)?;
    }
    Ok(SessionListing {
        total,
        index,
        vm_id: reply.vm_id,
        session_id: reply.session_id.get(),
        regions,
        // region_count <= MAX_REGIONS, so the conversion is lossless.
        region_count: usize::try_from(region_count).unwrap_or(MAX_REGIONS),
    })
}

/// Checks one used region of a LIST_SESSIONS reply: size, flags, state, name.
fn check_listed_region(index: u32, wire: &WireListedRegion) -> ProtoResult<ListedRegion> {
    let size = wire.size.get();
    check_region_size(index, size)?;
    let flags = wire.flags.get();
    if flags & !(REGION_FLAG_GUEST_WRITABLE | REGION_FLAG_CONSUMER_WRITABLE) != 0 {
        return Err(ProtoError::RegionFlagsReserved { index, got: flags });
    }
    let raw_state = wire.state.get();
    let state = u8::try_from(raw_state)
        .ok()
        .and_then(RegionState::from_u8)
        .ok_or(ProtoError::BadListedRegionState {
            index,
            got: raw_state,
        })?;
    let name = RegionName::required_from_wire(&wire.name)
        .map_err(|fault| ProtoError::BadRegionName { index, fault })?;
    Ok(ListedRegion {
        size,
        guest_writable: flags & REGION_FLAG_GUEST_WRITABLE != 0,
        consumer_writable: flags & REGION_FLAG_CONSUMER_WRITABLE != 0,
        state,
        name,
    })
}

/// [`ProtoError::BadRegionSize`] unless `size` is a region's section size: non-zero,
/// page-aligned, at most [`MAX_REGION_SIZE`].
pub(crate) const fn check_region_size(index: u32, size: u64) -> ProtoResult<()> {
    if size == 0 || !is_page_aligned(size) || size > MAX_REGION_SIZE {
        Err(ProtoError::BadRegionSize { index, got: size })
    } else {
        Ok(())
    }
}
