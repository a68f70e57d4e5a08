//! REPORT_MAPPING: the device host tells the driver what became of one region's BAR mapping.
//!
//! `HdvCreateSectionBackedMmioRange` is documented to return only `S_OK` or "an HRESULT error",
//! and on at least one Windows build a successful call had no visible effect (hdv.md §3.3). The
//! driver therefore does not guess: the device host reports the state and the HRESULT it saw,
//! the driver counts it and exposes it through QUERY_STATUS, and the guest protocol can tell the
//! guest whether the region is really section-backed.

use zerocopy::byteorder::little_endian::{I32, U32};
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::error::{ProtoError, ProtoResult, ReservedField};
use super::header::{MessageHeader, MessageKind, WireMessage, check_zero, unframe};
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
const _: () = assert!(size_of::<ReportMappingReply>() == 16);

impl WireMessage for ReportMappingRequest {
    const KIND: MessageKind = MessageKind::ReportMappingRequest;
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

/// Validates a REPORT_MAPPING input buffer: framing, then `region_index`, `state`, `hresult`
/// against the state, `reserved`.
pub fn parse_report_mapping(bytes: &[u8]) -> ProtoResult<ReportMappingParams> {
    let request = unframe::<ReportMappingRequest>(bytes)?;
    let region_index = check_region_index(request.region_index.get())?;
    let raw_state = request.state.get();
    let state =
        MappingState::from_u32(raw_state).ok_or(ProtoError::BadMappingState { got: raw_state })?;
    let hresult = request.hresult.get();
    if !state.allows_hresult(hresult) {
        return Err(ProtoError::HresultContradictsState { state, hresult });
    }
    check_zero(ReservedField::ReportMapping, request.reserved.get().into())?;
    Ok(ReportMappingParams {
        region_index,
        state,
        hresult,
    })
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

impl ReportMappingReply {
    /// The reply.
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
