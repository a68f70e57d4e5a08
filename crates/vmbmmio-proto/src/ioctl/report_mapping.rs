//! REPORT_MAPPING: the device host tells the driver what became of one region's BAR mapping.
//!
//! `HdvCreateSectionBackedMmioRange` is documented to return only `S_OK` or "an HRESULT error",
//! and on at least one Windows build a successful call had no visible effect (hdv.md §3.3). The
//! driver therefore does not guess: the device host reports the state and the HRESULT it saw,
//! the driver counts it and exposes it through QUERY_STATUS, and the guest protocol can tell the
//! guest whether the region is really section-backed.
//!
//! # Two versions of the request
//! Version 1 ([`ReportMappingRequest`], 32 bytes) does not say which of the guest's events
//! (WAIT_GUEST_EVENT sequences) the mapping answers, so a report the device host decided before
//! the guest released, said `HELLO` again or reopened its channel arrives looking like a fresh
//! one. Version 2 ([`ReportMappingV2Request`], 40 bytes, the same kind and IOCTL code: a changed
//! message gets a new version, docs/ioctl.md "Versioning policy") appends `acted_on`, the newest
//! event sequence the device host had applied when it decided the mapping, and the driver
//! announces a mapping to the guest only if that is at least the newest event that changes what
//! must be mapped. Version 1 stays accepted from an older device host with its weaker meaning
//! ([`ActedOn::Unknown`]). The offsets of every version-1 field are unchanged.

use zerocopy::byteorder::little_endian::{I32, U32, U64};
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::error::{ProtoError, ProtoResult, ReservedField};
use super::header::{
    MessageHeader, MessageKind, VERSION_2, WireMessage, check_zero, peek_version, unframe,
};
use super::region_section::check_region_index;

/// REPORT_MAPPING request, 32 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
pub struct ReportMappingRequest {
    /// Kind [`MessageKind::ReportMappingRequest`].
    pub header: MessageHeader,
    /// Index of the region; below [`MAX_REGIONS`](super::MAX_REGIONS).
    pub region_index: U32,
    /// A [`MappingState`] value.
    pub state: U32,
    /// The HRESULT the device host got from HDV for this mapping.
    pub hresult: I32,
    /// Must be zero.
    pub reserved: U32,
}

/// REPORT_MAPPING request, version 2, 40 bytes: version 1's fields at the same offsets, then
/// `acted_on`.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
pub struct ReportMappingV2Request {
    /// Kind [`MessageKind::ReportMappingRequest`], version [`VERSION_2`].
    pub header: MessageHeader,
    /// Index of the region; below [`MAX_REGIONS`](super::MAX_REGIONS).
    pub region_index: U32,
    /// A [`MappingState`] value.
    pub state: U32,
    /// The HRESULT the device host got from HDV for this mapping.
    pub hresult: I32,
    /// Must be zero.
    pub reserved: U32,
    /// The sequence of the newest WAIT_GUEST_EVENT event the device host had applied when it
    /// decided this mapping; 0 for none. Any value is well-formed (the driver checks it against
    /// the session).
    pub acted_on: U64,
}

/// REPORT_MAPPING reply: the header alone, 16 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
pub struct ReportMappingReply {
    /// Kind [`MessageKind::ReportMappingReply`].
    pub header: MessageHeader,
}

const _: () = assert!(size_of::<ReportMappingRequest>() == 32);
const _: () = assert!(size_of::<ReportMappingV2Request>() == 40);
const _: () = assert!(size_of::<ReportMappingReply>() == 16);

impl WireMessage for ReportMappingRequest {
    const KIND: MessageKind = MessageKind::ReportMappingRequest;
}

impl WireMessage for ReportMappingV2Request {
    const KIND: MessageKind = MessageKind::ReportMappingRequest;
    const VERSION: u16 = VERSION_2;
}

impl WireMessage for ReportMappingReply {
    const KIND: MessageKind = MessageKind::ReportMappingReply;
}

/// What became of a region's BAR mapping.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MappingState {
    /// Not mapped (never mapped, or removed with `HdvDestroySectionBackedMmioRange`).
    Unmapped = 0,
    /// Mapped with `HdvCreateSectionBackedMmioRange`; the HRESULT must be a success.
    SectionBacked = 1,
    /// Served by the device host's intercept handlers instead (the HRESULT may be the failure
    /// that caused the fallback).
    InterceptFallback = 2,
    /// Mapping failed and nothing serves the region; the HRESULT must be a failure.
    Failed = 3,
}

impl MappingState {
    /// The state with this wire value, if any.
    pub const fn from_u32(value: u32) -> Option<Self> {
        Some(match value {
            0 => Self::Unmapped,
            1 => Self::SectionBacked,
            2 => Self::InterceptFallback,
            3 => Self::Failed,
            _ => return None,
        })
    }

    /// The wire value.
    pub const fn to_u32(self) -> u32 {
        self as u32
    }

    /// Whether `hresult` is consistent with this state: `SUCCEEDED` for
    /// [`Self::SectionBacked`], `FAILED` for [`Self::Failed`], anything otherwise.
    pub const fn allows_hresult(self, hresult: i32) -> bool {
        match self {
            Self::SectionBacked => hresult >= 0,
            Self::Failed => hresult < 0,
            Self::Unmapped | Self::InterceptFallback => true,
        }
    }
}

/// A validated REPORT_MAPPING request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReportMappingParams {
    /// Index of the region; below [`MAX_REGIONS`](super::MAX_REGIONS).
    pub region_index: u32,
    /// The reported state.
    pub state: MappingState,
    /// The HRESULT the device host saw.
    pub hresult: i32,
}

/// Which of the guest's events (WAIT_GUEST_EVENT sequences) a report answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ActedOn {
    /// A version-1 request: the device host did not say (an older device host, or one that does
    /// not follow the guest's events). The driver treats the report as current, the weaker
    /// meaning version 1 always had.
    Unknown,
    /// A version-2 request: the newest event sequence the device host had applied when it
    /// decided the mapping (0: none).
    Sequence(u64),
}

/// A validated REPORT_MAPPING request of either version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ActedReport {
    /// The fields both versions carry.
    pub params: ReportMappingParams,
    /// What the report answers: [`ActedOn::Unknown`] for version 1.
    pub acted_on: ActedOn,
}

/// The body checks both versions share, in wire order: `region_index`, `state`, `hresult`
/// against the state, `reserved`.
fn check_body(
    region_index: u32,
    raw_state: u32,
    hresult: i32,
    reserved: u32,
) -> ProtoResult<ReportMappingParams> {
    let region_index = check_region_index(region_index)?;
    let state =
        MappingState::from_u32(raw_state).ok_or(ProtoError::BadMappingState { got: raw_state })?;
    if !state.allows_hresult(hresult) {
        return Err(ProtoError::HresultContradictsState { state, hresult });
    }
    check_zero(ReservedField::ReportMapping, reserved.into())?;
    Ok(ReportMappingParams {
        region_index,
        state,
        hresult,
    })
}

/// Validates a version-1 REPORT_MAPPING input buffer: framing, then `region_index`, `state`,
/// `hresult` against the state, `reserved`.
pub fn parse_report_mapping(bytes: &[u8]) -> ProtoResult<ReportMappingParams> {
    let request = unframe::<ReportMappingRequest>(bytes)?;
    check_body(
        request.region_index.get(),
        request.state.get(),
        request.hresult.get(),
        request.reserved.get(),
    )
}

/// Validates a version-2 REPORT_MAPPING input buffer: framing (version 2, 40 bytes), then the
/// version-1 fields as [`parse_report_mapping`] does; `acted_on` takes any value.
pub fn parse_report_mapping_v2(bytes: &[u8]) -> ProtoResult<ActedReport> {
    let request = unframe::<ReportMappingV2Request>(bytes)?;
    let params = check_body(
        request.region_index.get(),
        request.state.get(),
        request.hresult.get(),
        request.reserved.get(),
    )?;
    Ok(ActedReport {
        params,
        acted_on: ActedOn::Sequence(request.acted_on.get()),
    })
}

/// The driver's parser: a REPORT_MAPPING input buffer of either version. The header's
/// `version` picks the parser (1 or below: [`parse_report_mapping`], whose error for a version
/// 0 names 1; 2 and above: [`parse_report_mapping_v2`], whose error for a later version names
/// 2); everything else is that parser's, in its order (`magic` is still checked first). A
/// buffer too short for a header is version 1's `TooShort`.
pub fn parse_report_mapping_any(bytes: &[u8]) -> ProtoResult<ActedReport> {
    match peek_version(bytes) {
        Some(version) if version >= VERSION_2 => parse_report_mapping_v2(bytes),
        _ => parse_report_mapping(bytes).map(|params| ActedReport {
            params,
            acted_on: ActedOn::Unknown,
        }),
    }
}

impl ReportMappingRequest {
    /// Builds a request and checks it with [`parse_report_mapping`].
    pub fn build(region_index: u32, state: MappingState, hresult: i32) -> ProtoResult<Self> {
        let mut request = Self::new_zeroed();
        request.header = Self::header_for_kind();
        request.region_index = U32::new(region_index);
        request.state = U32::new(state.to_u32());
        request.hresult = I32::new(hresult);
        parse_report_mapping(request.as_bytes())?;
        Ok(request)
    }
}

impl ReportMappingV2Request {
    /// Builds a version-2 request and checks it with [`parse_report_mapping_v2`].
    pub fn build(
        region_index: u32,
        state: MappingState,
        hresult: i32,
        acted_on: u64,
    ) -> ProtoResult<Self> {
        let mut request = Self::new_zeroed();
        request.header = Self::header_for_kind();
        request.region_index = U32::new(region_index);
        request.state = U32::new(state.to_u32());
        request.hresult = I32::new(hresult);
        request.acted_on = U64::new(acted_on);
        parse_report_mapping_v2(request.as_bytes())?;
        Ok(request)
    }
}

impl ReportMappingReply {
    /// The reply (version 1, for a request of either version: the reply did not change).
    pub fn new() -> Self {
        Self {
            header: Self::header_for_kind(),
        }
    }
}

impl Default for ReportMappingReply {
    fn default() -> Self {
        Self::new()
    }
}

/// Validates a REPORT_MAPPING output buffer (device-host side): framing only.
pub fn parse_report_mapping_reply(bytes: &[u8]) -> ProtoResult<()> {
    unframe::<ReportMappingReply>(bytes).map(|_| ())
}
