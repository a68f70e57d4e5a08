//! Property tests of the IOCTL interface: no input makes a parser panic, and what a builder or
//! encoder produces parses back to the same values.

use core::num::NonZeroU64;

use proptest::prelude::*;
use vmbmmio_proto::PAGE_SIZE;
use vmbmmio_proto::ioctl::*;
use zerocopy::IntoBytes;

/// Runs every parser of the interface on `bytes`; each must return, not panic.
fn parse_with_every_parser(bytes: &[u8]) {
    let _ = parse_open_session(bytes);
    let _ = parse_get_region_section(bytes);
    let _ = parse_report_mapping(bytes);
    let _ = parse_query_status(bytes);
    let _ = parse_close_session(bytes);
    let _ = parse_query_driver(bytes);
    let _ = parse_open_session_reply(bytes);
    let _ = parse_get_region_section_reply(bytes);
    let _ = parse_report_mapping_reply(bytes);
    let _ = parse_query_status_reply(bytes);
    let _ = parse_close_session_reply(bytes);
    let _ = parse_query_driver_reply(bytes);
}

/// `len` random bytes with a correct header for `kind` in front (when they fit), so the random
/// part reaches the body checks instead of failing at the magic.
fn framed(kind: MessageKind, size: usize, body: &[u8]) -> Vec<u8> {
    let mut bytes = MessageHeader::new(kind, size as u32).as_bytes().to_vec();
    bytes.extend_from_slice(body);
    bytes.resize(size, 0);
    bytes
}

/// Size of the message of `kind`.
fn size_of_kind(kind: MessageKind) -> usize {
    IoctlCode::ALL
        .iter()
        .find_map(|code| {
            if code.request_kind() == kind {
                Some(code.request_size())
            } else if code.reply_kind() == kind {
                Some(code.reply_size())
            } else {
                None
            }
        })
        .unwrap()
}

fn non_nil_guid() -> impl Strategy<Value = WireGuid> {
    (1u128..=u128::MAX).prop_map(WireGuid::from_u128)
}

fn target() -> impl Strategy<Value = Target> {
    prop_oneof![
        Just(Target::Loopback),
        (1u64..=u64::MAX).prop_map(|h| Target::VmbusHandle(NonZeroU64::new(h).unwrap())),
    ]
}

/// 1..=16 regions of at most 2 GiB each: never more than 32 GiB in total.
fn regions() -> impl Strategy<Value = Vec<RegionRequest>> {
    let size = prop_oneof![1u64..=3 * PAGE_SIZE, 1u64..=(2u64 << 30)];
    proptest::collection::vec(
        (size, any::<bool>()).prop_map(|(size, guest_writable)| RegionRequest {
            size,
            guest_writable,
        }),
        1..=MAX_REGIONS,
    )
}

fn mapping_state() -> impl Strategy<Value = MappingState> {
    (0u32..4).prop_map(|v| MappingState::from_u32(v).unwrap())
}

fn session_state() -> impl Strategy<Value = SessionState> {
    (0u32..5).prop_map(|v| SessionState::from_u32(v).unwrap())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        parse_with_every_parser(&bytes);
    }

    #[test]
    fn random_bodies_behind_a_valid_header_never_panic(
        kind_index in 0usize..MessageKind::ALL.len(),
        body in proptest::collection::vec(any::<u8>(), 0..400),
    ) {
        let kind = MessageKind::ALL[kind_index];
        let bytes = framed(kind, size_of_kind(kind), &body);
        parse_with_every_parser(&bytes);
    }

    #[test]
    fn sparse_bodies_never_panic(
        kind_index in 0usize..MessageKind::ALL.len(),
        pokes in proptest::collection::vec((16usize..336, any::<u8>()), 0..8),
    ) {
        // Mostly-zero bodies with a few set bytes reach deeper rules than uniform noise.
        let kind = MessageKind::ALL[kind_index];
        let size = size_of_kind(kind);
        let mut bytes = framed(kind, size, &[]);
        for (offset, value) in pokes {
            if let Some(byte) = bytes.get_mut(offset) {
                *byte = value;
            }
        }
        parse_with_every_parser(&bytes);
    }

    #[test]
    fn accepted_open_session_is_canonical(
        target in target(),
        interface_type in non_nil_guid(),
        interface_instance in non_nil_guid(),
        regions in regions(),
        pokes in proptest::collection::vec((0usize..336, any::<u8>()), 0..4),
    ) {
        // A valid request with a few bytes changed. Whatever the parser accepts, building from
        // the parsed values gives back the same bytes: the validated type loses nothing, and
        // no byte the parser ignores (reserved fields, unused entries) can be non-zero.
        let request =
            OpenSessionRequest::build(target, interface_type, interface_instance, &regions)
                .unwrap();
        let mut bytes = request.as_bytes().to_vec();
        for &(offset, value) in &pokes {
            bytes[offset] = value;
        }
        match parse_open_session(&bytes) {
            Ok(params) => {
                let regions: Vec<RegionRequest> = params
                    .regions()
                    .iter()
                    .map(|r| RegionRequest {
                        size: r.requested_size,
                        guest_writable: r.guest_writable,
                    })
                    .collect();
                let rebuilt = OpenSessionRequest::build(
                    params.target(),
                    params.interface_type(),
                    params.interface_instance(),
                    &regions,
                )
                .unwrap();
                prop_assert_eq!(rebuilt.as_bytes(), bytes.as_slice());
            }
            Err(_) => prop_assert!(bytes != request.as_bytes(), "valid request rejected"),
        }
    }

    #[test]
    fn open_session_round_trips(
        target in target(),
        interface_type in non_nil_guid(),
        interface_instance in non_nil_guid(),
        regions in regions(),
    ) {
        let request =
            OpenSessionRequest::build(target, interface_type, interface_instance, &regions)
                .unwrap();
        let mut out = [0u8; 336];
        prop_assert_eq!(request.encode(&mut out), Ok(336));
        let params = parse_open_session(&out).unwrap();
        prop_assert_eq!(params.target(), target);
        prop_assert_eq!(params.interface_type(), interface_type);
        prop_assert_eq!(params.interface_instance(), interface_instance);
        prop_assert_eq!(params.regions().len(), regions.len());
        let mut total = 0;
        for (parsed, sent) in params.regions().iter().zip(&regions) {
            prop_assert_eq!(parsed.requested_size, sent.size);
            prop_assert_eq!(parsed.guest_writable, sent.guest_writable);
            prop_assert!(parsed.size >= sent.size && parsed.size - sent.size < PAGE_SIZE);
            prop_assert_eq!(parsed.size % PAGE_SIZE, 0);
            total += parsed.size;
        }
        prop_assert_eq!(params.total_size(), total);
    }

    #[test]
    fn guid_round_trips(value in any::<u128>()) {
        let guid = WireGuid::from_u128(value);
        prop_assert_eq!(guid.to_u128(), value);
        // Data1..Data3 are little-endian, Data4 is in text order.
        let canonical = value.to_be_bytes();
        let wire = guid.as_bytes();
        prop_assert_eq!(&wire[0..4], &[canonical[3], canonical[2], canonical[1], canonical[0]]);
        prop_assert_eq!(&wire[4..6], &[canonical[5], canonical[4]]);
        prop_assert_eq!(&wire[6..8], &[canonical[7], canonical[6]]);
        prop_assert_eq!(&wire[8..16], &canonical[8..16]);
    }

    #[test]
    fn get_region_section_round_trips(index in 0u32..16, write in any::<bool>()) {
        let access = if write { SectionAccess::ReadWrite } else { SectionAccess::Read };
        let request = GetRegionSectionRequest::build(index, access).unwrap();
        prop_assert_eq!(
            parse_get_region_section(request.as_bytes()),
            Ok(GetRegionSectionParams { region_index: index, access })
        );
    }

    #[test]
    fn report_mapping_round_trips(index in 0u32..16, state in mapping_state(), hresult in any::<i32>()) {
        match ReportMappingRequest::build(index, state, hresult) {
            Ok(request) => prop_assert_eq!(
                parse_report_mapping(request.as_bytes()),
                Ok(ReportMappingParams { region_index: index, state, hresult })
            ),
            Err(error) => {
                prop_assert!(!state.allows_hresult(hresult));
                prop_assert_eq!(error, ProtoError::HresultContradictsState { state, hresult });
            }
        }
    }

    #[test]
    fn session_opened_round_trips(
        session_id in any::<u64>(),
        pages in proptest::collection::vec(1u64..=1024, 1..=MAX_REGIONS),
        gaps in proptest::collection::vec(0u64..=4, MAX_REGIONS),
        optional in any::<u16>(),
    ) {
        // Ascending, page-aligned regions with random gaps, in the smallest power-of-two BAR.
        let mut regions = Vec::new();
        let mut offset = 0;
        for (pages, gap) in pages.iter().zip(&gaps) {
            offset += gap * PAGE_SIZE;
            regions.push(BarRegion { offset, size: pages * PAGE_SIZE });
            offset += pages * PAGE_SIZE;
        }
        let bar_size = offset.next_power_of_two();
        let mmio_megabytes = bar_size.div_ceil(MIB) as u16;
        let opened =
            SessionOpened::new(session_id, mmio_megabytes, optional, bar_size, &regions).unwrap();
        let mut out = vec![0u8; 300];
        prop_assert_eq!(opened.encode(&mut out), Ok(296));
        let parsed = parse_open_session_reply(&out[..296]).unwrap();
        prop_assert_eq!(parsed, opened);
        prop_assert_eq!(parsed.regions(), regions.as_slice());
    }

    #[test]
    fn region_section_round_trips(handle in 1u64..=u64::MAX, pages in 1u64..=(1 << 20), at in 0u64..(1 << 20)) {
        let section = RegionSection::new(handle, pages * PAGE_SIZE, at * PAGE_SIZE).unwrap();
        let mut out = [0u8; 40];
        prop_assert_eq!(section.encode(&mut out), Ok(40));
        prop_assert_eq!(parse_get_region_section_reply(&out), Ok(section));
    }

    #[test]
    fn session_status_round_trips(state in session_state(), counters in any::<[u64; 5]>()) {
        let status = SessionStatus {
            state,
            counters: StatusCounters {
                sections_created: counters[0],
                section_handles_issued: counters[1],
                regions_mapped: counters[2],
                guest_packets: counters[3],
                protocol_errors: counters[4],
            },
        };
        let mut out = [0u8; 128];
        prop_assert_eq!(status.encode(&mut out), Ok(128));
        prop_assert_eq!(parse_query_status_reply(&out), Ok(status));
    }

    #[test]
    fn page_rounding_is_exact_or_none(bytes in any::<u64>()) {
        match round_up_to_page(bytes) {
            Some(rounded) => {
                prop_assert!(rounded >= bytes && rounded - bytes < PAGE_SIZE);
                prop_assert!(is_page_aligned(rounded));
            }
            None => prop_assert!(bytes > u64::MAX - (PAGE_SIZE - 1)),
        }
    }
}
