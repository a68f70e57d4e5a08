//! Golden tests of issue 14's IOCTL additions: OPEN_SESSION version 2 and the consumer requests
//! (LIST_SESSIONS, ATTACH_REGION, DETACH_REGION, SET_DOORBELL_EVENT, TAKE_DOORBELLS,
//! RING_GUEST). Every expected byte array here is written out by hand from the layout tables in
//! `docs/ioctl.md`, never produced by the code under test. If one fails, the wire format changed:
//! that needs a new version, not a new expected array.

use core::num::NonZeroU64;

use vmbmmio_proto::guest::{RegionName, RegionState};
use vmbmmio_proto::ioctl::*;
use zerocopy::IntoBytes;

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

const ZERO16: [u8; 16] = [0; 16];
const IF_TYPE: u128 = 0x6ba7b810_9dad_11d1_80b4_00c04fd430c8;
const IF_INSTANCE: u128 = 0x01234567_89ab_cdef_0123_456789abcdef;
const VM_ID: u128 = 0xfedcba98_7654_3210_0f1e_2d3c4b5a6978;
/// `VM_ID` in the Windows GUID layout.
const VM_ID_BYTES: [u8; 16] = [
    0x98, 0xba, 0xdc, 0xfe, 0x54, 0x76, 0x10, 0x32, 0x0f, 0x1e, 0x2d, 0x3c, 0x4b, 0x5a, 0x69, 0x78,
];
/// "ring", NUL-padded to 32 bytes.
const NAME_RING: [u8; 32] = [
    0x72, 0x69, 0x6E, 0x67, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0,
];
/// "frames", NUL-padded to 32 bytes.
const NAME_FRAMES: [u8; 32] = [
    0x66, 0x72, 0x61, 0x6D, 0x65, 0x73, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0,
];

fn attachment(value: u64) -> AttachmentId {
    AttachmentId::new(value).unwrap()
}

fn encoded<T: WireMessage>(message: &T) -> Vec<u8> {
    let mut out = vec![0xAA; T::SIZE + 8];
    assert_eq!(message.encode(&mut out), Ok(T::SIZE));
    assert!(out[T::SIZE..].iter().all(|&b| b == 0xAA), "wrote past");
    out.truncate(T::SIZE);
    out
}

#[test]
fn codes_and_kinds_are_golden() {
    let expected = [
        (IoctlCode::ListSessions, 0x0022_E41C, 0x907, 0x0008, 32, 824),
        (IoctlCode::AttachRegion, 0x0022_E420, 0x908, 0x0009, 80, 48),
        (IoctlCode::DetachRegion, 0x0022_E424, 0x909, 0x000A, 32, 24),
        (
            IoctlCode::SetDoorbellEvent,
            0x0022_E428,
            0x90A,
            0x000B,
            32,
            24,
        ),
        (IoctlCode::TakeDoorbells, 0x0022_E42C, 0x90B, 0x000C, 32, 56),
        (IoctlCode::RingGuest, 0x0022_E430, 0x90C, 0x000D, 32, 24),
    ];
    for (code, value, function, kind, request, reply) in expected {
        assert_eq!(code.code(), value, "{code:?}");
        assert_eq!(code.function(), function);
        assert_eq!(IoctlCode::from_code(value), Some(code));
        assert_eq!(code.request_kind().to_u16(), kind);
        assert_eq!(code.reply_kind().to_u16(), kind | 0x8000);
        assert_eq!(MessageKind::from_u16(kind), Some(code.request_kind()));
        assert_eq!(
            MessageKind::from_u16(kind | 0x8000),
            Some(code.reply_kind())
        );
        assert_eq!(code.request_size(), request);
        assert_eq!(code.max_request_size(), request);
        assert_eq!(code.reply_size(), reply);
    }
    assert_eq!(IOCTL_VMBMMIO_LIST_SESSIONS, 0x0022_E41C);
    assert_eq!(IOCTL_VMBMMIO_ATTACH_REGION, 0x0022_E420);
    assert_eq!(IOCTL_VMBMMIO_DETACH_REGION, 0x0022_E424);
    assert_eq!(IOCTL_VMBMMIO_SET_DOORBELL_EVENT, 0x0022_E428);
    assert_eq!(IOCTL_VMBMMIO_TAKE_DOORBELLS, 0x0022_E42C);
    assert_eq!(IOCTL_VMBMMIO_RING_GUEST, 0x0022_E430);
    assert_eq!(IoctlCode::ALL.len(), 13);
    assert_eq!(IoctlCode::ALL.last(), Some(&IoctlCode::RingGuest));
    assert_eq!(MessageKind::ALL.len(), 26);
    // The next function and kinds are still free.
    assert_eq!(IoctlCode::from_code(0x0022_E434), None);
    assert_eq!(MessageKind::from_u16(0x000E), None);
    assert_eq!(MessageKind::from_u16(0x800E), None);
    // OPEN_SESSION: version 1 is 336 bytes, version 2 864, the largest request.
    assert_eq!(IoctlCode::OpenSession.request_size(), 336);
    assert_eq!(IoctlCode::OpenSession.max_request_size(), 864);
    assert_eq!(MAX_REQUEST_SIZE, 864);
    assert_eq!(size_of::<OpenSessionV2Request>(), 864);
    assert_eq!(size_of::<WireNamedRegionSpec>(), 48);
    assert_eq!(size_of::<WireListedRegion>(), 48);
    assert_eq!(REGION_FLAG_GUEST_WRITABLE, 1);
    assert_eq!(REGION_FLAG_CONSUMER_WRITABLE, 2);
    assert_eq!(VERSION_2, 2);
}

fn open_session_v2_golden() -> Vec<u8> {
    cat(&[
        // header: "VMBM", version 2, kind 0x0001, size 864 (0x360), reserved 0
        &[0x56, 0x4D, 0x42, 0x4D, 0x02, 0x00, 0x01, 0x00],
        &[0x60, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00],
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
        // vm_id
        &VM_ID_BYTES,
        // reserved[4]
        &ZERO16,
        // regions[0]: size 0x2000, flags 3 (guest + consumer writable), reserved 0, "ring"
        &[0x00, 0x20, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00],
        &[0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00],
        &NAME_RING,
        // regions[1]: size 5000 (0x1388), flags 0, reserved 0, "frames"
        &[0x88, 0x13, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00],
        &[0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00],
        &NAME_FRAMES,
        // regions[2..16]: unused, all zero
        &[0; 14 * 48],
    ])
}

#[test]
fn open_session_v2_bytes_are_golden() {
    let expected = open_session_v2_golden();
    assert_eq!(expected.len(), 864);
    let request = OpenSessionV2Request::build(
        Target::VmbusHandle(NonZeroU64::new(0x1122_3344_5566_7788).unwrap()),
        WireGuid::from_u128(IF_TYPE),
        WireGuid::from_u128(IF_INSTANCE),
        WireGuid::from_u128(VM_ID),
        &[
            NamedRegionRequest {
                size: 0x2000,
                guest_writable: true,
                consumer_writable: true,
                name: RegionName::required("ring").unwrap(),
            },
            NamedRegionRequest {
                size: 5000,
                guest_writable: false,
                consumer_writable: false,
                name: RegionName::required("frames").unwrap(),
            },
        ],
    )
    .unwrap();
    assert_eq!(encoded(&request), expected);

    for params in [
        parse_open_session_v2(&expected).unwrap(),
        parse_open_session_any(&expected).unwrap(),
    ] {
        assert_eq!(params.version(), 2);
        assert_eq!(params.vm_id(), Some(WireGuid::from_u128(VM_ID)));
        assert_eq!(params.interface_type().to_u128(), IF_TYPE);
        assert_eq!(params.interface_instance().to_u128(), IF_INSTANCE);
        assert_eq!(
            params.regions(),
            &[
                ValidRegion {
                    requested_size: 0x2000,
                    size: 0x2000,
                    guest_writable: true,
                    consumer_writable: true,
                    name: RegionName::required("ring").unwrap(),
                },
                ValidRegion {
                    requested_size: 5000,
                    size: 0x2000,
                    guest_writable: false,
                    consumer_writable: false,
                    name: RegionName::required("frames").unwrap(),
                },
            ]
        );
        assert_eq!(params.total_size(), 0x4000);
    }
    // The version-1 parser refuses it by version, before its length.
    assert_eq!(
        parse_open_session(&expected),
        Err(ProtoError::UnsupportedVersion {
            expected: 1,
            got: 2
        })
    );
}

#[test]
fn open_session_any_keeps_version_1_unchanged() {
    // The version-1 golden request of ioctl_golden.rs, rebuilt: no vm id, unnamed regions.
    let v1 = OpenSessionRequest::build(
        Target::Loopback,
        WireGuid::from_u128(IF_TYPE),
        WireGuid::from_u128(IF_INSTANCE),
        &[RegionRequest {
            size: 0x1000,
            guest_writable: true,
        }],
    )
    .unwrap();
    let params = parse_open_session_any(v1.as_bytes()).unwrap();
    assert_eq!(params, parse_open_session(v1.as_bytes()).unwrap());
    assert_eq!(params.version(), 1);
    assert_eq!(params.vm_id(), None);
    assert_eq!(params.regions()[0].name, RegionName::EMPTY);
    assert!(!params.regions()[0].consumer_writable);
    // Version 1 still refuses flag bit 1.
    let mut bytes = v1.as_bytes().to_vec();
    bytes[80 + 8] = 3; // regions[0].flags (version 1 regions start at 80)
    assert_eq!(
        parse_open_session_any(&bytes),
        Err(ProtoError::RegionFlagsReserved { index: 0, got: 3 })
    );
    // Version 3 goes to the version-2 parser and is refused by version.
    let mut bytes = open_session_v2_golden();
    bytes[4] = 3;
    assert_eq!(
        parse_open_session_any(&bytes),
        Err(ProtoError::UnsupportedVersion {
            expected: 2,
            got: 3
        })
    );
}

#[test]
fn list_sessions_request_bytes_are_golden() {
    let expected: [u8; 32] = [
        // header: "VMBM", version 1, kind 0x0008, size 32, reserved 0
        0x56, 0x4D, 0x42, 0x4D, 0x01, 0x00, 0x08, 0x00, 0x20, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, //
        // cursor 0x01020304, reserved 0
        0x04, 0x03, 0x02, 0x01, 0x00, 0x00, 0x00, 0x00, //
        // reserved u64
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    ];
    assert_eq!(encoded(&ListSessionsRequest::build(0x0102_0304)), expected);
    assert_eq!(parse_list_sessions(&expected), Ok(0x0102_0304));
}

fn list_sessions_reply_golden() -> Vec<u8> {
    cat(&[
        // header: "VMBM", version 1, kind 0x8008, size 824 (0x338), reserved 0
        &[0x56, 0x4D, 0x42, 0x4D, 0x01, 0x00, 0x08, 0x80],
        &[0x38, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00],
        // total 3, index 1
        &[0x03, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00],
        // vm_id
        &VM_ID_BYTES,
        // region_count 2, reserved 0
        &[0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00],
        // session_id 0x0000_0001_0000_0007
        &[0x07, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00],
        // regions[0]: size 0x2000, flags 3, state 1 (mapped), "ring"
        &[0x00, 0x20, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00],
        &[0x03, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00],
        &NAME_RING,
        // regions[1]: size 0x10000, flags 0, state 2 (intercepted), "frames"
        &[0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00],
        &[0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00],
        &NAME_FRAMES,
        // regions[2..16]: unused, all zero
        &[0; 14 * 48],
    ])
}

#[test]
fn list_sessions_reply_bytes_are_golden() {
    let expected = list_sessions_reply_golden();
    assert_eq!(expected.len(), 824);
    let regions = [
        ListedRegion {
            size: 0x2000,
            guest_writable: true,
            consumer_writable: true,
            state: RegionState::Mapped,
            name: RegionName::required("ring").unwrap(),
        },
        ListedRegion {
            size: 0x10000,
            guest_writable: false,
            consumer_writable: false,
            state: RegionState::Intercepted,
            name: RegionName::required("frames").unwrap(),
        },
    ];
    let listing =
        SessionListing::new(3, 1, WireGuid::from_u128(VM_ID), 0x1_0000_0007, &regions).unwrap();
    assert_eq!(encoded(&listing.to_reply()), expected);
    let mut out = vec![0; 824];
    assert_eq!(listing.encode(&mut out), Ok(824));
    assert_eq!(out, expected);

    let parsed = parse_list_sessions_reply(&expected).unwrap();
    assert_eq!(parsed, listing);
    assert_eq!(parsed.total(), 3);
    assert_eq!(parsed.index(), 1);
    assert_eq!(parsed.vm_id().to_u128(), VM_ID);
    assert_eq!(parsed.session_id(), 0x1_0000_0007);
    assert_eq!(parsed.regions(), &regions);
}

#[test]
fn attach_region_request_bytes_are_golden() {
    let expected = cat(&[
        // header: "VMBM", version 1, kind 0x0009, size 80 (0x50), reserved 0
        &[0x56, 0x4D, 0x42, 0x4D, 0x01, 0x00, 0x09, 0x00],
        &[0x50, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00],
        // vm_id
        &VM_ID_BYTES,
        // name "ring"
        &NAME_RING,
        // access 3 (map read + write), reserved 0
        &[0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00],
        // reserved u64
        &[0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00],
    ]);
    assert_eq!(expected.len(), 80);
    let request = AttachRegionRequest::build(
        WireGuid::from_u128(VM_ID),
        &RegionName::required("ring").unwrap(),
        SectionAccess::ReadWrite,
    )
    .unwrap();
    assert_eq!(encoded(&request), expected);
    assert_eq!(
        parse_attach_region(&expected),
        Ok(AttachRegionParams {
            vm_id: WireGuid::from_u128(VM_ID),
            name: RegionName::required("ring").unwrap(),
            access: SectionAccess::ReadWrite,
        })
    );
}

#[test]
fn attach_region_reply_bytes_are_golden() {
    let expected: [u8; 48] = [
        // header: "VMBM", version 1, kind 0x8009, size 48 (0x30), reserved 0
        0x56, 0x4D, 0x42, 0x4D, 0x01, 0x00, 0x09, 0x80, 0x30, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, //
        // attachment 0x0102030405060708
        0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01, //
        // section_handle 0x1a4
        0xa4, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, //
        // size 0x3000
        0x00, 0x30, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, //
        // access 1 (map read), region_index 5
        0x01, 0x00, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00,
    ];
    let attached = RegionAttached::new(
        attachment(0x0102_0304_0506_0708),
        0x1a4,
        0x3000,
        SectionAccess::Read,
        5,
    )
    .unwrap();
    assert_eq!(encoded(&attached.to_reply()), expected);
    let parsed = parse_attach_region_reply(&expected).unwrap();
    assert_eq!(parsed, attached);
    assert_eq!(parsed.attachment().get(), 0x0102_0304_0506_0708);
    assert_eq!(parsed.section_handle(), 0x1a4);
    assert_eq!(parsed.size(), 0x3000);
    assert_eq!(parsed.access(), SectionAccess::Read);
    assert_eq!(parsed.region_index(), 5);
}

/// The 32-byte request of `kind`: attachment 0x0102030405060708, then `tail`.
fn attachment_request_golden(kind: u8, tail: [u8; 8]) -> Vec<u8> {
    cat(&[
        // header: "VMBM", version 1, kind `kind`, size 32, reserved 0
        &[0x56, 0x4D, 0x42, 0x4D, 0x01, 0x00, kind, 0x00],
        &[0x20, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00],
        // attachment 0x0102030405060708
        &[0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01],
        &tail,
    ])
}

/// The 24-byte reply of `kind`: attachment 0x0102030405060708.
fn attachment_reply_golden(kind: u8) -> Vec<u8> {
    cat(&[
        // header: "VMBM", version 1, kind 0x80`kind`, size 24, reserved 0
        &[0x56, 0x4D, 0x42, 0x4D, 0x01, 0x00, kind, 0x80],
        &[0x18, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00],
        // attachment 0x0102030405060708
        &[0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01],
    ])
}

const ID: u64 = 0x0102_0304_0506_0708;

#[test]
fn detach_region_bytes_are_golden() {
    let request = attachment_request_golden(0x0A, [0; 8]);
    assert_eq!(
        encoded(&DetachRegionRequest::build(attachment(ID))),
        request
    );
    assert_eq!(parse_detach_region(&request), Ok(attachment(ID)));
    let reply = attachment_reply_golden(0x0A);
    assert_eq!(encoded(&DetachRegionReply::new(attachment(ID))), reply);
    assert_eq!(parse_detach_region_reply(&reply), Ok(attachment(ID)));
}

#[test]
fn set_doorbell_event_bytes_are_golden() {
    // event_handle 0x2c8
    let request = attachment_request_golden(0x0B, [0xc8, 0x02, 0, 0, 0, 0, 0, 0]);
    let handle = NonZeroU64::new(0x2c8);
    assert_eq!(
        encoded(&SetDoorbellEventRequest::build(attachment(ID), handle)),
        request
    );
    assert_eq!(
        parse_set_doorbell_event(&request),
        Ok(DoorbellEventParams {
            attachment: attachment(ID),
            event_handle: handle,
        })
    );
    // Handle 0 unregisters.
    let unregister = attachment_request_golden(0x0B, [0; 8]);
    assert_eq!(
        encoded(&SetDoorbellEventRequest::build(attachment(ID), None)),
        unregister
    );
    assert_eq!(
        parse_set_doorbell_event(&unregister).map(|p| p.event_handle),
        Ok(None)
    );
    let reply = attachment_reply_golden(0x0B);
    assert_eq!(encoded(&SetDoorbellEventReply::new(attachment(ID))), reply);
    assert_eq!(parse_set_doorbell_event_reply(&reply), Ok(attachment(ID)));
}

#[test]
fn take_doorbells_bytes_are_golden() {
    let request = attachment_request_golden(0x0C, [0; 8]);
    assert_eq!(
        encoded(&TakeDoorbellsRequest::build(attachment(ID))),
        request
    );
    assert_eq!(parse_take_doorbells(&request), Ok(attachment(ID)));
    let reply = cat(&[
        // header: "VMBM", version 1, kind 0x800C, size 56 (0x38), reserved 0
        &[0x56, 0x4D, 0x42, 0x4D, 0x01, 0x00, 0x0C, 0x80],
        &[0x38, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00],
        // attachment
        &[0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01],
        // count 3
        &[0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00],
        // last_value 0xdeadbeef
        &[0xef, 0xbe, 0xad, 0xde, 0x00, 0x00, 0x00, 0x00],
        // refused_from_guest 0x100
        &[0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00],
        // refused_to_guest u64::MAX (saturated)
        &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
    ]);
    let tally = DoorbellTally {
        attachment: attachment(ID),
        count: 3,
        last_value: 0xdead_beef,
        refused_from_guest: 0x100,
        refused_to_guest: u64::MAX,
    };
    assert_eq!(encoded(&tally.to_reply()), reply);
    assert_eq!(parse_take_doorbells_reply(&reply), Ok(tally));
}

#[test]
fn ring_guest_bytes_are_golden() {
    // value 0x1122334455667788
    let request = attachment_request_golden(0x0D, [0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11]);
    assert_eq!(
        encoded(&RingGuestRequest::build(
            attachment(ID),
            0x1122_3344_5566_7788
        )),
        request
    );
    assert_eq!(
        parse_ring_guest(&request),
        Ok(RingGuestParams {
            attachment: attachment(ID),
            value: 0x1122_3344_5566_7788,
        })
    );
    let reply = attachment_reply_golden(0x0D);
    assert_eq!(encoded(&RingGuestReply::new(attachment(ID))), reply);
    assert_eq!(parse_ring_guest_reply(&reply), Ok(attachment(ID)));
}
