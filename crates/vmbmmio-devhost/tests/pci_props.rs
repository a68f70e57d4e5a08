//! Property tests of the BAR masks and the configuration space.

use proptest::prelude::*;
use vmbmmio_devhost::callbacks::{PciDeviceCallbacks, PciPnpId};
use vmbmmio_devhost::emulator::Emulator;
use vmbmmio_devhost::layout::BarLayout;
use vmbmmio_devhost::pci::{
    BAR_TYPE_64_PREFETCHABLE, ConfigSpace, bar_address_mask, bar_probe_values, bar_size_from_probe,
};

fn id() -> PciPnpId {
    PciPnpId {
        vendor_id: 0x1af4,
        device_id: 0x1110,
        revision_id: 1,
        base_class: 5,
        ..Default::default()
    }
}

fn bar_index() -> impl Strategy<Value = u8> {
    prop_oneof![Just(0u8), Just(2u8), Just(4u8)]
}

proptest! {
    #[test]
    fn probe_values_round_trip_to_the_size(shift in 12u32..=63) {
        let size = 1u64 << shift;
        let (low, high) = bar_probe_values(size);
        prop_assert_eq!(low & 0xF, BAR_TYPE_64_PREFETCHABLE);
        prop_assert_eq!(bar_size_from_probe(low, high), Some(size));
        prop_assert_eq!(((u64::from(high)) << 32) | u64::from(low & !0xF), bar_address_mask(size));
    }

    #[test]
    fn programmed_bases_are_masked_and_keep_the_type_bits(
        shift in 12u32..=35,
        index in bar_index(),
        low in any::<u32>(),
        high in any::<u32>(),
    ) {
        let size = 1u64 << shift;
        let mut space = ConfigSpace::new(id(), index);
        space.set_bar_size(size);
        let offset = 0x10 + 4 * u32::from(index);
        space.write(offset, low);
        space.write(offset + 4, high);
        let base = space.bar_base();
        prop_assert_eq!(base & (size - 1), 0, "naturally aligned");
        prop_assert_eq!(base, ((u64::from(high) << 32) | u64::from(low)) & bar_address_mask(size));
        prop_assert_eq!(space.read(offset) & 0xF, BAR_TYPE_64_PREFETCHABLE);
        prop_assert_eq!(u64::from(space.read(offset) & !0xF) | (u64::from(space.read(offset + 4)) << 32), base);
        // All ones reads back the probe values GetDetails reports.
        space.write(offset, u32::MAX);
        space.write(offset + 4, u32::MAX);
        let probed = space.probed_bars();
        prop_assert_eq!(space.read(offset), probed[usize::from(index)]);
        prop_assert_eq!(space.read(offset + 4), probed[usize::from(index) + 1]);
    }

    #[test]
    fn arbitrary_writes_never_change_identity_or_unused_bars(
        index in bar_index(),
        writes in proptest::collection::vec((0u32..0x200, any::<u32>()), 0..64),
    ) {
        let mut space = ConfigSpace::new(id(), index);
        space.set_bar_size(1 << 20);
        for (offset, value) in writes {
            space.write(offset, value);
        }
        prop_assert_eq!(space.read(0), 0x1110_1af4);
        prop_assert_eq!(space.read(8), 0x0500_0001);
        prop_assert_eq!(space.read(4) >> 16, 0, "status reads 0");
        for bar in 0..6u32 {
            if bar != u32::from(index) && bar != u32::from(index) + 1 {
                prop_assert_eq!(space.read(0x10 + 4 * bar), 0);
            }
        }
        for offset in (0x100..0x200).step_by(4) {
            prop_assert_eq!(space.read(offset), 0);
        }
    }

    #[test]
    fn get_details_matches_the_layout(sizes in proptest::collection::vec(1u64..(64 << 20), 1..=16), index in bar_index()) {
        let layout = BarLayout::plan(&sizes).unwrap();
        let bar_size = layout.bar_size();
        let emulator = Emulator::new(id(), index);
        emulator.set_layout(layout);
        let mut bars = [0xAAAA_AAAA; 6];
        prop_assert_eq!(emulator.get_details(&mut bars).unwrap(), id());
        let index = usize::from(index);
        prop_assert_eq!(bar_size_from_probe(bars[index], bars[index + 1]), Some(bar_size));
        for (other, value) in bars.iter().enumerate() {
            if other != index && other != index + 1 {
                prop_assert_eq!(*value, 0);
            }
        }
    }
}
