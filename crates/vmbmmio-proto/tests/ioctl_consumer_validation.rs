//! Rejections of issue 14's IOCTL additions: each broken rule gives its typed error, in the
//! documented order, and every one is a `BadField` (STATUS_INVALID_PARAMETER) unless framing.

use vmbmmio_proto::guest::{NameError, RegionName, RegionState};
use vmbmmio_proto::ioctl::*;
use zerocopy::IntoBytes;

const VM_ID: u128 = 0xfedcba98_7654_3210_0f1e_2d3c4b5a6978;

fn put_u32(bytes: &mut [u8], at: usize, value: u32) {
    bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
}

fn put_u64(bytes: &mut [u8], at: usize, value: u64) {
    bytes[at..at + 8].copy_from_slice(&value.to_le_bytes());
}

fn name(text: &str) -> RegionName {
    RegionName::required(text).unwrap()
}

fn region(text: &str) -> NamedRegionRequest {
    NamedRegionRequest {
        size: 0x1000,
        guest_writable: true,
        consumer_writable: false,
        name: name(text),
    }
}

fn open_v2() -> Vec<u8> {
    OpenSessionV2Request::build(
        Target::Loopback,
        WireGuid::from_u128(1),
        WireGuid::from_u128(2),
        WireGuid::from_u128(VM_ID),
        &[region("a"), region("b"), region("c")],
    )
    .unwrap()
    .as_bytes()
    .to_vec()
}

/// Offset of version 2's `regions[index]`.
fn v2_region_at(index: usize) -> usize {
    96 + 48 * index
}

fn assert_bad_field<T: core::fmt::Debug + PartialEq>(got: ProtoResult<T>, expected: ProtoError) {
    assert_eq!(got, Err(expected));
    assert_eq!(expected.class(), ErrorClass::BadField);
}

#[test]
fn region_names_follow_the_required_rules() {
    assert_eq!(RegionName::required(""), Err(NameError::Empty));
    assert_eq!(
        RegionName::required("a\tb"),
        Err(NameError::ControlCharacter { at: 1 })
    );
    assert_eq!(
        RegionName::required("x\u{7f}"),
        Err(NameError::ControlCharacter { at: 1 })
    );
    assert_eq!(
        RegionName::required(&"n".repeat(33)),
        Err(NameError::TooLong { len: 33 })
    );
    assert!(RegionName::required(&"n".repeat(32)).is_ok());
    // Non-ASCII UTF-8 is fine (bytes >= 0x80 are not control characters here).
    assert!(RegionName::required("größe").is_ok());
    // The guest protocol still allows the empty name.
    assert!(RegionName::new("").is_ok());
}

#[test]
fn open_session_v2_rejects_bad_names() {
    let cases: [(&[u8], NameError); 4] = [
        (b"", NameError::Empty),
        (b"a\nb", NameError::ControlCharacter { at: 1 }),
        (b"a\0b", NameError::InteriorNul { at: 1 }),
        (b"\xff", NameError::NotUtf8),
    ];
    for (raw, fault) in cases {
        let mut bytes = open_v2();
        let at = v2_region_at(1) + 16;
        bytes[at..at + 32].fill(0);
        bytes[at..at + raw.len()].copy_from_slice(raw);
        assert_bad_field(
            parse_open_session_v2(&bytes),
            ProtoError::BadRegionName { index: 1, fault },
        );
    }
}

#[test]
fn open_session_v2_rejects_duplicate_names() {
    let mut bytes = open_v2();
    bytes[v2_region_at(2) + 16] = b'a';
    assert_bad_field(
        parse_open_session_v2(&bytes),
        ProtoError::DuplicateRegionName { index: 2, first: 0 },
    );
    assert_eq!(
        OpenSessionV2Request::build(
            Target::Loopback,
            WireGuid::from_u128(1),
            WireGuid::from_u128(2),
            WireGuid::from_u128(VM_ID),
            &[region("x"), region("y"), region("y")],
        ),
        Err(ProtoError::DuplicateRegionName { index: 2, first: 1 })
    );
}

#[test]
fn open_session_v2_rejects_nil_vm_id_flags_and_unused_entries() {
    let mut bytes = open_v2();
    bytes[64..80].fill(0);
    assert_bad_field(
        parse_open_session_v2(&bytes),
        ProtoError::NilGuid {
            field: GuidField::VmId,
        },
    );
    let mut bytes = open_v2();
    put_u32(&mut bytes, 80 + 12, 9);
    assert_bad_field(
        parse_open_session_v2(&bytes),
        ProtoError::ReservedNotZero {
            field: ReservedField::OpenSession { index: 3 },
            got: 9,
        },
    );
    for flags in [4, 7, 0x8000_0000] {
        let mut bytes = open_v2();
        put_u32(&mut bytes, v2_region_at(0) + 8, flags);
        assert_bad_field(
            parse_open_session_v2(&bytes),
            ProtoError::RegionFlagsReserved {
                index: 0,
                got: flags,
            },
        );
    }
    let mut bytes = open_v2();
    put_u32(&mut bytes, v2_region_at(0) + 12, 1);
    assert_bad_field(
        parse_open_session_v2(&bytes),
        ProtoError::ReservedNotZero {
            field: ReservedField::RegionSpec { index: 0 },
            got: 1,
        },
    );
    // An unused entry with only a name is not all zero.
    let mut bytes = open_v2();
    bytes[v2_region_at(3) + 16] = b'z';
    assert_bad_field(
        parse_open_session_v2(&bytes),
        ProtoError::UnusedRegionNotZero { index: 3 },
    );
    // The version-1 checks still apply and come first.
    let mut bytes = open_v2();
    put_u32(&mut bytes, 20, 0);
    assert_eq!(parse_open_session_v2(&bytes), Err(ProtoError::NoRegions));
    // Wrong size for version 2.
    let mut bytes = open_v2();
    bytes.truncate(336);
    assert_eq!(
        parse_open_session_any(&bytes),
        Err(ProtoError::TooShort {
            expected: 864,
            got: 336
        })
    );
}

#[test]
fn list_sessions_request_rejects_reserved() {
    let mut bytes = ListSessionsRequest::build(0).as_bytes().to_vec();
    put_u32(&mut bytes, 20, 1);
    assert_bad_field(
        parse_list_sessions(&bytes),
        ProtoError::ReservedNotZero {
            field: ReservedField::ListSessions { index: 0 },
            got: 1,
        },
    );
    let mut bytes = ListSessionsRequest::build(0).as_bytes().to_vec();
    put_u64(&mut bytes, 24, 1 << 40);
    assert_bad_field(
        parse_list_sessions(&bytes),
        ProtoError::ReservedNotZero {
            field: ReservedField::ListSessions { index: 1 },
            got: 1 << 40,
        },
    );
    // Any cursor is well-formed.
    let bytes = ListSessionsRequest::build(u32::MAX).as_bytes().to_vec();
    assert_eq!(parse_list_sessions(&bytes), Ok(u32::MAX));
}

fn listed(text: &str) -> ListedRegion {
    ListedRegion {
        size: 0x1000,
        guest_writable: false,
        consumer_writable: true,
        state: RegionState::Unmapped,
        name: name(text),
    }
}

fn listing() -> Vec<u8> {
    SessionListing::new(
        2,
        0,
        WireGuid::from_u128(VM_ID),
        9,
        &[listed("a"), listed("b")],
    )
    .unwrap()
    .to_reply()
    .as_bytes()
    .to_vec()
}

fn listed_at(index: usize) -> usize {
    56 + 48 * index
}

#[test]
fn list_sessions_reply_is_checked() {
    let mut bytes = listing();
    put_u32(&mut bytes, 20, 2);
    assert_bad_field(
        parse_list_sessions_reply(&bytes),
        ProtoError::ListIndexBeyondTotal { index: 2, total: 2 },
    );
    let mut bytes = listing();
    bytes[24..40].fill(0);
    assert_bad_field(
        parse_list_sessions_reply(&bytes),
        ProtoError::NilGuid {
            field: GuidField::VmId,
        },
    );
    let mut bytes = listing();
    put_u32(&mut bytes, 40, 17);
    assert_bad_field(
        parse_list_sessions_reply(&bytes),
        ProtoError::TooManyRegions { max: 16, got: 17 },
    );
    let mut bytes = listing();
    put_u32(&mut bytes, 44, 5);
    assert_bad_field(
        parse_list_sessions_reply(&bytes),
        ProtoError::ReservedNotZero {
            field: ReservedField::ListSessionsReply,
            got: 5,
        },
    );
    for size in [0, 0x1001, MAX_REGION_SIZE + 0x1000] {
        let mut bytes = listing();
        put_u64(&mut bytes, listed_at(1), size);
        assert_bad_field(
            parse_list_sessions_reply(&bytes),
            ProtoError::BadRegionSize {
                index: 1,
                got: size,
            },
        );
    }
    let mut bytes = listing();
    put_u32(&mut bytes, listed_at(0) + 8, 4);
    assert_bad_field(
        parse_list_sessions_reply(&bytes),
        ProtoError::RegionFlagsReserved { index: 0, got: 4 },
    );
    for state in [3, 0x100] {
        let mut bytes = listing();
        put_u32(&mut bytes, listed_at(0) + 12, state);
        assert_bad_field(
            parse_list_sessions_reply(&bytes),
            ProtoError::BadListedRegionState {
                index: 0,
                got: state,
            },
        );
    }
    let mut bytes = listing();
    bytes[listed_at(1) + 16] = 0;
    assert_bad_field(
        parse_list_sessions_reply(&bytes),
        ProtoError::BadRegionName {
            index: 1,
            fault: NameError::Empty,
        },
    );
    let mut bytes = listing();
    bytes[listed_at(1) + 16] = b'a';
    assert_bad_field(
        parse_list_sessions_reply(&bytes),
        ProtoError::DuplicateRegionName { index: 1, first: 0 },
    );
    let mut bytes = listing();
    bytes[listed_at(2) + 47] = 1;
    assert_bad_field(
        parse_list_sessions_reply(&bytes),
        ProtoError::UnusedRegionNotZero { index: 2 },
    );
    // The constructor refuses what the parser refuses.
    assert_eq!(
        SessionListing::new(0, 0, WireGuid::from_u128(VM_ID), 1, &[listed("a")]),
        Err(ProtoError::ListIndexBeyondTotal { index: 0, total: 0 })
    );
    assert_eq!(
        SessionListing::new(1, 0, WireGuid::from_u128(VM_ID), 1, &[]),
        Err(ProtoError::NoRegions)
    );
}

fn attach() -> Vec<u8> {
    AttachRegionRequest::build(
        WireGuid::from_u128(VM_ID),
        &name("ring"),
        SectionAccess::Read,
    )
    .unwrap()
    .as_bytes()
    .to_vec()
}

#[test]
fn attach_region_request_is_checked() {
    let mut bytes = attach();
    bytes[16..32].fill(0);
    assert_bad_field(
        parse_attach_region(&bytes),
        ProtoError::NilGuid {
            field: GuidField::VmId,
        },
    );
    let mut bytes = attach();
    bytes[32..64].fill(0);
    assert_bad_field(
        parse_attach_region(&bytes),
        ProtoError::BadAttachName {
            fault: NameError::Empty,
        },
    );
    let mut bytes = attach();
    bytes[33] = 0x1b;
    assert_bad_field(
        parse_attach_region(&bytes),
        ProtoError::BadAttachName {
            fault: NameError::ControlCharacter { at: 1 },
        },
    );
    let mut bytes = attach();
    put_u32(&mut bytes, 64, 2);
    assert_bad_field(
        parse_attach_region(&bytes),
        ProtoError::AccessWithoutRead { got: 2 },
    );
    let mut bytes = attach();
    put_u32(&mut bytes, 64, 5);
    assert_bad_field(
        parse_attach_region(&bytes),
        ProtoError::AccessReservedBits { got: 5 },
    );
    let mut bytes = attach();
    put_u32(&mut bytes, 68, 1);
    assert_bad_field(
        parse_attach_region(&bytes),
        ProtoError::ReservedNotZero {
            field: ReservedField::AttachRegion { index: 0 },
            got: 1,
        },
    );
    let mut bytes = attach();
    put_u64(&mut bytes, 72, 1);
    assert_bad_field(
        parse_attach_region(&bytes),
        ProtoError::ReservedNotZero {
            field: ReservedField::AttachRegion { index: 1 },
            got: 1,
        },
    );
    assert_eq!(
        AttachRegionRequest::build(WireGuid::NIL, &name("ring"), SectionAccess::Read),
        Err(ProtoError::NilGuid {
            field: GuidField::VmId
        })
    );
    assert_eq!(
        AttachRegionRequest::build(
            WireGuid::from_u128(VM_ID),
            &RegionName::EMPTY,
            SectionAccess::Read
        ),
        Err(ProtoError::BadAttachName {
            fault: NameError::Empty
        })
    );
}

fn attached() -> Vec<u8> {
    RegionAttached::new(
        AttachmentId::new(7).unwrap(),
        0x44,
        0x1000,
        SectionAccess::ReadWrite,
        3,
    )
    .unwrap()
    .to_reply()
    .as_bytes()
    .to_vec()
}

#[test]
fn attach_region_reply_is_checked() {
    let mut bytes = attached();
    put_u64(&mut bytes, 16, 0);
    assert_bad_field(
        parse_attach_region_reply(&bytes),
        ProtoError::ZeroAttachment,
    );
    let mut bytes = attached();
    put_u64(&mut bytes, 24, 0);
    assert_bad_field(
        parse_attach_region_reply(&bytes),
        ProtoError::NullSectionHandle,
    );
    for size in [0, 0x800, MAX_REGION_SIZE + 0x1000] {
        let mut bytes = attached();
        put_u64(&mut bytes, 32, size);
        assert_bad_field(
            parse_attach_region_reply(&bytes),
            ProtoError::BadRegionSize {
                index: 3,
                got: size,
            },
        );
    }
    let mut bytes = attached();
    put_u32(&mut bytes, 40, 0);
    assert_bad_field(
        parse_attach_region_reply(&bytes),
        ProtoError::AccessWithoutRead { got: 0 },
    );
    let mut bytes = attached();
    put_u32(&mut bytes, 44, 16);
    assert_bad_field(
        parse_attach_region_reply(&bytes),
        ProtoError::RegionIndexOutOfRange { limit: 16, got: 16 },
    );
}

/// A message's bytes and the parser that must accept them.
type Case = (Vec<u8>, fn(&[u8]) -> Result<(), ProtoError>);

#[test]
fn attachment_zero_and_reserved_are_rejected_everywhere() {
    let id = AttachmentId::new(1).unwrap();
    assert_eq!(AttachmentId::new(0), None);
    let requests: [Case; 4] = [
        (DetachRegionRequest::build(id).as_bytes().to_vec(), |b| {
            parse_detach_region(b).map(drop)
        }),
        (
            SetDoorbellEventRequest::build(id, None).as_bytes().to_vec(),
            |b| parse_set_doorbell_event(b).map(drop),
        ),
        (TakeDoorbellsRequest::build(id).as_bytes().to_vec(), |b| {
            parse_take_doorbells(b).map(drop)
        }),
        (RingGuestRequest::build(id, 5).as_bytes().to_vec(), |b| {
            parse_ring_guest(b).map(drop)
        }),
    ];
    for (mut bytes, parse) in requests {
        assert_eq!(parse(&bytes), Ok(()));
        put_u64(&mut bytes, 16, 0);
        assert_bad_field(parse(&bytes), ProtoError::ZeroAttachment);
    }
    let replies: [Case; 4] = [
        (DetachRegionReply::new(id).as_bytes().to_vec(), |b| {
            parse_detach_region_reply(b).map(drop)
        }),
        (SetDoorbellEventReply::new(id).as_bytes().to_vec(), |b| {
            parse_set_doorbell_event_reply(b).map(drop)
        }),
        (RingGuestReply::new(id).as_bytes().to_vec(), |b| {
            parse_ring_guest_reply(b).map(drop)
        }),
        (
            DoorbellTally {
                attachment: id,
                count: 0,
                last_value: 0,
                refused_from_guest: 0,
                refused_to_guest: 0,
            }
            .to_reply()
            .as_bytes()
            .to_vec(),
            |b| parse_take_doorbells_reply(b).map(drop),
        ),
    ];
    for (mut bytes, parse) in replies {
        assert_eq!(parse(&bytes), Ok(()));
        put_u64(&mut bytes, 16, 0);
        assert_bad_field(parse(&bytes), ProtoError::ZeroAttachment);
    }
    let mut bytes = DetachRegionRequest::build(id).as_bytes().to_vec();
    put_u64(&mut bytes, 24, 3);
    assert_bad_field(
        parse_detach_region(&bytes),
        ProtoError::ReservedNotZero {
            field: ReservedField::DetachRegion,
            got: 3,
        },
    );
    let mut bytes = TakeDoorbellsRequest::build(id).as_bytes().to_vec();
    put_u64(&mut bytes, 24, 3);
    assert_bad_field(
        parse_take_doorbells(&bytes),
        ProtoError::ReservedNotZero {
            field: ReservedField::TakeDoorbells,
            got: 3,
        },
    );
}

#[test]
fn framing_applies_to_the_new_messages() {
    let id = AttachmentId::new(1).unwrap();
    // A DETACH request sent as RING_GUEST: same size, wrong kind.
    let bytes = DetachRegionRequest::build(id).as_bytes().to_vec();
    assert_eq!(
        parse_ring_guest(&bytes),
        Err(ProtoError::WrongKind {
            expected: MessageKind::RingGuestRequest,
            got: 0x000A
        })
    );
    let mut bytes = RingGuestRequest::build(id, 1).as_bytes().to_vec();
    bytes.push(0);
    assert_eq!(
        parse_ring_guest(&bytes).unwrap_err().class(),
        ErrorClass::BadSize
    );
    assert_eq!(
        IoctlCode::AttachRegion.check_output_len(47),
        Err(ProtoError::OutputTooSmall {
            needed: 48,
            got: 47
        })
    );
    assert_eq!(
        IoctlCode::ListSessions.check_input_len(33),
        Err(ProtoError::TooLong {
            expected: 32,
            got: 33
        })
    );
    assert!(IoctlCode::OpenSession.check_input_len(864).is_ok());
    assert!(IoctlCode::OpenSession.check_input_len(865).is_err());
}
