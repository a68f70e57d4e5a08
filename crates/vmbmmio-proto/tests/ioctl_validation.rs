//! One test per validation rule of the IOCTL interface, each showing the exact error.
//!
//! Each test starts from a valid message (the builders' output, whose bytes `ioctl_golden.rs`
//! pins), breaks one field at its documented offset, and checks the error and its class.

use core::num::NonZeroU64;

use vmbmmio_proto::ioctl::*;
use zerocopy::IntoBytes;

const IF_TYPE: u128 = 0x6ba7b810_9dad_11d1_80b4_00c04fd430c8;
const IF_INSTANCE: u128 = 0x01234567_89ab_cdef_0123_456789abcdef;
const GIB: u64 = 1 << 30;
/// Offset of the last page of the 64-bit address space.
const LAST_PAGE: u64 = !0xFFF;

fn put_u16(buf: &mut [u8], offset: usize, value: u16) {
    buf[offset..offset + 2].copy_from_slice(&value.to_le_bytes());
}

fn put_u32(buf: &mut [u8], offset: usize, value: u32) {
    buf[offset..offset + 4].copy_from_slice(&value.to_le_bytes());
}

fn put_u64(buf: &mut [u8], offset: usize, value: u64) {
    buf[offset..offset + 8].copy_from_slice(&value.to_le_bytes());
}

/// Offset of `regions[index]` in the OPEN_SESSION request.
fn region_at(index: usize) -> usize {
    80 + 16 * index
}

/// A valid OPEN_SESSION request with two regions (8 KiB writable, 5000 bytes read-only).
fn open_session() -> Vec<u8> {
    OpenSessionRequest::build(
        Target::VmbusHandle(NonZeroU64::new(0x1234).unwrap()),
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
    .unwrap()
    .as_bytes()
    .to_vec()
}

/// An OPEN_SESSION request with `count` regions of `size` bytes each, written directly.
fn open_session_with(count: u32, size: u64) -> Vec<u8> {
    let mut bytes = open_session();
    put_u32(&mut bytes, 20, count);
    for index in 0..MAX_REGIONS {
        let size = if (index as u32) < count { size } else { 0 };
        put_u64(&mut bytes, region_at(index), size);
        put_u32(&mut bytes, region_at(index) + 8, 0);
    }
    bytes
}

fn get_region_section() -> Vec<u8> {
    GetRegionSectionRequest::build(2, SectionAccess::Read)
        .unwrap()
        .as_bytes()
        .to_vec()
}

fn report_mapping() -> Vec<u8> {
    ReportMappingRequest::build(2, MappingState::SectionBacked, 0)
        .unwrap()
        .as_bytes()
        .to_vec()
}

fn open_session_reply() -> Vec<u8> {
    SessionOpened::new(
        9,
        1,
        1,
        0x4000,
        &[
            BarRegion {
                offset: 0,
                size: 0x2000,
            },
            BarRegion {
                offset: 0x2000,
                size: 0x2000,
            },
        ],
    )
    .unwrap()
    .to_reply()
    .as_bytes()
    .to_vec()
}

fn query_status_reply() -> Vec<u8> {
    SessionStatus {
        state: SessionState::Offered,
        counters: StatusCounters::default(),
    }
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

// ---- framing: the same rules for every message ----------------------------------------------

#[test]
fn truncated_input_is_too_short() {
    let bytes = open_session();
    for len in [0, 1, 15, 16, 100, 335] {
        assert_error(
            parse_open_session(&bytes[..len]),
            ProtoError::TooShort {
                expected: 336,
                got: len,
            },
            ErrorClass::BufferTooSmall,
        );
    }
    assert_error(
        parse_query_status(&QueryStatusRequest::new().as_bytes()[..15]),
        ProtoError::TooShort {
            expected: 16,
            got: 15,
        },
        ErrorClass::BufferTooSmall,
    );
}

#[test]
fn oversized_input_is_too_long() {
    let mut bytes = open_session();
    bytes.push(0);
    assert_error(
        parse_open_session(&bytes),
        ProtoError::TooLong {
            expected: 336,
            got: 337,
        },
        ErrorClass::BadSize,
    );
    let mut close = CloseSessionRequest::new().as_bytes().to_vec();
    close.extend_from_slice(&[0; 16]);
    assert_error(
        parse_close_session(&close),
        ProtoError::TooLong {
            expected: 16,
            got: 32,
        },
        ErrorClass::BadSize,
    );
}

#[test]
fn wrong_magic_is_rejected() {
    let mut bytes = open_session();
    bytes[0..4].copy_from_slice(b"VMBX");
    assert_error(
        parse_open_session(&bytes),
        ProtoError::BadMagic {
            expected: MAGIC,
            got: u32::from_le_bytes(*b"VMBX"),
        },
        ErrorClass::BadField,
    );
    // Big-endian magic is wrong too.
    bytes[0..4].copy_from_slice(&MAGIC.to_be_bytes());
    assert_eq!(
        parse_open_session(&bytes),
        Err(ProtoError::BadMagic {
            expected: MAGIC,
            got: MAGIC.swap_bytes()
        })
    );
}

#[test]
fn wrong_version_is_rejected() {
    for version in [0, 2, 0x0100, u16::MAX] {
        let mut bytes = get_region_section();
        put_u16(&mut bytes, 4, version);
        assert_error(
            parse_get_region_section(&bytes),
            ProtoError::UnsupportedVersion {
                expected: 1,
                got: version,
            },
            ErrorClass::BadVersion,
        );
    }
}

#[test]
fn version_is_checked_before_length() {
    // A newer device host's longer message gets "wrong version", not "wrong size".
    let mut bytes = open_session();
    put_u16(&mut bytes, 4, 2);
    bytes.extend_from_slice(&[0; 64]);
    assert_eq!(
        parse_open_session(&bytes),
        Err(ProtoError::UnsupportedVersion {
            expected: 1,
            got: 2
        })
    );
}

#[test]
fn wrong_kind_is_rejected() {
    // A GET_REGION_SECTION request sent with the OPEN_SESSION code.
    assert_error(
        parse_open_session(&get_region_section()),
        ProtoError::WrongKind {
            expected: MessageKind::OpenSessionRequest,
            got: 0x0002,
        },
        ErrorClass::BadField,
    );
    // A reply sent as a request.
    assert_error(
        parse_close_session(CloseSessionReply::new().as_bytes()),
        ProtoError::WrongKind {
            expected: MessageKind::CloseSessionRequest,
            got: 0x8005,
        },
        ErrorClass::BadField,
    );
    // QUERY_STATUS and CLOSE_SESSION requests have the same size; only the kind tells them apart.
    assert_error(
        parse_query_status(CloseSessionRequest::new().as_bytes()),
        ProtoError::WrongKind {
            expected: MessageKind::QueryStatusRequest,
            got: 0x0005,
        },
        ErrorClass::BadField,
    );
    let mut bytes = report_mapping();
    put_u16(&mut bytes, 6, 0x7777);
    assert_eq!(
        parse_report_mapping(&bytes),
        Err(ProtoError::WrongKind {
            expected: MessageKind::ReportMappingRequest,
            got: 0x7777
        })
    );
}

#[test]
fn header_size_field_must_state_the_message_size() {
    for size in [0, 16, 335, 337, u32::MAX] {
        let mut bytes = open_session();
        put_u32(&mut bytes, 8, size);
        assert_error(
            parse_open_session(&bytes),
            ProtoError::SizeFieldMismatch {
                expected: 336,
                got: size,
            },
            ErrorClass::BadSize,
        );
    }
}

#[test]
fn header_reserved_must_be_zero() {
    let mut bytes = report_mapping();
    put_u32(&mut bytes, 12, 0x8000_0000);
    assert_error(
        parse_report_mapping(&bytes),
        ProtoError::ReservedNotZero {
            field: ReservedField::Header,
            got: 0x8000_0000,
        },
        ErrorClass::BadField,
    );
    let mut query = QueryStatusRequest::new().as_bytes().to_vec();
    query[15] = 1;
    assert_eq!(
        parse_query_status(&query),
        Err(ProtoError::ReservedNotZero {
            field: ReservedField::Header,
            got: 0x0100_0000
        })
    );
}

// ---- OPEN_SESSION ----------------------------------------------------------------------------

#[test]
fn target_kind_must_be_known() {
    for kind in [0, 3, u32::MAX] {
        let mut bytes = open_session();
        put_u32(&mut bytes, 16, kind);
        assert_error(
            parse_open_session(&bytes),
            ProtoError::BadTargetKind { got: kind },
            ErrorClass::BadField,
        );
    }
}

#[test]
fn loopback_must_not_carry_a_handle() {
    let mut bytes = open_session();
    put_u32(&mut bytes, 16, TARGET_LOOPBACK);
    assert_error(
        parse_open_session(&bytes),
        ProtoError::HandleWithLoopback { got: 0x1234 },
        ErrorClass::BadField,
    );
    put_u64(&mut bytes, 24, 0);
    assert_eq!(
        parse_open_session(&bytes).unwrap().target(),
        Target::Loopback
    );
}

#[test]
fn vmbus_target_needs_a_handle() {
    let mut bytes = open_session();
    put_u64(&mut bytes, 24, 0);
    assert_error(
        parse_open_session(&bytes),
        ProtoError::MissingVmbusHandle,
        ErrorClass::BadField,
    );
}

#[test]
fn interface_guids_must_not_be_nil() {
    let mut bytes = open_session();
    bytes[32..48].fill(0);
    assert_error(
        parse_open_session(&bytes),
        ProtoError::NilGuid {
            field: GuidField::InterfaceType,
        },
        ErrorClass::BadField,
    );
    let mut bytes = open_session();
    bytes[48..64].fill(0);
    assert_error(
        parse_open_session(&bytes),
        ProtoError::NilGuid {
            field: GuidField::InterfaceInstance,
        },
        ErrorClass::BadField,
    );
}

#[test]
fn open_session_reserved_words_must_be_zero() {
    for index in 0..OPEN_SESSION_RESERVED_WORDS {
        let mut bytes = open_session();
        put_u32(&mut bytes, 64 + 4 * index, 0x55);
        assert_error(
            parse_open_session(&bytes),
            ProtoError::ReservedNotZero {
                field: ReservedField::OpenSession {
                    index: index as u32,
                },
                got: 0x55,
            },
            ErrorClass::BadField,
        );
    }
}

#[test]
fn region_count_zero_is_rejected() {
    let mut bytes = open_session();
    put_u32(&mut bytes, 20, 0);
    assert_error(
        parse_open_session(&bytes),
        ProtoError::NoRegions,
        ErrorClass::BadField,
    );
}

#[test]
fn region_count_above_max_is_rejected() {
    for count in [17, 1000, u32::MAX] {
        let mut bytes = open_session();
        put_u32(&mut bytes, 20, count);
        assert_error(
            parse_open_session(&bytes),
            ProtoError::TooManyRegions {
                max: 16,
                got: count,
            },
            ErrorClass::BadField,
        );
    }
    // Exactly the maximum is fine.
    let params = parse_open_session(&open_session_with(16, 4096)).unwrap();
    assert_eq!(params.regions().len(), 16);
    assert_eq!(params.total_size(), 16 * 4096);
}

#[test]
fn builder_rejects_too_many_regions() {
    let regions = [RegionRequest {
        size: 4096,
        guest_writable: false,
    }; 17];
    assert_eq!(
        OpenSessionRequest::build(
            Target::Loopback,
            WireGuid::from_u128(IF_TYPE),
            WireGuid::from_u128(IF_INSTANCE),
            &regions,
        ),
        Err(ProtoError::TooManyRegions { max: 16, got: 17 })
    );
    assert_eq!(
        OpenSessionRequest::build(
            Target::Loopback,
            WireGuid::from_u128(IF_TYPE),
            WireGuid::from_u128(IF_INSTANCE),
            &[],
        ),
        Err(ProtoError::NoRegions)
    );
}

#[test]
fn region_size_zero_is_rejected() {
    let mut bytes = open_session();
    put_u64(&mut bytes, region_at(1), 0);
    assert_error(
        parse_open_session(&bytes),
        ProtoError::EmptyRegion { index: 1 },
        ErrorClass::BadField,
    );
}

#[test]
fn region_size_rounding_cannot_overflow() {
    for size in [u64::MAX, u64::MAX - 4094] {
        let mut bytes = open_session();
        put_u64(&mut bytes, region_at(0), size);
        assert_error(
            parse_open_session(&bytes),
            ProtoError::RegionSizeOverflow {
                index: 0,
                got: size,
            },
            ErrorClass::BadField,
        );
    }
    // The largest size that still rounds is reported as too large, with its rounded value.
    let mut bytes = open_session();
    put_u64(&mut bytes, region_at(0), u64::MAX - 4095);
    assert_eq!(
        parse_open_session(&bytes),
        Err(ProtoError::RegionTooLarge {
            index: 0,
            max: MAX_REGION_SIZE,
            got: u64::MAX - 4095
        })
    );
}

#[test]
fn region_size_above_max_is_rejected() {
    let mut bytes = open_session();
    put_u64(&mut bytes, region_at(1), MAX_REGION_SIZE + 1);
    assert_error(
        parse_open_session(&bytes),
        ProtoError::RegionTooLarge {
            index: 1,
            max: MAX_REGION_SIZE,
            got: MAX_REGION_SIZE + 4096,
        },
        ErrorClass::BadField,
    );
    put_u64(&mut bytes, region_at(1), MAX_REGION_SIZE);
    assert_eq!(
        parse_open_session(&bytes).unwrap().regions()[1].size,
        MAX_REGION_SIZE
    );
}

#[test]
fn region_sizes_are_rounded_up_to_pages() {
    for (sent, rounded) in [(1, 4096), (4095, 4096), (4096, 4096), (4097, 8192)] {
        let params = parse_open_session(&open_session_with(1, sent)).unwrap();
        let region = params.regions()[0];
        assert_eq!(region.requested_size, sent);
        assert_eq!(region.size, rounded);
        assert_eq!(params.total_size(), rounded);
    }
}

#[test]
fn total_size_above_max_is_rejected() {
    // Eight 4 GiB regions are exactly 32 GiB; the ninth crosses the limit.
    assert_eq!(
        parse_open_session(&open_session_with(8, 4 * GIB))
            .unwrap()
            .total_size(),
        MAX_TOTAL_SIZE
    );
    assert_error(
        parse_open_session(&open_session_with(9, 4 * GIB)),
        ProtoError::TotalTooLarge {
            index: 8,
            max: MAX_TOTAL_SIZE,
            got: 36 * GIB,
        },
        ErrorClass::BadField,
    );
    // Page rounding counts: 8 regions of 4 GiB - 1 byte, plus one page, is one page too many.
    let mut bytes = open_session_with(9, 4 * GIB - 1);
    put_u64(&mut bytes, region_at(8), 1);
    assert_eq!(
        parse_open_session(&bytes),
        Err(ProtoError::TotalTooLarge {
            index: 8,
            max: MAX_TOTAL_SIZE,
            got: MAX_TOTAL_SIZE + 4096
        })
    );
}

#[test]
fn region_flags_reserved_bits_are_rejected() {
    for flags in [2, 3, 0x8000_0000, u32::MAX] {
        let mut bytes = open_session();
        put_u32(&mut bytes, region_at(1) + 8, flags);
        assert_error(
            parse_open_session(&bytes),
            ProtoError::RegionFlagsReserved {
                index: 1,
                got: flags,
            },
            ErrorClass::BadField,
        );
    }
}

#[test]
fn region_reserved_must_be_zero() {
    let mut bytes = open_session();
    put_u32(&mut bytes, region_at(0) + 12, 9);
    assert_error(
        parse_open_session(&bytes),
        ProtoError::ReservedNotZero {
            field: ReservedField::RegionSpec { index: 0 },
            got: 9,
        },
        ErrorClass::BadField,
    );
}

#[test]
fn unused_region_entries_must_be_zero() {
    for (index, field_offset) in [(2, 0), (2, 8), (2, 12), (15, 0), (15, 15)] {
        let mut bytes = open_session();
        bytes[region_at(index) + field_offset] = 1;
        assert_error(
            parse_open_session(&bytes),
            ProtoError::UnusedRegionNotZero {
                index: index as u32,
            },
            ErrorClass::BadField,
        );
    }
}

#[test]
fn open_session_fields_are_checked_in_wire_order() {
    // target_kind (offset 16) before region_count (20) before vmbus_handle (24).
    let mut bytes = open_session();
    put_u32(&mut bytes, 16, 7);
    put_u32(&mut bytes, 20, 0);
    put_u64(&mut bytes, 24, 0);
    assert_eq!(
        parse_open_session(&bytes),
        Err(ProtoError::BadTargetKind { got: 7 })
    );
    put_u32(&mut bytes, 16, TARGET_VMBUS_HANDLE);
    assert_eq!(parse_open_session(&bytes), Err(ProtoError::NoRegions));
    put_u32(&mut bytes, 20, 2);
    assert_eq!(
        parse_open_session(&bytes),
        Err(ProtoError::MissingVmbusHandle)
    );
}

#[test]
fn region_entry_is_checked_before_the_running_total() {
    // Region 8 both crosses 32 GiB and has a reserved flag: the entry's own fields come first.
    let mut bytes = open_session_with(9, 4 * GIB);
    put_u32(&mut bytes, region_at(8) + 8, 2);
    assert_eq!(
        parse_open_session(&bytes),
        Err(ProtoError::RegionFlagsReserved { index: 8, got: 2 })
    );
    // An earlier region's error wins over a later one's.
    put_u64(&mut bytes, region_at(3), 0);
    assert_eq!(
        parse_open_session(&bytes),
        Err(ProtoError::EmptyRegion { index: 3 })
    );
}

// ---- GET_REGION_SECTION ----------------------------------------------------------------------

#[test]
fn region_index_must_be_below_max() {
    for index in [16, 17, u32::MAX] {
        let mut bytes = get_region_section();
        put_u32(&mut bytes, 16, index);
        assert_error(
            parse_get_region_section(&bytes),
            ProtoError::RegionIndexOutOfRange {
                limit: 16,
                got: index,
            },
            ErrorClass::BadField,
        );
        let mut report = report_mapping();
        put_u32(&mut report, 16, index);
        assert_eq!(
            parse_report_mapping(&report),
            Err(ProtoError::RegionIndexOutOfRange {
                limit: 16,
                got: index
            })
        );
    }
    assert_eq!(
        GetRegionSectionRequest::build(16, SectionAccess::Read),
        Err(ProtoError::RegionIndexOutOfRange { limit: 16, got: 16 })
    );
    let mut bytes = get_region_section();
    put_u32(&mut bytes, 16, 15);
    assert_eq!(parse_get_region_section(&bytes).unwrap().region_index, 15);
}

#[test]
fn access_needs_read_and_no_reserved_bits() {
    let cases = [
        (0, Err(ProtoError::AccessWithoutRead { got: 0 })),
        (2, Err(ProtoError::AccessWithoutRead { got: 2 })),
        (4, Err(ProtoError::AccessReservedBits { got: 4 })),
        (5, Err(ProtoError::AccessReservedBits { got: 5 })),
        (
            0x8000_0003,
            Err(ProtoError::AccessReservedBits { got: 0x8000_0003 }),
        ),
        (1, Ok(SectionAccess::Read)),
        (3, Ok(SectionAccess::ReadWrite)),
    ];
    for (bits, expected) in cases {
        let mut bytes = get_region_section();
        put_u32(&mut bytes, 20, bits);
        let got = parse_get_region_section(&bytes).map(|p| p.access);
        assert_eq!(got, expected, "access {bits:#x}");
        if let Err(error) = got {
            assert_eq!(error.class(), ErrorClass::BadField);
        }
    }
    assert!(SectionAccess::ReadWrite.writes());
    assert!(!SectionAccess::Read.writes());
}

#[test]
fn get_region_section_reserved_must_be_zero() {
    let mut bytes = get_region_section();
    put_u64(&mut bytes, 24, 1 << 63);
    assert_error(
        parse_get_region_section(&bytes),
        ProtoError::ReservedNotZero {
            field: ReservedField::GetRegionSection,
            got: 1 << 63,
        },
        ErrorClass::BadField,
    );
}

// ---- REPORT_MAPPING --------------------------------------------------------------------------

#[test]
fn mapping_state_must_be_known() {
    for state in [4, 0x100, u32::MAX] {
        let mut bytes = report_mapping();
        put_u32(&mut bytes, 20, state);
        assert_error(
            parse_report_mapping(&bytes),
            ProtoError::BadMappingState { got: state },
            ErrorClass::BadField,
        );
    }
}

#[test]
fn hresult_must_agree_with_state() {
    let e_fail = 0x8000_4005_u32 as i32;
    let cases = [
        (MappingState::SectionBacked, 0, true),
        (MappingState::SectionBacked, 1, true),
        (MappingState::SectionBacked, e_fail, false),
        (MappingState::Failed, e_fail, true),
        (MappingState::Failed, 0, false),
        (MappingState::InterceptFallback, e_fail, true),
        (MappingState::InterceptFallback, 0, true),
        (MappingState::Unmapped, 0, true),
        (MappingState::Unmapped, e_fail, true),
    ];
    for (state, hresult, ok) in cases {
        let mut bytes = report_mapping();
        put_u32(&mut bytes, 20, state.to_u32());
        bytes[24..28].copy_from_slice(&hresult.to_le_bytes());
        let got = parse_report_mapping(&bytes);
        if ok {
            assert_eq!(
                got,
                Ok(ReportMappingParams {
                    region_index: 2,
                    state,
                    hresult
                })
            );
        } else {
            assert_error(
                got,
                ProtoError::HresultContradictsState { state, hresult },
                ErrorClass::BadField,
            );
            assert_eq!(
                ReportMappingRequest::build(2, state, hresult),
                Err(ProtoError::HresultContradictsState { state, hresult })
            );
        }
    }
}

#[test]
fn report_mapping_reserved_must_be_zero() {
    let mut bytes = report_mapping();
    put_u32(&mut bytes, 28, 3);
    assert_error(
        parse_report_mapping(&bytes),
        ProtoError::ReservedNotZero {
            field: ReservedField::ReportMapping,
            got: 3,
        },
        ErrorClass::BadField,
    );
}

// ---- replies (device-host side) --------------------------------------------------------------

#[test]
fn open_session_reply_rules() {
    type Edit = fn(&mut Vec<u8>);
    let cases: [(Edit, ProtoError); 12] = [
        (|b| put_u16(b, 24, 0), ProtoError::ZeroMmioMegabytes),
        (|b| put_u32(b, 28, 0), ProtoError::NoRegions),
        (
            |b| put_u32(b, 28, 17),
            ProtoError::TooManyRegions { max: 16, got: 17 },
        ),
        (
            |b| put_u64(b, 32, 0x3000),
            ProtoError::BadBarSize { got: 0x3000 },
        ),
        (
            |b| put_u64(b, 32, 0x800),
            ProtoError::BadBarSize { got: 0x800 },
        ),
        (
            |b| put_u64(b, 32, 64 << 30),
            ProtoError::BadBarSize { got: 64 << 30 },
        ),
        (
            |b| put_u64(b, 56, 0x2800),
            ProtoError::NotPageAligned {
                field: PagedField::RegionOffset { index: 1 },
                got: 0x2800,
            },
        ),
        (|b| put_u64(b, 48, 0), ProtoError::EmptyRegion { index: 0 }),
        (
            |b| put_u64(b, 48, 0x1800),
            ProtoError::NotPageAligned {
                field: PagedField::RegionSize { index: 0 },
                got: 0x1800,
            },
        ),
        (
            |b| put_u64(b, 56, 0x1000),
            ProtoError::RegionsOverlap { index: 1 },
        ),
        (
            |b| put_u64(b, 64, 0x3000),
            ProtoError::RegionOutsideBar { index: 1 },
        ),
        (|b| b[72] = 1, ProtoError::UnusedRegionNotZero { index: 2 }),
    ];
    for (edit, expected) in cases {
        let mut bytes = open_session_reply();
        edit(&mut bytes);
        assert_error(
            parse_open_session_reply(&bytes),
            expected,
            ErrorClass::BadField,
        );
    }
    // The constructor enforces the same rules.
    assert_eq!(
        SessionOpened::new(
            1,
            1,
            0,
            0x4000,
            &[BarRegion {
                offset: LAST_PAGE,
                size: 0x1000
            }]
        ),
        Err(ProtoError::RegionOutsideBar { index: 0 })
    );
    assert_eq!(
        SessionOpened::new(1, 1, 0, 0x4000, &[BarRegion::default(); 17]),
        Err(ProtoError::TooManyRegions { max: 16, got: 17 })
    );
}

#[test]
fn region_section_reply_rules() {
    assert_eq!(
        RegionSection::new(0, 0x1000, 0),
        Err(ProtoError::NullSectionHandle)
    );
    assert_eq!(RegionSection::new(4, 0, 0), Err(ProtoError::EmptySection));
    assert_eq!(
        RegionSection::new(4, 0x1001, 0),
        Err(ProtoError::NotPageAligned {
            field: PagedField::SectionSize,
            got: 0x1001
        })
    );
    assert_eq!(
        RegionSection::new(4, 0x1000, 0x10),
        Err(ProtoError::NotPageAligned {
            field: PagedField::SectionOffset,
            got: 0x10
        })
    );
    assert_eq!(
        RegionSection::new(4, 0x2000, MAX_BAR_SIZE - 0x1000),
        Err(ProtoError::SectionOutsideBar {
            offset: MAX_BAR_SIZE - 0x1000,
            size: 0x2000
        })
    );
    assert_eq!(
        RegionSection::new(4, 0x2000, LAST_PAGE),
        Err(ProtoError::SectionOutsideBar {
            offset: LAST_PAGE,
            size: 0x2000
        })
    );
    let mut bytes = RegionSection::new(4, 0x1000, 0)
        .unwrap()
        .to_reply()
        .as_bytes()
        .to_vec();
    put_u64(&mut bytes, 16, 0);
    assert_error(
        parse_get_region_section_reply(&bytes),
        ProtoError::NullSectionHandle,
        ErrorClass::BadField,
    );
}

#[test]
fn query_status_reply_rules() {
    let mut bytes = query_status_reply();
    put_u32(&mut bytes, 16, 5);
    assert_error(
        parse_query_status_reply(&bytes),
        ProtoError::BadSessionState { got: 5 },
        ErrorClass::BadField,
    );
    let mut bytes = query_status_reply();
    put_u32(&mut bytes, 20, 1);
    assert_eq!(
        parse_query_status_reply(&bytes),
        Err(ProtoError::ReservedNotZero {
            field: ReservedField::QueryStatusPad,
            got: 1
        })
    );
    for index in 0..STATUS_RESERVED_WORDS {
        let mut bytes = query_status_reply();
        put_u64(&mut bytes, 64 + 8 * index, u64::MAX);
        assert_eq!(
            parse_query_status_reply(&bytes),
            Err(ProtoError::ReservedNotZero {
                field: ReservedField::QueryStatusTail {
                    index: index as u32
                },
                got: u64::MAX
            })
        );
    }
}

#[test]
fn header_only_replies_check_framing() {
    let mut bytes = ReportMappingReply::new().as_bytes().to_vec();
    put_u32(&mut bytes, 8, 17);
    assert_eq!(
        parse_report_mapping_reply(&bytes),
        Err(ProtoError::SizeFieldMismatch {
            expected: 16,
            got: 17
        })
    );
    assert_eq!(
        parse_close_session_reply(ReportMappingReply::new().as_bytes()),
        Err(ProtoError::WrongKind {
            expected: MessageKind::CloseSessionReply,
            got: 0x8003
        })
    );
}

// ---- encoders --------------------------------------------------------------------------------

#[test]
fn encoders_report_a_too_small_output_and_write_nothing() {
    let status = SessionStatus {
        state: SessionState::Open,
        counters: StatusCounters::default(),
    };
    let mut out = [0xEEu8; 127];
    assert_error(
        status.encode(&mut out),
        ProtoError::OutputTooSmall {
            needed: 128,
            got: 127,
        },
        ErrorClass::BufferTooSmall,
    );
    assert!(out.iter().all(|&b| b == 0xEE));

    let opened = parse_open_session_reply(&open_session_reply()).unwrap();
    let mut out = [0u8; 295];
    assert_eq!(
        opened.encode(&mut out),
        Err(ProtoError::OutputTooSmall {
            needed: 296,
            got: 295
        })
    );
    let section = RegionSection::new(8, 0x1000, 0).unwrap();
    assert_eq!(
        section.encode(&mut [0u8; 39]),
        Err(ProtoError::OutputTooSmall {
            needed: 40,
            got: 39
        })
    );
    assert_eq!(
        CloseSessionReply::new().encode(&mut []),
        Err(ProtoError::OutputTooSmall { needed: 16, got: 0 })
    );
    assert_eq!(ReportMappingReply::new().encode(&mut [0u8; 16]), Ok(16));
}

#[test]
fn output_length_is_checked_per_ioctl() {
    for code in IoctlCode::ALL {
        let needed = code.reply_size();
        assert_eq!(code.check_output_len(needed), Ok(()));
        assert_eq!(code.check_output_len(needed + 100), Ok(()));
        let error = code.check_output_len(needed - 1).unwrap_err();
        assert_eq!(
            error,
            ProtoError::OutputTooSmall {
                needed,
                got: needed - 1
            }
        );
        assert_eq!(error.class(), ErrorClass::BufferTooSmall);
    }
}

#[test]
fn every_request_parser_accepts_its_builder_output() {
    assert!(parse_open_session(&open_session()).is_ok());
    assert!(parse_get_region_section(&get_region_section()).is_ok());
    assert!(parse_report_mapping(&report_mapping()).is_ok());
    assert_eq!(
        parse_query_status(QueryStatusRequest::new().as_bytes()),
        Ok(())
    );
    assert_eq!(
        parse_close_session(CloseSessionRequest::new().as_bytes()),
        Ok(())
    );
}
