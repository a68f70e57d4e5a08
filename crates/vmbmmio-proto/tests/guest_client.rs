//! The guest library's state machine: the conversation of `docs/protocol.md` end to end against
//! replies built with the host's encoders, and every refusal (requests out of order, replies
//! that do not answer what was asked). A refused reply must leave the client unchanged.

use vmbmmio_proto::guest::*;
use vmbmmio_proto::ioctl::WireGuid;

const GIB: u64 = 1 << 30;
const BAR_BASE: u64 = 8 * GIB;

fn device(decode: bool) -> DeviceReport {
    DeviceReport {
        instance: WireGuid::from_u128(0x01234567_89ab_cdef_0123_456789abcdef),
        segment: 0,
        bus: 1,
        devfn: 0,
        bar_index: 2,
        bar: BarPlacement {
            base: BAR_BASE,
            size: GIB,
            memory_decode: decode,
        },
    }
}

/// A test double of the host: answers with the crate's encoders.
struct Host {
    buf: Vec<u8>,
}

impl Host {
    fn new() -> Self {
        Self { buf: vec![0; 2048] }
    }

    fn hello_reply(&mut self, id: u64, info: HostInfo) -> &[u8] {
        let len = encode_hello_reply(&mut self.buf, id, &info).unwrap();
        &self.buf[..len]
    }

    fn ack(&mut self, id: u64, kind: Kind, generation: u64) -> &[u8] {
        let len = encode_ack(&mut self.buf, id, kind, generation).unwrap();
        &self.buf[..len]
    }

    fn event(&mut self, id: u64, sequence: u64, kind: EventKind, generation: u64) -> &[u8] {
        let event = Event {
            sequence,
            kind,
            generation,
            region: 0,
            value: 0,
        };
        let len = encode_event(&mut self.buf, id, &event).unwrap();
        &self.buf[..len]
    }

    fn layout(&mut self, id: u64, generation: u64, bar_size: u64, regions: &[Region]) -> &[u8] {
        let len = encode_layout(&mut self.buf, id, generation, bar_size, regions).unwrap();
        &self.buf[..len]
    }

    fn error(&mut self, id: u64, code: ErrorCode, kind: Kind, left: u32) -> &[u8] {
        let len = encode_error(&mut self.buf, id, code, kind.to_u16(), left).unwrap();
        &self.buf[..len]
    }
}

fn regions(state: RegionState) -> [Region; 2] {
    [
        Region {
            id: 0,
            access: RegionAccess::ReadWrite,
            state,
            offset_pages: 0,
            length_pages: 16,
            name: RegionName::new("ring").unwrap(),
        },
        Region {
            id: 1,
            access: RegionAccess::ReadOnly,
            state,
            offset_pages: 16,
            length_pages: 1,
            name: RegionName::EMPTY,
        },
    ]
}

/// Sends one request with `send`, checks that the bytes parse as the host would, and returns
/// its id.
fn sent(
    client: &mut GuestClient,
    send: impl FnOnce(&mut GuestClient, &mut [u8]) -> Result<Sent, ClientError>,
) -> (u64, Request) {
    let mut out = [0u8; 256];
    let sent = send(client, &mut out).unwrap();
    let request = parse_request(&out[..sent.len]).unwrap();
    assert_eq!(request.request_id, sent.request_id);
    (sent.request_id, request)
}

/// A client that is versioned (HELLO and SELECT_VERSION done).
fn versioned(host: &mut Host) -> GuestClient {
    let mut client = GuestClient::new();
    let (id, _) = sent(&mut client, GuestClient::hello);
    client.on_reply(host.hello_reply(id, HostInfo::V1)).unwrap();
    let (id, _) = sent(&mut client, GuestClient::select_version);
    client
        .on_reply(host.ack(id, Kind::SelectVersion, 0))
        .unwrap();
    client
}

/// A client that is READY (decode-on device acknowledged, READY acknowledged).
fn ready(host: &mut Host) -> GuestClient {
    let mut client = versioned(host);
    let (id, _) = sent(&mut client, |c, out| c.report_device(out, &device(true)));
    client
        .on_reply(host.ack(id, Kind::ReportDevice, 1))
        .unwrap();
    let (id, _) = sent(&mut client, GuestClient::ready);
    client.on_reply(host.ack(id, Kind::Ready, 1)).unwrap();
    client
}

/// Asserts `reply` is refused with `expected` and changes nothing.
fn refused(client: &mut GuestClient, reply: &[u8], expected: ClientError) {
    let before = client.clone();
    assert_eq!(client.on_reply(reply), Err(expected));
    assert_eq!(*client, before, "a refused reply changed the client");
}

#[test]
fn the_whole_conversation_reaches_mapped_and_releases() {
    let mut host = Host::new();
    let mut client = GuestClient::new();
    assert_eq!(client.state(), ClientState::Idle);

    let (id, request) = sent(&mut client, GuestClient::hello);
    assert_eq!((id, request.body), (1, RequestBody::Hello));
    let event = client.on_reply(host.hello_reply(id, HostInfo::V1)).unwrap();
    assert_eq!(
        event,
        ClientEvent::HelloReply {
            host: HostInfo::V1,
            chosen: Some(PROTOCOL_VERSION_1_0)
        }
    );
    assert_eq!(client.state(), ClientState::Hello);
    assert_eq!(client.errors_left(), Some(ERROR_LIMIT));

    let (id, request) = sent(&mut client, GuestClient::select_version);
    assert_eq!(
        request.body,
        RequestBody::SelectVersion {
            version: PROTOCOL_VERSION_1_0
        }
    );
    client
        .on_reply(host.ack(id, Kind::SelectVersion, 0))
        .unwrap();
    assert_eq!(client.state(), ClientState::Versioned);
    assert_eq!(client.version(), Some(PROTOCOL_VERSION_1_0));

    let reservation = GuestRange {
        base: 0xF800_0000,
        size: 0x10_0000,
    };
    let (id, _) = sent(&mut client, |c, out| {
        c.report_reservation(out, Some(reservation))
    });
    client
        .on_reply(host.ack(id, Kind::ReportReservation, 0))
        .unwrap();
    assert_eq!(client.reservation(), Some(Some(reservation)));

    let (id, request) = sent(&mut client, |c, out| c.report_device(out, &device(true)));
    assert_eq!(request.body, RequestBody::ReportDevice(device(true)));
    client
        .on_reply(host.ack(id, Kind::ReportDevice, 1))
        .unwrap();
    assert_eq!(client.state(), ClientState::Reported);
    assert_eq!(client.device(), Some(device(true)));

    let (id, _) = sent(&mut client, GuestClient::ready);
    client.on_reply(host.ack(id, Kind::Ready, 1)).unwrap();
    assert_eq!(client.state(), ClientState::Ready);

    let (wait, request) = sent(&mut client, GuestClient::wait_event);
    assert_eq!(request.body, RequestBody::WaitEvent { last_seen: 0 });
    assert_eq!(client.waiting(), Some(wait));
    // GET_LAYOUT while the wait is held.
    let (get, _) = sent(&mut client, GuestClient::get_layout);
    client
        .on_reply(host.layout(get, 1, GIB, &regions(RegionState::Unmapped)))
        .unwrap();
    assert_eq!(client.layout().unwrap().regions().len(), 2);
    assert!(client.layout_is_current());

    let event = client
        .on_reply(host.event(wait, 1, EventKind::RegionsMapped, 2))
        .unwrap();
    assert!(matches!(
        event,
        ClientEvent::Event(Event { sequence: 1, .. })
    ));
    assert_eq!(client.state(), ClientState::Mapped);
    assert_eq!((client.last_seen(), client.generation()), (1, 2));
    assert!(!client.layout_is_current(), "generation 2 is newer");

    let (get, _) = sent(&mut client, GuestClient::get_layout);
    let event = client
        .on_reply(host.layout(get, 2, GIB, &regions(RegionState::Mapped)))
        .unwrap();
    assert_eq!(event, ClientEvent::Layout { generation: 2 });
    let layout = client.layout().unwrap();
    assert_eq!(layout.region(0).unwrap().name.as_str(), "ring");
    assert_eq!(layout.region(0).unwrap().state, RegionState::Mapped);
    assert!(client.layout_is_current());

    let (_, request) = sent(&mut client, GuestClient::wait_event);
    assert_eq!(request.body, RequestBody::WaitEvent { last_seen: 1 });

    let (id, _) = sent(&mut client, GuestClient::releasing);
    client.on_reply(host.ack(id, Kind::Releasing, 3)).unwrap();
    assert_eq!(client.state(), ClientState::Versioned);
    assert_eq!(client.device(), None);
    assert_eq!(client.generation(), 3);
}

#[test]
fn request_ids_start_at_1_and_strictly_increase() {
    let mut host = Host::new();
    let mut client = versioned(&mut host);
    let mut last = 2;
    for _ in 0..5 {
        let (id, _) = sent(&mut client, GuestClient::get_layout);
        assert!(id > last);
        last = id;
        client.on_reply(host.layout(id, 0, GIB, &[])).unwrap();
    }
    let mut client = GuestClient::starting_at(core::num::NonZeroU64::new(1000).unwrap());
    let (id, _) = sent(&mut client, GuestClient::hello);
    assert_eq!((id, client.next_request_id()), (1000, 1001));
}

#[test]
fn ids_are_not_reused_when_they_run_out() {
    let mut client = GuestClient::starting_at(core::num::NonZeroU64::new(u64::MAX).unwrap());
    let mut out = [0u8; 16];
    assert_eq!(client.hello(&mut out), Err(ClientError::IdsExhausted));
}

#[test]
fn requests_out_of_order_are_refused() {
    let mut out = [0u8; 64];
    let mut client = GuestClient::new();
    assert_eq!(
        client.select_version(&mut out),
        Err(ClientError::NotAllowed {
            request: Kind::SelectVersion,
            state: ClientState::Idle
        })
    );
    for (kind, result) in [
        (
            Kind::ReportDevice,
            client.report_device(&mut out, &device(true)),
        ),
        (
            Kind::ReportReservation,
            client.report_reservation(&mut out, None),
        ),
        (Kind::GetLayout, client.get_layout(&mut out)),
        (Kind::WaitEvent, client.wait_event(&mut out)),
        (Kind::Ready, client.ready(&mut out)),
        (Kind::Releasing, client.releasing(&mut out)),
    ] {
        assert_eq!(
            result,
            Err(ClientError::NotAllowed {
                request: kind,
                state: ClientState::Idle
            })
        );
    }
    assert_eq!(client.next_request_id(), 1, "no id spent on a refusal");

    let mut host = Host::new();
    let mut client = versioned(&mut host);
    assert_eq!(
        client.ready(&mut out),
        Err(ClientError::NotAllowed {
            request: Kind::Ready,
            state: ClientState::Versioned
        })
    );
    // A report with decode off does not allow READY either.
    let (id, _) = sent(&mut client, |c, out| c.report_device(out, &device(false)));
    client
        .on_reply(host.ack(id, Kind::ReportDevice, 0))
        .unwrap();
    assert_eq!(client.state(), ClientState::Versioned);
    assert!(matches!(
        client.ready(&mut out),
        Err(ClientError::NotAllowed { .. })
    ));
    assert!(matches!(
        client.select_version(&mut out),
        Err(ClientError::NotAllowed { .. })
    ));
}

#[test]
fn one_request_and_one_wait_may_be_outstanding() {
    let mut host = Host::new();
    let mut client = versioned(&mut host);
    let mut out = [0u8; 64];
    let first = client.get_layout(&mut out).unwrap();
    assert_eq!(
        client.report_reservation(&mut out, None),
        Err(ClientError::RequestOutstanding {
            request_id: first.request_id,
            kind: Kind::GetLayout
        })
    );
    let wait = client.wait_event(&mut out).unwrap();
    assert_eq!(
        client.wait_event(&mut out),
        Err(ClientError::WaitOutstanding {
            request_id: wait.request_id
        })
    );
    assert_eq!(
        client.outstanding(),
        Some((first.request_id, Kind::GetLayout))
    );
    client.abandon_outstanding();
    assert_eq!((client.outstanding(), client.waiting()), (None, None));
    assert!(client.get_layout(&mut out).is_ok());
}

#[test]
fn the_highest_common_version_is_picked_or_none() {
    let mut host = Host::new();
    let mut client = GuestClient::new();
    let (id, _) = sent(&mut client, GuestClient::hello);
    let wide = HostInfo {
        min_version: 0x0000_0001,
        max_version: 0x0005_0000,
        ..HostInfo::V1
    };
    let event = client.on_reply(host.hello_reply(id, wide)).unwrap();
    assert_eq!(
        event,
        ClientEvent::HelloReply {
            host: wide,
            // The highest the library speaks: 1.1 since doorbells (issue 14).
            chosen: Some(PROTOCOL_VERSION_1_1)
        }
    );

    let mut client = GuestClient::new();
    let (id, _) = sent(&mut client, GuestClient::hello);
    let newer = HostInfo {
        min_version: 0x0002_0000,
        max_version: 0x0003_0000,
        ..HostInfo::V1
    };
    let event = client.on_reply(host.hello_reply(id, newer)).unwrap();
    assert_eq!(
        event,
        ClientEvent::HelloReply {
            host: newer,
            chosen: None
        }
    );
    let mut out = [0u8; 64];
    assert_eq!(
        client.select_version(&mut out),
        Err(ClientError::NoCommonVersion {
            min: 0x0002_0000,
            max: 0x0003_0000
        })
    );
}

#[test]
fn a_request_the_host_would_refuse_is_not_handed_out() {
    let mut host = Host::new();
    let mut client = versioned(&mut host);
    let next = client.next_request_id();
    let mut out = [0u8; 64];
    let mut misaligned = device(true);
    misaligned.bar.base = BAR_BASE + 0x1000;
    let Err(ClientError::Refused(error)) = client.report_device(&mut out, &misaligned) else {
        panic!("not refused");
    };
    assert_eq!(error.code(), ErrorCode::BadPlacement);
    let bad_reservation = GuestRange { base: 0, size: 0 };
    assert!(matches!(
        client.report_reservation(&mut out, Some(bad_reservation)),
        Err(ClientError::Refused(_))
    ));
    assert_eq!(client.next_request_id(), next);
    assert_eq!(client.outstanding(), None);
    let mut small = [0u8; 10];
    assert_eq!(
        client.get_layout(&mut small),
        Err(ClientError::Encode(EncodeError::OutputTooSmall {
            needed: 16,
            got: 10
        }))
    );
}

#[test]
fn replies_that_answer_nothing_or_the_wrong_thing_are_refused() {
    let mut host = Host::new();
    let mut client = versioned(&mut host);
    let mut out = [0u8; 64];
    let get = client.get_layout(&mut out).unwrap().request_id;
    let wait = client.wait_event(&mut out).unwrap().request_id;

    refused(
        &mut client,
        host.layout(get + 100, 0, GIB, &[]),
        ClientError::Unsolicited {
            request_id: get + 100,
        },
    );
    refused(
        &mut client,
        host.ack(get, Kind::Ready, 0),
        ClientError::WrongReply {
            expected: Kind::Layout,
            got: Kind::Ack,
        },
    );
    refused(
        &mut client,
        host.error(get, ErrorCode::Malformed, Kind::Hello, 15),
        ClientError::WrongErrorKind {
            expected: Kind::GetLayout,
            got: Kind::Hello.to_u16(),
        },
    );
    refused(
        &mut client,
        host.layout(wait, 0, GIB, &[]),
        ClientError::WrongReply {
            expected: Kind::Event,
            got: Kind::Layout,
        },
    );
    refused(
        &mut client,
        &[0u8; 16],
        ClientError::BadReply(ReplyError::NotAReply { kind: 0 }),
    );
    // The right replies still work afterwards.
    client.on_reply(host.layout(get, 0, GIB, &[])).unwrap();
    client
        .on_reply(host.event(wait, 1, EventKind::LayoutChanged, 1))
        .unwrap();
    // An answered request cannot be answered twice.
    refused(
        &mut client,
        host.layout(get, 0, GIB, &[]),
        ClientError::Unsolicited { request_id: get },
    );
}

#[test]
fn an_ack_naming_another_kind_is_refused() {
    let mut host = Host::new();
    let mut client = versioned(&mut host);
    let (id, _) = sent(&mut client, |c, out| c.report_device(out, &device(true)));
    refused(
        &mut client,
        host.ack(id, Kind::Ready, 0),
        ClientError::WrongAckedKind {
            expected: Kind::ReportDevice,
            got: Kind::Ready,
        },
    );
    assert_eq!(client.state(), ClientState::Versioned);
}

#[test]
fn an_event_not_newer_than_last_seen_is_refused() {
    let mut host = Host::new();
    let mut client = ready(&mut host);
    let (wait, _) = sent(&mut client, GuestClient::wait_event);
    client
        .on_reply(host.event(wait, 5, EventKind::RegionsMapped, 2))
        .unwrap();
    let (wait, request) = sent(&mut client, GuestClient::wait_event);
    assert_eq!(request.body, RequestBody::WaitEvent { last_seen: 5 });
    for sequence in [1, 5] {
        refused(
            &mut client,
            host.event(wait, sequence, EventKind::RegionsUnmapped, 3),
            ClientError::StaleEvent {
                last_seen: 5,
                got: sequence,
            },
        );
    }
    assert_eq!(client.state(), ClientState::Mapped);
}

#[test]
fn a_layout_must_fit_the_hosts_limit_and_the_reported_bar() {
    let mut host = Host::new();
    let mut client = GuestClient::new();
    let (id, _) = sent(&mut client, GuestClient::hello);
    let small = HostInfo {
        max_regions: 1,
        ..HostInfo::V1
    };
    client.on_reply(host.hello_reply(id, small)).unwrap();
    let (id, _) = sent(&mut client, GuestClient::select_version);
    client
        .on_reply(host.ack(id, Kind::SelectVersion, 0))
        .unwrap();
    let (id, _) = sent(&mut client, GuestClient::get_layout);
    refused(
        &mut client,
        host.layout(id, 1, GIB, &regions(RegionState::Unmapped)),
        ClientError::TooManyRegions { max: 1, got: 2 },
    );
    client.on_reply(host.layout(id, 1, GIB, &[])).unwrap();

    let mut client = ready(&mut host);
    let (id, _) = sent(&mut client, GuestClient::get_layout);
    refused(
        &mut client,
        host.layout(id, 1, 2 * GIB, &[]),
        ClientError::BarSizeMismatch {
            reported: GIB,
            got: 2 * GIB,
        },
    );
}

#[test]
fn the_error_allowance_never_grows_and_counted_errors_lower_it() {
    let mut host = Host::new();
    let mut client = versioned(&mut host);
    let (id, _) = sent(&mut client, GuestClient::get_layout);
    refused(
        &mut client,
        host.error(id, ErrorCode::OutOfOrder, Kind::GetLayout, 17),
        ClientError::BadErrorsLeft { known: 16, got: 17 },
    );
    refused(
        &mut client,
        host.error(id, ErrorCode::OutOfOrder, Kind::GetLayout, 16),
        ClientError::BadErrorsLeft { known: 16, got: 16 },
    );
    let event = client
        .on_reply(host.error(id, ErrorCode::OutOfOrder, Kind::GetLayout, 15))
        .unwrap();
    assert!(matches!(event, ClientEvent::Error(_)));
    assert_eq!(client.errors_left(), Some(15));
    assert_eq!(client.last_error().unwrap().code, ErrorCode::OutOfOrder);
    assert_eq!(client.state(), ClientState::Versioned);
    // BUSY is not counted: the allowance may stay.
    let (wait, _) = sent(&mut client, GuestClient::wait_event);
    client
        .on_reply(host.error(wait, ErrorCode::Busy, Kind::WaitEvent, 15))
        .unwrap();
    assert_eq!(client.waiting(), None);
    assert_eq!(client.state(), ClientState::Versioned);
    // A new HELLO does not refill it.
    let (id, _) = sent(&mut client, GuestClient::hello);
    client.on_reply(host.hello_reply(id, HostInfo::V1)).unwrap();
    assert_eq!(client.errors_left(), Some(15));
    assert_eq!(client.version(), None, "the host forgot the conversation");
}

#[test]
fn an_unsupported_version_can_be_selected_again() {
    let mut host = Host::new();
    let mut client = GuestClient::new();
    let (id, _) = sent(&mut client, GuestClient::hello);
    client.on_reply(host.hello_reply(id, HostInfo::V1)).unwrap();
    let (id, _) = sent(&mut client, GuestClient::select_version);
    client
        .on_reply(host.error(id, ErrorCode::UnsupportedVersion, Kind::SelectVersion, 15))
        .unwrap();
    assert_eq!(client.state(), ClientState::Hello);
    assert!(client.select_version(&mut [0u8; 64]).is_ok());
}

#[test]
fn channel_closing_or_an_exhausted_allowance_closes_the_client() {
    let mut host = Host::new();
    let mut client = ready(&mut host);
    let (wait, _) = sent(&mut client, GuestClient::wait_event);
    client
        .on_reply(host.error(wait, ErrorCode::ChannelClosing, Kind::WaitEvent, 16))
        .unwrap();
    assert_eq!(client.state(), ClientState::Closed);
    let mut out = [0u8; 64];
    assert_eq!(client.hello(&mut out), Err(ClientError::Closed));
    assert_eq!(client.get_layout(&mut out), Err(ClientError::Closed));

    let mut client = GuestClient::new();
    let (id, _) = sent(&mut client, GuestClient::hello);
    let strict = HostInfo {
        error_limit: 1,
        ..HostInfo::V1
    };
    client.on_reply(host.hello_reply(id, strict)).unwrap();
    let (id, _) = sent(&mut client, GuestClient::select_version);
    client
        .on_reply(host.error(id, ErrorCode::Malformed, Kind::SelectVersion, 0))
        .unwrap();
    assert_eq!(client.state(), ClientState::Closed);
}

#[test]
fn unmapped_and_restarted_events_go_back_to_ready() {
    let mut host = Host::new();
    let mut client = ready(&mut host);
    let mut sequence = 0;
    for (kind, state) in [
        (EventKind::RegionsIntercepted, ClientState::Mapped),
        (EventKind::LayoutChanged, ClientState::Mapped),
        (EventKind::RegionsUnmapped, ClientState::Ready),
        (EventKind::RegionsMapped, ClientState::Mapped),
        (EventKind::DeviceHostRestarted, ClientState::Ready),
    ] {
        sequence += 1;
        let (wait, _) = sent(&mut client, GuestClient::wait_event);
        client
            .on_reply(host.event(wait, sequence, kind, sequence))
            .unwrap();
        assert_eq!(client.state(), state, "{kind:?}");
    }
    // A "mapped" event before READY does not make the guest use the memory.
    let mut client = versioned(&mut host);
    let (wait, _) = sent(&mut client, GuestClient::wait_event);
    client
        .on_reply(host.event(wait, 1, EventKind::RegionsMapped, 1))
        .unwrap();
    assert_eq!(client.state(), ClientState::Versioned);
}

#[test]
fn a_fresh_report_after_resume_starts_over() {
    let mut host = Host::new();
    let mut client = ready(&mut host);
    let mut moved = device(true);
    moved.bar.base = 16 * GIB;
    let (id, _) = sent(&mut client, |c, out| c.report_device(out, &moved));
    client
        .on_reply(host.ack(id, Kind::ReportDevice, 4))
        .unwrap();
    assert_eq!(client.state(), ClientState::Reported);
    assert_eq!(client.device(), Some(moved));
    let (id, _) = sent(&mut client, GuestClient::ready);
    client.on_reply(host.ack(id, Kind::Ready, 4)).unwrap();
    assert_eq!(client.state(), ClientState::Ready);
}
