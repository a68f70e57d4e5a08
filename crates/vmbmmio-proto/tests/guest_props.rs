//! Property tests of the guest control protocol: no input makes a parser or the guest client
//! panic, every encoder's output parses back to the same values, every accepted message has
//! exactly one encoding, and a reply the client refuses changes nothing.

use proptest::prelude::*;
use vmbmmio_proto::guest::*;
use vmbmmio_proto::ioctl::WireGuid;

const PAGE: u64 = 4096;

/// Writes a reply with the host's encoders.
fn encode_reply(out: &mut [u8], reply: &Reply) -> Result<usize, EncodeError> {
    let id = reply.request_id;
    match &reply.body {
        ReplyBody::HelloReply(info) => encode_hello_reply(out, id, info),
        ReplyBody::Ack(ack) => encode_ack(out, id, ack.acked_kind, ack.generation),
        ReplyBody::Layout(layout) => encode_layout(
            out,
            id,
            layout.generation(),
            layout.bar_size(),
            layout.regions(),
        ),
        ReplyBody::Event(event) => encode_event(out, id, event),
        ReplyBody::Error(error) => {
            encode_error(out, id, error.code, error.request_kind, error.errors_left)
        }
    }
}

/// A buffer of `len` bytes whose header is a correct one for `kind` (so random bodies reach the
/// body checks), followed by `body`.
fn framed(kind: Kind, id: u64, body: &[u8]) -> Vec<u8> {
    let mut bytes = vec![0u8; kind.size()];
    bytes[..2].copy_from_slice(&kind.to_u16().to_le_bytes());
    bytes[4..8].copy_from_slice(&kind.size_u32().to_le_bytes());
    bytes[8..16].copy_from_slice(&id.to_le_bytes());
    for (dst, src) in bytes[16..].iter_mut().zip(body) {
        *dst = *src;
    }
    bytes
}

fn any_kind() -> impl Strategy<Value = Kind> {
    proptest::sample::select(Kind::ALL.to_vec())
}

fn reservation() -> impl Strategy<Value = Option<GuestRange>> {
    proptest::option::of((1u64..1 << 30, 1u64..1 << 20).prop_filter_map(
        "below 2^52",
        |(base_pages, size_pages)| {
            let range = GuestRange {
                base: base_pages * PAGE,
                size: size_pages * PAGE,
            };
            (range.base + range.size <= MAX_GUEST_PHYSICAL_ADDRESS).then_some(range)
        },
    ))
}

fn device_report() -> impl Strategy<Value = DeviceReport> {
    (
        any::<u128>(),
        any::<u16>(),
        any::<u8>(),
        any::<u8>(),
        0u8..=5,
        12u32..45,
        any::<bool>(),
        any::<u64>(),
    )
        .prop_map(
            |(instance, segment, bus, devfn, bar_index, shift, decode, raw_base)| {
                let size = 1u64 << shift;
                let base = if decode {
                    // A non-zero multiple of the size below 2^52.
                    let slots = (MAX_GUEST_PHYSICAL_ADDRESS / size) - 1;
                    (raw_base % slots + 1) * size
                } else {
                    raw_base
                };
                DeviceReport {
                    instance: WireGuid::from_u128(instance),
                    segment,
                    bus,
                    devfn,
                    bar_index,
                    bar: BarPlacement {
                        base,
                        size,
                        memory_decode: decode,
                    },
                }
            },
        )
}

fn request_body() -> impl Strategy<Value = RequestBody> {
    prop_oneof![
        Just(RequestBody::Hello),
        any::<u32>().prop_map(|version| RequestBody::SelectVersion { version }),
        reservation().prop_map(RequestBody::ReportReservation),
        device_report().prop_map(RequestBody::ReportDevice),
        Just(RequestBody::Ready),
        Just(RequestBody::Releasing),
        Just(RequestBody::GetLayout),
        any::<u64>().prop_map(|last_seen| RequestBody::WaitEvent { last_seen }),
    ]
}

fn host_info() -> impl Strategy<Value = HostInfo> {
    (1u32.., any::<u32>(), 1064u32.., 1u32..=16, 1u32..).prop_map(
        |(min, extra, packet, regions, limit)| HostInfo {
            min_version: min,
            max_version: min.saturating_add(extra),
            max_packet_size: packet,
            max_regions: regions,
            error_limit: limit,
        },
    )
}

fn region_name() -> impl Strategy<Value = RegionName> {
    "[a-zA-Z0-9_é€-]{0,10}".prop_filter_map("fits", |name| RegionName::new(&name).ok())
}

fn layout() -> impl Strategy<Value = Layout> {
    (12u32..45, any::<u64>()).prop_flat_map(|(shift, generation)| {
        let pages = (1u64 << shift) / PAGE;
        let region = (
            0u32..16,
            proptest::sample::select(vec![RegionAccess::ReadOnly, RegionAccess::ReadWrite]),
            proptest::sample::select(vec![
                RegionState::Unmapped,
                RegionState::Mapped,
                RegionState::Intercepted,
            ]),
            0..pages,
            any::<u64>(),
            region_name(),
        )
            .prop_map(move |(id, access, state, offset, raw_len, name)| Region {
                id,
                access,
                state,
                offset_pages: offset,
                length_pages: raw_len % (pages - offset) + 1,
                name,
            });
        proptest::collection::vec(region, 0..=16)
            .prop_map(move |regions| Layout::new(generation, 1u64 << shift, &regions).unwrap())
    })
}

fn reply_body() -> impl Strategy<Value = ReplyBody> {
    let acked = proptest::sample::select(vec![
        Kind::SelectVersion,
        Kind::ReportReservation,
        Kind::ReportDevice,
        Kind::Ready,
        Kind::Releasing,
    ]);
    prop_oneof![
        host_info().prop_map(ReplyBody::HelloReply),
        (acked, any::<u64>()).prop_map(|(acked_kind, generation)| ReplyBody::Ack(Ack {
            acked_kind,
            generation
        })),
        layout().prop_map(ReplyBody::Layout),
        (1u64.., proptest::sample::select(events_1_0()), any::<u64>()).prop_map(
            |(sequence, kind, generation)| ReplyBody::Event(Event {
                sequence,
                kind,
                generation,
                region: 0,
                value: 0,
            })
        ),
        (
            proptest::sample::select(codes_1_0()),
            any::<u16>(),
            any::<u32>()
        )
            .prop_map(
                |(code, request_kind, errors_left)| ReplyBody::Error(ErrorInfo {
                    code,
                    request_kind,
                    errors_left
                })
            ),
    ]
}

/// The event kinds of version 1.0 (these properties are 1.0's; 1.1's are in
/// guest_doorbell_props.rs).
fn events_1_0() -> Vec<EventKind> {
    EventKind::ALL
        .into_iter()
        .filter(|kind| kind.since() == PROTOCOL_VERSION_1_0)
        .collect()
}

/// The error codes of version 1.0.
fn codes_1_0() -> Vec<ErrorCode> {
    ErrorCode::ALL
        .into_iter()
        .filter(|code| code.since() == PROTOCOL_VERSION_1_0)
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn no_bytes_make_a_parser_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1200),
                                    last in any::<u64>()) {
        let _ = parse_request(&bytes);
        let _ = parse_request_after(&bytes, last);
        let _ = parse_reply(&bytes);
        if let Ok(framed) = frame_request(&bytes) {
            let _ = framed.check_order(last);
            let _ = framed.parse_body();
        }
    }

    #[test]
    fn framed_random_bodies_never_panic_and_accepted_ones_encode_back(
        kind in any_kind(),
        id in any::<u64>(),
        body in proptest::collection::vec(any::<u8>(), 0..1100),
    ) {
        let bytes = framed(kind, id, &body);
        if let Ok(request) = parse_request(&bytes) {
            let mut out = vec![0u8; bytes.len()];
            let len = encode_request(&mut out, request.request_id, &request.body).unwrap();
            prop_assert_eq!(&out[..len], &bytes[..], "one encoding per request");
        }
        if let Ok(reply) = parse_reply(&bytes) {
            let mut out = vec![0u8; 2048];
            let len = encode_reply(&mut out, &reply).unwrap();
            prop_assert_eq!(&out[..len], &bytes[..], "one encoding per reply");
        }
    }

    #[test]
    fn every_valid_request_round_trips(id in any::<u64>(), body in request_body()) {
        let mut out = [0u8; 64];
        let len = encode_request(&mut out, id, &body).unwrap();
        prop_assert_eq!(len, body.kind().size());
        prop_assert_eq!(parse_request(&out[..len]), Ok(Request { request_id: id, body }));
        // The reply kind refuses to be read as a request and the reverse.
        prop_assert!(parse_reply(&out[..len]).is_err());
    }

    #[test]
    fn every_valid_reply_round_trips(id in any::<u64>(), body in reply_body()) {
        let reply = Reply { request_id: id, body };
        let mut out = vec![0u8; 2048];
        let len = encode_reply(&mut out, &reply).unwrap();
        prop_assert_eq!(len, body.kind().size());
        prop_assert_eq!(parse_reply(&out[..len]), Ok(reply));
        prop_assert!(parse_request(&out[..len]).is_err());
    }

    #[test]
    fn placement_checks_never_accept_a_lie(base in any::<u64>(), size in any::<u64>(), decode: bool) {
        let bar = BarPlacement { base, size, memory_decode: decode };
        if check_bar_size(size).is_ok()
            && let Ok(BarState::Decoding { base }) = check_placement(&bar, size)
        {
            prop_assert!(base != 0 && base % size == 0);
            prop_assert!(base.checked_add(size).is_some_and(|end| end <= MAX_GUEST_PHYSICAL_ADDRESS));
        }
        if let Ok(range) = check_reservation(GuestRange { base, size }) {
            prop_assert!(range.base != 0 && range.size != 0);
            prop_assert!(range.base % PAGE == 0 && range.size % PAGE == 0);
            prop_assert!(range.base + range.size <= MAX_GUEST_PHYSICAL_ADDRESS);
        }
    }
}

/// A client in one of several states, with a request and a wait outstanding where allowed;
/// returns the ids a reply could name.
fn client_in(stage: u8) -> (GuestClient, Vec<u64>) {
    let mut out = [0u8; 128];
    let mut reply = vec![0u8; 2048];
    let mut client = GuestClient::new();
    let mut ids = Vec::new();
    let hello = client.hello(&mut out).unwrap().request_id;
    if stage == 0 {
        return (client, vec![hello]);
    }
    let len = encode_hello_reply(&mut reply, hello, &HostInfo::V1).unwrap();
    client.on_reply(&reply[..len]).unwrap();
    let select = client.select_version(&mut out).unwrap().request_id;
    if stage == 1 {
        return (client, vec![select]);
    }
    let len = encode_ack(&mut reply, select, Kind::SelectVersion, 0).unwrap();
    client.on_reply(&reply[..len]).unwrap();
    ids.push(client.wait_event(&mut out).unwrap().request_id);
    let report = DeviceReport {
        instance: WireGuid::from_u128(1),
        segment: 0,
        bus: 0,
        devfn: 0,
        bar_index: 0,
        bar: BarPlacement {
            base: 1 << 32,
            size: 1 << 20,
            memory_decode: true,
        },
    };
    let id = client.report_device(&mut out, &report).unwrap().request_id;
    if stage == 2 {
        ids.push(id);
        return (client, ids);
    }
    let len = encode_ack(&mut reply, id, Kind::ReportDevice, 1).unwrap();
    client.on_reply(&reply[..len]).unwrap();
    ids.push(client.get_layout(&mut out).unwrap().request_id);
    (client, ids)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn the_client_never_panics_and_a_refused_reply_changes_nothing(
        stage in 0u8..4,
        pick in any::<usize>(),
        kind in any_kind(),
        body in proptest::collection::vec(any::<u8>(), 0..1100),
        raw in proptest::collection::vec(any::<u8>(), 0..64),
        use_raw: bool,
    ) {
        let (mut client, ids) = client_in(stage);
        let id = ids[pick % ids.len()];
        let bytes = if use_raw { raw } else { framed(kind, id, &body) };
        let before = client.clone();
        match client.on_reply(&bytes) {
            Err(_) => prop_assert_eq!(&client, &before),
            Ok(_) => {
                // Accepted only if well formed and answering one of the outstanding requests.
                let reply = parse_reply(&bytes).unwrap();
                prop_assert!(ids.contains(&reply.request_id));
            }
        }
    }

    #[test]
    fn the_client_accepts_every_correct_reply_to_its_wait(
        sequence in 1u64..,
        kind in proptest::sample::select(events_1_0()),
        generation in any::<u64>(),
    ) {
        let (mut client, ids) = client_in(3);
        let mut out = [0u8; 48];
        let event = Event { sequence, kind, generation, region: 0, value: 0 };
        let len = encode_event(&mut out, ids[0], &event).unwrap();
        prop_assert_eq!(client.on_reply(&out[..len]), Ok(ClientEvent::Event(event)));
        prop_assert_eq!(client.last_seen(), sequence);
    }
}
