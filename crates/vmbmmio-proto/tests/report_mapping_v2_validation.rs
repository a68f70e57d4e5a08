//! REPORT_MAPPING version 2's checks, in the documented order, and which parser a version
//! picks.

use vmbmmio_proto::ioctl::*;
use zerocopy::IntoBytes;

fn v2() -> Vec<u8> {
    ReportMappingV2Request::build(2, MappingState::SectionBacked, 0, 7)
        .unwrap()
        .as_bytes()
        .to_vec()
}

fn v1() -> Vec<u8> {
    ReportMappingRequest::build(2, MappingState::SectionBacked, 0)
        .unwrap()
        .as_bytes()
        .to_vec()
}

fn put_u16(buf: &mut [u8], offset: usize, value: u16) {
    buf[offset..offset + 2].copy_from_slice(&value.to_le_bytes());
}

fn put_u32(buf: &mut [u8], offset: usize, value: u32) {
    buf[offset..offset + 4].copy_from_slice(&value.to_le_bytes());
}

#[test]
fn any_acted_on_is_well_formed() {
    for acted_on in [0, 1, u64::MAX] {
        let request =
            ReportMappingV2Request::build(0, MappingState::Unmapped, 0, acted_on).unwrap();
        assert_eq!(
            parse_report_mapping_any(request.as_bytes())
                .unwrap()
                .acted_on,
            ActedOn::Sequence(acted_on)
        );
    }
}

#[test]
fn the_body_is_checked_like_version_1() {
    let mut bytes = v2();
    put_u32(&mut bytes, 16, 16);
    assert_eq!(
        parse_report_mapping_any(&bytes),
        Err(ProtoError::RegionIndexOutOfRange { limit: 16, got: 16 })
    );
    let mut bytes = v2();
    put_u32(&mut bytes, 20, 4);
    assert_eq!(
        parse_report_mapping_any(&bytes),
        Err(ProtoError::BadMappingState { got: 4 })
    );
    let mut bytes = v2();
    put_u32(&mut bytes, 24, 0x8000_4005);
    assert_eq!(
        parse_report_mapping_any(&bytes),
        Err(ProtoError::HresultContradictsState {
            state: MappingState::SectionBacked,
            hresult: 0x8000_4005_u32 as i32
        })
    );
    let mut bytes = v2();
    put_u32(&mut bytes, 28, 1);
    assert_eq!(
        parse_report_mapping_any(&bytes),
        Err(ProtoError::ReservedNotZero {
            field: ReservedField::ReportMapping,
            got: 1
        })
    );
    assert_eq!(
        ReportMappingV2Request::build(16, MappingState::Unmapped, 0, 1),
        Err(ProtoError::RegionIndexOutOfRange { limit: 16, got: 16 })
    );
}

#[test]
fn the_length_must_be_exact_for_the_version() {
    // Version 2 with version 1's length, and version 1 with version 2's.
    let mut short = v2();
    short.truncate(32);
    assert_eq!(
        parse_report_mapping_any(&short),
        Err(ProtoError::TooShort {
            expected: 40,
            got: 32
        })
    );
    let mut long = v1();
    long.extend_from_slice(&[0; 8]);
    assert_eq!(
        parse_report_mapping_any(&long),
        Err(ProtoError::TooLong {
            expected: 32,
            got: 40
        })
    );
    let mut bytes = v2();
    put_u32(&mut bytes, 8, 32);
    assert_eq!(
        parse_report_mapping_any(&bytes),
        Err(ProtoError::SizeFieldMismatch {
            expected: 40,
            got: 32
        })
    );
    assert_eq!(
        parse_report_mapping_any(&[0x56, 0x4D]),
        Err(ProtoError::TooShort {
            expected: 32,
            got: 2
        })
    );
}

#[test]
fn the_version_picks_the_parser() {
    // Version 1's parser takes version 1 only; version 2's, version 2 only.
    assert!(matches!(
        parse_report_mapping(&v2()),
        Err(ProtoError::UnsupportedVersion {
            expected: 1,
            got: 2
        })
    ));
    assert!(matches!(
        parse_report_mapping_v2(&v1()),
        Err(ProtoError::UnsupportedVersion {
            expected: 2,
            got: 1
        })
    ));
    // The driver's parser: 0 is named against 1, 3 and above against 2.
    for (version, expected) in [(0, 1), (3, 2), (u16::MAX, 2)] {
        let mut bytes = v2();
        put_u16(&mut bytes, 4, version);
        let error = parse_report_mapping_any(&bytes).unwrap_err();
        assert_eq!(
            error,
            ProtoError::UnsupportedVersion {
                expected,
                got: version
            }
        );
        assert_eq!(error.class(), ErrorClass::BadVersion);
    }
    // The magic is still checked first, whatever the version.
    let mut bytes = v2();
    bytes[0] = 0;
    assert!(matches!(
        parse_report_mapping_any(&bytes),
        Err(ProtoError::BadMagic { .. })
    ));
    // And the kind: a version-2 header on another request's kind.
    let mut bytes = v2();
    put_u16(&mut bytes, 6, 0x0002);
    assert_eq!(
        parse_report_mapping_any(&bytes),
        Err(ProtoError::WrongKind {
            expected: MessageKind::ReportMappingRequest,
            got: 0x0002
        })
    );
}

#[test]
fn no_other_request_has_a_version_2() {
    let mut bytes = GetRegionSectionRequest::build(0, SectionAccess::Read)
        .unwrap()
        .as_bytes()
        .to_vec();
    put_u16(&mut bytes, 4, 2);
    assert_eq!(
        parse_get_region_section(&bytes),
        Err(ProtoError::UnsupportedVersion {
            expected: 1,
            got: 2
        })
    );
}

#[test]
fn random_bytes_never_panic() {
    let mut seed = 0x9E37_79B9_7F4A_7C15_u64;
    for len in 0..64 {
        let mut bytes = v2();
        bytes.resize(len, 0);
        for byte in bytes.iter_mut().skip(16) {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            *byte = (seed >> 56) as u8;
        }
        let _ = parse_report_mapping_any(&bytes);
    }
}
