//! ATTACH_REGION: a host consumer gets one named region of a running VM's session.
//!
//! The consumer names the VM by its compute-system id and the region by its name (both from
//! OPEN_SESSION version 2) and asks for map-read, optionally map-write. The driver opens a
//! section handle in the consumer's process with those rights — map-write only for a region
//! opened with `CONSUMER_WRITABLE` — and records an attachment the consumer names in every later
//! request (module `attachment`). Which VM and region exist, quotas and rights are the driver's
//! to check against its sessions; this module checks what the bytes alone decide.

use core::num::NonZeroU64;

use zerocopy::byteorder::little_endian::{U32, U64};
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::attachment::AttachmentId;
use super::error::{GuidField, ProtoError, ProtoResult, ReservedField};
use super::guid::WireGuid;
use super::header::{MessageHeader, MessageKind, WireMessage, check_zero, unframe};
use super::list_sessions::check_region_size;
use super::region_section::{SectionAccess, check_region_index};
use crate::guest::{REGION_NAME_LEN, RegionName};

/// ATTACH_REGION request, 80 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
pub struct AttachRegionRequest {
    /// Kind [`MessageKind::AttachRegionRequest`].
    pub header: MessageHeader,
    /// The VM's compute-system id; not nil.
    pub vm_id: WireGuid,
    /// The region's name, NUL-padded (the rules of named regions).
    pub name: [u8; REGION_NAME_LEN],
    /// [`ACCESS_MAP_READ`](super::ACCESS_MAP_READ), optionally with
    /// [`ACCESS_MAP_WRITE`](super::ACCESS_MAP_WRITE).
    pub access: U32,
    /// Must be zero.
    pub reserved0: U32,
    /// Must be zero.
    pub reserved1: U64,
}

/// ATTACH_REGION reply, 48 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
pub struct AttachRegionReply {
    /// Kind [`MessageKind::AttachRegionReply`].
    pub header: MessageHeader,
    /// The new attachment's id; non-zero, never reused in a driver run.
    pub attachment: U64,
    /// Section handle value, valid only in the process that sent the request; non-zero.
    pub section_handle: U64,
    /// Size of the section in bytes: non-zero, page-aligned.
    pub size: U64,
    /// The rights granted (= asked).
    pub access: U32,
    /// Index of the region in its session.
    pub region_index: U32,
}

const _: () = assert!(size_of::<AttachRegionRequest>() == 80);
const _: () = assert!(size_of::<AttachRegionReply>() == 48);

impl WireMessage for AttachRegionRequest {
    const KIND: MessageKind = MessageKind::AttachRegionRequest;
}

impl WireMessage for AttachRegionReply {
    const KIND: MessageKind = MessageKind::AttachRegionReply;
}

/// A validated ATTACH_REGION request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttachRegionParams {
    /// The VM's compute-system id (never nil).
    pub vm_id: WireGuid,
    /// The region's name (a required name: [`RegionName::check_required`]).
    pub name: RegionName,
    /// The rights asked for.
    pub access: SectionAccess,
}

/// Validates an ATTACH_REGION input buffer: framing, then `vm_id` not nil, `name` (required),
/// `access` (reserved bits, then map-read present), both reserved fields.
pub fn parse_attach_region(bytes: &[u8]) -> ProtoResult<AttachRegionParams> {
    let request = unframe::<AttachRegionRequest>(bytes)?;
    if request.vm_id.is_nil() {
        return Err(ProtoError::NilGuid {
            field: GuidField::VmId,
        });
    }
    let name = RegionName::required_from_wire(&request.name)
        .map_err(|fault| ProtoError::BadAttachName { fault })?;
    let access = SectionAccess::from_bits(request.access.get())?;
    check_zero(
        ReservedField::AttachRegion { index: 0 },
        request.reserved0.get().into(),
    )?;
    check_zero(
        ReservedField::AttachRegion { index: 1 },
        request.reserved1.get(),
    )?;
    Ok(AttachRegionParams {
        vm_id: request.vm_id,
        name,
        access,
    })
}

impl AttachRegionRequest {
    /// Builds a request and checks it with [`parse_attach_region`].
    pub fn build(vm_id: WireGuid, name: &RegionName, access: SectionAccess) -> ProtoResult<Self> {
        let mut request = Self::new_zeroed();
        request.header = Self::header_for_kind();
        request.vm_id = vm_id;
        request.name = name.to_wire();
        request.access = U32::new(access.bits());
        parse_attach_region(request.as_bytes())?;
        Ok(request)
    }
}

/// The content of an ATTACH_REGION reply, validated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegionAttached {
    attachment: AttachmentId,
    section_handle: NonZeroU64,
    size: u64,
    access: SectionAccess,
    region_index: u32,
}

impl RegionAttached {
    /// The reply content, checked by the same rules as [`parse_attach_region_reply`].
    pub fn new(
        attachment: AttachmentId,
        section_handle: u64,
        size: u64,
        access: SectionAccess,
        region_index: u32,
    ) -> ProtoResult<Self> {
        let section_handle =
            NonZeroU64::new(section_handle).ok_or(ProtoError::NullSectionHandle)?;
        check_region_size(region_index, size)?;
        let region_index = check_region_index(region_index)?;
        Ok(Self {
            attachment,
            section_handle,
            size,
            access,
            region_index,
        })
    }

    /// The attachment's id.
    pub const fn attachment(&self) -> AttachmentId {
        self.attachment
    }

    /// Section handle value, valid only in the process that sent the request.
    pub const fn section_handle(&self) -> u64 {
        self.section_handle.get()
    }

    /// Size of the section in bytes.
    pub const fn size(&self) -> u64 {
        self.size
    }

    /// The rights the handle has.
    pub const fn access(&self) -> SectionAccess {
        self.access
    }

    /// Index of the region in its session.
    pub const fn region_index(&self) -> u32 {
        self.region_index
    }

    /// The wire reply.
    pub fn to_reply(&self) -> AttachRegionReply {
        AttachRegionReply {
            header: AttachRegionReply::header_for_kind(),
            attachment: U64::new(self.attachment.get()),
            section_handle: U64::new(self.section_handle.get()),
            size: U64::new(self.size),
            access: U32::new(self.access.bits()),
            region_index: U32::new(self.region_index),
        }
    }

    /// Writes the reply to the start of `out`; returns its length or
    /// [`ProtoError::OutputTooSmall`].
    pub fn encode(&self, out: &mut [u8]) -> ProtoResult<usize> {
        self.to_reply().encode(out)
    }
}

/// Validates an ATTACH_REGION output buffer (consumer side): framing, then in wire order
/// `attachment` non-zero, `section_handle` non-zero, `size` (non-zero, page-aligned, at most
/// [`MAX_REGION_SIZE`](super::MAX_REGION_SIZE)), `access` (as in the request), `region_index`
/// below [`MAX_REGIONS`](super::MAX_REGIONS).
pub fn parse_attach_region_reply(bytes: &[u8]) -> ProtoResult<RegionAttached> {
    let reply = unframe::<AttachRegionReply>(bytes)?;
    let attachment = AttachmentId::from_wire(reply.attachment.get())?;
    let section_handle =
        NonZeroU64::new(reply.section_handle.get()).ok_or(ProtoError::NullSectionHandle)?;
    let size = reply.size.get();
    check_region_size(reply.region_index.get(), size)?;
    let access = SectionAccess::from_bits(reply.access.get())?;
    let region_index = check_region_index(reply.region_index.get())?;
    Ok(RegionAttached {
        attachment,
        section_handle,
        size,
        access,
        region_index,
    })
}
