//! Property tests of the MMIO reservation plan (`vmbmmio_core::mmio_plan`).

use proptest::prelude::*;
use vmbmmio_core::mmio_plan::{MAX_BAR_SIZE, MAX_REGIONS, MIB, MmioPlan, PAGE_SIZE, PlanError};

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
    /// Every accepted plan covers every region, keeps them disjoint and page-aligned, and its
    /// reservation holds a naturally aligned BAR wherever a page-aligned guest puts it.
    #[test]
    fn accepted_plans_never_under_reserve(
        sizes in prop::collection::vec(region_size(), 1..=MAX_REGIONS),
        base_page in 0u64..(1 << 40),
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
        prop_assert!(plan.mmio_megabytes() > 0);
        prop_assert!(u64::from(plan.mmio_megabytes()) * MIB >= bar);
        // Wherever a page-aligned reservation starts, the aligned BAR fits inside it.
        let base = base_page * PAGE_SIZE;
        let bar_start = base.div_ceil(bar) * bar;
        prop_assert!(bar_start + bar <= base + plan.reserved_bytes());
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
