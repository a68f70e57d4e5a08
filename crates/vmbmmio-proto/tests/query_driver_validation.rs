//! QUERY_DRIVER's validation rules, one failure each with its exact error, and property tests:
//! no input makes its parsers panic, and every valid reply round-trips.

use proptest::prelude::*;
use vmbmmio_proto::ioctl::*;
use zerocopy::IntoBytes;

fn put_u32(buf: &mut [u8], offset: usize, value: u32) {
    buf[offset..offset + 4].copy_from_slice(&value.to_le_bytes());
}

fn put_u64(buf: &mut [u8], offset: usize, value: u64) {
    buf[offset..offset + 8].copy_from_slice(&value.to_le_bytes());
}

fn request() -> Vec<u8> {
    QueryDriverRequest::new().as_bytes().to_vec()
}

fn reply() -> Vec<u8> {
    DriverFacts::new(27, 0b10_0000_0000_0000_0000_0000_0000, 2, 1)
        .unwrap()
        .to_reply()
        .as_bytes()
        .to_vec()
}

fn assert_error<T: core::fmt::Debug>(
    result: Result<T, ProtoError>,
    expected: ProtoError,
    class: ErrorClass,
) {
    let error = result.unwrap_err();
    assert_eq!(error, expected);
    assert_eq!(error.class(), class, "{error:?}");
}

#[test]
fn request_framing_is_checked() {
    let bytes = request();
    assert_error(
        parse_query_driver(&bytes[..15]),
        ProtoError::TooShort {
            expected: 16,
            got: 15,
        },
        ErrorClass::BufferTooSmall,
    );
    let mut long = bytes.clone();
    long.push(0);
    assert_error(
        parse_query_driver(&long),
        ProtoError::TooLong {
            expected: 16,
            got: 17,
        },
        ErrorClass::BadSize,
    );
    let mut reserved = bytes.clone();
    put_u32(&mut reserved, 12, 1);
    assert_error(
        parse_query_driver(&reserved),
        ProtoError::ReservedNotZero {
            field: ReservedField::Header,
            got: 1,
        },
        ErrorClass::BadField,
    );
    let mut version = bytes.clone();
    version[4] = 2;
    assert_error(
        parse_query_driver(&version),
        ProtoError::UnsupportedVersion {
            expected: 1,
            got: 2,
        },
        ErrorClass::BadVersion,
    );
    // A QUERY_STATUS request is not a QUERY_DRIVER request, and the other way round.
    assert_error(
        parse_query_driver(QueryStatusRequest::new().as_bytes()),
        ProtoError::WrongKind {
            expected: MessageKind::QueryDriverRequest,
            got: 0x0004,
        },
        ErrorClass::BadField,
    );
    assert_error(
        parse_query_status(&bytes),
        ProtoError::WrongKind {
            expected: MessageKind::QueryStatusRequest,
            got: 0x0006,
        },
        ErrorClass::BadField,
    );
}

#[test]
fn reply_framing_is_checked() {
    let bytes = reply();
    assert_error(
        parse_query_driver_reply(&bytes[..63]),
        ProtoError::TooShort {
            expected: 64,
            got: 63,
        },
        ErrorClass::BufferTooSmall,
    );
    let mut long = bytes.clone();
    long.extend_from_slice(&[0; 8]);
    assert_error(
        parse_query_driver_reply(&long),
        ProtoError::TooLong {
            expected: 64,
            got: 72,
        },
        ErrorClass::BadSize,
    );
    let mut size = bytes.clone();
    put_u32(&mut size, 8, 128);
    assert_error(
        parse_query_driver_reply(&size),
        ProtoError::SizeFieldMismatch {
            expected: 64,
            got: 128,
        },
        ErrorClass::BadSize,
    );
    assert_error(
        parse_query_driver_reply(&request()),
        ProtoError::WrongKind {
            expected: MessageKind::QueryDriverReply,
            got: 0x0006,
        },
        ErrorClass::BadField,
    );
}

#[test]
fn kmcl_entries_must_fit_the_bit_set() {
    let mut bytes = reply();
    put_u32(&mut bytes, 16, 33);
    put_u32(&mut bytes, 20, 0);
    assert_error(
        parse_query_driver_reply(&bytes),
        ProtoError::TooManyKmclEntries { max: 32, got: 33 },
        ErrorClass::BadField,
    );
    put_u32(&mut bytes, 16, u32::MAX);
    assert_error(
        parse_query_driver_reply(&bytes),
        ProtoError::TooManyKmclEntries {
            max: 32,
            got: u32::MAX,
        },
        ErrorClass::BadField,
    );
    // 32 entries use the whole word: every bit is meaningful.
    put_u32(&mut bytes, 16, 32);
    put_u32(&mut bytes, 20, u32::MAX);
    let facts = parse_query_driver_reply(&bytes).unwrap();
    assert_eq!(
        (facts.kmcl_entries(), facts.kmcl_missing_optional()),
        (32, u32::MAX)
    );
}

#[test]
fn missing_bits_must_name_entries_of_the_table() {
    let mut bytes = reply();
    // Bit 27 with a 27-entry table.
    put_u32(&mut bytes, 20, 1 << 27);
    assert_error(
        parse_query_driver_reply(&bytes),
        ProtoError::KmclBitsBeyondTable {
            entries: 27,
            bits: 1 << 27,
        },
        ErrorClass::BadField,
    );
    // Only the offending bits are reported.
    put_u32(&mut bytes, 20, (1 << 26) | (1 << 31) | (1 << 28));
    assert_error(
        parse_query_driver_reply(&bytes),
        ProtoError::KmclBitsBeyondTable {
            entries: 27,
            bits: (1 << 31) | (1 << 28),
        },
        ErrorClass::BadField,
    );
    // No table: no bit may be set.
    put_u32(&mut bytes, 16, 0);
    put_u32(&mut bytes, 20, 1);
    assert_error(
        parse_query_driver_reply(&bytes),
        ProtoError::KmclBitsBeyondTable {
            entries: 0,
            bits: 1,
        },
        ErrorClass::BadField,
    );
    // The width is checked before the bits (wire order).
    put_u32(&mut bytes, 16, 40);
    assert_eq!(
        parse_query_driver_reply(&bytes),
        Err(ProtoError::TooManyKmclEntries { max: 32, got: 40 })
    );
}

#[test]
fn reserved_words_must_be_zero() {
    for index in 0..DRIVER_RESERVED_WORDS {
        let mut bytes = reply();
        put_u64(&mut bytes, 32 + 8 * index, 1 << 40);
        assert_error(
            parse_query_driver_reply(&bytes),
            ProtoError::ReservedNotZero {
                field: ReservedField::QueryDriverTail {
                    index: index as u32,
                },
                got: 1 << 40,
            },
            ErrorClass::BadField,
        );
    }
    // The KMCL fields are checked before the reserved tail.
    let mut bytes = reply();
    put_u32(&mut bytes, 20, u32::MAX);
    put_u64(&mut bytes, 32, 1);
    assert!(matches!(
        parse_query_driver_reply(&bytes),
        Err(ProtoError::KmclBitsBeyondTable { .. })
    ));
}

#[test]
fn the_constructor_applies_the_parser_rules() {
    assert_eq!(
        DriverFacts::new(33, 0, 0, 0),
        Err(ProtoError::TooManyKmclEntries { max: 32, got: 33 })
    );
    assert_eq!(
        DriverFacts::new(5, 0b10_0001, 0, 0),
        Err(ProtoError::KmclBitsBeyondTable {
            entries: 5,
            bits: 0b10_0000
        })
    );
    assert!(DriverFacts::new(32, u32::MAX, u32::MAX, u32::MAX).is_ok());
    assert!(DriverFacts::new(0, 0, 0, 0).is_ok());
}

#[test]
fn the_output_length_is_checked() {
    let facts = DriverFacts::new(27, 0, 1, 0).unwrap();
    let mut out = [0xEEu8; 63];
    assert_error(
        facts.encode(&mut out),
        ProtoError::OutputTooSmall {
            needed: 64,
            got: 63,
        },
        ErrorClass::BufferTooSmall,
    );
    assert!(out.iter().all(|&b| b == 0xEE));
    assert_eq!(IoctlCode::QueryDriver.check_output_len(64), Ok(()));
    assert!(IoctlCode::QueryDriver.check_output_len(63).is_err());
    assert!(IoctlCode::QueryDriver.check_input_len(16).is_ok());
    assert!(IoctlCode::QueryDriver.check_input_len(17).is_err());
}

/// Valid facts: a table of 0..=32 entries and missing bits inside it.
fn facts() -> impl Strategy<Value = DriverFacts> {
    (0u32..=32, any::<u32>(), any::<u32>(), any::<u32>()).prop_map(|(entries, bits, open, live)| {
        let mask = 1u32.checked_shl(entries).map_or(u32::MAX, |b| b - 1);
        DriverFacts::new(entries, bits & mask, open, live).unwrap()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
        let _ = parse_query_driver(&bytes);
        let _ = parse_query_driver_reply(&bytes);
    }

    #[test]
    fn random_bodies_behind_a_valid_header_never_panic(
        body in proptest::collection::vec(any::<u8>(), 48),
    ) {
        let mut bytes = QueryDriverReply::header_for_kind().as_bytes().to_vec();
        bytes.extend_from_slice(&body);
        match parse_query_driver_reply(&bytes) {
            Ok(facts) => {
                // Whatever passes is canonical: encoding it gives the same bytes.
                let encoded = facts.to_reply();
                prop_assert_eq!(encoded.as_bytes(), bytes.as_slice());
            }
            Err(error) => prop_assert_eq!(error.class(), ErrorClass::BadField),
        }
    }

    #[test]
    fn facts_round_trip(facts in facts()) {
        let mut out = [0u8; 64];
        prop_assert_eq!(facts.encode(&mut out), Ok(64));
        prop_assert_eq!(parse_query_driver_reply(&out), Ok(facts));
    }

    #[test]
    fn bits_beyond_the_table_are_always_refused(entries in 0u32..32, bit in 0u32..32) {
        let mut bytes = reply();
        put_u32(&mut bytes, 16, entries);
        put_u32(&mut bytes, 20, 1 << bit);
        let result = parse_query_driver_reply(&bytes);
        if bit < entries {
            prop_assert!(result.is_ok());
        } else {
            prop_assert_eq!(
                result,
                Err(ProtoError::KmclBitsBeyondTable { entries, bits: 1 << bit })
            );
        }
    }
}
