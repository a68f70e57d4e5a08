//! The driver's region lookup over tables of 1, 64, 1024 and 4096 regions, and the IOCTL
//! inputs the validation benchmarks parse.
//!
//! # Which lookup
//! GET_REGION_SECTION (and every ledger query) finds a region by [`RegionId`] in the
//! [`SectionManager`]: the session by id, then the region by index
//! ([`SectionManager::region`]). A session has at most `MAX_REGIONS` (16) regions and the driver
//! serves at most `DEFAULT_MAX_SESSIONS` (64) sessions by default, so the real cap is 1024
//! regions; the 4096-region table raises `max_sessions` to 256, which the quotas allow a
//! deployment to configure. Tables are built with real sessions of 16 regions (one region for
//! the 1-region table) over a backend whose section is a pointer-sized value, and the lookup
//! asks for the last region of the last session (the worst case of a scan).

#![allow(dead_code, clippy::unwrap_used)]

use vmbmmio_core::sections::{
    ProcessKey, RegionId, RegionInfo, RegionSpec, SectionBackend, SectionManager, SectionQuotas,
    SessionId, UserHandle,
};
use vmbmmio_proto::guest::RegionName;
use vmbmmio_proto::ioctl::{
    AttachRegionRequest, AttachmentId, CloseSessionRequest, GetRegionSectionRequest, IoctlCode,
    ListSessionsRequest, MappingState, NamedRegionRequest, OpenSessionRequest,
    OpenSessionV2Request, QueryStatusRequest, RegionRequest, ReportMappingV2Request,
    RingGuestRequest, SectionAccess, TakeDoorbellsRequest, Target, WaitGuestEventRequest, WireGuid,
};
use zerocopy::IntoBytes;

/// A backend whose sections are pointer-sized values (a kernel section object pointer in the
/// driver); nothing is created.
#[derive(Clone, Copy, Debug, Default)]
pub struct NullBackend;

impl SectionBackend for NullBackend {
    type Section = usize;

    fn create_section(&self, size: u64) -> Result<usize, i32> {
        Ok(usize::try_from(size).unwrap())
    }

    fn current_process(&self) -> ProcessKey {
        ProcessKey(1)
    }

    fn open_user_handle(&self, section: &usize, _access_mask: u32) -> Result<UserHandle, i32> {
        Ok(UserHandle(*section as u64))
    }

    fn close_section(&self, _section: usize) {}
}

/// The region counts measured.
pub const SIZES: [usize; 4] = [1, 64, 1024, 4096];

/// A ledger holding `regions` regions and the id of its last region.
pub fn ledger(regions: usize) -> (SectionManager<NullBackend>, SessionId, RegionId) {
    let quotas = SectionQuotas {
        max_sessions: 4096,
        global_bytes: 1 << 40,
        ..SectionQuotas::default()
    };
    let mut manager = SectionManager::new(NullBackend, quotas);
    let per_session = regions.min(16);
    let mut last = None;
    for _ in 0..regions / per_session {
        let specs = vec![RegionSpec::read_write(4096); per_session];
        last = Some(manager.create_session(&specs).unwrap());
    }
    let session = last.unwrap();
    let region = RegionId::new(session, u32::try_from(per_session - 1).unwrap());
    (manager, session, region)
}

/// The measured step: the ledger's region lookup.
#[inline(never)]
pub fn lookup(
    manager: &SectionManager<NullBackend>,
    session: SessionId,
    region: RegionId,
) -> RegionInfo {
    manager.region(session, region).unwrap()
}

/// One IOCTL's code, a valid input and its output length.
pub struct Ioctl {
    /// The benchmark id.
    pub name: &'static str,
    /// The code.
    pub code: IoctlCode,
    /// A valid input.
    pub input: Vec<u8>,
}

/// Every IOCTL the device host sends in steady state, with a valid input.
pub fn ioctls() -> Vec<Ioctl> {
    let open = OpenSessionRequest::build(
        Target::Loopback,
        WireGuid::from_u128(1),
        WireGuid::from_u128(2),
        &[RegionRequest {
            size: 64 << 10,
            guest_writable: true,
        }; 16],
    )
    .unwrap();
    let names: Vec<RegionName> = (0..16)
        .map(|index| RegionName::required(&format!("region{index}")).unwrap())
        .collect();
    let named: Vec<NamedRegionRequest> = names
        .iter()
        .map(|name| NamedRegionRequest {
            size: 64 << 10,
            guest_writable: true,
            consumer_writable: true,
            name: *name,
        })
        .collect();
    let open_v2 = OpenSessionV2Request::build(
        Target::Loopback,
        WireGuid::from_u128(1),
        WireGuid::from_u128(2),
        WireGuid::from_u128(3),
        &named,
    )
    .unwrap();
    let attachment = AttachmentId::new(7).unwrap();
    vec![
        Ioctl {
            name: "open_session_16_regions",
            code: IoctlCode::OpenSession,
            input: open.as_bytes().to_vec(),
        },
        Ioctl {
            name: "open_session_v2_16_named_regions",
            code: IoctlCode::OpenSession,
            input: open_v2.as_bytes().to_vec(),
        },
        Ioctl {
            name: "list_sessions",
            code: IoctlCode::ListSessions,
            input: ListSessionsRequest::build(0).as_bytes().to_vec(),
        },
        Ioctl {
            name: "attach_region",
            code: IoctlCode::AttachRegion,
            input: AttachRegionRequest::build(
                WireGuid::from_u128(3),
                &names[15],
                SectionAccess::ReadWrite,
            )
            .unwrap()
            .as_bytes()
            .to_vec(),
        },
        Ioctl {
            name: "take_doorbells",
            code: IoctlCode::TakeDoorbells,
            input: TakeDoorbellsRequest::build(attachment).as_bytes().to_vec(),
        },
        Ioctl {
            name: "ring_guest",
            code: IoctlCode::RingGuest,
            input: RingGuestRequest::build(attachment, 42).as_bytes().to_vec(),
        },
        Ioctl {
            name: "get_region_section",
            code: IoctlCode::GetRegionSection,
            input: GetRegionSectionRequest::build(3, SectionAccess::ReadWrite)
                .unwrap()
                .as_bytes()
                .to_vec(),
        },
        Ioctl {
            name: "report_mapping_v2",
            code: IoctlCode::ReportMapping,
            input: ReportMappingV2Request::build(1, MappingState::SectionBacked, 0, 7)
                .unwrap()
                .as_bytes()
                .to_vec(),
        },
        Ioctl {
            name: "wait_guest_event",
            code: IoctlCode::WaitGuestEvent,
            input: WaitGuestEventRequest::new(5).as_bytes().to_vec(),
        },
        Ioctl {
            name: "query_status",
            code: IoctlCode::QueryStatus,
            input: QueryStatusRequest::new().as_bytes().to_vec(),
        },
        Ioctl {
            name: "close_session",
            code: IoctlCode::CloseSession,
            input: CloseSessionRequest::new().as_bytes().to_vec(),
        },
    ]
}

/// The measured step: what the driver checks of an IOCTL before it acts (the code, both
/// lengths, the request's parser), as `ControlDevice::begin` does. Returns whether it passed.
#[inline(never)]
pub fn validate(code: u32, input: &[u8], output_len: usize) -> bool {
    use vmbmmio_proto::ioctl::{
        parse_attach_region, parse_close_session, parse_detach_region, parse_get_region_section,
        parse_list_sessions, parse_open_session_any, parse_query_driver, parse_query_status,
        parse_report_mapping_any, parse_ring_guest, parse_set_doorbell_event, parse_take_doorbells,
        parse_wait_guest_event,
    };
    let Ok(code) = IoctlCode::parse(code) else {
        return false;
    };
    if code.check_input_len(input.len()).is_err() || code.check_output_len(output_len).is_err() {
        return false;
    }
    match code {
        IoctlCode::OpenSession => parse_open_session_any(input).is_ok(),
        IoctlCode::GetRegionSection => parse_get_region_section(input).is_ok(),
        IoctlCode::ReportMapping => parse_report_mapping_any(input).is_ok(),
        IoctlCode::QueryStatus => parse_query_status(input).is_ok(),
        IoctlCode::QueryDriver => parse_query_driver(input).is_ok(),
        IoctlCode::WaitGuestEvent => parse_wait_guest_event(input).is_ok(),
        IoctlCode::CloseSession => parse_close_session(input).is_ok(),
        IoctlCode::ListSessions => parse_list_sessions(input).is_ok(),
        IoctlCode::AttachRegion => parse_attach_region(input).is_ok(),
        IoctlCode::DetachRegion => parse_detach_region(input).is_ok(),
        IoctlCode::SetDoorbellEvent => parse_set_doorbell_event(input).is_ok(),
        IoctlCode::TakeDoorbells => parse_take_doorbells(input).is_ok(),
        IoctlCode::RingGuest => parse_ring_guest(input).is_ok(),
    }
}
