//! Property tests of guest protocol 1.1: no bytes make the 1.1 parsers panic, and what the
//! encoders write for 1.1 parses back in 1.1 (and, for the doorbell messages, never in 1.0).

use proptest::prelude::*;
use vmbmmio_proto::guest::*;

const V1_1: u32 = PROTOCOL_VERSION_1_1;

proptest! {
    #[test]
    fn no_bytes_make_a_1_1_parser_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..1100),
        version in any::<u32>(),
    ) {
        let _ = parse_request_in(&bytes, version);
        let _ = parse_request_after_in(&bytes, 5, version);
        let _ = parse_reply_in(&bytes, version);
        let _ = parse_request_in(&bytes, V1_1);
        let _ = parse_reply_in(&bytes, V1_1);
    }

    #[test]
    fn doorbells_round_trip_in_1_1_only(
        id in 1u64..=u64::MAX,
        region in 0u32..16,
        value in any::<u64>(),
        sequence in 1u64..=u64::MAX,
        generation in any::<u64>(),
    ) {
        let body = RequestBody::Doorbell { region, value };
        let mut out = [0u8; 64];
        let len = encode_request(&mut out, id, &body).unwrap();
        prop_assert_eq!(parse_request_in(&out[..len], V1_1), Ok(Request { request_id: id, body }));
        prop_assert_eq!(
            parse_request(&out[..len]).map_err(|e| e.fault),
            Err(RequestFault::UnknownKind)
        );

        let event = Event::doorbell(sequence, generation, region, value);
        let len = encode_event_in(&mut out, id, &event, V1_1).unwrap();
        prop_assert_eq!(
            parse_reply_in(&out[..len], V1_1),
            Ok(Reply { request_id: id, body: ReplyBody::Event(event) })
        );
        prop_assert!(parse_reply(&out[..len]).is_err());
    }

    #[test]
    fn every_1_0_event_reads_the_same_in_1_1(
        id in any::<u64>(),
        sequence in 1u64..=u64::MAX,
        kind in proptest::sample::select(EventKind::ALL.to_vec()),
        generation in any::<u64>(),
    ) {
        prop_assume!(kind != EventKind::Doorbell);
        let event = Event::new(sequence, kind, generation);
        let mut out = [0u8; 64];
        let len = encode_event(&mut out, id, &event).unwrap();
        prop_assert_eq!(parse_reply(&out[..len]), parse_reply_in(&out[..len], V1_1));
    }
}
