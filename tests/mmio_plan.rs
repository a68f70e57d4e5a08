//! Property tests of the MMIO reservation plan (`vmbmmio_core::mmio_plan`).

use proptest::prelude::*;
use vmbmmio_core::mmio_plan::{
    MAX_BAR_SIZE, MAX_REGIONS, MIB, MmioPlan, PAGE_SIZE, PlanError, RESERVATION_MEGABYTES,
    RESERVATION_MEGABYTES_OPTIONAL,
};

/// Region sizes from one byte to a few GiB, biased towards page boundaries.
fn region_size() -> impl Strategy<Value = u64> {
    prop_oneof![
        1u64..=3 * PAGE_SIZE,
        (1u64..=4096).prop_map(|pages| pages * PAGE_SIZE),
        (1u64..=8 << 30),
    ]
}

fn page_round(size: u64) -> Option<u64> {
    size.checked_add(PAGE_SIZE - 1)
        .map(|s| s / PAGE_SIZE * PAGE_SIZE)
}

proptest! {
    /// Every accepted plan covers every region, keeps them disjoint and page-aligned inside a
    /// power-of-two BAR, and asks the guest for the same small reservation whatever the layout
    /// (the BAR is a separate guest range, so the reservation never competes with it).
    #[test]
    fn accepted_plans_cover_every_region_and_reserve_one_mib(
        sizes in prop::collection::vec(region_size(), 1..=MAX_REGIONS),
    ) {
        let Ok(plan) = MmioPlan::new(&sizes) else {
            // Rejected: must really be too large once pages are rounded.
            let total: Option<u64> = sizes.iter().try_fold(0u64, |acc, &s| acc.checked_add(page_round(s)?));
            prop_assert!(total.is_none_or(|t| t.next_power_of_two() > MAX_BAR_SIZE));
            return Ok(());
        };
        let bar = plan.bar_size();
        prop_assert!(bar.is_power_of_two() && (PAGE_SIZE..=MAX_BAR_SIZE).contains(&bar));
        let mut end = 0;
        for (region, &size) in plan.regions().iter().zip(&sizes) {
            prop_assert_eq!(region.offset % PAGE_SIZE, 0);
            prop_assert_eq!(region.offset, end, "packed in order, no overlap");
            prop_assert!(region.size >= size && region.size - size < PAGE_SIZE);
            end = region.offset + region.size;
        }
        prop_assert!(end <= bar);
        prop_assert_eq!(plan.mmio_megabytes(), RESERVATION_MEGABYTES);
        prop_assert_eq!(plan.mmio_megabytes_optional(), RESERVATION_MEGABYTES_OPTIONAL);
        prop_assert_eq!(plan.reserved_bytes(), MIB);
    }

    /// Planning never panics, whatever the input.
    #[test]
    fn planning_never_panics(sizes in prop::collection::vec(any::<u64>(), 0..=MAX_REGIONS + 2)) {
        let _ = MmioPlan::new(&sizes);
    }

    /// Empty regions are always rejected, with their index.
    #[test]
    fn empty_regions_are_rejected(
        mut sizes in prop::collection::vec(1u64..=1 << 20, 1..MAX_REGIONS),
        at in any::<prop::sample::Index>(),
    ) {
        let index = at.index(sizes.len());
        sizes[index] = 0;
        prop_assert_eq!(MmioPlan::new(&sizes), Err(PlanError::EmptyRegion { index }));
    }
}

/// Issue 7 defect 1: the plan used to ask for "alignment slack" in `MmioMegabytesOptional` (the
/// BAR size less a page) only so that a BAR could be placed inside the channel's reservation,
/// which no real guest does. The reservation is now 1 MiB required and nothing optional, for
/// every plan, and never zero (the SAL of `VmbServerChannelInitSetMmioMegabytes` requires
/// `MmioMegabytes > 0`).
#[test]
fn defect_01_the_plan_asks_for_no_alignment_slack() {
    for sizes in [&[4096u64][..], &[1 << 20, 12 << 10], &[MAX_BAR_SIZE]] {
        let plan = MmioPlan::new(sizes).unwrap();
        assert_eq!(plan.mmio_megabytes(), 1, "{sizes:?}");
        assert_eq!(plan.mmio_megabytes_optional(), 0, "{sizes:?}");
    }
    const { assert!(RESERVATION_MEGABYTES > 0) };
}
