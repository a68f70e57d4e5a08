//! OPEN_SESSION request: which VM to offer a channel to, and which regions to share with it.
//!
//! The device host names the target (a VMBus handle from the VM worker process, or a loopback
//! offer for host-local testing; kmcl.md §6), the interface type and instance GUIDs of the offer
//! (the first two fields of the VMBus channel offer, anchors.md §1.1), and up to
//! [`MAX_REGIONS`] regions. The driver validates everything here before it creates any object,
//! and works only with the page-rounded sizes this parser returns.

use core::num::NonZeroU64;

use zerocopy::byteorder::little_endian::{U32, U64};
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::error::{GuidField, ProtoError, ProtoResult, ReservedField};
use super::guid::WireGuid;
use super::header::{MessageHeader, MessageKind, WireMessage, check_zero, unframe};
use super::limits::{
    MAX_REGION_SIZE, MAX_REGIONS, MAX_REGIONS_U32, MAX_TOTAL_SIZE, round_up_to_page,
};
use crate::PAGE_SIZE;
use crate::guest::RegionName;

/// `target_kind`: the offer goes to the VM whose VMBus handle is in `vmbus_handle`.
pub const TARGET_VMBUS_HANDLE: u32 = 1;
/// `target_kind`: loopback offer to the host itself, for host-local testing; `vmbus_handle` = 0.
pub const TARGET_LOOPBACK: u32 = 2;
/// Region `flags` bit 0: the guest may write the region. All other bits are reserved in
/// version 1.
pub const REGION_FLAG_GUEST_WRITABLE: u32 = 1;
/// Region `flags` bit 1 (version 2 only): host consumers may map the region for writing
/// (ATTACH_REGION with map-write). Without it a consumer gets a read-only handle at most.
pub const REGION_FLAG_CONSUMER_WRITABLE: u32 = 2;

/// Number of reserved `u32` words in the request body.
pub const OPEN_SESSION_RESERVED_WORDS: usize = 4;

/// One entry of the request's region array.
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
pub struct WireRegionSpec {
    /// Size in bytes; non-zero; rounded up to whole pages by validation.
    pub size: U64,
    /// [`REGION_FLAG_GUEST_WRITABLE`] or 0.
    pub flags: U32,
    /// Must be zero.
    pub reserved: U32,
}

/// OPEN_SESSION request, 336 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
pub struct OpenSessionRequest {
    /// Kind [`MessageKind::OpenSessionRequest`].
    pub header: MessageHeader,
    /// [`TARGET_VMBUS_HANDLE`] or [`TARGET_LOOPBACK`].
    pub target_kind: U32,
    /// Number of used entries of `regions`, 1..=[`MAX_REGIONS`].
    pub region_count: U32,
    /// User-mode VMBus handle, valid only in the calling process; 0 for loopback.
    pub vmbus_handle: U64,
    /// Interface type GUID of the offer; not nil.
    pub interface_type: WireGuid,
    /// Interface instance GUID of the offer; not nil.
    pub interface_instance: WireGuid,
    /// Must be zero.
    pub reserved: [U32; OPEN_SESSION_RESERVED_WORDS],
    /// Region specs; entries at and past `region_count` must be all zero.
    pub regions: [WireRegionSpec; MAX_REGIONS],
}

const _: () = assert!(size_of::<WireRegionSpec>() == 16);
const _: () = assert!(size_of::<OpenSessionRequest>() == 336);

impl WireMessage for OpenSessionRequest {
    const KIND: MessageKind = MessageKind::OpenSessionRequest;
}

/// Which VM the session's channel is offered to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// A VMBus handle opened in the calling (VM worker) process; the driver converts it to a
    /// kernel handle in the caller's context (kmcl.md §6).
    VmbusHandle(NonZeroU64),
    /// A loopback offer to the host itself, for host-local testing (kmcl.md §6: uncertain).
    Loopback,
}

impl Target {
    /// The wire `target_kind`.
    pub const fn kind(self) -> u32 {
        match self {
            Self::VmbusHandle(_) => TARGET_VMBUS_HANDLE,
            Self::Loopback => TARGET_LOOPBACK,
        }
    }

    /// The wire `vmbus_handle` (0 for loopback).
    pub const fn handle_value(self) -> u64 {
        match self {
            Self::VmbusHandle(handle) => handle.get(),
            Self::Loopback => 0,
        }
    }
}

/// A region as the device host asks for it (input of [`OpenSessionRequest::build`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegionRequest {
    /// Size in bytes; the driver rounds it up to whole pages.
    pub size: u64,
    /// Whether the guest may write the region.
    pub guest_writable: bool,
}

/// A validated region of an OPEN_SESSION request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ValidRegion {
    /// Size as sent, in bytes.
    pub requested_size: u64,
    /// Size rounded up to whole pages: non-zero, at most [`MAX_REGION_SIZE`].
    pub size: u64,
    /// Whether the guest may write the region.
    pub guest_writable: bool,
    /// Whether host consumers may map it for writing (version 2; always `false` in version 1).
    pub consumer_writable: bool,
    /// Its name (version 2: required, unique in the session; version 1: empty).
    pub name: RegionName,
}

impl ValidRegion {
    /// Size in pages.
    pub const fn pages(&self) -> u64 {
        self.size / PAGE_SIZE
    }
}

/// A validated OPEN_SESSION request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenSessionParams {
    pub(crate) version: u16,
    pub(crate) vm_id: Option<WireGuid>,
    target: Target,
    interface_type: WireGuid,
    interface_instance: WireGuid,
    regions: [ValidRegion; MAX_REGIONS],
    region_count: usize,
    total_size: u64,
}

impl OpenSessionParams {
    /// The request's interface version: [`VERSION`](super::VERSION) or
    /// [`VERSION_2`](super::VERSION_2).
    pub const fn version(&self) -> u16 {
        self.version
    }

    /// The VM's compute-system id (version 2; never nil), which host consumers name in
    /// ATTACH_REGION. `None` for version 1: such a session is invisible to consumers.
    pub const fn vm_id(&self) -> Option<WireGuid> {
        self.vm_id
    }

    /// Which VM the offer goes to.
    pub const fn target(&self) -> Target {
        self.target
    }

    /// Interface type GUID of the offer.
    pub const fn interface_type(&self) -> WireGuid {
        self.interface_type
    }

    /// Interface instance GUID of the offer.
    pub const fn interface_instance(&self) -> WireGuid {
        self.interface_instance
    }

    /// The regions, in the order sent; 1..=[`MAX_REGIONS`] of them.
    pub fn regions(&self) -> &[ValidRegion] {
        self.regions.get(..self.region_count).unwrap_or(&[])
    }

    /// Sum of the page-rounded region sizes; at most [`MAX_TOTAL_SIZE`].
    pub const fn total_size(&self) -> u64 {
        self.total_size
    }
}

/// Validates an OPEN_SESSION input buffer.
///
/// After the framing checks (module `header`), fields are checked in wire order: `target_kind`,
/// `region_count`, `vmbus_handle` (against the target kind), `interface_type`,
/// `interface_instance`, `reserved`, then each region entry in index order (a used entry: its
/// size, flags and reserved word, then the running total; an unused entry: all zero).
pub fn parse_open_session(bytes: &[u8]) -> ProtoResult<OpenSessionParams> {
    let request = unframe::<OpenSessionRequest>(bytes)?;
    let mut params = check_common(&CommonFields {
        target_kind: request.target_kind.get(),
        region_count: request.region_count.get(),
        vmbus_handle: request.vmbus_handle.get(),
        interface_type: request.interface_type,
        interface_instance: request.interface_instance,
    })?;
    for (index, word) in (0u32..).zip(request.reserved.iter()) {
        check_zero(ReservedField::OpenSession { index }, word.get().into())?;
    }
    for (index, spec) in (0u32..).zip(request.regions.iter()) {
        if index >= request.region_count.get() {
            if *spec != WireRegionSpec::default() {
                return Err(ProtoError::UnusedRegionNotZero { index });
            }
            continue;
        }
        let region = check_region(
            index,
            spec.size.get(),
            spec.flags.get(),
            REGION_FLAG_GUEST_WRITABLE,
            spec.reserved.get(),
        )?;
        params.push_region(index, region)?;
    }
    Ok(params)
}

/// The fields both versions of the request start with, in wire order.
pub(crate) struct CommonFields {
    pub(crate) target_kind: u32,
    pub(crate) region_count: u32,
    pub(crate) vmbus_handle: u64,
    pub(crate) interface_type: WireGuid,
    pub(crate) interface_instance: WireGuid,
}

/// Checks the fields both versions share, in wire order, and returns version-1 parameters
/// without regions (the caller adds them with [`OpenSessionParams::push_region`]).
pub(crate) fn check_common(fields: &CommonFields) -> ProtoResult<OpenSessionParams> {
    let request = fields;
    let target_kind = request.target_kind;
    if target_kind != TARGET_VMBUS_HANDLE && target_kind != TARGET_LOOPBACK {
        return Err(ProtoError::BadTargetKind { got: target_kind });
    }

    let region_count = request.region_count;
    if region_count == 0 {
        return Err(ProtoError::NoRegions);
    }
    if region_count > MAX_REGIONS_U32 {
        return Err(ProtoError::TooManyRegions {
            max: MAX_REGIONS_U32,
            got: region_count,
        });
    }

    let handle = request.vmbus_handle;
    let target = if target_kind == TARGET_LOOPBACK {
        if handle != 0 {
            return Err(ProtoError::HandleWithLoopback { got: handle });
        }
        Target::Loopback
    } else {
        Target::VmbusHandle(NonZeroU64::new(handle).ok_or(ProtoError::MissingVmbusHandle)?)
    };

    if request.interface_type.is_nil() {
        return Err(ProtoError::NilGuid {
            field: GuidField::InterfaceType,
        });
    }
    if request.interface_instance.is_nil() {
        return Err(ProtoError::NilGuid {
            field: GuidField::InterfaceInstance,
        });
    }
    Ok(OpenSessionParams {
        version: super::header::VERSION,
        vm_id: None,
        target,
        interface_type: request.interface_type,
        interface_instance: request.interface_instance,
        regions: [ValidRegion::default(); MAX_REGIONS],
        region_count: 0,
        total_size: 0,
    })
}

impl OpenSessionParams {
    /// Appends the used region entry `index` (entries come in index order) and checks the
    /// running total.
    pub(crate) fn push_region(&mut self, index: u32, region: ValidRegion) -> ProtoResult<()> {
        // Each region is at most 4 GiB and there are at most 16, so the sum cannot overflow; the
        // saturating add keeps that true even if the bounds change.
        let total_size = self.total_size.saturating_add(region.size);
        if total_size > MAX_TOTAL_SIZE {
            return Err(ProtoError::TotalTooLarge {
                index,
                max: MAX_TOTAL_SIZE,
                got: total_size,
            });
        }
        let slot = self
            .regions
            .get_mut(self.region_count)
            .ok_or(ProtoError::TooManyRegions {
                max: MAX_REGIONS_U32,
                got: index.saturating_add(1),
            })?;
        *slot = region;
        self.total_size = total_size;
        // At most MAX_REGIONS: the slot above exists.
        self.region_count = self.region_count.saturating_add(1);
        Ok(())
    }
}

/// Checks one used region entry: size, then flags (bits outside `allowed_flags` are
/// reserved), then reserved.
pub(crate) fn check_region(
    index: u32,
    requested_size: u64,
    flags: u32,
    allowed_flags: u32,
    reserved: u32,
) -> ProtoResult<ValidRegion> {
    if requested_size == 0 {
        return Err(ProtoError::EmptyRegion { index });
    }
    let size = round_up_to_page(requested_size).ok_or(ProtoError::RegionSizeOverflow {
        index,
        got: requested_size,
    })?;
    if size > MAX_REGION_SIZE {
        return Err(ProtoError::RegionTooLarge {
            index,
            max: MAX_REGION_SIZE,
            got: size,
        });
    }
    if flags & !allowed_flags != 0 {
        return Err(ProtoError::RegionFlagsReserved { index, got: flags });
    }
    check_zero(ReservedField::RegionSpec { index }, reserved.into())?;
    Ok(ValidRegion {
        requested_size,
        size,
        guest_writable: flags & REGION_FLAG_GUEST_WRITABLE != 0,
        consumer_writable: flags & REGION_FLAG_CONSUMER_WRITABLE != 0,
        name: RegionName::EMPTY,
    })
}

impl OpenSessionRequest {
    /// Builds a request and checks it with [`parse_open_session`], so a request this returns is
    /// one the driver accepts (as far as the wire format goes).
    pub fn build(
        target: Target,
        interface_type: WireGuid,
        interface_instance: WireGuid,
        regions: &[RegionRequest],
    ) -> ProtoResult<Self> {
        if regions.len() > MAX_REGIONS {
            return Err(ProtoError::TooManyRegions {
                max: MAX_REGIONS_U32,
                got: u32::try_from(regions.len()).unwrap_or(u32::MAX),
            });
        }
        let mut request = Self::new_zeroed();
        request.header = Self::header_for_kind();
        request.target_kind = U32::new(target.kind());
        // regions.len() <= MAX_REGIONS was checked above; the fallback is unreachable.
        request.region_count = U32::new(u32::try_from(regions.len()).unwrap_or(u32::MAX));
        request.vmbus_handle = U64::new(target.handle_value());
        request.interface_type = interface_type;
        request.interface_instance = interface_instance;
        for (spec, region) in request.regions.iter_mut().zip(regions) {
            spec.size = U64::new(region.size);
            spec.flags = U32::new(if region.guest_writable {
                REGION_FLAG_GUEST_WRITABLE
            } else {
                0
            });
        }
        parse_open_session(request.as_bytes())?;
        Ok(request)
    }
}
