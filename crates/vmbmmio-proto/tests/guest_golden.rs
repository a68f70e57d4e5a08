//! Golden tests of the guest control protocol: the exact bytes of every message, both
//! directions.
//!
//! Every expected byte string here is written out by hand from the tables of
//! `docs/protocol.md` (little-endian integers, Windows GUID layout), never produced by the code
//! under test. Each test checks both ways: the encoder writes exactly these bytes, and the
//! parser reads them back to the same values. If one fails, the wire format changed: that needs
//! a new protocol version, not a new expected string.

use vmbmmio_proto::guest::*;
use vmbmmio_proto::ioctl::WireGuid;

/// Bytes from a string of hex pairs separated by whitespace.
fn hex(text: &str) -> Vec<u8> {
    text.split_whitespace()
        .map(|pair| u8::from_str_radix(pair, 16).unwrap())
        .collect()
}

/// The request id of every vector: 0x0102030405060708, so byte order shows.
const ID: u64 = 0x0102_0304_0506_0708;
const ID_BYTES: &str = "08 07 06 05 04 03 02 01";

fn encode_req(body: RequestBody) -> Vec<u8> {
    let mut out = [0xAAu8; 128];
    let len = encode_request(&mut out, ID, &body).unwrap();
    out[..len].to_vec()
}

/// Checks a request vector both ways.
fn request_golden(body: RequestBody, expected: &[u8]) {
    assert_eq!(encode_req(body), expected, "{body:?}");
    assert_eq!(
        parse_request(expected),
        Ok(Request {
            request_id: ID,
            body
        })
    );
}

/// Checks a reply vector parses to `body`.
fn reply_parses(bytes: &[u8], body: ReplyBody) {
    assert_eq!(
        parse_reply(bytes),
        Ok(Reply {
            request_id: ID,
            body
        })
    );
}

#[test]
fn hello_is_golden() {
    request_golden(
        RequestBody::Hello,
        &hex(&format!("01 00 00 00 10 00 00 00 {ID_BYTES}")),
    );
}

#[test]
fn select_version_is_golden() {
    request_golden(
        RequestBody::SelectVersion {
            version: PROTOCOL_VERSION_1_0,
        },
        &hex(&format!(
            "02 00 00 00 18 00 00 00 {ID_BYTES}  00 00 01 00  00 00 00 00"
        )),
    );
}

#[test]
fn report_reservation_is_golden() {
    request_golden(
        RequestBody::ReportReservation(Some(GuestRange {
            base: 0xF800_0000,
            size: 0x10_0000,
        })),
        &hex(&format!(
            "03 00 00 00 28 00 00 00 {ID_BYTES}  01 00 00 00  00 00 00 00
             00 00 00 F8 00 00 00 00  00 00 10 00 00 00 00 00"
        )),
    );
    request_golden(
        RequestBody::ReportReservation(None),
        &hex(&format!(
            "03 00 00 00 28 00 00 00 {ID_BYTES}  00 00 00 00  00 00 00 00
             00 00 00 00 00 00 00 00  00 00 00 00 00 00 00 00"
        )),
    );
}

#[test]
fn report_device_is_golden() {
    let report = DeviceReport {
        instance: WireGuid::from_u128(0x01234567_89ab_cdef_0123_456789abcdef),
        segment: 1,
        bus: 2,
        devfn: 0x08,
        bar_index: 2,
        bar: BarPlacement {
            base: 0x2_0000_0000,
            size: 0x4000_0000,
            memory_decode: true,
        },
    };
    request_golden(
        RequestBody::ReportDevice(report),
        &hex(&format!(
            "04 00 00 00 38 00 00 00 {ID_BYTES}
             67 45 23 01 AB 89 EF CD 01 23 45 67 89 AB CD EF
             01 00  02  08  02  01  00 00
             00 00 00 00 02 00 00 00  00 00 00 40 00 00 00 00"
        )),
    );
    let off = DeviceReport {
        bar: BarPlacement {
            base: 0,
            size: 0x4000_0000,
            memory_decode: false,
        },
        ..report
    };
    request_golden(
        RequestBody::ReportDevice(off),
        &hex(&format!(
            "04 00 00 00 38 00 00 00 {ID_BYTES}
             67 45 23 01 AB 89 EF CD 01 23 45 67 89 AB CD EF
             01 00  02  08  02  00  00 00
             00 00 00 00 00 00 00 00  00 00 00 40 00 00 00 00"
        )),
    );
}

#[test]
fn header_only_requests_are_golden() {
    request_golden(
        RequestBody::Ready,
        &hex(&format!("05 00 00 00 10 00 00 00 {ID_BYTES}")),
    );
    request_golden(
        RequestBody::Releasing,
        &hex(&format!("06 00 00 00 10 00 00 00 {ID_BYTES}")),
    );
    request_golden(
        RequestBody::GetLayout,
        &hex(&format!("07 00 00 00 10 00 00 00 {ID_BYTES}")),
    );
}

#[test]
fn wait_event_is_golden() {
    request_golden(
        RequestBody::WaitEvent { last_seen: 3 },
        &hex(&format!(
            "08 00 00 00 18 00 00 00 {ID_BYTES}  03 00 00 00 00 00 00 00"
        )),
    );
}

#[test]
fn hello_reply_is_golden() {
    let expected = hex(&format!(
        "01 80 00 00 30 00 00 00 {ID_BYTES}
         00 00 01 00  00 00 01 00  00 10 00 00  10 00 00 00
         10 00 00 00  00 00 00 00  00 00 00 00 00 00 00 00"
    ));
    let mut out = [0u8; 64];
    let len = encode_hello_reply(&mut out, ID, &HostInfo::V1).unwrap();
    assert_eq!(&out[..len], expected);
    reply_parses(&expected, ReplyBody::HelloReply(HostInfo::V1));
}

#[test]
fn ack_is_golden() {
    let expected = hex(&format!(
        "00 80 00 00 20 00 00 00 {ID_BYTES}
         04 00  00 00  00 00 00 00  07 00 00 00 00 00 00 00"
    ));
    let mut out = [0u8; 64];
    let len = encode_ack(&mut out, ID, Kind::ReportDevice, 7).unwrap();
    assert_eq!(&out[..len], expected);
    reply_parses(
        &expected,
        ReplyBody::Ack(Ack {
            acked_kind: Kind::ReportDevice,
            generation: 7,
        }),
    );
}

#[test]
fn layout_is_golden() {
    let regions = [
        Region {
            id: 0,
            access: RegionAccess::ReadWrite,
            state: RegionState::Mapped,
            offset_pages: 0,
            length_pages: 0x100,
            name: RegionName::new("framebuffer").unwrap(),
        },
        Region {
            id: 1,
            access: RegionAccess::ReadOnly,
            state: RegionState::Intercepted,
            offset_pages: 0x100,
            length_pages: 1,
            name: RegionName::EMPTY,
        },
    ];
    let mut expected = hex(&format!(
        "07 80 00 00 28 04 00 00 {ID_BYTES}
         02 00 00 00 00 00 00 00  00 00 00 40 00 00 00 00  02 00 00 00  00 00 00 00
         00 00 00 00  02  01  00 00  00 00 00 00 00 00 00 00  00 01 00 00 00 00 00 00
         66 72 61 6D 65 62 75 66 66 65 72 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
         00 00 00 00 00 00 00 00
         01 00 00 00  01  02  00 00  00 01 00 00 00 00 00 00  01 00 00 00 00 00 00 00
         00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
         00 00 00 00 00 00 00 00"
    ));
    expected.resize(1064, 0);
    let mut out = vec![0xAAu8; 2000];
    let len = encode_layout(&mut out, ID, 2, 0x4000_0000, &regions).unwrap();
    assert_eq!(len, 1064);
    assert_eq!(&out[..len], expected);
    let layout = Layout::new(2, 0x4000_0000, &regions).unwrap();
    reply_parses(&expected, ReplyBody::Layout(layout));
    let Ok(Reply {
        body: ReplyBody::Layout(parsed),
        ..
    }) = parse_reply(&expected)
    else {
        panic!("not a layout");
    };
    assert_eq!(parsed.regions()[0].name.as_str(), "framebuffer");
    assert_eq!(parsed.regions()[1].name.as_str(), "");
}

#[test]
fn empty_layout_is_golden() {
    let mut expected = hex(&format!(
        "07 80 00 00 28 04 00 00 {ID_BYTES}
         09 00 00 00 00 00 00 00  00 10 00 00 00 00 00 00  00 00 00 00  00 00 00 00"
    ));
    expected.resize(1064, 0);
    let mut out = vec![0xAAu8; 1064];
    let len = encode_layout(&mut out, ID, 9, 0x1000, &[]).unwrap();
    assert_eq!(&out[..len], expected);
    reply_parses(
        &expected,
        ReplyBody::Layout(Layout::new(9, 0x1000, &[]).unwrap()),
    );
}

#[test]
fn event_is_golden() {
    let expected = hex(&format!(
        "08 80 00 00 30 00 00 00 {ID_BYTES}
         01 00 00 00 00 00 00 00  02 00 00 00  00 00 00 00
         02 00 00 00 00 00 00 00  00 00 00 00 00 00 00 00"
    ));
    let event = Event {
        sequence: 1,
        kind: EventKind::RegionsMapped,
        generation: 2,
        region: 0,
        value: 0,
    };
    let mut out = [0u8; 64];
    let len = encode_event(&mut out, ID, &event).unwrap();
    assert_eq!(&out[..len], expected);
    reply_parses(&expected, ReplyBody::Event(event));
}

#[test]
fn error_is_golden() {
    let expected = hex(&format!(
        "FF 80 00 00 20 00 00 00 {ID_BYTES}
         07 00 00 00  04 00  00 00  0F 00 00 00  00 00 00 00"
    ));
    let mut out = [0u8; 64];
    let len = encode_error(&mut out, ID, ErrorCode::BadPlacement, 0x0004, 15).unwrap();
    assert_eq!(&out[..len], expected);
    reply_parses(
        &expected,
        ReplyBody::Error(ErrorInfo {
            code: ErrorCode::BadPlacement,
            request_kind: 0x0004,
            errors_left: 15,
        }),
    );
}

#[test]
fn refusal_of_an_unknown_kind_echoes_it_as_received() {
    // A 16-byte packet of kind 0x1234: the ERROR names 0x1234 and echoes the id.
    let packet = hex(&format!("34 12 00 00 10 00 00 00 {ID_BYTES}"));
    let refusal = parse_request(&packet).unwrap_err();
    assert_eq!(refusal.fault, RequestFault::UnknownKind);
    let mut out = [0u8; 32];
    let len = encode_refusal(&mut out, &refusal, 15).unwrap();
    assert_eq!(
        &out[..len],
        hex(&format!(
            "FF 80 00 00 20 00 00 00 {ID_BYTES}
             02 00 00 00  34 12  00 00  0F 00 00 00  00 00 00 00"
        ))
    );
}

#[test]
fn kinds_codes_and_limits_are_golden() {
    let kinds = [
        (Kind::Hello, 0x0001, 16),
        (Kind::SelectVersion, 0x0002, 24),
        (Kind::ReportReservation, 0x0003, 40),
        (Kind::ReportDevice, 0x0004, 56),
        (Kind::Ready, 0x0005, 16),
        (Kind::Releasing, 0x0006, 16),
        (Kind::GetLayout, 0x0007, 16),
        (Kind::WaitEvent, 0x0008, 24),
        (Kind::HelloReply, 0x8001, 48),
        (Kind::Ack, 0x8000, 32),
        (Kind::Layout, 0x8007, 1064),
        (Kind::Event, 0x8008, 48),
        (Kind::Error, 0x80FF, 32),
    ];
    // Plus version 1.1's DOORBELL (guest_doorbell_golden.rs).
    assert_eq!(Kind::ALL.len(), kinds.len() + 1);
    for (kind, value, size) in kinds {
        assert_eq!(kind.to_u16(), value);
        assert_eq!(Kind::from_u16(value), Some(kind));
        assert_eq!(kind.size(), size);
        assert_eq!(kind.size_u32() as usize, size);
        assert_eq!(kind.is_reply(), value & 0x8000 != 0);
    }
    for (code, value, counted) in [
        (ErrorCode::Malformed, 1, true),
        (ErrorCode::UnknownKind, 2, true),
        (ErrorCode::UnsupportedVersion, 3, true),
        (ErrorCode::OutOfOrder, 4, true),
        (ErrorCode::Replayed, 5, true),
        (ErrorCode::NotPaired, 6, true),
        (ErrorCode::BadPlacement, 7, true),
        (ErrorCode::Busy, 8, false),
        (ErrorCode::ChannelClosing, 9, false),
    ] {
        assert_eq!(code.to_u32(), value);
        assert_eq!(ErrorCode::from_u32(value), Some(code));
        assert_eq!(code.counted(), counted, "{code}");
    }
    assert_eq!(ErrorCode::from_u32(0), None);
    // 10 is version 1.1's RATE_LIMITED (guest_doorbell_golden.rs).
    assert_eq!(ErrorCode::from_u32(11), None);
    for (event, value) in [
        (EventKind::LayoutChanged, 1),
        (EventKind::RegionsMapped, 2),
        (EventKind::RegionsIntercepted, 3),
        (EventKind::RegionsUnmapped, 4),
        (EventKind::DeviceHostRestarted, 5),
    ] {
        assert_eq!(event.to_u32(), value);
        assert_eq!(EventKind::from_u32(value), Some(event));
    }
    assert_eq!(PROTOCOL_VERSION_1_0, 0x0001_0000);
    assert_eq!(
        PROTOCOL_VERSION_1_0,
        vmbmmio_proto::pci_cap::CHANNEL_PROTOCOL_VERSION
    );
    assert_eq!(MAX_PACKET_SIZE, 4096);
    assert_eq!(MAX_REGIONS, 16);
    assert_eq!(MAX_REGIONS, vmbmmio_proto::ioctl::MAX_REGIONS);
    assert_eq!(ERROR_LIMIT, 16);
    assert_eq!(EVENT_QUEUE, 32);
    assert_eq!(REGION_NAME_LEN, 32);
    assert_eq!(LARGEST_MESSAGE, 1064);
    assert_eq!(
        Kind::ALL.iter().map(|kind| kind.size()).max(),
        Some(LARGEST_MESSAGE)
    );
}
