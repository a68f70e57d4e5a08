//! The pure placement checks: every field of a guest's report is hostile until checked, and the
//! BAR-inside-reservation option (platform-paths J2) is classified, never assumed.

use proptest::prelude::*;
use vmbmmio_devhost::placement::{
    BarPlacement, BarState, GuestRange, GuestReport, MAX_GUEST_PHYSICAL_ADDRESS, PlacementError,
    PlacementSignal, PlacementSource, ReservationRelation, check_placement, classify_reservation,
};

const SIZE: u64 = 0x4000;

fn bar(base: u64, memory_decode: bool) -> BarPlacement {
    BarPlacement {
        base,
        size: SIZE,
        memory_decode,
    }
}

#[test]
fn check_placement_rules() {
    assert_eq!(
        check_placement(&bar(0x1_0000_0000, true), SIZE),
        Ok(BarState::Decoding {
            base: 0x1_0000_0000
        })
    );
    // Decode off: the base is not decoded, so any base (even garbage) is fine.
    assert_eq!(
        check_placement(&bar(0xFFFF_FFFF_FFFF_FFFF, false), SIZE),
        Ok(BarState::DecodeOff)
    );
    // The size is checked either way.
    assert_eq!(
        check_placement(
            &BarPlacement {
                base: 0,
                size: 0x2000,
                memory_decode: false
            },
            SIZE
        ),
        Err(PlacementError::SizeMismatch {
            expected: SIZE,
            got: 0x2000
        })
    );
    assert_eq!(
        check_placement(&bar(0, true), SIZE),
        Err(PlacementError::Unassigned)
    );
    for base in [0x1000, 0x2000, 0x1_0000_000C, 0x8000_0001] {
        assert_eq!(
            check_placement(&bar(base, true), SIZE),
            Err(PlacementError::Misaligned {
                base,
                alignment: SIZE
            }),
            "{base:#x}"
        );
    }
    // Ends exactly at 2^52: fine; one BAR further: refused; overflowing u64: refused.
    let last = MAX_GUEST_PHYSICAL_ADDRESS - SIZE;
    assert!(check_placement(&bar(last, true), SIZE).is_ok());
    for base in [MAX_GUEST_PHYSICAL_ADDRESS, u64::MAX - SIZE + 1] {
        assert_eq!(
            check_placement(&bar(base, true), SIZE),
            Err(PlacementError::BeyondAddressSpace { base, size: SIZE })
        );
    }
}

#[test]
fn j2_classification() {
    let bar = GuestRange {
        base: 0x2_0000_0000,
        size: SIZE,
    };
    let range = |base: u64, size: u64| Some(GuestRange { base, size });
    assert_eq!(
        classify_reservation(None, bar),
        Ok(ReservationRelation::NoReservation)
    );
    for (reservation, expected) in [
        // Below, touching the BAR's start; above, starting at its end.
        (
            range(0x1_FFF0_0000, 0x10_0000),
            ReservationRelation::Disjoint,
        ),
        (
            range(0x2_0000_4000, 0x10_0000),
            ReservationRelation::Disjoint,
        ),
        // Exactly the BAR; a larger reservation around it.
        (range(0x2_0000_0000, SIZE), ReservationRelation::Inside),
        (range(0x1_FFF0_0000, 0x20_0000), ReservationRelation::Inside),
    ] {
        assert_eq!(
            classify_reservation(reservation, bar),
            Ok(expected),
            "{reservation:?}"
        );
    }
    for reservation in [
        // Covers the BAR's first half / last half; lies inside the BAR.
        range(0x1_FFFF_E000, 0x4000),
        range(0x2_0000_2000, 0x10_0000),
        range(0x2_0000_1000, 0x1000),
    ] {
        assert_eq!(
            classify_reservation(reservation, bar),
            Err(PlacementError::PartialOverlap {
                bar,
                reservation: reservation.unwrap()
            })
        );
    }
    for reservation in [range(0x1000, 0), range(u64::MAX, 2)] {
        assert_eq!(
            classify_reservation(reservation, bar),
            Err(PlacementError::BadReservation {
                reservation: reservation.unwrap()
            })
        );
    }
}

#[test]
fn the_signal_keeps_the_newest_and_counts_refusals() {
    let signal = PlacementSignal::new();
    assert_eq!(
        signal.report(
            PlacementSource::GuestReport,
            bar(0x1_0000_0000, true).into()
        ),
        Err(PlacementError::BarSizeUnknown)
    );
    signal.set_bar_size(SIZE);
    let first = signal
        .report(
            PlacementSource::ConfigSpace,
            bar(0x1_0000_0000, false).into(),
        )
        .unwrap();
    assert_eq!((first.generation, first.state), (1, BarState::DecodeOff));
    assert_eq!(signal.last_decode_off(), 1);
    let second = signal
        .report(
            PlacementSource::GuestReport,
            GuestReport {
                bar: bar(0x1_0000_0000, true),
                channel_reservation: Some(GuestRange {
                    base: 0x2_0000_0000,
                    size: 0x10_0000,
                }),
            },
        )
        .unwrap();
    assert_eq!(second.relation, ReservationRelation::Disjoint);
    assert_eq!(signal.latest(), Some(second));
    assert!(
        signal
            .report(PlacementSource::GuestReport, bar(3, true).into())
            .is_err()
    );
    assert_eq!(signal.latest(), Some(second), "a refusal changes nothing");
    let rejection = signal.last_rejection().unwrap();
    assert_eq!(
        (rejection.total, rejection.source),
        (2, PlacementSource::GuestReport)
    );
}

proptest! {
    #[test]
    fn any_report_is_either_refused_or_sound(
        base: u64,
        size_shift in 12u32..40,
        bar_shift in 12u32..40,
        memory_decode: bool,
        reservation in proptest::option::of((any::<u64>(), any::<u64>())),
    ) {
        let size = 1u64 << size_shift;
        let bar_size = 1u64 << bar_shift;
        let report = GuestReport {
            bar: BarPlacement { base, size, memory_decode },
            channel_reservation: reservation.map(|(base, size)| GuestRange { base, size }),
        };
        let signal = PlacementSignal::new();
        signal.set_bar_size(bar_size);
        if let Ok(accepted) = signal.report(PlacementSource::GuestReport, report) {
            prop_assert_eq!(size, bar_size);
            if let BarState::Decoding { base } = accepted.state {
                prop_assert!(base != 0 && base % bar_size == 0);
                prop_assert!(base.checked_add(bar_size).is_some_and(|end| end <= MAX_GUEST_PHYSICAL_ADDRESS));
                if let (Some(r), ReservationRelation::Inside) = (report.channel_reservation, accepted.relation) {
                    prop_assert!(r.base <= base && base + bar_size <= r.base + r.size);
                }
            }
        }
    }
}
