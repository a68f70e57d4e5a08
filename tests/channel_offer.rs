//! The offer the simulated guest receives carries exactly the driver's MMIO plan (1 MiB
//! required, nothing optional, for every layout), and each kind of guest treats it as the real
//! one does: a Windows guest's VMBus driver reserves exactly the required amount through PnP, a
//! Linux guest reserves nothing until the channel's own driver claims. The reservation is never
//! where the BAR lives: the paired device's vPCI bridge window is a separate claim from the same
//! pool, and with the largest plan there is still room for it.

mod channel_support;

use channel_support::{
    INTERFACE_INSTANCE, INTERFACE_TYPE, NAME, offer_to_new_vm, running_channel, running_vm,
};
use hvsim::kmcl::{
    ClaimError, ClaimRequest, DXGKRNL_MMIO_ALIGNMENT, GpaRange, GuestError, GuestEvent, GuestKind,
    GuestVm, HvsimKmclWithoutMmioSpace, MIB, Power, ServerMmioSpace, Sim, SimHandleCloser,
    WINDOWS_RESERVATION_ALIGNMENT,
};
use hvsim::vm::{ClaimOwner, MmioPool};
use kmcl::raw::{
    VMBUS_SERVER_CHANNEL_INIT_FLAG_ENUMERATE_DEVICE_INTERFACE,
    VMBUS_SERVER_CHANNEL_INIT_FLAG_FORCE_NEW_CHANNEL,
};
use proptest::prelude::*;
use vmbmmio_core::channel::{ChannelState, DEFAULT_PACKET_SIZE, GuestMmioWindow, VmChannel};
use vmbmmio_core::mmio_plan::{
    MAX_BAR_SIZE, MAX_REGIONS, MmioPlan, PAGE_SIZE, RESERVATION_MEGABYTES,
    RESERVATION_MEGABYTES_OPTIONAL,
};

const KINDS: [GuestKind; 2] = [GuestKind::Linux, GuestKind::Windows];

/// The paired device's instance, as the vPCI claims name it.
const DEVICE: u128 = 0xa298_f338_8137_4c56_953b_aa2a_a5e4_f4ee;

fn layouts() -> Vec<Vec<u64>> {
    vec![
        vec![1],
        vec![PAGE_SIZE],
        vec![1 << 20],
        vec![PAGE_SIZE; MAX_REGIONS],
        vec![3 << 20, 5000, 1, 64 << 20],
        vec![1 << 30; MAX_REGIONS],
        vec![MAX_BAR_SIZE],
    ]
}

/// A running VM of `kind` with one pool window `window`.
fn running_vm_with_window(kind: GuestKind, window: GpaRange) -> GuestVm {
    let vm = GuestVm::new(kind, MmioPool::new(&[window]));
    vm.set_power(Power::Running);
    vm
}

/// The channel's MMIO range in the guest: a Windows guest's reservation as it stands, or a
/// Linux channel driver's claim (dxgkrnl-style: `mmio_megabytes << 20`, 64 KiB aligned).
fn channel_range(sim: &Sim, vm: hvsim::kmcl::VmId, kind: GuestKind) -> GpaRange {
    let guest = sim.guest(vm);
    let channel = guest.only_offer().unwrap().channel;
    match kind {
        GuestKind::Windows => guest.reservation(channel).unwrap(),
        GuestKind::Linux => guest
            .claim_offered_mmio(channel, DXGKRNL_MMIO_ALIGNMENT)
            .unwrap(),
    }
}

/// Offers `regions` to a running `kind` guest with pool `window` and checks the offer, the
/// channel's range, and that the BAR's high bridge window still fits, disjoint from it.
fn check_offer(regions: &[u64], kind: GuestKind, window: GpaRange) {
    let sim = Sim::new();
    let plan = MmioPlan::new(regions).unwrap();
    let guest_vm = running_vm_with_window(kind, window);
    let (vm, channel) = offer_to_new_vm(&sim, guest_vm.clone(), regions).unwrap();
    let offer = sim.guest(vm.id).only_offer().unwrap();
    assert_eq!(
        (offer.mmio_megabytes, offer.mmio_megabytes_optional),
        (plan.mmio_megabytes(), plan.mmio_megabytes_optional()),
        "{regions:?}"
    );
    assert_eq!(
        (offer.mmio_megabytes, offer.mmio_megabytes_optional),
        (RESERVATION_MEGABYTES, RESERVATION_MEGABYTES_OPTIONAL)
    );
    let range = channel_range(&sim, vm.id, kind);
    assert_eq!(range.size, MIB, "{kind:?} {regions:?}");
    assert!(window.contains(&range));
    let bar = plan.bar_size();
    let bridge = guest_vm
        .claim(
            ClaimOwner::VpciBridgeWindow {
                instance: DEVICE,
                high: true,
            },
            ClaimRequest::high(bar, bar),
        )
        .unwrap_or_else(|e| panic!("{kind:?} {regions:?}: no room for the BAR: {e:?}"));
    assert!(!bridge.overlaps(&range), "{bridge} overlaps {range}");
    assert_eq!(bridge.base % bar, 0);
    drop(channel);
    sim.assert_clean();
}

/// A high window 64 GiB long starting at `base` (unaligned to anything above a page).
fn high_window(base: u64) -> GpaRange {
    GpaRange {
        base,
        size: 64 << 30,
    }
}

#[test]
fn every_offer_carries_the_plans_one_and_zero_and_leaves_room_for_the_bar() {
    for kind in KINDS {
        for regions in layouts() {
            check_offer(
                &regions,
                kind,
                high_window((64 << 30) + (17 << 20) + PAGE_SIZE),
            );
        }
    }
}

#[test]
fn a_windows_guest_reserves_exactly_one_mib_page_aligned_in_its_pool() {
    let sim = Sim::new();
    let guest_vm = running_vm(GuestKind::Windows);
    let (vm, channel) = offer_to_new_vm(&sim, guest_vm.clone(), &[8 << 20]).unwrap();
    let guest = sim.guest(vm.id);
    let offer = guest.only_offer().unwrap();
    let reservation = guest.reservation(offer.channel).unwrap();
    assert_eq!(reservation.size, MIB);
    assert_eq!(reservation.base % WINDOWS_RESERVATION_ALIGNMENT, 0);
    assert!(
        guest
            .pool_windows()
            .iter()
            .any(|window| window.contains(&reservation))
    );
    assert_eq!(
        guest_vm.claim_of(&ClaimOwner::ChannelReservation(offer.channel.0)),
        Some(reservation),
        "an exclusive claim in the VM's pool"
    );
    assert!(guest.events().contains(&GuestEvent::Reserved {
        channel: offer.channel,
        range: reservation
    }));
    drop(channel);
    assert!(guest_vm.claims().is_empty(), "released with the rescind");
    sim.assert_clean();
}

#[test]
fn a_linux_guest_reserves_nothing_until_its_driver_claims() {
    let sim = Sim::new();
    let guest_vm = running_vm(GuestKind::Linux);
    let (vm, channel) = offer_to_new_vm(&sim, guest_vm.clone(), &[8 << 20]).unwrap();
    let guest = sim.guest(vm.id);
    let offer = guest.only_offer().unwrap();
    assert_eq!(guest.reservation(offer.channel), None);
    assert!(guest_vm.claims().is_empty());
    // The channel opens without any MMIO, and KMCL has none to report.
    guest.open(offer.channel).unwrap();
    assert_eq!(channel.state(), ChannelState::Running);
    assert_eq!(channel.guest_mmio_window(), None);
    // The channel's driver claims with its own size and alignment.
    let claim = guest
        .claim_mmio(offer.channel, ClaimRequest::anywhere(3 * MIB, 2 * MIB))
        .unwrap();
    assert_eq!(claim.size, 3 * MIB);
    assert_eq!(claim.base % (2 * MIB), 0);
    assert_eq!(guest.reservation(offer.channel), Some(claim));
    assert_eq!(guest.release_mmio(offer.channel), Ok(claim));
    assert!(guest_vm.claims().is_empty());
    drop(channel);
    sim.assert_clean();
}

#[test]
fn the_largest_plan_leaves_room_for_the_vpci_windows_in_the_default_pool() {
    for kind in KINDS {
        let sim = Sim::new();
        let guest_vm = running_vm(kind);
        let (vm, channel) = offer_to_new_vm(&sim, guest_vm.clone(), &[MAX_BAR_SIZE]).unwrap();
        let offer = sim.guest(vm.id).only_offer().unwrap();
        assert_eq!(
            (offer.mmio_megabytes, offer.mmio_megabytes_optional),
            (1, 0)
        );
        let range = channel_range(&sim, vm.id, kind);
        // pci-hyperv: the config window (0x2000, page-aligned, above 4 GiB since the kdump fix)
        // and the high bridge window (aligned to the largest power of two not above its size).
        let config = guest_vm
            .claim(
                ClaimOwner::VpciConfigWindow(DEVICE),
                ClaimRequest::high(0x2000, 0x1000),
            )
            .unwrap();
        let bridge = guest_vm
            .claim(
                ClaimOwner::VpciBridgeWindow {
                    instance: DEVICE,
                    high: true,
                },
                ClaimRequest::high(MAX_BAR_SIZE, MAX_BAR_SIZE),
            )
            .unwrap();
        assert_eq!(bridge.size, MAX_BAR_SIZE);
        for (a, b) in [(range, config), (range, bridge), (config, bridge)] {
            assert!(!a.overlaps(&b), "{kind:?}: {a} overlaps {b}");
        }
        drop(channel);
        sim.assert_clean();
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    /// Random layouts and a pool window starting at an arbitrary page: the offer always equals
    /// the plan, the channel's range is 1 MiB inside the pool, and the BAR's bridge window
    /// still fits beside it.
    #[test]
    fn the_offer_and_the_ranges_hold_for_random_layouts(
        regions in prop::collection::vec(1u64..=(256 << 20), 1..=MAX_REGIONS),
        window_page in 1u64..(1 << 20),
        linux in any::<bool>(),
    ) {
        let kind = if linux { GuestKind::Linux } else { GuestKind::Windows };
        check_offer(&regions, kind, high_window((4 << 30) + window_page * PAGE_SIZE));
    }
}

#[test]
fn the_offer_carries_the_configured_identity() {
    let sim = Sim::new();
    let (vm, channel) =
        offer_to_new_vm(&sim, running_vm(GuestKind::Windows), &[PAGE_SIZE]).unwrap();
    let offer = sim.guest(vm.id).only_offer().unwrap();
    assert_eq!(offer.interface_type, INTERFACE_TYPE);
    assert_eq!(offer.interface_instance, INTERFACE_INSTANCE);
    assert_eq!(
        offer.server_flags,
        VMBUS_SERVER_CHANNEL_INIT_FLAG_ENUMERATE_DEVICE_INTERFACE
            | VMBUS_SERVER_CHANNEL_INIT_FLAG_FORCE_NEW_CHANNEL
    );
    assert_eq!(offer.friendly_name.as_deref(), Some(NAME));
    assert_eq!(offer.max_packet_size, Some(DEFAULT_PACKET_SIZE));
    assert_eq!(channel.state(), ChannelState::Offered);
    drop(channel);
    sim.assert_clean();
}

#[test]
fn a_full_pool_fails_cleanly() {
    let tiny = GpaRange {
        base: 0xF800_0000,
        size: 512 << 10,
    };
    let no_space = ClaimError::NoSpace {
        size: MIB,
        align: WINDOWS_RESERVATION_ALIGNMENT,
    };

    // Windows: the PnP reservation fails, is recorded, and the child device never opens.
    let sim = Sim::new();
    let guest_vm = running_vm_with_window(GuestKind::Windows, tiny);
    let (vm, channel) = offer_to_new_vm(&sim, guest_vm.clone(), &[8 << 20]).unwrap();
    let guest = sim.guest(vm.id);
    let offer = guest.only_offer().unwrap();
    assert!(guest.events().contains(&GuestEvent::ReservationFailed {
        channel: offer.channel,
        reason: no_space
    }));
    assert_eq!(guest.reservation(offer.channel), None);
    assert_eq!(
        guest.open(offer.channel),
        Err(GuestError::Reservation(no_space))
    );
    assert_eq!(channel.state(), ChannelState::Offered);
    assert!(guest_vm.claims().is_empty());
    drop(channel);
    sim.assert_clean();

    // Linux: the channel driver's claim fails; nothing is held.
    let sim = Sim::new();
    let guest_vm = running_vm_with_window(GuestKind::Linux, tiny);
    let (vm, channel) = offer_to_new_vm(&sim, guest_vm.clone(), &[8 << 20]).unwrap();
    let guest = sim.guest(vm.id);
    let offer = guest.only_offer().unwrap();
    assert_eq!(
        guest.claim_offered_mmio(offer.channel, DXGKRNL_MMIO_ALIGNMENT),
        Err(GuestError::Claim(ClaimError::NoSpace {
            size: MIB,
            align: DXGKRNL_MMIO_ALIGNMENT
        }))
    );
    assert!(guest_vm.claims().is_empty());
    drop(channel);
    sim.assert_clean();

    // A pool that holds the reservation but not the BAR: the vPCI window fails, cleanly.
    let sim = Sim::new();
    let guest_vm = running_vm_with_window(
        GuestKind::Windows,
        GpaRange {
            base: (4 << 30) + PAGE_SIZE,
            size: 16 * MIB,
        },
    );
    let (vm, channel) = offer_to_new_vm(&sim, guest_vm.clone(), &[8 << 20]).unwrap();
    let offer = sim.guest(vm.id).only_offer().unwrap();
    assert!(sim.guest(vm.id).reservation(offer.channel).is_some());
    assert_eq!(
        guest_vm.claim(
            ClaimOwner::VpciBridgeWindow {
                instance: DEVICE,
                high: true
            },
            ClaimRequest::high(16 * MIB, 16 * MIB)
        ),
        Err(ClaimError::NoSpace {
            size: 16 * MIB,
            align: 16 * MIB
        })
    );
    assert_eq!(guest_vm.claims().len(), 1, "only the reservation");
    drop(channel);
    sim.assert_clean();
}

#[test]
fn started_records_the_reported_guest_window_for_reporting_only() {
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
    let vm = sim.add_vm(running_vm(GuestKind::Windows));
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
