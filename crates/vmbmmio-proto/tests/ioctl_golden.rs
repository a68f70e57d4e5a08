//! Golden tests of the IOCTL interface: codes, struct sizes and the exact bytes of every message.
//!
//! Every expected byte array here is written out by hand from the layout tables in
//! `docs/ioctl.md` (little-endian integers, Windows GUID layout), never produced by the code under
//! test. If one of these tests fails, the wire format changed: that needs a new version (see the
//! versioning policy in `docs/ioctl.md`), not a new expected array.

use core::num::NonZeroU64;

use vmbmmio_proto::ioctl::*;
use zerocopy::IntoBytes;

/// Concatenates hand-written pieces of a message.
fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

const ZERO16: [u8; 16] = [0; 16];

#[test]
fn ctl_code_matches_published_windows_codes() {
    // IOCTL_STORAGE_QUERY_PROPERTY = CTL_CODE(0x2d, 0x500, METHOD_BUFFERED, FILE_ANY_ACCESS).
    assert_eq!(ctl_code(0x2d, 0x500, 0, 0), 0x002D_1400);
    // FSCTL_GET_REPARSE_POINT = CTL_CODE(FILE_DEVICE_FILE_SYSTEM = 9, 42, METHOD_BUFFERED, 0).
    assert_eq!(ctl_code(0x9, 42, 0, 0), 0x0009_00A8);
    // IOCTL_DISK_GET_DRIVE_GEOMETRY = CTL_CODE(FILE_DEVICE_DISK = 7, 0, METHOD_BUFFERED, 0).
    assert_eq!(ctl_code(0x7, 0, 0, 0), 0x0007_0000);
}

#[test]
fn ioctl_codes_are_golden() {
    // (0x22 << 16) | (3 << 14) | (function << 2) | 0
    let expected = [
        (IoctlCode::OpenSession, 0x0022_E400, 0x900),
        (IoctlCode::GetRegionSection, 0x0022_E404, 0x901),
        (IoctlCode::ReportMapping, 0x0022_E408, 0x902),
        (IoctlCode::QueryStatus, 0x0022_E40C, 0x903),
        (IoctlCode::CloseSession, 0x0022_E410, 0x904),
    ];
    for (request, code, function) in expected {
        assert_eq!(request.code(), code, "{request:?}");
        assert_eq!(request.function(), function, "{request:?}");
        assert_eq!(IoctlCode::from_code(code), Some(request));
        assert_eq!(IoctlCode::parse(code), Ok(request));
    }
    assert_eq!(IOCTL_VMBMMIO_OPEN_SESSION, 0x0022_E400);
    assert_eq!(IOCTL_VMBMMIO_GET_REGION_SECTION, 0x0022_E404);
    assert_eq!(IOCTL_VMBMMIO_REPORT_MAPPING, 0x0022_E408);
    assert_eq!(IOCTL_VMBMMIO_QUERY_STATUS, 0x0022_E40C);
    assert_eq!(IOCTL_VMBMMIO_CLOSE_SESSION, 0x0022_E410);
    // The five codes above plus QUERY_DRIVER (0x905) and WAIT_GUEST_EVENT (0x906), later new
    // kinds pinned in query_driver_golden.rs and wait_guest_event_golden.rs.
    // Issue 14's six consumer requests (0x907..=0x90C) are pinned in ioctl_consumer_golden.rs.
    assert_eq!(IoctlCode::ALL.len(), 13);
}

#[test]
fn unknown_ioctl_codes_are_rejected() {
    for code in [
        0,
        0x0022_E3FC,
        // 0x0022_E414 (function 0x905) is QUERY_DRIVER and 0x0022_E418 (0x906)
        // WAIT_GUEST_EVENT since they were added as new kinds.
        // 0x0022_E41C..=0x0022_E430 (0x907..=0x90C) are issue 14's consumer requests.
        0x0022_E434,
        0x0022_E401,
        0x0022_2400,
        u32::MAX,
    ] {
        assert_eq!(IoctlCode::from_code(code), None, "{code:#x}");
        let error = IoctlCode::parse(code).unwrap_err();
        assert_eq!(error, ProtoError::UnknownIoctl { code });
        assert_eq!(error.class(), ErrorClass::UnknownRequest);
    }
}

#[test]
fn message_kinds_are_golden() {
    let expected = [
        (MessageKind::OpenSessionRequest, 0x0001),
        (MessageKind::GetRegionSectionRequest, 0x0002),
        (MessageKind::ReportMappingRequest, 0x0003),
        (MessageKind::QueryStatusRequest, 0x0004),
        (MessageKind::CloseSessionRequest, 0x0005),
        (MessageKind::OpenSessionReply, 0x8001),
        (MessageKind::GetRegionSectionReply, 0x8002),
        (MessageKind::ReportMappingReply, 0x8003),
        (MessageKind::QueryStatusReply, 0x8004),
        (MessageKind::CloseSessionReply, 0x8005),
    ];
    for (kind, value) in expected {
        assert_eq!(kind.to_u16(), value);
        assert_eq!(MessageKind::from_u16(value), Some(kind));
        assert_eq!(kind.is_reply(), value & 0x8000 != 0);
    }
    assert_eq!(MessageKind::from_u16(0), None);
    // 0x0006 / 0x8006 are QUERY_DRIVER's kinds (query_driver_golden.rs), 0x0007 / 0x8007
    // WAIT_GUEST_EVENT's (wait_guest_event_golden.rs).
    // 0x0008..=0x000D / 0x8008..=0x800D are issue 14's (ioctl_consumer_golden.rs).
    assert_eq!(MessageKind::from_u16(0x800E), None);
    for request in IoctlCode::ALL {
        assert!(!request.request_kind().is_reply());
        assert!(request.reply_kind().is_reply());
        assert_eq!(
            request.reply_kind().to_u16(),
            request.request_kind().to_u16() | 0x8000
        );
    }
}

#[test]
fn struct_sizes_are_golden() {
    assert_eq!(size_of::<MessageHeader>(), 16);
    assert_eq!(size_of::<WireGuid>(), 16);
    assert_eq!(size_of::<WireRegionSpec>(), 16);
    assert_eq!(size_of::<WireBarRegion>(), 16);
    assert_eq!(size_of::<OpenSessionRequest>(), 336);
    assert_eq!(size_of::<OpenSessionReply>(), 296);
    assert_eq!(size_of::<GetRegionSectionRequest>(), 32);
    assert_eq!(size_of::<GetRegionSectionReply>(), 40);
    assert_eq!(size_of::<ReportMappingRequest>(), 32);
    assert_eq!(size_of::<ReportMappingReply>(), 16);
    assert_eq!(size_of::<QueryStatusRequest>(), 16);
    assert_eq!(size_of::<QueryStatusReply>(), 128);
    assert_eq!(size_of::<CloseSessionRequest>(), 16);
    assert_eq!(size_of::<CloseSessionReply>(), 16);
    // Alignment 1 everywhere: the layout does not depend on the host.
    assert_eq!(align_of::<OpenSessionRequest>(), 1);
    assert_eq!(align_of::<OpenSessionReply>(), 1);
    assert_eq!(align_of::<QueryStatusReply>(), 1);
    assert_eq!(align_of::<GetRegionSectionReply>(), 1);
    // ProtoError stays a small Copy value the driver can pass around.
    assert!(size_of::<ProtoError>() <= 32);
    // Sizes as the IOCTL table reports them.
    // (The first five codes; QUERY_DRIVER's sizes are pinned in query_driver_golden.rs.)
    let sizes: Vec<(usize, usize)> = IoctlCode::ALL
        .iter()
        .take(5)
        .map(|c| (c.request_size(), c.reply_size()))
        .collect();
    assert_eq!(sizes, [(336, 296), (32, 40), (32, 16), (16, 128), (16, 16)]);
}

#[test]
fn magic_is_vmbm_in_byte_order() {
    assert_eq!(MAGIC, 0x4D42_4D56);
    assert_eq!(MAGIC.to_le_bytes(), *b"VMBM");
    assert_eq!(VERSION, 1);
}

#[test]
fn guid_uses_the_windows_layout() {
    let guid = WireGuid::from_u128(0x6ba7b810_9dad_11d1_80b4_00c04fd430c8);
    assert_eq!(
        guid.as_bytes(),
        [
            0x10, 0xb8, 0xa7, 0x6b, 0xad, 0x9d, 0xd1, 0x11, 0x80, 0xb4, 0x00, 0xc0, 0x4f, 0xd4,
            0x30, 0xc8
        ]
    );
    assert_eq!(guid.data1.get(), 0x6ba7b810);
    assert_eq!(guid.data2.get(), 0x9dad);
    assert_eq!(guid.data3.get(), 0x11d1);
    assert_eq!(guid.data4, [0x80, 0xb4, 0x00, 0xc0, 0x4f, 0xd4, 0x30, 0xc8]);
    assert_eq!(guid.to_u128(), 0x6ba7b810_9dad_11d1_80b4_00c04fd430c8);
    assert_eq!(u128::from(guid), 0x6ba7b810_9dad_11d1_80b4_00c04fd430c8);
    assert!(WireGuid::NIL.is_nil());
    assert!(!guid.is_nil());
}

// ---- OPEN_SESSION ----------------------------------------------------------------------------

/// Interface type {6ba7b810-9dad-11d1-80b4-00c04fd430c8} and instance
/// {01234567-89ab-cdef-0123-456789abcdef}.
const IF_TYPE: u128 = 0x6ba7b810_9dad_11d1_80b4_00c04fd430c8;
const IF_INSTANCE: u128 = 0x01234567_89ab_cdef_0123_456789abcdef;

fn open_session_golden() -> Vec<u8> {
    cat(&[
        // header: "VMBM", version 1, kind 0x0001, size 336 (0x150), reserved 0
        &[0x56, 0x4D, 0x42, 0x4D, 0x01, 0x00, 0x01, 0x00],
        &[0x50, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00],
        // target_kind 1 (VMBus handle), region_count 2
        &[0x01, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00],
        // vmbus_handle 0x1122334455667788
        &[0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11],
        // interface_type
        &[0x10, 0xb8, 0xa7, 0x6b, 0xad, 0x9d, 0xd1, 0x11],
        &[0x80, 0xb4, 0x00, 0xc0, 0x4f, 0xd4, 0x30, 0xc8],
        // interface_instance
        &[0x67, 0x45, 0x23, 0x01, 0xab, 0x89, 0xef, 0xcd],
        &[0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef],
        // reserved[4]
        &ZERO16,
        // regions[0]: size 0x2000, flags 1 (guest writable), reserved 0
        &[0x00, 0x20, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00],
        &[0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00],
        // regions[1]: size 5000 (0x1388), flags 0, reserved 0
        &[0x88, 0x13, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00],
        &[0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00],
        // regions[2..16]: unused, all zero
        &[0; 14 * 16],
    ])
}

#[test]
fn open_session_request_bytes_are_golden() {
    let expected = open_session_golden();
    assert_eq!(expected.len(), 336);
    let request = OpenSessionRequest::build(
        Target::VmbusHandle(NonZeroU64::new(0x1122_3344_5566_7788).unwrap()),
        WireGuid::from_u128(IF_TYPE),
        WireGuid::from_u128(IF_INSTANCE),
        &[
            RegionRequest {
                size: 0x2000,
                guest_writable: true,
            },
            RegionRequest {
                size: 5000,
                guest_writable: false,
            },
        ],
    )
    .unwrap();
    assert_eq!(request.as_bytes(), expected.as_slice());
    let mut out = [0xAAu8; 400];
    assert_eq!(request.encode(&mut out), Ok(336));
    assert_eq!(&out[..336], expected.as_slice());
    assert!(
        out[336..].iter().all(|&b| b == 0xAA),
        "wrote past the message"
    );

    let params = parse_open_session(&expected).unwrap();
    assert_eq!(
        params.target(),
        Target::VmbusHandle(NonZeroU64::new(0x1122_3344_5566_7788).unwrap())
    );
    assert_eq!(params.interface_type().to_u128(), IF_TYPE);
    assert_eq!(params.interface_instance().to_u128(), IF_INSTANCE);
    assert_eq!(
        params.regions(),
        &[
            ValidRegion {
                requested_size: 0x2000,
                size: 0x2000,
                guest_writable: true,
                // Version 1: never consumer-writable, unnamed.
                consumer_writable: false,
                name: vmbmmio_proto::guest::RegionName::EMPTY,
            },
            ValidRegion {
                requested_size: 5000,
                size: 0x2000,
                guest_writable: false,
                consumer_writable: false,
                name: vmbmmio_proto::guest::RegionName::EMPTY,
            },
        ]
    );
    assert_eq!(params.regions()[1].pages(), 2);
    assert_eq!(params.total_size(), 0x4000);
}

fn open_session_reply_golden() -> Vec<u8> {
    cat(&[
        // header: "VMBM", version 1, kind 0x8001, size 296 (0x128), reserved 0
        &[0x56, 0x4D, 0x42, 0x4D, 0x01, 0x00, 0x01, 0x80],
        &[0x28, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00],
        // session_id 0x0102030405060708
        &[0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01],
        // mmio_megabytes 1, mmio_megabytes_optional 1, region_count 2
        &[0x01, 0x00, 0x01, 0x00, 0x02, 0x00, 0x00, 0x00],
        // bar_size 0x4000
        &[0x00, 0x40, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00],
        // regions[0]: offset 0, size 0x2000
        &[0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00],
        &[0x00, 0x20, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00],
        // regions[1]: offset 0x2000, size 0x2000
        &[0x00, 0x20, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00],
        &[0x00, 0x20, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00],
        // regions[2..16]: unused
        &[0; 14 * 16],
    ])
}

#[test]
fn open_session_reply_bytes_are_golden() {
    let expected = open_session_reply_golden();
    assert_eq!(expected.len(), 296);
    let regions = [
        BarRegion {
            offset: 0,
            size: 0x2000,
        },
        BarRegion {
            offset: 0x2000,
            size: 0x2000,
        },
    ];
    let opened = SessionOpened::new(0x0102_0304_0506_0708, 1, 1, 0x4000, &regions).unwrap();
    assert_eq!(opened.to_reply().as_bytes(), expected.as_slice());
    let mut out = [0u8; 296];
    assert_eq!(opened.encode(&mut out), Ok(296));
    assert_eq!(out.as_slice(), expected.as_slice());

    let parsed = parse_open_session_reply(&expected).unwrap();
    assert_eq!(parsed, opened);
    assert_eq!(parsed.session_id(), 0x0102_0304_0506_0708);
    assert_eq!(parsed.mmio_megabytes(), 1);
    assert_eq!(parsed.mmio_megabytes_optional(), 1);
    assert_eq!(parsed.bar_size(), 0x4000);
    assert_eq!(parsed.regions(), &regions);
    assert_eq!(parsed.regions()[1].offset_pages(), 2);
    assert_eq!(parsed.regions()[1].pages(), 2);
}

// ---- GET_REGION_SECTION ----------------------------------------------------------------------

fn get_region_section_golden() -> [u8; 32] {
    [
        // header: kind 0x0002, size 32
        0x56, 0x4D, 0x42, 0x4D, 0x01, 0x00, 0x02, 0x00, 0x20, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, //
        // region_index 3, access 3 (read | write)
        0x03, 0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00, //
        // reserved
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    ]
}

#[test]
fn get_region_section_request_bytes_are_golden() {
    let expected = get_region_section_golden();
    let request = GetRegionSectionRequest::build(3, SectionAccess::ReadWrite).unwrap();
    assert_eq!(request.as_bytes(), expected);
    assert_eq!(
        parse_get_region_section(&expected),
        Ok(GetRegionSectionParams {
            region_index: 3,
            access: SectionAccess::ReadWrite
        })
    );
}

#[test]
fn get_region_section_reply_bytes_are_golden() {
    let expected: [u8; 40] = [
        // header: kind 0x8002, size 40 (0x28)
        0x56, 0x4D, 0x42, 0x4D, 0x01, 0x00, 0x02, 0x80, 0x28, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, //
        // section_handle 0x1A4
        0xA4, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, //
        // size 0x3000
        0x00, 0x30, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, //
        // offset_in_bar 0x10000
        0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00,
    ];
    let section = RegionSection::new(0x1A4, 0x3000, 0x1_0000).unwrap();
    assert_eq!(section.to_reply().as_bytes(), expected);
    let mut out = [0u8; 64];
    assert_eq!(section.encode(&mut out), Ok(40));
    assert_eq!(&out[..40], expected);
    let parsed = parse_get_region_section_reply(&expected).unwrap();
    assert_eq!(parsed, section);
    assert_eq!(parsed.section_handle(), 0x1A4);
    assert_eq!(parsed.size(), 0x3000);
    assert_eq!(parsed.offset_in_bar(), 0x1_0000);
}

// ---- REPORT_MAPPING --------------------------------------------------------------------------

#[test]
fn report_mapping_request_bytes_are_golden() {
    let expected: [u8; 32] = [
        // header: kind 0x0003, size 32
        0x56, 0x4D, 0x42, 0x4D, 0x01, 0x00, 0x03, 0x00, 0x20, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, //
        // region_index 1, state 2 (intercept fallback)
        0x01, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, //
        // hresult 0x8007139F (HRESULT_FROM_WIN32(ERROR_INVALID_STATE)), reserved 0
        0x9F, 0x13, 0x07, 0x80, 0x00, 0x00, 0x00, 0x00,
    ];
    let hresult = 0x8007_139F_u32 as i32;
    let request = ReportMappingRequest::build(1, MappingState::InterceptFallback, hresult).unwrap();
    assert_eq!(request.as_bytes(), expected);
    assert_eq!(
        parse_report_mapping(&expected),
        Ok(ReportMappingParams {
            region_index: 1,
            state: MappingState::InterceptFallback,
            hresult
        })
    );
}

#[test]
fn header_only_messages_are_golden() {
    let cases: [(Vec<u8>, &[u8; 16]); 5] = [
        (
            ReportMappingReply::new().as_bytes().to_vec(),
            &[
                0x56, 0x4D, 0x42, 0x4D, 0x01, 0x00, 0x03, 0x80, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00,
                0x00, 0x00,
            ],
        ),
        (
            QueryStatusRequest::new().as_bytes().to_vec(),
            &[
                0x56, 0x4D, 0x42, 0x4D, 0x01, 0x00, 0x04, 0x00, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00,
                0x00, 0x00,
            ],
        ),
        (
            CloseSessionRequest::new().as_bytes().to_vec(),
            &[
                0x56, 0x4D, 0x42, 0x4D, 0x01, 0x00, 0x05, 0x00, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00,
                0x00, 0x00,
            ],
        ),
        (
            CloseSessionReply::new().as_bytes().to_vec(),
            &[
                0x56, 0x4D, 0x42, 0x4D, 0x01, 0x00, 0x05, 0x80, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00,
                0x00, 0x00,
            ],
        ),
        (
            MessageHeader::new(MessageKind::OpenSessionRequest, 336)
                .as_bytes()
                .to_vec(),
            &[
                0x56, 0x4D, 0x42, 0x4D, 0x01, 0x00, 0x01, 0x00, 0x50, 0x01, 0x00, 0x00, 0x00, 0x00,
                0x00, 0x00,
            ],
        ),
    ];
    for (got, expected) in cases {
        assert_eq!(got.as_slice(), expected);
    }
    let [report_reply, query, close, close_reply] = [
        [
            0x56, 0x4D, 0x42, 0x4D, 0x01, 0x00, 0x03, 0x80, 0x10, 0, 0, 0, 0, 0, 0, 0,
        ],
        [
            0x56, 0x4D, 0x42, 0x4D, 0x01, 0x00, 0x04, 0x00, 0x10, 0, 0, 0, 0, 0, 0, 0,
        ],
        [
            0x56, 0x4D, 0x42, 0x4D, 0x01, 0x00, 0x05, 0x00, 0x10, 0, 0, 0, 0, 0, 0, 0,
        ],
        [
            0x56, 0x4D, 0x42, 0x4D, 0x01, 0x00, 0x05, 0x80, 0x10, 0, 0, 0, 0, 0, 0, 0,
        ],
    ];
    assert_eq!(parse_report_mapping_reply(&report_reply), Ok(()));
    assert_eq!(parse_query_status(&query), Ok(()));
    assert_eq!(parse_close_session(&close), Ok(()));
    assert_eq!(parse_close_session_reply(&close_reply), Ok(()));
}

// ---- QUERY_STATUS ----------------------------------------------------------------------------

#[test]
fn query_status_reply_bytes_are_golden() {
    let expected = cat(&[
        // header: kind 0x8004, size 128 (0x80)
        &[0x56, 0x4D, 0x42, 0x4D, 0x01, 0x00, 0x04, 0x80],
        &[0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00],
        // state 2 (open), reserved0 0
        &[0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00],
        // sections_created 2
        &[0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00],
        // section_handles_issued 2
        &[0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00],
        // regions_mapped 1
        &[0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00],
        // guest_packets 0x1_0000_0000
        &[0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00],
        // protocol_errors 7
        &[0x07, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00],
        // reserved[8]
        &[0; 64],
    ]);
    assert_eq!(expected.len(), 128);
    let status = SessionStatus {
        state: SessionState::Open,
        counters: StatusCounters {
            sections_created: 2,
            section_handles_issued: 2,
            regions_mapped: 1,
            guest_packets: 1 << 32,
            protocol_errors: 7,
        },
    };
    assert_eq!(status.to_reply().as_bytes(), expected.as_slice());
    let mut out = [0u8; 128];
    assert_eq!(status.encode(&mut out), Ok(128));
    assert_eq!(out.as_slice(), expected.as_slice());
    assert_eq!(parse_query_status_reply(&expected), Ok(status));
}

#[test]
fn enum_values_are_golden() {
    assert_eq!(TARGET_VMBUS_HANDLE, 1);
    assert_eq!(TARGET_LOOPBACK, 2);
    assert_eq!(REGION_FLAG_GUEST_WRITABLE, 1);
    assert_eq!(ACCESS_MAP_READ, 1);
    assert_eq!(ACCESS_MAP_WRITE, 2);
    assert_eq!(SectionAccess::Read.bits(), 1);
    assert_eq!(SectionAccess::ReadWrite.bits(), 3);
    let states = [
        (MappingState::Unmapped, 0),
        (MappingState::SectionBacked, 1),
        (MappingState::InterceptFallback, 2),
        (MappingState::Failed, 3),
    ];
    for (state, value) in states {
        assert_eq!(state.to_u32(), value);
        assert_eq!(MappingState::from_u32(value), Some(state));
    }
    let sessions = [
        (SessionState::NoSession, 0),
        (SessionState::Offered, 1),
        (SessionState::Open, 2),
        (SessionState::Closing, 3),
        (SessionState::Failed, 4),
    ];
    for (state, value) in sessions {
        assert_eq!(state.to_u32(), value);
        assert_eq!(SessionState::from_u32(value), Some(state));
    }
    assert_eq!(MAX_REGIONS, 16);
    assert_eq!(MAX_REGION_SIZE, 0x1_0000_0000);
    assert_eq!(MAX_TOTAL_SIZE, 0x8_0000_0000);
    assert_eq!(MAX_BAR_SIZE, 0x8_0000_0000);
}

#[test]
fn the_largest_request_is_open_session() {
    use vmbmmio_proto::ioctl::{IoctlCode, MAX_REQUEST_SIZE};
    // OPEN_SESSION version 2 (864 bytes) is the largest since issue 14
    // (ioctl_consumer_golden.rs); version 1 stays 336.
    assert_eq!(MAX_REQUEST_SIZE, 864);
    assert_eq!(IoctlCode::OpenSession.request_size(), 336);
    assert_eq!(IoctlCode::OpenSession.max_request_size(), MAX_REQUEST_SIZE);
    assert!(IoctlCode::GetRegionSection.check_input_len(32).is_ok());
    assert!(IoctlCode::GetRegionSection.check_input_len(31).is_ok());
    assert!(IoctlCode::GetRegionSection.check_input_len(33).is_err());
}
