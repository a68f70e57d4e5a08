//! Golden tests of guest protocol 1.1 (doorbells): the bytes of `DOORBELL`, its `ACK`, `ERROR`
//! `RATE_LIMITED` and the `DOORBELL` event, written by hand from `docs/protocol.md`; and that a
//! 1.0 conversation is exactly as before (none of them exists there, and an `EVENT` with bytes
//! 28..32 or 40..48 non-zero is still refused).

use vmbmmio_proto::guest::*;

fn hex(text: &str) -> Vec<u8> {
    text.split_whitespace()
        .map(|pair| u8::from_str_radix(pair, 16).unwrap())
        .collect()
}

const ID: u64 = 0x0102_0304_0506_0708;
const ID_BYTES: &str = "08 07 06 05 04 03 02 01";
const V1_0: u32 = PROTOCOL_VERSION_1_0;
const V1_1: u32 = PROTOCOL_VERSION_1_1;

fn doorbell_bytes() -> Vec<u8> {
    hex(&format!(
        "09 00 00 00 20 00 00 00 {ID_BYTES}
         03 00 00 00  00 00 00 00
         88 77 66 55 44 33 22 11"
    ))
}

#[test]
fn versions_kinds_and_codes_are_golden() {
    assert_eq!(PROTOCOL_VERSION_1_1, 0x0001_0001);
    assert_eq!(HOST_MIN_VERSION, 0x0001_0000);
    assert_eq!(HOST_MAX_VERSION, 0x0001_0001);
    assert_eq!(CLIENT_VERSIONS, [0x0001_0000, 0x0001_0001]);
    assert_eq!(
        (HostInfo::V1.min_version, HostInfo::V1.max_version),
        (V1_0, V1_0)
    );
    assert_eq!(
        (HostInfo::V1_1.min_version, HostInfo::V1_1.max_version),
        (V1_0, V1_1)
    );
    assert!(!has_doorbells(V1_0) && has_doorbells(V1_1));
    assert_eq!(Kind::Doorbell.to_u16(), 0x0009);
    assert_eq!(Kind::from_u16(0x0009), Some(Kind::Doorbell));
    assert_eq!(Kind::Doorbell.size(), 32);
    assert_eq!(Kind::Doorbell.reply_kind(), Some(Kind::Ack));
    assert_eq!(Kind::Doorbell.name(), "DOORBELL");
    assert_eq!(Kind::Doorbell.since(), V1_1);
    assert_eq!(Kind::from_u16(0x000A), None);
    for kind in Kind::ALL.into_iter().filter(|k| *k != Kind::Doorbell) {
        assert_eq!(kind.since(), V1_0, "{kind:?}");
    }
    assert_eq!(ErrorCode::RateLimited.to_u32(), 10);
    assert_eq!(ErrorCode::from_u32(10), Some(ErrorCode::RateLimited));
    assert!(!ErrorCode::RateLimited.counted());
    assert_eq!(ErrorCode::RateLimited.since(), V1_1);
    assert_eq!(ErrorCode::RateLimited.name(), "RATE_LIMITED");
    assert_eq!(EventKind::Doorbell.to_u32(), 6);
    assert_eq!(EventKind::from_u32(6), Some(EventKind::Doorbell));
    assert_eq!(EventKind::from_u32(7), None);
    assert_eq!(EventKind::Doorbell.since(), V1_1);
    assert_eq!(EventKind::Doorbell.name(), "DOORBELL");
    assert_eq!(size_of::<DoorbellRequest>(), 32);
}

#[test]
fn doorbell_request_is_golden_in_1_1() {
    let expected = doorbell_bytes();
    let body = RequestBody::Doorbell {
        region: 3,
        value: 0x1122_3344_5566_7788,
    };
    let mut out = [0xAA; 64];
    let len = encode_request(&mut out, ID, &body).unwrap();
    assert_eq!(&out[..len], expected.as_slice());
    let request = Request {
        request_id: ID,
        body,
    };
    assert_eq!(parse_request_in(&expected, V1_1), Ok(request));
    assert_eq!(parse_request_after_in(&expected, ID - 1, V1_1), Ok(request));
}

#[test]
fn doorbell_is_an_unknown_kind_in_1_0() {
    let expected = doorbell_bytes();
    for result in [
        parse_request(&expected),
        parse_request_in(&expected, V1_0),
        parse_request_after(&expected, 0),
    ] {
        let error = result.unwrap_err();
        assert_eq!(error.fault, RequestFault::UnknownKind);
        assert_eq!(error.code(), ErrorCode::UnknownKind);
        assert_eq!((error.received_kind, error.request_id), (9, ID));
    }
    // Even a DOORBELL of the wrong size is UNKNOWN_KIND in 1.0 (the kind is checked first).
    assert_eq!(
        parse_request(&expected[..24]).unwrap_err().fault,
        RequestFault::UnknownKind
    );
}

#[test]
fn doorbell_request_fields_are_checked() {
    let mut bytes = doorbell_bytes();
    bytes[20] = 1;
    assert_eq!(
        parse_request_in(&bytes, V1_1).unwrap_err().fault,
        RequestFault::ReservedNotZero { offset: 20, got: 1 }
    );
    let mut bytes = doorbell_bytes();
    bytes[16] = 16;
    let error = parse_request_in(&bytes, V1_1).unwrap_err();
    assert_eq!(
        error.fault,
        RequestFault::BadDoorbellRegion {
            region: 16,
            limit: 16
        }
    );
    assert_eq!(error.code(), ErrorCode::Malformed);
    assert!(error.counted());
    let mut bytes = doorbell_bytes();
    bytes[4] = 0x18;
    assert!(matches!(
        parse_request_in(&bytes, V1_1).unwrap_err().fault,
        RequestFault::SizeMismatch { .. }
    ));
    // The engine's faults.
    assert_eq!(RequestFault::RateLimited.code(), ErrorCode::RateLimited);
    assert!(!RequestFault::RateLimited.code().counted());
}

#[test]
fn ack_of_doorbell_is_golden_in_1_1_only() {
    let expected = hex(&format!(
        "00 80 00 00 20 00 00 00 {ID_BYTES}
         09 00  00 00  00 00 00 00
         05 00 00 00 00 00 00 00"
    ));
    let mut out = [0u8; 64];
    let len = encode_ack(&mut out, ID, Kind::Doorbell, 5).unwrap();
    assert_eq!(&out[..len], expected.as_slice());
    assert_eq!(
        parse_reply_in(&expected, V1_1).map(|reply| reply.body),
        Ok(ReplyBody::Ack(Ack {
            acked_kind: Kind::Doorbell,
            generation: 5
        }))
    );
    assert_eq!(parse_reply(&expected), Err(ReplyError::NotAcked { got: 9 }));
}

#[test]
fn rate_limited_is_golden_in_1_1_only() {
    let expected = hex(&format!(
        "FF 80 00 00 20 00 00 00 {ID_BYTES}
         0A 00 00 00  09 00  00 00  10 00 00 00  00 00 00 00"
    ));
    let mut out = [0u8; 64];
    let len = encode_error(&mut out, ID, ErrorCode::RateLimited, 9, 16).unwrap();
    assert_eq!(&out[..len], expected.as_slice());
    assert_eq!(
        parse_reply_in(&expected, V1_1).map(|reply| reply.body),
        Ok(ReplyBody::Error(ErrorInfo {
            code: ErrorCode::RateLimited,
            request_kind: 9,
            errors_left: 16
        }))
    );
    assert_eq!(
        parse_reply_in(&expected, V1_0),
        Err(ReplyError::BadErrorCode { got: 10 })
    );
}

fn doorbell_event_bytes() -> Vec<u8> {
    hex(&format!(
        "08 80 00 00 30 00 00 00 {ID_BYTES}
         07 00 00 00 00 00 00 00  06 00 00 00  02 00 00 00
         04 00 00 00 00 00 00 00  EF BE AD DE 00 00 00 00"
    ))
}

#[test]
fn doorbell_event_is_golden_in_1_1() {
    let expected = doorbell_event_bytes();
    let event = Event::doorbell(7, 4, 2, 0xDEAD_BEEF);
    assert_eq!(
        event,
        Event {
            sequence: 7,
            kind: EventKind::Doorbell,
            generation: 4,
            region: 2,
            value: 0xDEAD_BEEF
        }
    );
    let mut out = [0u8; 64];
    let len = encode_event_in(&mut out, ID, &event, V1_1).unwrap();
    assert_eq!(&out[..len], expected.as_slice());
    assert_eq!(
        parse_reply_in(&expected, V1_1),
        Ok(Reply {
            request_id: ID,
            body: ReplyBody::Event(event)
        })
    );
}

#[test]
fn a_1_0_conversation_refuses_every_doorbell_field() {
    let expected = doorbell_event_bytes();
    // 1.0 checks the reserved bytes first, as before.
    assert_eq!(
        parse_reply(&expected),
        Err(ReplyError::ReservedNotZero { offset: 28, got: 2 })
    );
    // A DOORBELL event with both fields 0 is still an unknown event in 1.0.
    let mut bytes = expected.clone();
    bytes[28..32].fill(0);
    bytes[40..48].fill(0);
    assert_eq!(
        parse_reply(&bytes),
        Err(ReplyError::BadEventKind { got: 6 })
    );
    // A known 1.0 event with `value` set: refused.
    let mut bytes = expected.clone();
    bytes[24] = 2;
    bytes[28..32].fill(0);
    assert_eq!(
        parse_reply(&bytes),
        Err(ReplyError::ReservedNotZero {
            offset: 40,
            got: 0xDEAD_BEEF
        })
    );
    // The encoders refuse what 1.0 cannot carry.
    let mut out = [0u8; 64];
    assert_eq!(
        encode_event(&mut out, ID, &Event::doorbell(1, 1, 0, 0)),
        Err(EncodeError::EventNotInVersion {
            kind: EventKind::Doorbell,
            version: V1_0
        })
    );
    let mapped_with_value = Event {
        value: 1,
        ..Event::new(1, EventKind::RegionsMapped, 1)
    };
    assert!(encode_event(&mut out, ID, &mapped_with_value).is_err());
}

#[test]
fn a_1_1_conversation_keeps_other_events_clean() {
    // REGIONS_MAPPED with a region: refused in 1.1 too.
    let mut bytes = doorbell_event_bytes();
    bytes[24] = 2;
    assert_eq!(
        parse_reply_in(&bytes, V1_1),
        Err(ReplyError::ReservedNotZero { offset: 28, got: 2 })
    );
    bytes[28..32].fill(0);
    assert_eq!(
        parse_reply_in(&bytes, V1_1),
        Err(ReplyError::ReservedNotZero {
            offset: 40,
            got: 0xDEAD_BEEF
        })
    );
    bytes[40..48].fill(0);
    assert_eq!(
        parse_reply_in(&bytes, V1_1).map(|reply| reply.body),
        Ok(ReplyBody::Event(Event::new(7, EventKind::RegionsMapped, 4)))
    );
    // A doorbell region of 16 or more.
    let mut bytes = doorbell_event_bytes();
    bytes[28] = 16;
    assert_eq!(
        parse_reply_in(&bytes, V1_1),
        Err(ReplyError::BadDoorbellRegion { got: 16 })
    );
    let mut out = [0u8; 64];
    assert!(encode_event_in(&mut out, ID, &Event::doorbell(1, 1, 16, 0), V1_1).is_err());
    // Sequence 0 is still refused first.
    let mut bytes = doorbell_event_bytes();
    bytes[16] = 0;
    assert_eq!(parse_reply_in(&bytes, V1_1), Err(ReplyError::ZeroSequence));
}

#[test]
fn hello_reply_of_a_1_1_host_is_golden() {
    let expected = hex(&format!(
        "01 80 00 00 30 00 00 00 {ID_BYTES}
         00 00 01 00  01 00 01 00  00 10 00 00  10 00 00 00
         10 00 00 00  00 00 00 00  00 00 00 00 00 00 00 00"
    ));
    let mut out = [0u8; 64];
    let len = encode_hello_reply(&mut out, ID, &HostInfo::V1_1).unwrap();
    assert_eq!(&out[..len], expected.as_slice());
    assert_eq!(
        parse_reply(&expected).map(|reply| reply.body),
        Ok(ReplyBody::HelloReply(HostInfo::V1_1))
    );
}
