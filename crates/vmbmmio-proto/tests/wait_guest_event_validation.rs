//! WAIT_GUEST_EVENT's validation rules, one failure each with its exact error, and property
//! tests: no input makes its parsers panic, and every valid reply round-trips.

use proptest::prelude::*;
use vmbmmio_proto::ioctl::*;
use zerocopy::IntoBytes;

fn put_u32(buf: &mut [u8], offset: usize, value: u32) {
    buf[offset..offset + 4].copy_from_slice(&value.to_le_bytes());
}

fn put_u64(buf: &mut [u8], offset: usize, value: u64) {
    buf[offset..offset + 8].copy_from_slice(&value.to_le_bytes());
}

fn device() -> GuestDevice {
    GuestDevice {
        bar_index: 0,
        bar_base: 0xF800_0000,
        bar_size: 0x10_0000,
        decode_on: true,
        ready: true,
        releasing: false,
    }
}

fn snapshot() -> GuestSnapshot {
    GuestSnapshot {
        reservation: Some(GuestReservation {
            base: 0xFE00_0000,
            size: 0x10_0000,
        }),
        device: Some(device()),
        protocol_version: 0x0001_0000,
        guest_packets: 4,
        counted_errors: 0,
        errors_left: 16,
    }
}

fn reply() -> Vec<u8> {
    GuestEvent::new(5, GuestEventKind::GuestReady, 0, snapshot())
        .unwrap()
        .to_reply()
        .as_bytes()
        .to_vec()
}

fn bad(bytes: &[u8], expected: ProtoError) {
    let error = parse_wait_guest_event_reply(bytes).unwrap_err();
    assert_eq!(error, expected);
    assert_eq!(error.class(), ErrorClass::BadField, "{error:?}");
}

#[test]
fn request_framing_is_checked() {
    let bytes = WaitGuestEventRequest::new(0).as_bytes().to_vec();
    assert_eq!(
        parse_wait_guest_event(&bytes[..23]),
        Err(ProtoError::TooShort {
            expected: 24,
            got: 23
        })
    );
    let mut long = bytes.clone();
    long.push(0);
    assert_eq!(
        parse_wait_guest_event(&long).unwrap_err().class(),
        ErrorClass::BadSize
    );
    let mut size = bytes.clone();
    put_u32(&mut size, 8, 16);
    assert_eq!(
        parse_wait_guest_event(&size),
        Err(ProtoError::SizeFieldMismatch {
            expected: 24,
            got: 16
        })
    );
    let mut reserved = bytes.clone();
    put_u32(&mut reserved, 12, 1);
    assert_eq!(
        parse_wait_guest_event(&reserved),
        Err(ProtoError::ReservedNotZero {
            field: ReservedField::Header,
            got: 1
        })
    );
    // A QUERY_STATUS request is not a WAIT_GUEST_EVENT request.
    let mut kind = bytes.clone();
    kind[6] = 0x04;
    assert!(matches!(
        parse_wait_guest_event(&kind),
        Err(ProtoError::WrongKind { .. })
    ));
    // Every last_seen is well-formed: the driver checks it against the session.
    for last_seen in [0, 1, u64::MAX] {
        let request = WaitGuestEventRequest::new(last_seen);
        assert_eq!(parse_wait_guest_event(request.as_bytes()), Ok(last_seen));
    }
}

#[test]
fn every_reply_rule_has_its_error() {
    let good = reply();
    assert!(parse_wait_guest_event_reply(&good).is_ok());

    let mut b = good.clone();
    put_u64(&mut b, 16, 0);
    bad(&b, ProtoError::ZeroEventSequence);

    for event in [0, 8, u32::MAX] {
        let mut b = good.clone();
        put_u32(&mut b, 24, event);
        bad(&b, ProtoError::BadGuestEvent { got: event });
    }

    let mut b = good.clone();
    put_u32(&mut b, 28, 4);
    bad(&b, ProtoError::EventFlagsReserved { got: 4 });
    // READY with a report flag; a report without one.
    let mut b = good.clone();
    put_u32(&mut b, 28, EVENT_FLAG_DEVICE);
    bad(
        &b,
        ProtoError::EventFlagsMismatch {
            event: 2,
            got: EVENT_FLAG_DEVICE,
        },
    );
    let mut b = good.clone();
    put_u32(&mut b, 24, 1);
    bad(&b, ProtoError::EventFlagsMismatch { event: 1, got: 0 });

    let mut b = good.clone();
    put_u32(&mut b, 32, 3);
    bad(&b, ProtoError::ReservationFlagsReserved { got: 3 });
    let mut b = good.clone();
    put_u32(&mut b, 36, 0x17);
    bad(&b, ProtoError::DeviceFlagsReserved { got: 0x17 });

    // Absent reports with fields.
    let mut b = good.clone();
    put_u32(&mut b, 32, 0);
    bad(
        &b,
        ProtoError::AbsentReportNotZero {
            report: AbsentReport::Reservation,
        },
    );
    let mut b = good.clone();
    put_u32(&mut b, 36, DEVICE_DECODE_ON);
    put_u64(&mut b, 56, 0);
    put_u64(&mut b, 64, 0);
    bad(
        &b,
        ProtoError::AbsentReportNotZero {
            report: AbsentReport::Device,
        },
    );

    // Reservation rules.
    for (base, size) in [
        (0, 0x1000),
        (0x1001, 0x1000),
        (0x1000, 0),
        (0x1000, 0x1001),
        (GUEST_PHYSICAL_LIMIT - 0x1000, 0x2000),
        (u64::MAX - 0xFFF, 0x1000),
    ] {
        let mut b = good.clone();
        put_u64(&mut b, 40, base);
        put_u64(&mut b, 48, size);
        bad(&b, ProtoError::BadGuestReservation { base, size });
    }

    // Device flags that contradict: READY without decode, READY with RELEASING.
    for flags in [
        DEVICE_PRESENT | DEVICE_READY,
        DEVICE_PRESENT | DEVICE_DECODE_ON | DEVICE_READY | DEVICE_RELEASING,
    ] {
        let mut b = good.clone();
        put_u32(&mut b, 36, flags);
        bad(&b, ProtoError::DeviceFlagsContradict { got: flags });
    }

    let mut b = good.clone();
    b[72] = 6;
    bad(&b, ProtoError::BadBarIndex { got: 6 });

    // BAR rules: size not a power of two, above the limit; base zero or misaligned with decode
    // on; beyond 2^52.
    for (base, size) in [
        (0xF800_0000, 0x18_0000),
        (0, 0x10_0000),
        (0xF801_0000, 0x10_0000),
        (0x10_0000_0000, MAX_BAR_SIZE * 2),
        (GUEST_PHYSICAL_LIMIT, 0x10_0000),
    ] {
        let mut b = good.clone();
        put_u64(&mut b, 56, base);
        put_u64(&mut b, 64, size);
        bad(&b, ProtoError::BadGuestBar { base, size });
    }
    // With decode off a base of 0 (or any aligned value) is fine.
    let mut b = good.clone();
    put_u32(&mut b, 36, DEVICE_PRESENT);
    put_u64(&mut b, 56, 0);
    assert!(parse_wait_guest_event_reply(&b).is_ok());

    // Reserved fields.
    let mut b = good.clone();
    b[73] = 1;
    bad(
        &b,
        ProtoError::ReservedNotZero {
            field: ReservedField::GuestEventPad,
            got: 1,
        },
    );
    let mut b = good.clone();
    put_u32(&mut b, 100, 9);
    bad(
        &b,
        ProtoError::ReservedNotZero {
            field: ReservedField::GuestEventPad2,
            got: 9,
        },
    );
    let mut b = good.clone();
    put_u64(&mut b, 128, 1);
    bad(
        &b,
        ProtoError::ReservedNotZero {
            field: ReservedField::GuestEventTail { index: 3 },
            got: 1,
        },
    );
}

#[test]
fn builders_apply_the_same_rules() {
    assert_eq!(
        GuestEvent::new(0, GuestEventKind::GuestReady, 0, snapshot()),
        Err(ProtoError::ZeroEventSequence)
    );
    let mut lying = snapshot();
    lying.device = Some(GuestDevice {
        bar_base: 0x1234,
        ..device()
    });
    assert!(matches!(
        GuestEvent::new(1, GuestEventKind::GuestReady, 0, lying),
        Err(ProtoError::BadGuestBar { .. })
    ));
    let mut out = [0u8; 135];
    assert_eq!(
        GuestEvent::new(1, GuestEventKind::GuestReady, 0, snapshot())
            .unwrap()
            .encode(&mut out),
        Err(ProtoError::OutputTooSmall {
            needed: 136,
            got: 135
        })
    );
}

fn arb_snapshot() -> impl Strategy<Value = GuestSnapshot> {
    let reservation =
        proptest::option::of((1u64..1 << 30, 1u64..1 << 10).prop_map(|(page, pages)| {
            GuestReservation {
                base: page * 4096,
                size: pages * 4096,
            }
        }));
    let device = proptest::option::of(
        (0u8..=5, 12u32..=35, 1u64..1 << 10, any::<[bool; 3]>()).prop_map(
            |(bar_index, shift, slot, [decode_on, ready, releasing])| {
                let bar_size = 1u64 << shift;
                let ready = ready && decode_on && !releasing;
                GuestDevice {
                    bar_index,
                    bar_base: if decode_on { slot * bar_size } else { 0 },
                    bar_size,
                    decode_on,
                    ready,
                    releasing,
                }
            },
        ),
    );
    (
        reservation,
        device,
        any::<u32>(),
        any::<u64>(),
        any::<u64>(),
        any::<u32>(),
    )
        .prop_map(
            |(
                reservation,
                device,
                protocol_version,
                guest_packets,
                counted_errors,
                errors_left,
            )| {
                GuestSnapshot {
                    reservation,
                    device,
                    protocol_version,
                    guest_packets,
                    counted_errors,
                    errors_left,
                }
            },
        )
}

proptest! {
    #[test]
    fn parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = parse_wait_guest_event(&bytes);
        let _ = parse_wait_guest_event_reply(&bytes);
    }

    #[test]
    fn valid_replies_round_trip(
        sequence in 1u64..,
        kind_index in 0usize..7,
        report_flags in 1u32..=3,
        snapshot in arb_snapshot(),
    ) {
        let kind = GuestEventKind::ALL[kind_index];
        let flags = if kind == GuestEventKind::GuestReport { report_flags } else { 0 };
        let event = GuestEvent::new(sequence, kind, flags, snapshot).unwrap();
        let bytes = event.to_reply().as_bytes().to_vec();
        prop_assert_eq!(parse_wait_guest_event_reply(&bytes), Ok(event));
    }

    #[test]
    fn requests_round_trip(last_seen in any::<u64>()) {
        let request = WaitGuestEventRequest::new(last_seen);
        prop_assert_eq!(parse_wait_guest_event(request.as_bytes()), Ok(last_seen));
    }
}
