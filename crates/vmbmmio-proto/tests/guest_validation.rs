//! One test per validation rule of the guest control protocol, each with the exact failure.
//!
//! Each test starts from a valid message (whose bytes `guest_golden.rs` pins), breaks one field
//! at its documented offset (`docs/protocol.md`), and checks the error, its code and what the
//! `ERROR` reply would echo. The tests follow the document's check order: length, kind, flags,
//! size, request id, reserved fields, body fields in wire order.

use vmbmmio_proto::guest::*;
use vmbmmio_proto::ioctl::WireGuid;

const ID: u64 = 0x42;
const GIB: u64 = 1 << 30;
const INSTANCE: u128 = 0x01234567_89ab_cdef_0123_456789abcdef;

fn put_u16(buf: &mut [u8], offset: usize, value: u16) {
    buf[offset..offset + 2].copy_from_slice(&value.to_le_bytes());
}

fn put_u32(buf: &mut [u8], offset: usize, value: u32) {
    buf[offset..offset + 4].copy_from_slice(&value.to_le_bytes());
}

fn put_u64(buf: &mut [u8], offset: usize, value: u64) {
    buf[offset..offset + 8].copy_from_slice(&value.to_le_bytes());
}

fn request(body: RequestBody) -> Vec<u8> {
    let mut out = vec![0u8; 256];
    let len = encode_request(&mut out, ID, &body).unwrap();
    out.truncate(len);
    out
}

fn device(base: u64, size: u64, decode: bool) -> DeviceReport {
    DeviceReport {
        instance: WireGuid::from_u128(INSTANCE),
        segment: 0,
        bus: 0,
        devfn: 0,
        bar_index: 2,
        bar: BarPlacement {
            base,
            size,
            memory_decode: decode,
        },
    }
}

fn good_device() -> Vec<u8> {
    request(RequestBody::ReportDevice(device(8 * GIB, GIB, true)))
}

fn reservation(base: u64, size: u64) -> Vec<u8> {
    request(RequestBody::ReportReservation(Some(GuestRange {
        base,
        size,
    })))
}

/// Parses `bytes` and returns the refusal, checking its code.
fn refused(bytes: &[u8], code: ErrorCode) -> RequestError {
    let error = parse_request(bytes).unwrap_err();
    assert_eq!(error.code(), code, "{error:?}");
    error
}

fn fault(bytes: &[u8], code: ErrorCode) -> RequestFault {
    refused(bytes, code).fault
}

// 1. Length.

#[test]
fn a_packet_shorter_than_the_header_is_malformed() {
    for len in [0, 1, 2, 15] {
        let bytes = request(RequestBody::Hello);
        let error = refused(&bytes[..len], ErrorCode::Malformed);
        assert_eq!(error.fault, RequestFault::TooShort { got: len });
        assert_eq!(error.request_id, 0, "no id can be read");
        let kind = if len >= 2 { Kind::Hello.to_u16() } else { 0 };
        assert_eq!(
            error.received_kind, kind,
            "the kind as received, if readable"
        );
    }
}

// 2. Kind.

#[test]
fn an_unknown_kind_is_refused_with_unknown_kind() {
    for kind in [0x0000, 0x0009, 0x00FF, 0x7FFF, 0x8002, 0xFFFF] {
        let mut bytes = request(RequestBody::Hello);
        put_u16(&mut bytes, 0, kind);
        let error = refused(&bytes, ErrorCode::UnknownKind);
        assert_eq!(error.fault, RequestFault::UnknownKind);
        assert_eq!((error.received_kind, error.request_id), (kind, ID));
    }
}

#[test]
fn a_reply_kind_sent_by_the_guest_is_an_unknown_kind() {
    for kind in Kind::ALL.into_iter().filter(|kind| kind.is_reply()) {
        let mut bytes = vec![0u8; kind.size()];
        put_u16(&mut bytes, 0, kind.to_u16());
        put_u32(&mut bytes, 4, kind.size_u32());
        put_u64(&mut bytes, 8, ID);
        let error = refused(&bytes, ErrorCode::UnknownKind);
        assert_eq!(error.received_kind, kind.to_u16());
    }
}

#[test]
fn an_unknown_kind_is_reported_before_a_wrong_size() {
    let mut bytes = vec![0u8; 100];
    put_u16(&mut bytes, 0, 0x0042);
    assert_eq!(
        fault(&bytes, ErrorCode::UnknownKind),
        RequestFault::UnknownKind
    );
}

// 3. Flags.

#[test]
fn header_flags_must_be_zero() {
    for flags in [1, 0x8000, 0xFFFF] {
        let mut bytes = request(RequestBody::Ready);
        put_u16(&mut bytes, 2, flags);
        assert_eq!(
            fault(&bytes, ErrorCode::Malformed),
            RequestFault::FlagsNotZero { got: flags }
        );
    }
}

#[test]
fn flags_are_reported_before_a_wrong_size() {
    let mut bytes = request(RequestBody::Ready);
    put_u16(&mut bytes, 2, 1);
    put_u32(&mut bytes, 4, 99);
    assert_eq!(
        fault(&bytes, ErrorCode::Malformed),
        RequestFault::FlagsNotZero { got: 1 }
    );
}

// 4. Size.

#[test]
fn the_size_field_must_be_the_kinds_size() {
    let mut bytes = request(RequestBody::SelectVersion { version: 1 });
    put_u32(&mut bytes, 4, 16);
    assert_eq!(
        fault(&bytes, ErrorCode::Malformed),
        RequestFault::SizeMismatch {
            expected: 24,
            size_field: 16,
            packet: 24
        }
    );
}

#[test]
fn the_packet_length_must_be_the_kinds_size() {
    // One byte more, with the size field saying so: still not the kind's size.
    let mut bytes = request(RequestBody::Hello);
    bytes.push(0);
    put_u32(&mut bytes, 4, 17);
    assert_eq!(
        fault(&bytes, ErrorCode::Malformed),
        RequestFault::SizeMismatch {
            expected: 16,
            size_field: 17,
            packet: 17
        }
    );
    // A truncated body with a correct size field.
    let bytes = request(RequestBody::WaitEvent { last_seen: 0 });
    assert_eq!(
        fault(&bytes[..20], ErrorCode::Malformed),
        RequestFault::SizeMismatch {
            expected: 24,
            size_field: 24,
            packet: 20
        }
    );
    // A packet of the largest allowed size is still one message too long.
    let mut big = request(RequestBody::Hello);
    big.resize(MAX_PACKET_SIZE as usize, 0);
    assert!(matches!(
        fault(&big, ErrorCode::Malformed),
        RequestFault::SizeMismatch { packet: 4096, .. }
    ));
}

// 5. Request id.

#[test]
fn a_request_id_not_above_the_last_accepted_is_replayed() {
    let bytes = request(RequestBody::Hello);
    for last in [ID, ID + 1, u64::MAX] {
        let error = parse_request_after(&bytes, last).unwrap_err();
        assert_eq!(
            error.fault,
            RequestFault::Replayed {
                last_accepted: last
            }
        );
        assert_eq!(error.code(), ErrorCode::Replayed);
        assert_eq!(error.request_id, ID);
    }
    assert!(parse_request_after(&bytes, ID - 1).is_ok());
}

#[test]
fn request_id_zero_is_never_accepted() {
    let mut out = [0u8; 16];
    encode_request(&mut out, 0, &RequestBody::Hello).unwrap();
    assert_eq!(
        parse_request_after(&out, 0).unwrap_err().fault,
        RequestFault::Replayed { last_accepted: 0 }
    );
}

#[test]
fn replay_is_reported_before_reserved_fields_and_after_the_size() {
    let mut bytes = request(RequestBody::SelectVersion { version: 1 });
    put_u32(&mut bytes, 20, 1);
    assert_eq!(
        parse_request_after(&bytes, ID).unwrap_err().fault,
        RequestFault::Replayed { last_accepted: ID }
    );
    put_u32(&mut bytes, 4, 99);
    assert!(matches!(
        parse_request_after(&bytes, ID).unwrap_err().fault,
        RequestFault::SizeMismatch { .. }
    ));
}

// 6. Reserved fields.

#[test]
fn select_version_reserved_must_be_zero() {
    let mut bytes = request(RequestBody::SelectVersion { version: 1 });
    put_u32(&mut bytes, 20, 7);
    assert_eq!(
        fault(&bytes, ErrorCode::Malformed),
        RequestFault::ReservedNotZero { offset: 20, got: 7 }
    );
}

#[test]
fn report_reservation_reserved_must_be_zero_and_comes_before_the_flags() {
    let mut bytes = reservation(0xF800_0000, 0x10_0000);
    put_u32(&mut bytes, 20, 1);
    put_u32(&mut bytes, 16, 0x80);
    assert_eq!(
        fault(&bytes, ErrorCode::Malformed),
        RequestFault::ReservedNotZero { offset: 20, got: 1 }
    );
}

#[test]
fn report_device_reserved_must_be_zero_and_comes_before_the_bar_index() {
    let mut bytes = good_device();
    put_u16(&mut bytes, 38, 0x100);
    bytes[36] = 9;
    assert_eq!(
        fault(&bytes, ErrorCode::Malformed),
        RequestFault::ReservedNotZero {
            offset: 38,
            got: 0x100
        }
    );
}

// 7. Body fields: REPORT_RESERVATION.

#[test]
fn reservation_flags_other_than_present_are_malformed() {
    for flags in [2, 3, 0x8000_0001] {
        let mut bytes = reservation(0xF800_0000, 0x10_0000);
        put_u32(&mut bytes, 16, flags);
        assert_eq!(
            fault(&bytes, ErrorCode::Malformed),
            RequestFault::ReservationFlags { got: flags }
        );
    }
}

#[test]
fn an_absent_reservation_must_have_zero_base_and_size() {
    for (base, size) in [(0x1000, 0), (0, 0x1000), (1, 1)] {
        let mut bytes = request(RequestBody::ReportReservation(None));
        put_u64(&mut bytes, 24, base);
        put_u64(&mut bytes, 32, size);
        assert_eq!(
            fault(&bytes, ErrorCode::Malformed),
            RequestFault::AbsentReservationNotZero { base, size }
        );
    }
    assert_eq!(
        parse_request(&request(RequestBody::ReportReservation(None)))
            .unwrap()
            .body,
        RequestBody::ReportReservation(None)
    );
}

fn bad_reservation(base: u64, size: u64) -> PlacementError {
    match fault(&reservation(base, size), ErrorCode::BadPlacement) {
        RequestFault::BadReservation(error) => error,
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_present_reservation_must_not_be_empty() {
    let range = GuestRange {
        base: 0xF800_0000,
        size: 0,
    };
    assert_eq!(
        bad_reservation(range.base, range.size),
        PlacementError::BadReservation { reservation: range }
    );
}

#[test]
fn a_present_reservation_must_not_overflow() {
    let range = GuestRange {
        base: u64::MAX - 0xFFF,
        size: 0x2000,
    };
    assert_eq!(
        bad_reservation(range.base, range.size),
        PlacementError::BadReservation { reservation: range }
    );
}

#[test]
fn a_present_reservation_must_not_be_at_zero() {
    let range = GuestRange {
        base: 0,
        size: 0x10_0000,
    };
    assert_eq!(
        bad_reservation(range.base, range.size),
        PlacementError::ReservationUnassigned { reservation: range }
    );
}

#[test]
fn a_present_reservation_must_be_page_aligned() {
    for (base, size) in [(0xF800_0800, 0x10_0000), (0xF800_0000, 0x10_0800)] {
        assert_eq!(
            bad_reservation(base, size),
            PlacementError::ReservationMisaligned {
                reservation: GuestRange { base, size }
            }
        );
    }
}

#[test]
fn a_present_reservation_must_end_below_2_pow_52() {
    let (base, size) = (MAX_GUEST_PHYSICAL_ADDRESS - 0x1000, 0x2000);
    assert_eq!(
        bad_reservation(base, size),
        PlacementError::ReservationBeyondAddressSpace {
            reservation: GuestRange { base, size }
        }
    );
    // Ending exactly at 2^52 is fine.
    assert!(parse_request(&reservation(MAX_GUEST_PHYSICAL_ADDRESS - 0x2000, 0x2000)).is_ok());
}

// 7. Body fields: REPORT_DEVICE.

#[test]
fn bar_index_above_5_is_malformed() {
    for index in 0..=5 {
        let mut bytes = good_device();
        bytes[36] = index;
        assert!(parse_request(&bytes).is_ok(), "{index}");
    }
    for index in [6, 7, 0xFF] {
        let mut bytes = good_device();
        bytes[36] = index;
        assert_eq!(
            fault(&bytes, ErrorCode::Malformed),
            RequestFault::BadBarIndex { got: index }
        );
    }
}

#[test]
fn device_flags_other_than_decode_on_are_malformed_and_come_before_the_bar() {
    for flags in [2, 3, 0x80] {
        let mut bytes = good_device();
        bytes[37] = flags;
        put_u64(&mut bytes, 40, 0);
        assert_eq!(
            fault(&bytes, ErrorCode::Malformed),
            RequestFault::DeviceFlags { got: flags }
        );
    }
}

fn bad_bar(base: u64, size: u64, decode: bool) -> PlacementError {
    match fault(
        &request(RequestBody::ReportDevice(device(base, size, decode))),
        ErrorCode::BadPlacement,
    ) {
        RequestFault::BadPlacement(error) => error,
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_bar_size_must_be_a_power_of_two_of_at_least_a_page() {
    for size in [0, 0x800, 3 * GIB, GIB + 0x1000] {
        for decode in [false, true] {
            assert_eq!(
                bad_bar(8 * GIB, size, decode),
                PlacementError::BadBarSize { size }
            );
        }
    }
}

#[test]
fn decode_on_with_the_bar_at_zero_is_a_bad_placement() {
    assert_eq!(bad_bar(0, GIB, true), PlacementError::Unassigned);
}

#[test]
fn decode_on_with_a_base_not_aligned_to_the_size_is_a_bad_placement() {
    for base in [GIB / 2, GIB + 0x1000, 3 * GIB / 2] {
        assert_eq!(
            bad_bar(base, GIB, true),
            PlacementError::Misaligned {
                base,
                alignment: GIB
            }
        );
    }
}

#[test]
fn decode_on_past_2_pow_52_is_a_bad_placement() {
    let base = MAX_GUEST_PHYSICAL_ADDRESS;
    assert_eq!(
        bad_bar(base, GIB, true),
        PlacementError::BeyondAddressSpace { base, size: GIB }
    );
    // The last aligned slot below 2^52 is fine.
    let last = MAX_GUEST_PHYSICAL_ADDRESS - GIB;
    assert!(parse_request(&request(RequestBody::ReportDevice(device(last, GIB, true)))).is_ok());
    // A base that overflows.
    let base = 1u64 << 63;
    assert_eq!(
        bad_bar(base, 1 << 63, true),
        PlacementError::BeyondAddressSpace {
            base,
            size: 1 << 63
        }
    );
}

#[test]
fn decode_off_accepts_any_base() {
    for base in [0, 1, u64::MAX] {
        let parsed = parse_request(&request(RequestBody::ReportDevice(device(
            base, GIB, false,
        ))))
        .unwrap();
        let RequestBody::ReportDevice(report) = parsed.body else {
            panic!()
        };
        assert_eq!(report.bar_state(), BarState::DecodeOff);
    }
}

#[test]
fn a_good_device_report_comes_back_checked() {
    let parsed = parse_request(&good_device()).unwrap();
    assert_eq!(parsed.request_id, ID);
    let RequestBody::ReportDevice(report) = parsed.body else {
        panic!()
    };
    assert_eq!(report.instance.to_u128(), INSTANCE);
    assert_eq!(report.bar_state(), BarState::Decoding { base: 8 * GIB });
}

// The conversation's faults (the engine's) map to their codes.

#[test]
fn every_fault_maps_to_its_code() {
    let placement = PlacementError::Unassigned;
    let cases = [
        (RequestFault::TooShort { got: 0 }, ErrorCode::Malformed),
        (RequestFault::UnknownKind, ErrorCode::UnknownKind),
        (RequestFault::FlagsNotZero { got: 1 }, ErrorCode::Malformed),
        (
            RequestFault::SizeMismatch {
                expected: 16,
                size_field: 0,
                packet: 0,
            },
            ErrorCode::Malformed,
        ),
        (
            RequestFault::Replayed { last_accepted: 1 },
            ErrorCode::Replayed,
        ),
        (
            RequestFault::ReservedNotZero { offset: 20, got: 1 },
            ErrorCode::Malformed,
        ),
        (
            RequestFault::ReservationFlags { got: 2 },
            ErrorCode::Malformed,
        ),
        (
            RequestFault::AbsentReservationNotZero { base: 1, size: 0 },
            ErrorCode::Malformed,
        ),
        (
            RequestFault::BadReservation(placement),
            ErrorCode::BadPlacement,
        ),
        (RequestFault::BadBarIndex { got: 6 }, ErrorCode::Malformed),
        (RequestFault::DeviceFlags { got: 2 }, ErrorCode::Malformed),
        (
            RequestFault::BadPlacement(placement),
            ErrorCode::BadPlacement,
        ),
        (
            RequestFault::UnsupportedVersion { version: 2 },
            ErrorCode::UnsupportedVersion,
        ),
        (RequestFault::OutOfOrder, ErrorCode::OutOfOrder),
        (RequestFault::NotPaired, ErrorCode::NotPaired),
        (RequestFault::Busy, ErrorCode::Busy),
        (RequestFault::ChannelClosing, ErrorCode::ChannelClosing),
    ];
    for (fault, code) in cases {
        assert_eq!(fault.code(), code, "{fault:?}");
    }
    let packet = good_device();
    let framed = frame_request(&packet).unwrap();
    let busy = framed.refuse(RequestFault::Busy);
    assert_eq!(
        (busy.received_kind, busy.request_id, busy.counted()),
        (Kind::ReportDevice.to_u16(), ID, false)
    );
    let parsed = parse_request(&good_device()).unwrap();
    let not_paired = parsed.refuse(RequestFault::NotPaired);
    assert!(not_paired.counted());
    assert_eq!(not_paired.received_kind, Kind::ReportDevice.to_u16());
}

// Replies: the guest's checks.

fn reply_bytes(encode: impl FnOnce(&mut [u8]) -> Result<usize, EncodeError>) -> Vec<u8> {
    let mut out = vec![0u8; 2048];
    let len = encode(&mut out).unwrap();
    out.truncate(len);
    out
}

fn hello_reply() -> Vec<u8> {
    reply_bytes(|out| encode_hello_reply(out, ID, &HostInfo::V1))
}

fn reply_error(bytes: &[u8]) -> ReplyError {
    parse_reply(bytes).unwrap_err()
}

#[test]
fn a_reply_shorter_than_the_header_is_refused() {
    for len in [0, 8, 15] {
        assert_eq!(
            reply_error(&hello_reply()[..len]),
            ReplyError::TooShort { got: len }
        );
    }
}

#[test]
fn a_request_kind_or_unknown_kind_is_not_a_reply() {
    for kind in [0x0001, 0x0008, 0x8002, 0x80FE, 0] {
        let mut bytes = hello_reply();
        put_u16(&mut bytes, 0, kind);
        assert_eq!(reply_error(&bytes), ReplyError::NotAReply { kind });
    }
}

#[test]
fn reply_flags_and_size_are_checked_in_order() {
    let mut bytes = hello_reply();
    put_u16(&mut bytes, 2, 4);
    put_u32(&mut bytes, 4, 3);
    assert_eq!(reply_error(&bytes), ReplyError::FlagsNotZero { got: 4 });
    put_u16(&mut bytes, 2, 0);
    assert_eq!(
        reply_error(&bytes),
        ReplyError::SizeMismatch {
            expected: 48,
            size_field: 3,
            packet: 48
        }
    );
    let bytes = hello_reply();
    assert_eq!(
        reply_error(&bytes[..47]),
        ReplyError::SizeMismatch {
            expected: 48,
            size_field: 48,
            packet: 47
        }
    );
}

#[test]
fn every_reserved_field_of_every_reply_must_be_zero() {
    let ack = reply_bytes(|out| encode_ack(out, ID, Kind::Ready, 1));
    let layout = reply_bytes(|out| encode_layout(out, ID, 1, GIB, &[]));
    let event = reply_bytes(|out| {
        encode_event(
            out,
            ID,
            &Event {
                sequence: 1,
                kind: EventKind::LayoutChanged,
                generation: 1,
                region: 0,
                value: 0,
            },
        )
    });
    let error = reply_bytes(|out| encode_error(out, ID, ErrorCode::Busy, 8, 16));
    let hello = hello_reply();
    let cases: [(&Vec<u8>, &[usize]); 5] = [
        (&hello, &[36, 40, 47]),
        (&ack, &[18, 20]),
        (&layout, &[36]),
        (&event, &[28, 40]),
        (&error, &[22, 28]),
    ];
    for (message, offsets) in cases {
        for &offset in offsets {
            let mut bytes = message.clone();
            bytes[offset] = 1;
            let field_start = match offset {
                47 => 40,
                other => other,
            };
            let got = 1u64 << (8 * (offset - field_start));
            assert_eq!(
                reply_error(&bytes),
                ReplyError::ReservedNotZero {
                    offset: field_start,
                    got
                },
                "offset {offset}"
            );
        }
    }
}

#[test]
fn hello_reply_values_are_checked() {
    let cases: [(usize, u32, ReplyError); 6] = [
        (
            16,
            0,
            ReplyError::BadVersionRange {
                min: 0,
                max: 0x1_0000,
            },
        ),
        (
            16,
            0x2_0000,
            ReplyError::BadVersionRange {
                min: 0x2_0000,
                max: 0x1_0000,
            },
        ),
        (24, 1063, ReplyError::PacketSizeTooSmall { got: 1063 }),
        (28, 0, ReplyError::BadMaxRegions { got: 0 }),
        (28, 17, ReplyError::BadMaxRegions { got: 17 }),
        (32, 0, ReplyError::ZeroErrorLimit),
    ];
    for (offset, value, expected) in cases {
        let mut bytes = hello_reply();
        put_u32(&mut bytes, offset, value);
        assert_eq!(reply_error(&bytes), expected);
        // The host's encoder refuses the same values.
        let parsed = HostInfo {
            min_version: if offset == 16 { value } else { 0x1_0000 },
            max_packet_size: if offset == 24 { value } else { 4096 },
            max_regions: if offset == 28 { value } else { 16 },
            error_limit: if offset == 32 { value } else { 16 },
            ..HostInfo::V1
        };
        let mut out = [0u8; 48];
        assert_eq!(
            encode_hello_reply(&mut out, ID, &parsed),
            Err(EncodeError::BadHostInfo)
        );
    }
}

#[test]
fn an_ack_must_name_a_kind_answered_with_ack() {
    for kind in [0x0001, 0x0007, 0x0008, 0x8000, 0x0009, 0] {
        let mut bytes = reply_bytes(|out| encode_ack(out, ID, Kind::Ready, 1));
        put_u16(&mut bytes, 16, kind);
        assert_eq!(reply_error(&bytes), ReplyError::NotAcked { got: kind });
    }
    let mut out = [0u8; 32];
    for kind in [Kind::Hello, Kind::GetLayout, Kind::WaitEvent, Kind::Ack] {
        assert_eq!(
            encode_ack(&mut out, ID, kind, 0),
            Err(EncodeError::NotAcked { kind })
        );
    }
}

fn region(id: u32, offset_pages: u64, length_pages: u64) -> Region {
    Region {
        id,
        access: RegionAccess::ReadWrite,
        state: RegionState::Unmapped,
        offset_pages,
        length_pages,
        name: RegionName::new("r").unwrap(),
    }
}

fn layout_with(regions: &[Region]) -> Vec<u8> {
    reply_bytes(|out| encode_layout(out, ID, 3, GIB, regions))
}

/// Offset of `regions[index]` in LAYOUT.
fn entry(index: usize) -> usize {
    40 + 64 * index
}

#[test]
fn a_layout_bar_size_must_be_a_power_of_two_of_at_least_a_page() {
    for size in [0, 0x800, 3 * GIB] {
        let mut bytes = layout_with(&[]);
        put_u64(&mut bytes, 24, size);
        assert_eq!(reply_error(&bytes), ReplyError::BadBarSize { got: size });
        let mut out = vec![0u8; 1064];
        assert_eq!(
            encode_layout(&mut out, ID, 1, size, &[]),
            Err(EncodeError::BadBarSize { got: size })
        );
    }
}

#[test]
fn a_layout_has_at_most_16_regions() {
    let mut bytes = layout_with(&[]);
    put_u32(&mut bytes, 32, 17);
    assert_eq!(reply_error(&bytes), ReplyError::TooManyRegions { got: 17 });
    let regions: Vec<_> = (0..17).map(|i| region(i % 16, i as u64, 1)).collect();
    let mut out = vec![0u8; 1064];
    assert_eq!(
        encode_layout(&mut out, ID, 1, GIB, &regions),
        Err(EncodeError::TooManyRegions { got: 17 })
    );
    assert!(encode_layout(&mut out, ID, 1, GIB, &regions[..16]).is_ok());
    assert!(parse_reply(&out).is_ok());
}

#[test]
fn unused_region_entries_must_be_zero() {
    let mut bytes = layout_with(&[region(0, 0, 1)]);
    bytes[entry(5) + 63] = 1;
    assert_eq!(
        reply_error(&bytes),
        ReplyError::UnusedRegionNotZero { index: 5 }
    );
    // Lowering the count makes a used entry unused.
    let mut bytes = layout_with(&[region(0, 0, 1), region(1, 1, 1)]);
    put_u32(&mut bytes, 32, 1);
    assert_eq!(
        reply_error(&bytes),
        ReplyError::UnusedRegionNotZero { index: 1 }
    );
}

fn region_fault(bytes: &[u8]) -> (usize, RegionFault) {
    match reply_error(bytes) {
        ReplyError::BadRegion { index, fault } => (index, fault),
        other => panic!("{other:?}"),
    }
}

#[test]
fn region_reserved_fields_must_be_zero() {
    for (offset, field) in [(6, 6), (7, 6), (56, 56), (63, 56)] {
        let mut bytes = layout_with(&[region(0, 0, 1), region(1, 1, 1)]);
        bytes[entry(1) + offset] = 1;
        assert_eq!(
            region_fault(&bytes),
            (1, RegionFault::ReservedNotZero { offset: field })
        );
    }
}

#[test]
fn region_access_and_state_must_be_known() {
    for access in [0, 3, 0xFF] {
        let mut bytes = layout_with(&[region(0, 0, 1)]);
        bytes[entry(0) + 4] = access;
        assert_eq!(
            region_fault(&bytes),
            (0, RegionFault::BadAccess { got: access })
        );
    }
    for state in [3, 0xFF] {
        let mut bytes = layout_with(&[region(0, 0, 1)]);
        bytes[entry(0) + 5] = state;
        assert_eq!(
            region_fault(&bytes),
            (0, RegionFault::BadState { got: state })
        );
    }
}

#[test]
fn region_ids_must_be_below_16() {
    let mut bytes = layout_with(&[region(0, 0, 1)]);
    put_u32(&mut bytes, entry(0), 16);
    assert_eq!(
        region_fault(&bytes),
        (0, RegionFault::IdOutOfRange { got: 16 })
    );
    let mut out = vec![0u8; 1064];
    assert_eq!(
        encode_layout(&mut out, ID, 1, GIB, &[region(16, 0, 1)]),
        Err(EncodeError::BadRegion {
            index: 0,
            fault: RegionFault::IdOutOfRange { got: 16 }
        })
    );
}

#[test]
fn regions_must_be_non_empty_and_inside_the_bar() {
    let pages = GIB / 4096;
    let cases = [
        (0, 0, RegionFault::Empty),
        (
            pages,
            1,
            RegionFault::OutsideBar {
                offset_pages: pages,
                length_pages: 1,
            },
        ),
        (
            1,
            pages,
            RegionFault::OutsideBar {
                offset_pages: 1,
                length_pages: pages,
            },
        ),
        (
            u64::MAX,
            2,
            RegionFault::OutsideBar {
                offset_pages: u64::MAX,
                length_pages: 2,
            },
        ),
    ];
    for (offset_pages, length_pages, fault) in cases {
        let mut bytes = layout_with(&[region(0, 0, 1)]);
        put_u64(&mut bytes, entry(0) + 8, offset_pages);
        put_u64(&mut bytes, entry(0) + 16, length_pages);
        assert_eq!(region_fault(&bytes), (0, fault));
        let mut out = vec![0u8; 1064];
        assert_eq!(
            encode_layout(
                &mut out,
                ID,
                1,
                GIB,
                &[region(0, offset_pages, length_pages)]
            ),
            Err(EncodeError::BadRegion { index: 0, fault })
        );
    }
    // The whole BAR is fine.
    assert!(parse_reply(&layout_with(&[region(0, 0, pages)])).is_ok());
}

#[test]
fn region_names_are_nul_padded_utf8() {
    let name_at = entry(0) + 24;
    // Text after the padding.
    let mut bytes = layout_with(&[region(0, 0, 1)]);
    bytes[name_at + 5] = b'x';
    assert_eq!(
        region_fault(&bytes),
        (0, RegionFault::BadName(NameError::InteriorNul { at: 1 }))
    );
    // Not UTF-8.
    let mut bytes = layout_with(&[region(0, 0, 1)]);
    bytes[name_at] = 0xFF;
    assert_eq!(
        region_fault(&bytes),
        (0, RegionFault::BadName(NameError::NotUtf8))
    );
    // All 32 bytes used, no NUL: fine.
    let mut bytes = layout_with(&[region(0, 0, 1)]);
    bytes[name_at..name_at + 32].fill(b'a');
    let Ok(Reply {
        body: ReplyBody::Layout(layout),
        ..
    }) = parse_reply(&bytes)
    else {
        panic!()
    };
    assert_eq!(layout.regions()[0].name.as_str(), "a".repeat(32));
}

#[test]
fn region_name_construction_refuses_long_names_and_nul() {
    assert!(
        RegionName::new(&"é".repeat(16)).is_ok(),
        "32 bytes of UTF-8"
    );
    assert_eq!(
        RegionName::new(&"a".repeat(33)),
        Err(NameError::TooLong { len: 33 })
    );
    assert_eq!(
        RegionName::new("ab\0c"),
        Err(NameError::InteriorNul { at: 2 })
    );
    assert_eq!(
        RegionName::new("ab\0"),
        Err(NameError::InteriorNul { at: 2 })
    );
    assert_eq!(
        region_name(&"a".repeat(40)),
        Err(EncodeError::BadName(NameError::TooLong { len: 40 }))
    );
    assert!(RegionName::new("").unwrap().is_empty());
}

#[test]
fn event_sequence_zero_and_unknown_events_are_refused() {
    let event = Event {
        sequence: 1,
        kind: EventKind::RegionsMapped,
        generation: 1,
        region: 0,
        value: 0,
    };
    let good = reply_bytes(|out| encode_event(out, ID, &event));
    let mut bytes = good.clone();
    put_u64(&mut bytes, 16, 0);
    assert_eq!(reply_error(&bytes), ReplyError::ZeroSequence);
    for kind in [0, 6, u32::MAX] {
        let mut bytes = good.clone();
        put_u32(&mut bytes, 24, kind);
        assert_eq!(reply_error(&bytes), ReplyError::BadEventKind { got: kind });
    }
    let mut out = [0u8; 48];
    assert_eq!(
        encode_event(
            &mut out,
            ID,
            &Event {
                sequence: 0,
                ..event
            }
        ),
        Err(EncodeError::ZeroSequence)
    );
}

#[test]
fn error_codes_must_be_known() {
    for code in [0, 10, u32::MAX] {
        let mut bytes = reply_bytes(|out| encode_error(out, ID, ErrorCode::Busy, 8, 16));
        put_u32(&mut bytes, 16, code);
        assert_eq!(reply_error(&bytes), ReplyError::BadErrorCode { got: code });
    }
}

#[test]
fn encoders_refuse_a_short_output_and_write_nothing() {
    let mut out = [0xAAu8; 47];
    assert_eq!(
        encode_hello_reply(&mut out, ID, &HostInfo::V1),
        Err(EncodeError::OutputTooSmall {
            needed: 48,
            got: 47
        })
    );
    assert!(out.iter().all(|&b| b == 0xAA));
    let mut out = vec![0xAAu8; 1063];
    assert_eq!(
        encode_layout(&mut out, ID, 1, GIB, &[]),
        Err(EncodeError::OutputTooSmall {
            needed: 1064,
            got: 1063
        })
    );
    assert!(out.iter().all(|&b| b == 0xAA));
    let mut out = [0u8; 15];
    assert_eq!(
        encode_request(&mut out, ID, &RequestBody::Hello),
        Err(EncodeError::OutputTooSmall {
            needed: 16,
            got: 15
        })
    );
}
