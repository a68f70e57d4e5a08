//! Golden tests of QUERY_DRIVER (IOCTL function 0x905, kinds 0x0006 / 0x8006): the code, the
//! struct sizes and the exact bytes of the request and the reply.
//!
//! QUERY_DRIVER joined version 1 as a new message kind, as the versioning policy in
//! `docs/ioctl.md` prescribes for a new request; the five earlier requests keep their codes,
//! kinds and layouts (`ioctl_golden.rs`). Every expected byte array here is written by hand from
//! the layout table in `docs/ioctl.md`, never produced by the code under test.

use vmbmmio_proto::ioctl::*;
use zerocopy::IntoBytes;

#[test]
fn query_driver_code_and_kinds_are_golden() {
    // (0x22 << 16) | (3 << 14) | (0x905 << 2) | 0
    assert_eq!(IOCTL_VMBMMIO_QUERY_DRIVER, 0x0022_E414);
    assert_eq!(IoctlCode::QueryDriver.code(), 0x0022_E414);
    assert_eq!(IoctlCode::QueryDriver.function(), 0x905);
    assert_eq!(
        IoctlCode::from_code(0x0022_E414),
        Some(IoctlCode::QueryDriver)
    );
    assert_eq!(IoctlCode::parse(0x0022_E414), Ok(IoctlCode::QueryDriver));
    // QUERY_DRIVER was the last code until WAIT_GUEST_EVENT (0x906) followed it.
    assert_eq!(IoctlCode::ALL.get(5), Some(&IoctlCode::QueryDriver));
    assert_eq!(MessageKind::QueryDriverRequest.to_u16(), 0x0006);
    assert_eq!(MessageKind::QueryDriverReply.to_u16(), 0x8006);
    assert_eq!(
        MessageKind::from_u16(0x0006),
        Some(MessageKind::QueryDriverRequest)
    );
    assert_eq!(
        MessageKind::from_u16(0x8006),
        Some(MessageKind::QueryDriverReply)
    );
    assert_eq!(
        IoctlCode::QueryDriver.request_kind(),
        MessageKind::QueryDriverRequest
    );
    assert_eq!(
        IoctlCode::QueryDriver.reply_kind(),
        MessageKind::QueryDriverReply
    );
    // The next function and kinds went to WAIT_GUEST_EVENT (wait_guest_event_golden.rs).
    assert_eq!(
        IoctlCode::from_code(0x0022_E418),
        Some(IoctlCode::WaitGuestEvent)
    );
    // The interface version did not change.
    assert_eq!(VERSION, 1);
}

#[test]
fn query_driver_sizes_are_golden() {
    assert_eq!(size_of::<QueryDriverRequest>(), 16);
    assert_eq!(size_of::<QueryDriverReply>(), 64);
    assert_eq!(align_of::<QueryDriverReply>(), 1);
    assert_eq!(IoctlCode::QueryDriver.request_size(), 16);
    assert_eq!(IoctlCode::QueryDriver.reply_size(), 64);
    assert_eq!(DRIVER_RESERVED_WORDS, 4);
    assert_eq!(MAX_KMCL_ENTRIES, 32);
    // OPEN_SESSION stays the largest request.
    // OPEN_SESSION version 2 (issue 14) is the largest request now.
    assert_eq!(MAX_REQUEST_SIZE, 864);
}

#[test]
fn query_driver_request_bytes_are_golden() {
    let expected: [u8; 16] = [
        0x56, 0x4D, 0x42, 0x4D, // magic "VMBM"
        0x01, 0x00, // version 1
        0x06, 0x00, // kind 0x0006
        0x10, 0x00, 0x00, 0x00, // size 16
        0x00, 0x00, 0x00, 0x00, // reserved
    ];
    assert_eq!(QueryDriverRequest::new().as_bytes(), &expected);
    assert_eq!(QueryDriverRequest::default(), QueryDriverRequest::new());
    assert_eq!(parse_query_driver(&expected), Ok(()));
}

fn reply_golden() -> Vec<u8> {
    [
        // header: kind 0x8006, size 64 (0x40)
        &[0x56, 0x4D, 0x42, 0x4D, 0x01, 0x00, 0x06, 0x80][..],
        &[0x40, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00],
        // kmcl_entries 27 (0x1B)
        &[0x1B, 0x00, 0x00, 0x00],
        // kmcl_missing_optional: bit 26 (VmbChannelGetMmioSpace) = 0x0400_0000
        &[0x00, 0x00, 0x00, 0x04],
        // open_files 3
        &[0x03, 0x00, 0x00, 0x00],
        // live_sessions 1
        &[0x01, 0x00, 0x00, 0x00],
        // reserved[4]
        &[0; 32],
    ]
    .concat()
}

#[test]
fn query_driver_reply_bytes_are_golden() {
    let expected = reply_golden();
    assert_eq!(expected.len(), 64);
    let facts = DriverFacts::new(27, 1 << 26, 3, 1).unwrap();
    assert_eq!(facts.to_reply().as_bytes(), expected.as_slice());
    let mut out = [0u8; 64];
    assert_eq!(facts.encode(&mut out), Ok(64));
    assert_eq!(out.as_slice(), expected.as_slice());
    let parsed = parse_query_driver_reply(&expected).unwrap();
    assert_eq!(parsed, facts);
    assert_eq!(
        (
            parsed.kmcl_entries(),
            parsed.kmcl_missing_optional(),
            parsed.open_files(),
            parsed.live_sessions()
        ),
        (27, 0x0400_0000, 3, 1)
    );
}

#[test]
fn query_driver_reply_with_every_entry_available_is_golden() {
    let expected = [
        &[0x56, 0x4D, 0x42, 0x4D, 0x01, 0x00, 0x06, 0x80][..],
        &[0x40, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00],
        &[0x1B, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00],
        &[0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00],
        &[0; 32],
    ]
    .concat();
    let facts = DriverFacts::new(27, 0, 1, 0).unwrap();
    assert_eq!(facts.to_reply().as_bytes(), expected.as_slice());
    assert_eq!(parse_query_driver_reply(&expected), Ok(facts));
}
