//! WAIT_GUEST_EVENT's code, kinds and bytes, pinned. Every expected byte array here is written
//! by hand from the layout table in `docs/ioctl.md`, never produced by the code under test.

use vmbmmio_proto::ioctl::*;
use zerocopy::IntoBytes;

#[test]
fn code_and_kinds_are_golden() {
    assert_eq!(IOCTL_VMBMMIO_WAIT_GUEST_EVENT, 0x0022_E418);
    assert_eq!(IoctlCode::WaitGuestEvent.code(), 0x0022_E418);
    assert_eq!(IoctlCode::WaitGuestEvent.function(), 0x906);
    assert_eq!(
        IoctlCode::from_code(0x0022_E418),
        Some(IoctlCode::WaitGuestEvent)
    );
    // Issue 14's consumer requests follow it (ioctl_consumer_golden.rs).
    assert_eq!(IoctlCode::ALL.get(6), Some(&IoctlCode::WaitGuestEvent));
    assert_eq!(MessageKind::WaitGuestEventRequest.to_u16(), 0x0007);
    assert_eq!(MessageKind::WaitGuestEventReply.to_u16(), 0x8007);
    assert_eq!(
        MessageKind::from_u16(0x0007),
        Some(MessageKind::WaitGuestEventRequest)
    );
    assert_eq!(
        MessageKind::from_u16(0x8007),
        Some(MessageKind::WaitGuestEventReply)
    );
    assert_eq!(IoctlCode::WaitGuestEvent.request_size(), 24);
    assert_eq!(IoctlCode::WaitGuestEvent.reply_size(), 136);
    assert_eq!(size_of::<WaitGuestEventRequest>(), 24);
    assert_eq!(size_of::<WaitGuestEventReply>(), 136);
    assert_eq!(align_of::<WaitGuestEventReply>(), 1);
    // The next function and kinds are LIST_SESSIONS's since issue 14.
    assert_eq!(
        IoctlCode::from_code(0x0022_E41C),
        Some(IoctlCode::ListSessions)
    );
    assert_eq!(VERSION, 1);
    // The largest request is still OPEN_SESSION (its version 2 since issue 14).
    assert_eq!(MAX_REQUEST_SIZE, 864);
}

#[test]
fn event_kinds_are_golden() {
    let expected = [
        (GuestEventKind::GuestReport, 1),
        (GuestEventKind::GuestReady, 2),
        (GuestEventKind::GuestReleasing, 3),
        (GuestEventKind::GuestReset, 4),
        (GuestEventKind::GuestStopped, 5),
        (GuestEventKind::ChannelClosed, 6),
        (GuestEventKind::Resync, 7),
    ];
    assert_eq!(GuestEventKind::ALL.len(), expected.len());
    for (kind, value) in expected {
        assert_eq!(kind.to_u32(), value);
        assert_eq!(GuestEventKind::from_u32(value), Some(kind));
    }
    assert_eq!(GuestEventKind::from_u32(0), None);
    assert_eq!(GuestEventKind::from_u32(8), None);
    assert_eq!(EVENT_FLAG_RESERVATION, 1);
    assert_eq!(EVENT_FLAG_DEVICE, 2);
    assert_eq!(RESERVATION_PRESENT, 1);
    assert_eq!(
        (
            DEVICE_PRESENT,
            DEVICE_DECODE_ON,
            DEVICE_READY,
            DEVICE_RELEASING
        ),
        (1, 2, 4, 8)
    );
}

#[test]
fn request_bytes_are_golden() {
    let expected: [u8; 24] = [
        // header: "VMBM", version 1, kind 0x0007, size 24, reserved 0
        0x56, 0x4D, 0x42, 0x4D, 0x01, 0x00, 0x07, 0x00, 0x18, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, //
        // last_seen 0x0102030405060708
        0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01,
    ];
    let request = WaitGuestEventRequest::new(0x0102_0304_0506_0708);
    assert_eq!(request.as_bytes(), &expected);
    assert_eq!(parse_wait_guest_event(&expected), Ok(0x0102_0304_0506_0708));
}

fn ready_event() -> GuestEvent {
    GuestEvent::new(
        3,
        GuestEventKind::GuestReady,
        0,
        GuestSnapshot {
            reservation: Some(GuestReservation {
                base: 0xFE00_0000,
                size: 0x10_0000,
            }),
            device: Some(GuestDevice {
                bar_index: 2,
                bar_base: 0x8_0000_0000,
                bar_size: 0x400_0000,
                decode_on: true,
                ready: true,
                releasing: false,
            }),
            protocol_version: 0x0001_0000,
            guest_packets: 0x11,
            counted_errors: 0x2,
            errors_left: 14,
        },
    )
    .unwrap()
}

#[test]
fn reply_bytes_are_golden() {
    let expected: [u8; 136] = [
        // header: kind 0x8007, size 136 (0x88)
        0x56, 0x4D, 0x42, 0x4D, 0x01, 0x00, 0x07, 0x80, 0x88, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, //
        // 16: sequence 3
        0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, //
        // 24: event 2 (GUEST_READY), 28: flags 0
        0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, //
        // 32: reservation_flags PRESENT, 36: device_flags PRESENT|DECODE_ON|READY (0x7)
        0x01, 0x00, 0x00, 0x00, 0x07, 0x00, 0x00, 0x00, //
        // 40: reservation_base 0xFE000000
        0x00, 0x00, 0x00, 0xFE, 0x00, 0x00, 0x00, 0x00, //
        // 48: reservation_size 0x100000
        0x00, 0x00, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00, //
        // 56: bar_base 0x800000000
        0x00, 0x00, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00, //
        // 64: bar_size 0x4000000
        0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, //
        // 72: bar_index 2, reserved0 0, reserved1 0, 76: protocol_version 1.0
        0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, //
        // 80: guest_packets 0x11
        0x11, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, //
        // 88: counted_errors 2
        0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, //
        // 96: errors_left 14, 100: reserved2 0
        0x0E, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, //
        // 104: reserved[4]
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00,
    ];
    let event = ready_event();
    assert_eq!(event.to_reply().as_bytes(), &expected);
    let mut out = [0u8; 136];
    assert_eq!(event.encode(&mut out), Ok(136));
    assert_eq!(out, expected);
    assert_eq!(parse_wait_guest_event_reply(&expected), Ok(event));
}

#[test]
fn an_empty_snapshot_is_all_zero() {
    let event = GuestEvent::new(
        1,
        GuestEventKind::ChannelClosed,
        0,
        GuestSnapshot::default(),
    )
    .unwrap();
    let bytes = event.to_reply().as_bytes().to_vec();
    assert_eq!(&bytes[16..24], &1u64.to_le_bytes());
    assert_eq!(&bytes[24..28], &6u32.to_le_bytes());
    assert!(bytes[28..].iter().all(|b| *b == 0));
}
