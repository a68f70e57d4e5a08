//! OPEN_SESSION version 2: version 1 plus the VM's id and a name and consumer access per region.
//!
//! Host consumers (module `attach_region`) find a region by the VM's compute-system id and the
//! region's name, so a session they may attach to must say both; version 1 says neither and its
//! sessions stay invisible to consumers. The body is version 1's with `vm_id` after the offer
//! GUIDs and 48-byte region entries that end with the name. Both versions parse to the same
//! [`OpenSessionParams`]; [`parse_open_session_any`] picks the parser by the header's version,
//! like REPORT_MAPPING's.

use zerocopy::byteorder::little_endian::{U32, U64};
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::error::{GuidField, ProtoError, ProtoResult, ReservedField};
use super::guid::WireGuid;
use super::header::{
    MessageHeader, MessageKind, VERSION_2, WireMessage, check_zero, peek_version, unframe,
};
use super::limits::{MAX_REGIONS, MAX_REGIONS_U32};
use super::open_session::{
    CommonFields, OPEN_SESSION_RESERVED_WORDS, OpenSessionParams, REGION_FLAG_CONSUMER_WRITABLE,
    REGION_FLAG_GUEST_WRITABLE, Target, check_common, check_region, parse_open_session,
};
use crate::guest::{REGION_NAME_LEN, RegionName};

/// One entry of the version-2 request's region array, 48 bytes.
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
pub struct WireNamedRegionSpec {
    /// Size in bytes; non-zero; rounded up to whole pages by validation.
    pub size: U64,
    /// [`REGION_FLAG_GUEST_WRITABLE`] and/or [`REGION_FLAG_CONSUMER_WRITABLE`], or 0.
    pub flags: U32,
    /// Must be zero.
    pub reserved: U32,
    /// The region's name: 1..=32 bytes of UTF-8 without NUL or ASCII control characters,
    /// NUL-padded; unique among the used entries.
    pub name: [u8; REGION_NAME_LEN],
}

/// OPEN_SESSION request, version 2, 864 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
pub struct OpenSessionV2Request {
    /// Kind [`MessageKind::OpenSessionRequest`], version [`VERSION_2`].
    pub header: MessageHeader,
    /// [`TARGET_VMBUS_HANDLE`](super::TARGET_VMBUS_HANDLE) or
    /// [`TARGET_LOOPBACK`](super::TARGET_LOOPBACK).
    pub target_kind: U32,
    /// Number of used entries of `regions`, 1..=[`MAX_REGIONS`].
    pub region_count: U32,
    /// User-mode VMBus handle, valid only in the calling process; 0 for loopback.
    pub vmbus_handle: U64,
    /// Interface type GUID of the offer; not nil.
    pub interface_type: WireGuid,
    /// Interface instance GUID of the offer; not nil.
    pub interface_instance: WireGuid,
    /// The VM's compute-system id; not nil. What host consumers name in ATTACH_REGION.
    pub vm_id: WireGuid,
    /// Must be zero.
    pub reserved: [U32; OPEN_SESSION_RESERVED_WORDS],
    /// Region specs; entries at and past `region_count` must be all zero.
    pub regions: [WireNamedRegionSpec; MAX_REGIONS],
}

const _: () = assert!(size_of::<WireNamedRegionSpec>() == 48);
const _: () = assert!(size_of::<OpenSessionV2Request>() == 864);

impl WireMessage for OpenSessionV2Request {
    const KIND: MessageKind = MessageKind::OpenSessionRequest;
    const VERSION: u16 = VERSION_2;
}

/// A named region as the device host asks for it (input of [`OpenSessionV2Request::build`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NamedRegionRequest {
    /// Size in bytes; the driver rounds it up to whole pages.
    pub size: u64,
    /// Whether the guest may write the region.
    pub guest_writable: bool,
    /// Whether host consumers may map it for writing.
    pub consumer_writable: bool,
    /// Its name ([`RegionName::required`]); unique in the session.
    pub name: RegionName,
}

impl NamedRegionRequest {
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
}

/// Validates a version-2 OPEN_SESSION input buffer.
///
/// After the framing checks (module `header`), in wire order: the fields version 1 has
/// (`target_kind`, `region_count`, `vmbus_handle`, `interface_type`, `interface_instance`),
/// `vm_id` not nil, `reserved`, then each region entry in index order: a used entry's size,
/// flags (bits 0 and 1 defined), reserved word, name (required), name unique among the earlier
/// entries, then the running total; an unused entry must be all zero.
pub fn parse_open_session_v2(bytes: &[u8]) -> ProtoResult<OpenSessionParams> {
    let request = unframe::<OpenSessionV2Request>(bytes)?;
    let mut params = check_common(&CommonFields {
        target_kind: request.target_kind.get(),
        region_count: request.region_count.get(),
        vmbus_handle: request.vmbus_handle.get(),
        interface_type: request.interface_type,
        interface_instance: request.interface_instance,
    })?;
    if request.vm_id.is_nil() {
        return Err(ProtoError::NilGuid {
            field: GuidField::VmId,
        });
    }
    for (index, word) in (0u32..).zip(request.reserved.iter()) {
        check_zero(ReservedField::OpenSession { index }, word.get().into())?;
    }
    let region_count = request.region_count.get();
    for (index, spec) in (0u32..).zip(request.regions.iter()) {
        if index >= region_count {
            if *spec != WireNamedRegionSpec::default() {
                return Err(ProtoError::UnusedRegionNotZero { index });
            }
            continue;
        }
        let mut region = check_region(
            index,
            spec.size.get(),
            spec.flags.get(),
            REGION_FLAG_GUEST_WRITABLE | REGION_FLAG_CONSUMER_WRITABLE,
            spec.reserved.get(),
        )?;
        region.name = RegionName::required_from_wire(&spec.name)
            .map_err(|fault| ProtoError::BadRegionName { index, fault })?;
        check_unique_name(&request.regions, index, &spec.name)?;
        params.push_region(index, region)?;
    }
    params.version = VERSION_2;
    params.vm_id = Some(request.vm_id);
    Ok(params)
}

/// [`ProtoError::DuplicateRegionName`] if an entry before `index` has the name `name`.
pub(crate) fn check_unique_name<T: HasWireName>(
    entries: &[T],
    index: u32,
    name: &[u8; REGION_NAME_LEN],
) -> ProtoResult<()> {
    match (0u32..index)
        .zip(entries.iter())
        .find(|(_, earlier)| earlier.wire_name() == name)
    {
        Some((first, _)) => Err(ProtoError::DuplicateRegionName { index, first }),
        None => Ok(()),
    }
}

/// A wire region entry that carries a name.
pub(crate) trait HasWireName {
    /// The NUL-padded name bytes.
    fn wire_name(&self) -> &[u8; REGION_NAME_LEN];
}

impl HasWireName for WireNamedRegionSpec {
    fn wire_name(&self) -> &[u8; REGION_NAME_LEN] {
        &self.name
    }
}

/// Validates an OPEN_SESSION input buffer of either version: version 2 and later go to
/// [`parse_open_session_v2`] (which refuses any version but 2), anything else (version 1, or a
/// buffer too short to say) to [`parse_open_session`].
pub fn parse_open_session_any(bytes: &[u8]) -> ProtoResult<OpenSessionParams> {
    match peek_version(bytes) {
        Some(version) if version >= VERSION_2 => parse_open_session_v2(bytes),
        _ => parse_open_session(bytes),
    }
}

impl OpenSessionV2Request {
    /// Builds a version-2 request and checks it with [`parse_open_session_v2`], so a request
    /// this returns is one the driver accepts (as far as the wire format goes).
    pub fn build(
        target: Target,
        interface_type: WireGuid,
        interface_instance: WireGuid,
        vm_id: WireGuid,
        regions: &[NamedRegionRequest],
    ) -> ProtoResult<Self> {
        let count = u32::try_from(regions.len()).unwrap_or(u32::MAX);
        if count > MAX_REGIONS_U32 {
            return Err(ProtoError::TooManyRegions {
                max: MAX_REGIONS_U32,
                got: count,
            });
        }
        let mut request = Self::new_zeroed();
        request.header = Self::header_for_kind();
        request.target_kind = U32::new(target.kind());
        request.region_count = U32::new(count);
        request.vmbus_handle = U64::new(target.handle_value());
        request.interface_type = interface_type;
        request.interface_instance = interface_instance;
        request.vm_id = vm_id;
        for (spec, region) in request.regions.iter_mut().zip(regions) {
            spec.size = U64::new(region.size);
            spec.flags = U32::new(region.flags());
            spec.name = region.name.to_wire();
        }
        parse_open_session_v2(request.as_bytes())?;
        Ok(request)
    }
}
