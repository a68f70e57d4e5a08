//! REPORT_MAPPING version 2 (the request that says which guest event the mapping answers),
//! pinned. Every expected byte array here is written by hand from the layout table in
//! `docs/ioctl.md`, never produced by the code under test. Version 1's bytes stay pinned in
//! `ioctl_golden.rs`.

use vmbmmio_proto::ioctl::*;
use zerocopy::IntoBytes;

/// Version 2: region 1, state 1 (section-backed), S_OK, `acted_on` 0x0102030405060708.
const V2: [u8; 40] = [
    // header: magic "VMBM", version 2, kind 0x0003, size 40, reserved 0
    0x56, 0x4D, 0x42, 0x4D, 0x02, 0x00, 0x03, 0x00, 0x28, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    // region_index 1, state 1
    0x01, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, //
    // hresult 0 (S_OK), reserved 0
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, //
    // acted_on
    0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01,
];

#[test]
fn version_2_constants_are_golden() {
    assert_eq!(VERSION, 1);
    assert_eq!(VERSION_2, 2);
    assert_eq!(size_of::<ReportMappingV2Request>(), 40);
    assert_eq!(align_of::<ReportMappingV2Request>(), 1);
    // Same code and kind as version 1; the exact size of version 1 is still 32, the longest
    // accepted input 40.
    assert_eq!(IoctlCode::ReportMapping.code(), 0x0022_E408);
    assert_eq!(IoctlCode::ReportMapping.request_size(), 32);
    assert_eq!(IoctlCode::ReportMapping.max_request_size(), 40);
    assert_eq!(IoctlCode::ReportMapping.reply_size(), 16);
    assert!(IoctlCode::ReportMapping.check_input_len(40).is_ok());
    assert_eq!(
        IoctlCode::ReportMapping.check_input_len(41),
        Err(ProtoError::TooLong {
            expected: 40,
            got: 41
        })
    );
    // Every other request but OPEN_SESSION (version 2 since issue 14) keeps one size.
    for code in IoctlCode::ALL {
        if code != IoctlCode::ReportMapping && code != IoctlCode::OpenSession {
            assert_eq!(code.max_request_size(), code.request_size());
        }
    }
    // OPEN_SESSION version 2 (issue 14) is the largest request now.
    assert_eq!(MAX_REQUEST_SIZE, 864);
}

#[test]
fn version_2_request_bytes_are_golden() {
    let request =
        ReportMappingV2Request::build(1, MappingState::SectionBacked, 0, 0x0102_0304_0506_0708)
            .unwrap();
    assert_eq!(request.as_bytes(), V2);
    let parsed = ActedReport {
        params: ReportMappingParams {
            region_index: 1,
            state: MappingState::SectionBacked,
            hresult: 0,
        },
        acted_on: ActedOn::Sequence(0x0102_0304_0506_0708),
    };
    assert_eq!(parse_report_mapping_v2(&V2), Ok(parsed));
    assert_eq!(parse_report_mapping_any(&V2), Ok(parsed));
}

#[test]
fn version_2_with_no_event_applied_is_golden() {
    let expected: [u8; 40] = [
        0x56, 0x4D, 0x42, 0x4D, 0x02, 0x00, 0x03, 0x00, 0x28, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, // header
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // region 0, state 0 (unmapped)
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // hresult 0, reserved 0
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // acted_on 0: none
    ];
    let request = ReportMappingV2Request::build(0, MappingState::Unmapped, 0, 0).unwrap();
    assert_eq!(request.as_bytes(), expected);
    assert_eq!(
        parse_report_mapping_any(&expected).map(|report| report.acted_on),
        Ok(ActedOn::Sequence(0))
    );
}

#[test]
fn the_driver_parser_reads_version_1_as_unknown() {
    // Version 1's golden bytes (ioctl_golden.rs), written out again.
    let v1: [u8; 32] = [
        0x56, 0x4D, 0x42, 0x4D, 0x01, 0x00, 0x03, 0x00, 0x20, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, // header: version 1, kind 3, size 32
        0x01, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, // region 1, intercept fallback
        0x9F, 0x13, 0x07, 0x80, 0x00, 0x00, 0x00, 0x00, // hresult 0x8007139F, reserved 0
    ];
    assert_eq!(
        parse_report_mapping_any(&v1),
        Ok(ActedReport {
            params: ReportMappingParams {
                region_index: 1,
                state: MappingState::InterceptFallback,
                hresult: 0x8007_139F_u32 as i32,
            },
            acted_on: ActedOn::Unknown,
        })
    );
}

#[test]
fn the_reply_is_the_same_for_both_versions() {
    let expected: [u8; 16] = [
        0x56, 0x4D, 0x42, 0x4D, 0x01, 0x00, 0x03, 0x80, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00,
    ];
    assert_eq!(ReportMappingReply::new().as_bytes(), expected);
    assert_eq!(parse_report_mapping_reply(&expected), Ok(()));
}
