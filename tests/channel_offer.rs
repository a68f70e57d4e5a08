//! The offer the simulated guest receives carries exactly the driver's MMIO plan, and the
//! guest's reservation can hold the plan's BAR.

mod channel_support;

use channel_support::{INTERFACE_INSTANCE, INTERFACE_TYPE, NAME, offer_to_new_vm, running_channel};
use hvsim::kmcl::{
    GpaRange, GuestConfig, GuestError, GuestEvent, HvsimKmclWithoutMmioSpace, MIB, OptionalMmio,
    ReserveError, ServerMmioSpace, Sim, SimHandleCloser,
};
use kmcl::raw::VMBUS_SERVER_CHANNEL_INIT_FLAG_ENUMERATE_DEVICE_INTERFACE;
use proptest::prelude::*;
use vmbmmio_core::channel::{ChannelState, DEFAULT_PACKET_SIZE, GuestMmioWindow, VmChannel};
use vmbmmio_core::mmio_plan::{MAX_BAR_SIZE, MAX_REGIONS, MmioPlan, PAGE_SIZE};

/// Offers `regions` and checks the offer and the reservation against the plan.
fn check_layout(regions: &[u64], guest: GuestConfig) {
    let sim = Sim::new();
    let plan = MmioPlan::new(regions).unwrap();
    let (vm, channel) = offer_to_new_vm(&sim, guest, regions).unwrap();
    let offer = sim.guest(vm.id).only_offer().unwrap();
    assert_eq!(offer.mmio_megabytes, plan.mmio_megabytes(), "{regions:?}");
    assert_eq!(
        offer.mmio_megabytes_optional,
        plan.mmio_megabytes_optional(),
        "{regions:?}"
    );
    let reservation = sim.guest(vm.id).reservation(offer.channel).unwrap();
    assert_eq!(reservation.size, plan.reserved_bytes());
    assert_eq!(reservation.base % guest.alignment, 0);
    assert!(guest.mmio_window.contains(&reservation));
    // The naturally aligned BAR fits inside the reservation wherever the guest put it.
    let bar = plan.bar_size();
    let bar_start = reservation.base.div_ceil(bar) * bar;
    assert!(
        bar_start + bar <= reservation.base + reservation.size,
        "{regions:?}"
    );
    drop(channel);
    sim.assert_clean();
}

#[test]
fn offered_mmio_equals_the_plan_for_representative_layouts() {
    let layouts: Vec<Vec<u64>> = vec![
        vec![1],
        vec![PAGE_SIZE],
        vec![1 << 20],
        vec![PAGE_SIZE; MAX_REGIONS],
        vec![3 << 20, 5000, 1, 64 << 20],
        vec![1 << 30; MAX_REGIONS],
        // The largest BAR the plan allows: 32 GiB, MmioMegabytes 32768 + 32768 optional.
        vec![MAX_BAR_SIZE],
    ];
    for regions in layouts {
        check_layout(&regions, GuestConfig::default());
    }
}

#[test]
fn the_largest_plan_offers_the_u16_maximum_the_plan_allows() {
    let sim = Sim::new();
    let (vm, channel) = offer_to_new_vm(&sim, GuestConfig::default(), &[MAX_BAR_SIZE]).unwrap();
    let offer = sim.guest(vm.id).only_offer().unwrap();
    assert_eq!(
        (offer.mmio_megabytes, offer.mmio_megabytes_optional),
        (32768, 32768)
    );
    drop(channel);
    sim.assert_clean();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    /// Random layouts and a guest window starting at an arbitrary page: the offer always equals
    /// the plan and the reservation always holds the BAR.
    #[test]
    fn offered_mmio_equals_the_plan_for_random_layouts(
        regions in prop::collection::vec(1u64..=(256 << 20), 1..=MAX_REGIONS),
        window_page in 1u64..(1 << 20),
    ) {
        let guest = GuestConfig {
            mmio_window: GpaRange { base: window_page * PAGE_SIZE, size: 64 << 30 },
            ..GuestConfig::default()
        };
        check_layout(&regions, guest);
    }
}

#[test]
fn the_offer_carries_the_configured_identity() {
    let sim = Sim::new();
    let (vm, channel) = offer_to_new_vm(&sim, GuestConfig::default(), &[PAGE_SIZE]).unwrap();
    let offer = sim.guest(vm.id).only_offer().unwrap();
    assert_eq!(offer.interface_type, INTERFACE_TYPE);
    assert_eq!(offer.interface_instance, INTERFACE_INSTANCE);
    assert_eq!(
        offer.server_flags,
        VMBUS_SERVER_CHANNEL_INIT_FLAG_ENUMERATE_DEVICE_INTERFACE
    );
    assert_eq!(offer.friendly_name.as_deref(), Some(NAME));
    assert_eq!(offer.max_packet_size, Some(DEFAULT_PACKET_SIZE));
    assert_eq!(channel.state(), ChannelState::Offered);
    drop(channel);
    sim.assert_clean();
}

#[test]
fn a_full_guest_window_fails_the_reservation_cleanly() {
    let sim = Sim::new();
    let small = GuestConfig {
        mmio_window: GpaRange {
            base: 0xF800_0000,
            size: 4 * MIB,
        },
        ..GuestConfig::default()
    };
    // 8 MiB BAR: 8 MiB + 8 MiB optional do not fit a 4 MiB window.
    let (vm, channel) = offer_to_new_vm(&sim, small, &[8 << 20]).unwrap();
    let guest = sim.guest(vm.id);
    let offer = guest.only_offer().unwrap();
    let reason = ReserveError::WindowFull {
        requested: 16 * MIB,
        alignment: 4096,
    };
    assert!(guest.events().contains(&GuestEvent::ReservationFailed {
        channel: offer.channel,
        reason
    }));
    assert_eq!(guest.reservation(offer.channel), None);
    assert_eq!(
        guest.open(offer.channel),
        Err(GuestError::Reservation(reason))
    );
    assert_eq!(channel.state(), ChannelState::Offered);
    drop(channel);
    sim.assert_clean();
}

#[test]
fn a_guest_ignoring_the_optional_amount_reserves_only_mmio_megabytes() {
    let sim = Sim::new();
    let guest = GuestConfig {
        optional_mmio: OptionalMmio::RequiredOnly,
        ..GuestConfig::default()
    };
    let (vm, channel) = offer_to_new_vm(&sim, guest, &[4 << 20]).unwrap();
    let offer = sim.guest(vm.id).only_offer().unwrap();
    let reservation = sim.guest(vm.id).reservation(offer.channel).unwrap();
    assert_eq!(reservation.size, u64::from(offer.mmio_megabytes) * MIB);
    drop(channel);
    sim.assert_clean();
}

#[test]
fn opened_records_the_reported_guest_window_for_reporting_only() {
    let sim = Sim::new();
    let (vm, channel, id) = running_channel(&sim);
    let reservation = sim.guest(vm.id).reservation(id).unwrap();
    let expected = GuestMmioWindow {
        address: reservation.base,
        size: reservation.size,
    };
    assert_eq!(channel.guest_mmio_window(), Some(expected));
    assert_eq!(channel.state(), ChannelState::Running);
    sim.guest(vm.id).close(id).unwrap();
    assert_eq!(
        channel.guest_mmio_window(),
        None,
        "not reported once closed"
    );
    drop(channel);
    sim.assert_clean();
}

#[test]
fn implausible_or_missing_mmio_reports_are_ignored() {
    for (behaviour, ignored) in [
        (ServerMmioSpace::Zeros, 1),
        (ServerMmioSpace::KernelVirtualAddress, 1),
    ] {
        let sim = Sim::new();
        sim.set_server_mmio_space(behaviour);
        let (_vm, channel, _id) = running_channel(&sim);
        assert_eq!(channel.guest_mmio_window(), None, "{behaviour:?}");
        assert_eq!(channel.stats().mmio_reports_ignored, ignored);
        drop(channel);
        sim.assert_clean();
    }

    // The Windows import table has no VmbChannelGetMmioSpace: nothing is known, nothing ignored.
    let sim = Sim::new();
    let vm = sim.add_vm(GuestConfig::default());
    let target = channel_support::vm_target(&sim, &vm);
    let channel = VmChannel::<HvsimKmclWithoutMmioSpace, SimHandleCloser>::offer(
        sim.parent_device(),
        channel_support::config(target),
        MmioPlan::new(&[PAGE_SIZE]).unwrap(),
    )
    .unwrap();
    let offer = sim.guest(vm.id).only_offer().unwrap();
    sim.guest(vm.id).open(offer.channel).unwrap();
    assert_eq!(channel.state(), ChannelState::Running);
    assert_eq!(channel.guest_mmio_window(), None);
    assert_eq!(channel.stats().mmio_reports_ignored, 0);
    drop(channel);
    sim.assert_clean();
}
