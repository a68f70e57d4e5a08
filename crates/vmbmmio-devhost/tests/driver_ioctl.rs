//! `ProtoDriverClient` against a fake transport: the bytes of each request (the proto
//! builders' bytes, with the right IOCTL code), reply parsing and every error path, the mapping
//! states on the wire, and a round trip through a fake driver that parses requests and answers
//! with the proto encoders.

use std::collections::BTreeSet;

use vmbmmio_devhost::driver::{
    AccessMode, ActedOn, DriverClient, DriverError, MappingState, RegionIdentity, RegionInfo,
    RegionName, SectionAccess, SessionId, SessionRequest, SessionState,
};
use vmbmmio_devhost::driver_ioctl::{
    DEFAULT_INTERFACE_INSTANCE, DEFAULT_INTERFACE_TYPE, DriverSessionSettings, DriverTarget,
    mapping_to_wire,
};
use vmbmmio_devhost::guid::Guid;
use vmbmmio_devhost::hresult::HResult;
use vmbmmio_devhost::{IoctlFailure, IoctlTransport, ProtoDriverClient};
use vmbmmio_proto::ioctl::{ActedReport, ReportMappingV2Request, parse_report_mapping_any};
use vmbmmio_proto::ioctl::{
    BarRegion, CloseSessionReply, CloseSessionRequest, GetRegionSectionRequest, IoctlCode,
    MappingState as WireState, OpenSessionRequest, ProtoError, QueryStatusRequest, RegionRequest,
    RegionSection, ReportMappingReply, ReportMappingRequest, SectionAccess as WireAccess,
    SessionOpened, SessionState as WireSessionState, SessionStatus, StatusCounters, Target,
    WireGuid, WireMessage, parse_close_session, parse_get_region_section, parse_open_session,
    parse_query_status, parse_report_mapping,
};
use vmbmmio_proto::ioctl::{DriverFacts, QueryDriverRequest, parse_query_driver};
use vmbmmio_proto::ioctl::{NamedRegionRequest, OpenSessionV2Request, parse_open_session_any};

const STATUS_INVALID_PARAMETER: i32 = 0xC000_000D_u32 as i32;
const STATUS_INVALID_DEVICE_STATE: i32 = 0xC000_0184_u32 as i32;
const STATUS_REVISION_MISMATCH: i32 = 0xC000_0059_u32 as i32;
const SESSION_ID: u64 = 42;

fn encode<M: WireMessage>(message: &M) -> Vec<u8> {
    let mut bytes = vec![0; M::SIZE];
    assert_eq!(message.encode(&mut bytes), Ok(M::SIZE));
    bytes
}

const VM: u128 = 0x62cdfa57_7648_44f3_b164_98e2da991ec5;

/// `sizes` with the shorthand's names (`region0`, ...) and `rw`.
fn request(sizes: &[u64]) -> SessionRequest {
    SessionRequest::with_default_names(Guid::from_u128(VM), sizes)
}

fn name(text: &str) -> RegionName {
    RegionName::required(text).unwrap()
}

/// One region of each access mode.
fn named_request() -> SessionRequest {
    let regions = [
        ("frames", AccessMode::GuestReadOnly),
        ("audio ring", AccessMode::ReadWrite),
        ("télémétrie", AccessMode::HostReadOnly),
    ];
    SessionRequest {
        target: Guid::from_u128(VM),
        region_sizes: vec![8192, 4096, 5000],
        regions: regions
            .iter()
            .map(|&(text, access)| RegionIdentity {
                name: name(text),
                access,
            })
            .collect(),
    }
}

fn settings() -> DriverSessionSettings {
    DriverSessionSettings::new(DriverTarget::VmbusHandle(0x1a4))
}

fn nt(status: i32) -> IoctlFailure {
    IoctlFailure::NtStatus(status)
}

/// Rewrites a reply.
type Tamper = Box<dyn FnOnce(&mut Vec<u8>)>;

/// A fake driver: parses each request with the proto parsers and answers with the proto
/// encoders, packing regions one after another in a power-of-two BAR like the driver.
#[derive(Default)]
struct FakeDriver {
    /// Every IOCTL: (code, input bytes).
    log: Vec<(u32, Vec<u8>)>,
    session: Option<FakeSession>,
    next_handle: u64,
    /// Section handles issued and not closed through the transport.
    open_handles: BTreeSet<u64>,
    closed_by_client: Vec<u64>,
    /// Fail the next IOCTL with this.
    fail_next: Option<IoctlFailure>,
    /// Rewrites the next reply (after the driver built it).
    tamper_next: Option<Tamper>,
    /// An older driver: REPORT_MAPPING version 1 only (version 2 gets
    /// `STATUS_REVISION_MISMATCH`).
    report_v1_only: bool,
    /// An older driver: OPEN_SESSION version 1 only (version 2 gets
    /// `STATUS_REVISION_MISMATCH`, as the driver's header check answers it).
    open_v1_only: bool,
}

struct FakeSession {
    opened: SessionOpened,
    reports: Vec<(WireState, i32)>,
    handles_issued: u64,
}

impl FakeDriver {
    fn answer(&mut self, code: u32, input: &[u8]) -> Result<Vec<u8>, IoctlFailure> {
        let bad = |_: ProtoError| nt(STATUS_INVALID_PARAMETER);
        match IoctlCode::parse(code).map_err(bad)? {
            IoctlCode::OpenSession => {
                let params = if self.open_v1_only {
                    parse_open_session(input).map_err(|error| match error {
                        ProtoError::UnsupportedVersion { .. } => nt(STATUS_REVISION_MISMATCH),
                        other => bad(other),
                    })?
                } else {
                    parse_open_session_any(input).map_err(bad)?
                };
                if self.session.is_some() {
                    return Err(nt(STATUS_INVALID_DEVICE_STATE));
                }
                let mut regions = Vec::new();
                let mut offset = 0;
                for region in params.regions() {
                    regions.push(BarRegion {
                        offset,
                        size: region.size,
                    });
                    offset += region.size;
                }
                let bar = offset.next_power_of_two().max(4096);
                let megabytes = bar.div_ceil(1 << 20) as u16;
                let opened = SessionOpened::new(SESSION_ID, megabytes, 0, bar, &regions).unwrap();
                self.session = Some(FakeSession {
                    opened,
                    reports: vec![(WireState::Unmapped, 0); regions.len()],
                    handles_issued: 0,
                });
                Ok(encode(&opened.to_reply()))
            }
            IoctlCode::GetRegionSection => {
                let params = parse_get_region_section(input).map_err(bad)?;
                let session = self
                    .session
                    .as_mut()
                    .ok_or(nt(STATUS_INVALID_DEVICE_STATE))?;
                let region = *session
                    .opened
                    .regions()
                    .get(params.region_index as usize)
                    .ok_or(nt(STATUS_INVALID_PARAMETER))?;
                self.next_handle += 4;
                let handle = 0x1000 + self.next_handle;
                self.open_handles.insert(handle);
                session.handles_issued += 1;
                let reply = RegionSection::new(handle, region.size, region.offset).unwrap();
                Ok(encode(&reply.to_reply()))
            }
            IoctlCode::ReportMapping => {
                let params = if self.report_v1_only {
                    parse_report_mapping(input).map_err(|error| match error {
                        ProtoError::UnsupportedVersion { .. } => nt(STATUS_REVISION_MISMATCH),
                        other => bad(other),
                    })?
                } else {
                    parse_report_mapping_any(input).map_err(bad)?.params
                };
                let session = self
                    .session
                    .as_mut()
                    .ok_or(nt(STATUS_INVALID_DEVICE_STATE))?;
                let slot = session
                    .reports
                    .get_mut(params.region_index as usize)
                    .ok_or(nt(STATUS_INVALID_PARAMETER))?;
                *slot = (params.state, params.hresult);
                Ok(encode(&ReportMappingReply::new()))
            }
            IoctlCode::QueryStatus => {
                parse_query_status(input).map_err(bad)?;
                let status = match &self.session {
                    None => SessionStatus {
                        state: WireSessionState::NoSession,
                        counters: StatusCounters::default(),
                    },
                    Some(session) => SessionStatus {
                        state: WireSessionState::Offered,
                        counters: StatusCounters {
                            sections_created: session.reports.len() as u64,
                            section_handles_issued: session.handles_issued,
                            regions_mapped: session
                                .reports
                                .iter()
                                .filter(|(state, _)| *state == WireState::SectionBacked)
                                .count() as u64,
                            guest_packets: 3,
                            protocol_errors: 1,
                        },
                    },
                };
                Ok(encode(&status.to_reply()))
            }
            IoctlCode::CloseSession => {
                parse_close_session(input).map_err(bad)?;
                self.session.take().ok_or(nt(STATUS_INVALID_DEVICE_STATE))?;
                Ok(encode(&CloseSessionReply::new()))
            }
            IoctlCode::QueryDriver => {
                parse_query_driver(input).map_err(bad)?;
                // A driver whose table lacks VmbChannelGetMmioSpace (entry 26 of 27), with this
                // one file handle open.
                let facts =
                    DriverFacts::new(27, 1 << 26, 1, u32::from(self.session.is_some())).unwrap();
                Ok(encode(&facts.to_reply()))
            }
            // This fake keeps nothing pending: it has no guest (tests/control_events.rs and
            // the devhost's guest_wait tests cover WAIT_GUEST_EVENT).
            IoctlCode::WaitGuestEvent => Err(nt(STATUS_INVALID_DEVICE_STATE)),
            // The consumer requests (issue 14): a device host never sends them.
            IoctlCode::ListSessions
            | IoctlCode::AttachRegion
            | IoctlCode::DetachRegion
            | IoctlCode::SetDoorbellEvent
            | IoctlCode::TakeDoorbells
            | IoctlCode::RingGuest => Err(nt(STATUS_INVALID_DEVICE_STATE)),
        }
    }

    fn codes(&self) -> Vec<u32> {
        self.log.iter().map(|(code, _)| *code).collect()
    }

    fn last_input(&self) -> &[u8] {
        &self.log.last().unwrap().1
    }
}

impl IoctlTransport for FakeDriver {
    fn ioctl(&mut self, code: u32, input: &[u8], output: &mut [u8]) -> Result<usize, IoctlFailure> {
        self.log.push((code, input.to_vec()));
        if let Some(failure) = self.fail_next.take() {
            return Err(failure);
        }
        let code_ok = IoctlCode::parse(code).unwrap();
        assert_eq!(
            output.len(),
            code_ok.reply_size(),
            "the client sizes the output exactly"
        );
        let mut reply = self.answer(code, input)?;
        if let Some(tamper) = self.tamper_next.take() {
            tamper(&mut reply);
        }
        let fits = reply.len().min(output.len());
        output[..fits].copy_from_slice(&reply[..fits]);
        Ok(reply.len())
    }

    fn close_handle(&mut self, handle: u64) {
        assert!(self.open_handles.remove(&handle), "closed once");
        self.closed_by_client.push(handle);
    }
}

fn new_client() -> ProtoDriverClient<FakeDriver> {
    ProtoDriverClient::new(FakeDriver::default(), settings())
}

fn opened_client(sizes: &[u64]) -> (ProtoDriverClient<FakeDriver>, SessionId) {
    let mut client = new_client();
    let info = client.open_session(&request(sizes)).unwrap();
    (client, info.session)
}

fn rejected(error: DriverError) -> String {
    match error {
        DriverError::Rejected { reason } => reason,
        other => panic!("expected Rejected, got {other:?}"),
    }
}

#[test]
fn open_session_sends_the_builders_bytes_and_returns_the_layout() {
    let mut client = new_client();
    let info = client.open_session(&request(&[8192, 5000])).unwrap();
    assert_eq!(info.session, SessionId(SESSION_ID));
    assert_eq!(info.bar_size, 16384);
    assert_eq!(
        info.regions,
        [
            RegionInfo {
                offset: 0,
                size: 8192
            },
            RegionInfo {
                offset: 8192,
                size: 8192
            }
        ]
    );
    let driver = client.transport();
    assert_eq!(driver.codes(), [0x0022_E400]);
    // Version 2: the shorthand's names, guest- and consumer-writable (`rw`).
    let expected = OpenSessionV2Request::build(
        Target::VmbusHandle(0x1a4.try_into().unwrap()),
        WireGuid::from_u128(DEFAULT_INTERFACE_TYPE.to_u128()),
        WireGuid::from_u128(DEFAULT_INTERFACE_INSTANCE.to_u128()),
        WireGuid::from_u128(VM),
        &[
            NamedRegionRequest {
                size: 8192,
                guest_writable: true,
                consumer_writable: true,
                name: name("region0"),
            },
            NamedRegionRequest {
                size: 5000,
                guest_writable: true,
                consumer_writable: true,
                name: name("region1"),
            },
        ],
    )
    .unwrap();
    assert_eq!(driver.last_input(), encode(&expected));
    assert_eq!(driver.last_input().len(), 864);
    assert!(!client.opens_v1_only());
    assert_eq!(client.consumers_can_attach(), Some(true));
    let driver = client.transport();
    let params = parse_open_session_any(driver.last_input()).unwrap();
    assert_eq!(params.version(), 2);
    assert_eq!(params.vm_id().map(|id| id.to_u128()), Some(VM));
    assert_eq!(
        params.target(),
        Target::VmbusHandle(0x1a4.try_into().unwrap())
    );
    assert_eq!(
        params.interface_type().to_u128(),
        0x9d0ee607_90ef_4c63_8f88_a81dcbc7ca83
    );
    assert_eq!(
        params
            .regions()
            .iter()
            .map(|r| r.requested_size)
            .collect::<Vec<_>>(),
        [8192, 5000]
    );
    assert_eq!(client.opened().unwrap().mmio_megabytes(), 1);
}

#[test]
fn the_settings_choose_target_guids_and_write_flag() {
    let settings = DriverSessionSettings {
        target: DriverTarget::LoopbackOffer,
        interface_type: Guid::from_u128(7),
        interface_instance: Guid::from_u128(8),
        guest_writable: false,
    };
    let mut client = ProtoDriverClient::new(FakeDriver::default(), settings);
    assert_eq!(client.settings(), &settings);
    client.open_session(&named_request()).unwrap();
    let params = parse_open_session_any(client.transport().last_input()).unwrap();
    assert_eq!(params.target(), Target::Loopback);
    assert_eq!(params.interface_type().to_u128(), 7);
    assert_eq!(params.interface_instance().to_u128(), 8);
    // `guest_writable: false` takes guest write access from every region; the consumer
    // access stays each region's own.
    assert!(params.regions().iter().all(|region| !region.guest_writable));
    let consumer: Vec<bool> = params
        .regions()
        .iter()
        .map(|region| region.consumer_writable)
        .collect();
    assert_eq!(consumer, [true, true, false]);
}

#[test]
fn names_and_access_modes_go_out_in_open_session_version_2() {
    let mut client = new_client();
    let info = client.open_session(&named_request()).unwrap();
    assert_eq!(info.regions.len(), 3);
    let expected = OpenSessionV2Request::build(
        Target::VmbusHandle(0x1a4.try_into().unwrap()),
        WireGuid::from_u128(DEFAULT_INTERFACE_TYPE.to_u128()),
        WireGuid::from_u128(DEFAULT_INTERFACE_INSTANCE.to_u128()),
        WireGuid::from_u128(VM),
        &[
            NamedRegionRequest {
                size: 8192,
                guest_writable: false,
                consumer_writable: true,
                name: name("frames"),
            },
            NamedRegionRequest {
                size: 4096,
                guest_writable: true,
                consumer_writable: true,
                name: name("audio ring"),
            },
            NamedRegionRequest {
                size: 5000,
                guest_writable: true,
                consumer_writable: false,
                name: name("télémétrie"),
            },
        ],
    )
    .unwrap();
    let sent = client.transport().last_input().to_vec();
    assert_eq!(sent, encode(&expected));
    assert_eq!(
        client.open_session_request(&named_request()).unwrap(),
        expected
    );
    // The bytes, by hand: header version 2, vm_id at 64, region 0's flags (CONSUMER_WRITABLE
    // only) at 96 + 8 and its name at 96 + 16, region 2's flags (GUEST_WRITABLE only).
    assert_eq!(&sent[4..6], &2u16.to_le_bytes());
    assert_eq!(&sent[8..12], &864u32.to_le_bytes());
    assert_eq!(
        &sent[64..80],
        [
            0x57, 0xfa, 0xcd, 0x62, 0x48, 0x76, 0xf3, 0x44, 0xb1, 0x64, 0x98, 0xe2, 0xda, 0x99,
            0x1e, 0xc5
        ]
    );
    assert_eq!(&sent[104..108], &2u32.to_le_bytes());
    assert_eq!(&sent[112..118], b"frames");
    assert!(sent[118..144].iter().all(|&b| b == 0));
    assert_eq!(&sent[96 + 48 + 8..96 + 48 + 12], &3u32.to_le_bytes());
    assert_eq!(&sent[96 + 96 + 8..96 + 96 + 12], &1u32.to_le_bytes());
    assert!(sent[96 + 3 * 48..].iter().all(|&b| b == 0));
    let params = parse_open_session_any(&sent).unwrap();
    let names: Vec<&str> = params.regions().iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["frames", "audio ring", "télémétrie"]);
}

#[test]
fn a_driver_without_version_2_gets_version_1_from_then_on() {
    let mut client = new_client();
    client.transport_mut().open_v1_only = true;
    assert_eq!(client.consumers_can_attach(), None, "no session yet");
    let info = client.open_session(&named_request()).unwrap();
    assert_eq!(info.session, SessionId(SESSION_ID));
    assert!(client.opens_v1_only());
    assert_eq!(client.consumers_can_attach(), Some(false));
    // Version 2 refused, then version 1: sizes and guest access only.
    let log = &client.transport().log;
    assert_eq!(log.len(), 2);
    assert_eq!((log[0].1.len(), log[1].1.len()), (864, 336));
    let expected = client.open_session_request_v1(&named_request()).unwrap();
    assert_eq!(log[1].1, encode(&expected));
    let params = parse_open_session(&log[1].1).unwrap();
    let guest: Vec<bool> = params.regions().iter().map(|r| r.guest_writable).collect();
    assert_eq!(guest, [false, true, true]);
    assert_eq!(params.vm_id(), None);

    // The next session goes straight to version 1.
    client.close_session(info.session).unwrap();
    client.open_session(&request(&[4096])).unwrap();
    let log = &client.transport().log;
    assert_eq!(log.len(), 4);
    assert_eq!(log[3].1.len(), 336);
    assert_eq!(
        log[3].1,
        encode(
            &OpenSessionRequest::build(
                Target::VmbusHandle(0x1a4.try_into().unwrap()),
                WireGuid::from_u128(DEFAULT_INTERFACE_TYPE.to_u128()),
                WireGuid::from_u128(DEFAULT_INTERFACE_INSTANCE.to_u128()),
                &[RegionRequest {
                    size: 4096,
                    guest_writable: true
                }],
            )
            .unwrap()
        )
    );
}

#[test]
fn another_refusal_of_version_2_is_not_retried() {
    let mut client = new_client();
    client.transport_mut().fail_next = Some(nt(STATUS_INVALID_PARAMETER));
    let error = client.open_session(&named_request()).unwrap_err();
    assert!(matches!(error, DriverError::Ioctl { .. }), "{error:?}");
    assert_eq!(client.transport().log.len(), 1);
    assert!(!client.opens_v1_only());
}

#[test]
fn a_request_version_2_cannot_carry_is_refused_before_anything_is_sent() {
    let mut nil_vm = named_request();
    nil_vm.target = Guid::from_u128(0);
    let mut unnamed = named_request();
    unnamed.regions[1].name = RegionName::EMPTY;
    let mut duplicate = named_request();
    duplicate.regions[2].name = name("frames");
    let mut short = named_request();
    short.regions.pop();
    let cases = [
        (nil_vm, "nil GUID"),
        (unnamed, "BadRegionName"),
        (duplicate, "DuplicateRegionName"),
        (short, "3 region size(s) but 2 name(s)"),
    ];
    for (request, text) in cases {
        let mut client = new_client();
        let reason = rejected(client.open_session(&request).unwrap_err());
        assert!(reason.starts_with("OPEN_SESSION: "), "{reason}");
        assert!(reason.contains(text), "{text}: {reason}");
        assert!(client.transport().log.is_empty());
    }
}

#[test]
fn an_invalid_request_is_refused_before_anything_is_sent() {
    let cases: [(DriverSessionSettings, &[u64], &str); 4] = [
        (
            DriverSessionSettings::new(DriverTarget::VmbusHandle(0)),
            &[4096],
            "VMBus handle 0",
        ),
        (
            DriverSessionSettings {
                interface_type: Guid::from_u128(0),
                ..settings()
            },
            &[4096],
            "NilGuid",
        ),
        (settings(), &[], "NoRegions"),
        (settings(), &[4096, 0], "EmptyRegion"),
    ];
    for (settings, sizes, text) in cases {
        let mut client = ProtoDriverClient::new(FakeDriver::default(), settings);
        let reason = rejected(client.open_session(&request(sizes)).unwrap_err());
        assert!(reason.starts_with("OPEN_SESSION: "), "{reason}");
        assert!(reason.contains(text), "{reason}");
        assert!(client.transport().log.is_empty());
    }
}

#[test]
fn malformed_replies_are_rejected_with_the_reason() {
    let cases: Vec<(Tamper, &str)> = vec![
        (Box::new(|reply| reply.truncate(10)), "TooShort"),
        (Box::new(|reply| reply.truncate(100)), "TooShort"),
        (
            // The kind of a GET_REGION_SECTION reply.
            Box::new(|reply| reply[6..8].copy_from_slice(&0x8002u16.to_le_bytes())),
            "WrongKind",
        ),
        (Box::new(|reply| reply.fill(0xAB)), "BadMagic"),
        (
            Box::new(|reply| reply[4..6].copy_from_slice(&2u16.to_le_bytes())),
            "UnsupportedVersion",
        ),
        (
            // bar_size 3 bytes.
            Box::new(|reply| reply[32..40].copy_from_slice(&3u64.to_le_bytes())),
            "BadBarSize",
        ),
        (
            Box::new(|reply| reply.push(0)),
            "reported 297 bytes written to a 296-byte buffer",
        ),
    ];
    for (tamper, text) in cases {
        let mut client = new_client();
        client.transport_mut().tamper_next = Some(tamper);
        let reason = rejected(client.open_session(&request(&[4096])).unwrap_err());
        assert!(reason.starts_with("OPEN_SESSION: "), "{reason}");
        assert!(reason.contains(text), "{text}: {reason}");
        assert!(client.opened().is_none());
    }
}

#[test]
fn transport_failures_keep_the_status() {
    let mut client = new_client();
    client.transport_mut().fail_next = Some(IoctlFailure::Win32(2));
    let error = client.open_session(&request(&[4096])).unwrap_err();
    assert_eq!(
        error,
        DriverError::Ioctl {
            request: "OPEN_SESSION",
            failure: IoctlFailure::Win32(2)
        }
    );
    assert_eq!(
        error.to_string(),
        "OPEN_SESSION failed: Win32 error 2 (ERROR_FILE_NOT_FOUND)"
    );

    // The driver's own refusal comes back the same way.
    let (mut client, session) = opened_client(&[4096]);
    client.transport_mut().session = None;
    assert_eq!(
        client.status(session),
        Ok(vmbmmio_devhost::driver::SessionStatus {
            state: SessionState::NoSession,
            counters: StatusCounters::default()
        })
    );
    assert_eq!(
        client.region_section(session, 0, SectionAccess::ReadWrite),
        Err(DriverError::Ioctl {
            request: "GET_REGION_SECTION",
            failure: nt(STATUS_INVALID_DEVICE_STATE)
        })
    );
}

#[test]
fn a_layout_other_than_the_one_asked_for_is_rejected_and_the_session_closed_again() {
    // One region instead of two.
    let mut client = new_client();
    client.transport_mut().tamper_next = Some(Box::new(|reply| {
        let one = SessionOpened::new(
            SESSION_ID,
            1,
            0,
            16384,
            &[BarRegion {
                offset: 0,
                size: 8192,
            }],
        )
        .unwrap();
        *reply = encode(&one.to_reply());
    }));
    let reason = rejected(client.open_session(&request(&[8192, 4096])).unwrap_err());
    assert!(
        reason.contains("the reply has 1 region(s), 2 were asked for"),
        "{reason}"
    );
    assert!(reason.contains("the session was closed again"), "{reason}");
    assert_eq!(client.transport().codes(), [0x0022_E400, 0x0022_E410]);
    assert!(client.transport().session.is_none());
    assert!(client.opened().is_none());

    // A region smaller than asked (5000 bytes round up to 8192).
    let mut client = new_client();
    client.transport_mut().tamper_next = Some(Box::new(|reply| {
        let small = SessionOpened::new(
            SESSION_ID,
            1,
            0,
            4096,
            &[BarRegion {
                offset: 0,
                size: 4096,
            }],
        )
        .unwrap();
        *reply = encode(&small.to_reply());
    }));
    let reason = rejected(client.open_session(&request(&[5000])).unwrap_err());
    assert!(
        reason.contains("region 0 has 4096 bytes, 8192 were asked for"),
        "{reason}"
    );
    assert!(client.transport().session.is_none());
}

#[test]
fn region_section_sends_the_builders_bytes_and_checks_the_reply() {
    let (mut client, session) = opened_client(&[8192, 4096]);
    let handle = client
        .region_section(session, 1, SectionAccess::ReadWrite)
        .unwrap();
    let driver = client.transport();
    assert_eq!(driver.log.last().unwrap().0, 0x0022_E404);
    assert_eq!(
        driver.last_input(),
        encode(&GetRegionSectionRequest::build(1, WireAccess::ReadWrite).unwrap())
    );
    assert!(driver.open_handles.contains(&handle.0));
    client
        .region_section(session, 0, SectionAccess::Read)
        .unwrap();
    let params = parse_get_region_section(client.transport().last_input()).unwrap();
    assert_eq!((params.region_index, params.access), (0, WireAccess::Read));

    // Refused locally: a region the session does not have, a session that is not this one.
    let sent = client.transport().log.len();
    let reason = rejected(
        client
            .region_section(session, 2, SectionAccess::Read)
            .unwrap_err(),
    );
    assert_eq!(
        reason,
        "GET_REGION_SECTION: no region 2 (the session has 2)"
    );
    let reason = rejected(
        client
            .region_section(SessionId(7), 0, SectionAccess::Read)
            .unwrap_err(),
    );
    assert_eq!(
        reason,
        "GET_REGION_SECTION: no session 7 (this handle's session is 42)"
    );
    assert_eq!(client.transport().log.len(), sent);

    // A section that does not match the layout: refused, and its handle closed.
    client.transport_mut().tamper_next = Some(Box::new(|reply| {
        let handle = u64::from_le_bytes(reply[16..24].try_into().unwrap());
        *reply = encode(
            &RegionSection::new(handle, 4096, 0x10000)
                .unwrap()
                .to_reply(),
        );
    }));
    let reason = rejected(
        client
            .region_section(session, 0, SectionAccess::ReadWrite)
            .unwrap_err(),
    );
    assert!(reason.contains("(the handle was closed)"), "{reason}");
    assert_eq!(client.transport().closed_by_client.len(), 1);

    // A reply that does not parse.
    client.transport_mut().tamper_next =
        Some(Box::new(|reply| reply[16..24].copy_from_slice(&[0; 8])));
    let reason = rejected(
        client
            .region_section(session, 0, SectionAccess::ReadWrite)
            .unwrap_err(),
    );
    assert!(reason.contains("NullSectionHandle"), "{reason}");
}

#[test]
fn report_mapping_sends_each_state_with_its_hresult() {
    let (mut client, session) = opened_client(&[4096]);
    let refused = HResult::INVALID_STATE;
    for state in [
        MappingState::SectionBacked,
        MappingState::InterceptFallback { hresult: refused },
        MappingState::InterceptFallback {
            hresult: HResult::S_OK,
        },
        MappingState::Failed { hresult: refused },
        MappingState::Unmapped,
    ] {
        client
            .report_mapping(session, 0, state, ActedOn::Unknown)
            .unwrap();
        let (wire_state, hresult) = mapping_to_wire(state);
        let driver = client.transport();
        assert_eq!(driver.log.last().unwrap().0, 0x0022_E408);
        assert_eq!(
            driver.last_input(),
            encode(&ReportMappingRequest::build(0, wire_state, hresult.0).unwrap())
        );
        let params = parse_report_mapping(driver.last_input()).unwrap();
        assert_eq!((params.state, params.hresult), (wire_state, hresult.0));
        assert_eq!(
            driver.session.as_ref().unwrap().reports[0],
            (wire_state, hresult.0)
        );
    }
    let sent = client.transport().log.len();
    // The wire forbids a success HRESULT with Failed: refused before sending.
    let reason = rejected(
        client
            .report_mapping(
                session,
                0,
                MappingState::Failed {
                    hresult: HResult::S_OK,
                },
                ActedOn::Unknown,
            )
            .unwrap_err(),
    );
    assert!(reason.contains("HresultContradictsState"), "{reason}");
    let reason = rejected(
        client
            .report_mapping(session, 1, MappingState::Unmapped, ActedOn::Unknown)
            .unwrap_err(),
    );
    assert_eq!(reason, "REPORT_MAPPING: no region 1 (the session has 1)");
    assert_eq!(client.transport().log.len(), sent);

    client.transport_mut().tamper_next = Some(Box::new(|reply| reply[12] = 1));
    let reason = rejected(
        client
            .report_mapping(session, 0, MappingState::SectionBacked, ActedOn::Unknown)
            .unwrap_err(),
    );
    assert!(reason.contains("ReservedNotZero"), "{reason}");
}

#[test]
fn report_mapping_names_acted_on_in_version_2_and_falls_back_to_version_1() {
    let (mut client, session) = opened_client(&[4096]);
    client
        .report_mapping(
            session,
            0,
            MappingState::SectionBacked,
            ActedOn::Sequence(7),
        )
        .unwrap();
    let sent = client.transport().last_input().to_vec();
    assert_eq!(
        sent,
        encode(&ReportMappingV2Request::build(0, WireState::SectionBacked, 0, 7).unwrap())
    );
    assert!(matches!(
        parse_report_mapping_any(&sent),
        Ok(ActedReport {
            acted_on: ActedOn::Sequence(7),
            ..
        })
    ));
    assert!(!client.reports_v1_only());
    // An older driver refuses version 2 with STATUS_REVISION_MISMATCH: the same report goes
    // again as version 1, and so does every later one (one refused request, once).
    client.transport_mut().report_v1_only = true;
    let before = client.transport().log.len();
    client
        .report_mapping(session, 0, MappingState::Unmapped, ActedOn::Sequence(8))
        .unwrap();
    assert!(client.reports_v1_only());
    let log = &client.transport().log[before..];
    assert_eq!(log.len(), 2);
    assert_eq!(log[0].1.len(), 40);
    assert_eq!(
        log[1].1,
        encode(&ReportMappingRequest::build(0, WireState::Unmapped, 0).unwrap())
    );
    assert_eq!(
        client.transport().session.as_ref().unwrap().reports[0],
        (WireState::Unmapped, 0)
    );
    client
        .report_mapping(
            session,
            0,
            MappingState::SectionBacked,
            ActedOn::Sequence(9),
        )
        .unwrap();
    assert_eq!(client.transport().log.len(), before + 3);
    assert_eq!(client.transport().last_input().len(), 32);
    // Any other refusal is the caller's, not a reason to retry.
    let (mut client, session) = opened_client(&[4096]);
    client.transport_mut().fail_next = Some(nt(STATUS_INVALID_PARAMETER));
    let before = client.transport().log.len();
    assert!(
        client
            .report_mapping(
                session,
                0,
                MappingState::SectionBacked,
                ActedOn::Sequence(1)
            )
            .is_err()
    );
    assert!(!client.reports_v1_only());
    assert!(client.transport().log.len() <= before + 1);
}

#[test]
fn status_and_close_send_the_headers_and_parse_the_replies() {
    let (mut client, session) = opened_client(&[4096, 4096]);
    client
        .report_mapping(session, 1, MappingState::SectionBacked, ActedOn::Unknown)
        .unwrap();
    let status = client.status(session).unwrap();
    assert_eq!(client.transport().log.last().unwrap().0, 0x0022_E40C);
    assert_eq!(
        client.transport().last_input(),
        encode(&QueryStatusRequest::new())
    );
    assert_eq!(status.state, SessionState::Offered);
    assert_eq!(
        status.counters,
        StatusCounters {
            sections_created: 2,
            section_handles_issued: 0,
            regions_mapped: 1,
            guest_packets: 3,
            protocol_errors: 1,
        }
    );

    // A status reply with a state the wire does not define.
    client.transport_mut().tamper_next = Some(Box::new(|reply| reply[16] = 9));
    let reason = rejected(client.status(session).unwrap_err());
    assert!(
        reason.starts_with("QUERY_STATUS: malformed reply: BadSessionState"),
        "{reason}"
    );

    // A failed close keeps the session (the handle's close still ends it in the driver).
    client.transport_mut().fail_next = Some(IoctlFailure::Win32(31));
    assert!(matches!(
        client.close_session(session),
        Err(DriverError::Ioctl {
            request: "CLOSE_SESSION",
            ..
        })
    ));
    assert!(client.opened().is_some());
    client.close_session(session).unwrap();
    assert_eq!(client.transport().log.last().unwrap().0, 0x0022_E410);
    assert_eq!(
        client.transport().last_input(),
        encode(&CloseSessionRequest::new())
    );
    assert!(client.opened().is_none());
    let reason = rejected(client.status(session).unwrap_err());
    assert_eq!(reason, "QUERY_STATUS: no session 42 (no session is open)");
    let reason = rejected(client.close_session(session).unwrap_err());
    assert!(
        reason.starts_with("CLOSE_SESSION: no session 42"),
        "{reason}"
    );
}

#[test]
fn one_session_per_handle() {
    let (mut client, _) = opened_client(&[4096]);
    let reason = rejected(client.open_session(&request(&[4096])).unwrap_err());
    assert_eq!(
        reason,
        "OPEN_SESSION: session 42 is already open on this handle"
    );
    assert_eq!(client.transport().log.len(), 1);
}

#[test]
fn a_whole_session_round_trips_through_the_fake_driver() {
    let mut client = new_client();
    let info = client
        .open_session(&request(&[65536, 4096, 12288]))
        .unwrap();
    assert_eq!(info.bar_size, 131072);
    let mut handles = Vec::new();
    for region in 0..3 {
        handles.push(
            client
                .region_section(info.session, region, SectionAccess::ReadWrite)
                .unwrap(),
        );
    }
    let states = [
        MappingState::SectionBacked,
        MappingState::InterceptFallback {
            hresult: HResult::INVALID_STATE,
        },
        MappingState::SectionBacked,
    ];
    for (region, state) in (0..).zip(states) {
        client
            .report_mapping(info.session, region, state, ActedOn::Unknown)
            .unwrap();
    }
    let status = client.status(info.session).unwrap();
    assert_eq!(status.counters.section_handles_issued, 3);
    assert_eq!(status.counters.regions_mapped, 2);
    for region in 0..3 {
        client
            .report_mapping(
                info.session,
                region,
                MappingState::Unmapped,
                ActedOn::Unknown,
            )
            .unwrap();
    }
    assert_eq!(
        client.status(info.session).unwrap().counters.regions_mapped,
        0
    );
    client.close_session(info.session).unwrap();

    let driver = client.into_transport();
    assert!(driver.session.is_none());
    // The handles belong to the caller: the client closed none of them.
    assert!(driver.closed_by_client.is_empty());
    assert_eq!(
        driver.open_handles.iter().copied().collect::<Vec<_>>(),
        handles.iter().map(|handle| handle.0).collect::<Vec<_>>()
    );
    assert_eq!(
        driver.codes(),
        [
            IoctlCode::OpenSession.code(),
            IoctlCode::GetRegionSection.code(),
            IoctlCode::GetRegionSection.code(),
            IoctlCode::GetRegionSection.code(),
            IoctlCode::ReportMapping.code(),
            IoctlCode::ReportMapping.code(),
            IoctlCode::ReportMapping.code(),
            IoctlCode::QueryStatus.code(),
            IoctlCode::ReportMapping.code(),
            IoctlCode::ReportMapping.code(),
            IoctlCode::ReportMapping.code(),
            IoctlCode::QueryStatus.code(),
            IoctlCode::CloseSession.code(),
        ]
    );
}

#[test]
fn the_client_works_through_a_borrowed_or_boxed_transport() {
    let mut driver = FakeDriver::default();
    {
        let mut client = ProtoDriverClient::new(&mut driver, settings());
        client.open_session(&request(&[4096])).unwrap();
    }
    assert!(driver.session.is_some());
    let boxed: Box<dyn IoctlTransport> = Box::new(FakeDriver::default());
    let mut client = ProtoDriverClient::new(boxed, settings());
    client.open_session(&request(&[4096])).unwrap();
}

/// Answers every IOCTL with the same arbitrary bytes and an arbitrary reported length.
struct Garbage {
    reply: Vec<u8>,
    reported: usize,
    closed: Vec<u64>,
}

impl IoctlTransport for Garbage {
    fn ioctl(
        &mut self,
        _code: u32,
        _input: &[u8],
        output: &mut [u8],
    ) -> Result<usize, IoctlFailure> {
        let fits = self.reply.len().min(output.len());
        output[..fits].copy_from_slice(&self.reply[..fits]);
        Ok(self.reported)
    }

    fn close_handle(&mut self, handle: u64) {
        self.closed.push(handle);
    }
}

proptest::proptest! {
    #[test]
    fn arbitrary_replies_never_panic(
        reply in proptest::collection::vec(proptest::num::u8::ANY, 0..400),
        reported in 0usize..400,
    ) {
        let garbage = Garbage { reply, reported, closed: Vec::new() };
        let mut client = ProtoDriverClient::new(garbage, settings());
        let _ = client.open_session(&request(&[4096, 8192]));
        let session = SessionId(SESSION_ID);
        let _ = client.region_section(session, 0, SectionAccess::ReadWrite);
        let _ = client.report_mapping(session, 0, MappingState::SectionBacked, ActedOn::Unknown);
        let _ = client.status(session);
        let _ = client.close_session(session);
    }
}

// ---- QUERY_DRIVER ----------------------------------------------------------------------------

#[test]
fn query_driver_sends_the_header_and_parses_the_facts_without_a_session() {
    let mut client = new_client();
    let facts = client.query_driver().unwrap();
    assert_eq!(facts, DriverFacts::new(27, 1 << 26, 1, 0).unwrap());
    let driver = client.transport();
    assert_eq!(driver.codes(), [0x0022_E414]);
    assert_eq!(driver.last_input(), encode(&QueryDriverRequest::new()));
    // Through the trait, as the device host's start asks it.
    assert_eq!(client.driver_facts(), Some(Ok(facts)));
    client.open_session(&request(&[4096])).unwrap();
    assert_eq!(client.query_driver().unwrap().live_sessions(), 1);
}

#[test]
fn query_driver_failures_are_typed() {
    // A driver older than the request refuses it: the status is kept, named QUERY_DRIVER.
    let mut client = new_client();
    let invalid_device_request = nt(0xC000_0010_u32 as i32);
    client.transport_mut().fail_next = Some(invalid_device_request);
    let error = client.query_driver().unwrap_err();
    assert_eq!(
        error,
        DriverError::Ioctl {
            request: "QUERY_DRIVER",
            failure: invalid_device_request,
        }
    );
    assert_eq!(
        error.to_string(),
        "QUERY_DRIVER failed: NTSTATUS 0xC0000010 (STATUS_INVALID_DEVICE_REQUEST)"
    );
    // The handle is still good: the next request goes through.
    assert!(client.query_driver().is_ok());
    // A reply naming entries beyond the table it states is a driver bug, not a fact.
    client.transport_mut().tamper_next = Some(Box::new(|reply: &mut Vec<u8>| {
        reply[20..24].copy_from_slice(&(1u32 << 27).to_le_bytes());
    }));
    let reason = rejected(client.query_driver().unwrap_err());
    assert!(
        reason.starts_with("QUERY_DRIVER: malformed reply: "),
        "{reason}"
    );
    assert!(reason.contains("KmclBitsBeyondTable"), "{reason}");
    // A non-zero reserved word likewise.
    client.transport_mut().tamper_next = Some(Box::new(|reply: &mut Vec<u8>| reply[40] = 1));
    let reason = rejected(client.query_driver().unwrap_err());
    assert!(reason.contains("QueryDriverTail"), "{reason}");
    // A short reply.
    client.transport_mut().tamper_next = Some(Box::new(|reply: &mut Vec<u8>| reply.truncate(60)));
    let reason = rejected(client.query_driver().unwrap_err());
    assert!(reason.contains("TooShort"), "{reason}");
}

/// The requests a waiting transport saw: code and input bytes.
type WaitLog = std::sync::Arc<std::sync::Mutex<Vec<(u32, Vec<u8>)>>>;

/// The waiting thread's transport: answers WAIT_GUEST_EVENT from a script, records requests.
struct WaitOnly {
    answers: std::collections::VecDeque<Result<Vec<u8>, IoctlFailure>>,
    log: WaitLog,
}

impl IoctlTransport for WaitOnly {
    fn ioctl(&mut self, code: u32, input: &[u8], output: &mut [u8]) -> Result<usize, IoctlFailure> {
        self.log.lock().unwrap().push((code, input.to_vec()));
        let reply = self.answers.pop_front().expect("a scripted answer")?;
        output[..reply.len()].copy_from_slice(&reply);
        Ok(reply.len())
    }

    fn close_handle(&mut self, _handle: u64) {
        unreachable!("WAIT_GUEST_EVENT returns no handle")
    }
}

/// The fake driver on a handle that can be shared (like the Windows transport's): its waiter
/// is a [`WaitOnly`] with the given answers, and its canceller counts.
struct Sharing {
    driver: FakeDriver,
    answers: std::cell::RefCell<Vec<Result<Vec<u8>, IoctlFailure>>>,
    waits: WaitLog,
    cancels: std::sync::Arc<std::sync::atomic::AtomicU32>,
}

impl Sharing {
    fn new(answers: Vec<Result<Vec<u8>, IoctlFailure>>) -> Self {
        Self {
            driver: FakeDriver::default(),
            answers: std::cell::RefCell::new(answers),
            waits: Default::default(),
            cancels: Default::default(),
        }
    }
}

impl IoctlTransport for Sharing {
    fn ioctl(&mut self, code: u32, input: &[u8], output: &mut [u8]) -> Result<usize, IoctlFailure> {
        self.driver.ioctl(code, input, output)
    }

    fn close_handle(&mut self, handle: u64) {
        self.driver.close_handle(handle);
    }

    fn waiter(&self) -> Option<vmbmmio_devhost::TransportWaiter> {
        let cancels = std::sync::Arc::clone(&self.cancels);
        Some(vmbmmio_devhost::TransportWaiter {
            transport: Box::new(WaitOnly {
                answers: self.answers.take().into(),
                log: std::sync::Arc::clone(&self.waits),
            }),
            cancel: Box::new(move || {
                cancels.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }),
        })
    }
}

#[test]
fn guest_events_need_an_open_session_and_a_transport_that_shares_its_handle() {
    // The plain fake cannot share its handle: no guest events, even with a session.
    let (mut client, _) = opened_client(&[4096]);
    assert!(client.guest_events().is_none());
    // A sharing transport without a session: none either.
    let mut client = ProtoDriverClient::new(Sharing::new(Vec::new()), settings());
    assert!(client.guest_events().is_none());
    client.open_session(&request(&[4096])).unwrap();
    let tap = client
        .guest_events()
        .expect("a tap once the session is open");
    (tap.cancel)();
    assert_eq!(
        client
            .transport()
            .cancels
            .load(std::sync::atomic::Ordering::SeqCst),
        1
    );
    // The session's own requests went out on the client's transport only.
    assert_eq!(client.transport().driver.codes(), [0x0022_E400]);
}

#[test]
fn the_tap_waits_on_the_shared_transport_and_sorts_its_failures() {
    use vmbmmio_devhost::sequence::guest_wait::WaitFailure;
    use vmbmmio_proto::ioctl::{
        EVENT_FLAG_RESERVATION, GuestEvent, GuestEventKind, GuestReservation, GuestSnapshot,
        WaitGuestEventRequest,
    };
    let event = GuestEvent::new(
        3,
        GuestEventKind::GuestReport,
        EVENT_FLAG_RESERVATION,
        GuestSnapshot {
            reservation: Some(GuestReservation {
                base: 0xFE00_0000,
                size: 1 << 20,
            }),
            ..GuestSnapshot::default()
        },
    )
    .unwrap();
    let sharing = Sharing::new(vec![
        Ok(encode(&event.to_reply())),
        Err(IoctlFailure::Win32(995)),
        Err(IoctlFailure::NtStatus(0xC000_0120_u32 as i32)),
        Err(IoctlFailure::Win32(1)),
    ]);
    let waits = std::sync::Arc::clone(&sharing.waits);
    let mut client = ProtoDriverClient::new(sharing, settings());
    client.open_session(&request(&[4096])).unwrap();
    let mut tap = client.guest_events().unwrap();
    assert_eq!(tap.source.wait(2).unwrap(), event);
    // Cancelled: ERROR_OPERATION_ABORTED (Windows) or STATUS_CANCELLED (in-process).
    assert!(matches!(tap.source.wait(3), Err(WaitFailure::Cancelled)));
    assert!(matches!(tap.source.wait(3), Err(WaitFailure::Cancelled)));
    // A driver older than the request: a failure the loop stops on.
    match tap.source.wait(3) {
        Err(WaitFailure::Failed(error)) => assert_eq!(
            error.to_string(),
            "WAIT_GUEST_EVENT failed: Win32 error 1 (ERROR_INVALID_FUNCTION)"
        ),
        other => panic!("expected a failure, got {other:?}"),
    }
    let waits = waits.lock().unwrap();
    assert_eq!(waits.len(), 4);
    assert!(waits.iter().all(|(code, _)| *code == 0x0022_E418));
    assert_eq!(waits[0].1, encode(&WaitGuestEventRequest::new(2)));
    assert_eq!(waits[3].1, encode(&WaitGuestEventRequest::new(3)));
    // Nothing of the wait reached the session's transport.
    assert_eq!(client.transport().driver.codes(), [0x0022_E400]);
}
