//! The channel follows its VM's power state (issue 7, defect 3): offers reach the guest only
//! while the VM runs, a stopped or crashed VM closes the channel through the documented path,
//! and a restarted VM is offered the still-enabled channel again. Each guest kind treats the
//! offer's MMIO as the real one does (defect 2).

mod channel_support;

use channel_support::{offer_to_new_vm, running_vm};
use hvsim::kmcl::{
    CallbackKind, GuestError, GuestEvent, GuestKind, GuestVm, Lifecycle, PacketOutcome, Power, Sim,
};
use vmbmmio_core::channel::{ChannelState, UNSUPPORTED_PACKET_COMPLETION};

#[test]
fn defect_03_no_offer_reaches_a_vm_that_has_not_started() {
    for kind in [GuestKind::Linux, GuestKind::Windows] {
        let sim = Sim::new();
        let guest_vm = GuestVm::with_default_pool(kind);
        let (vm, channel) = offer_to_new_vm(&sim, guest_vm.clone(), &[1 << 20]).unwrap();
        let guest = sim.guest(vm.id);
        let id = sim.channel_ids()[0];
        // Enable succeeded (it does not wait for the guest), but there is no guest yet.
        assert_eq!(sim.channel(id).unwrap().lifecycle, Lifecycle::Enabled);
        assert!(guest.offers().is_empty(), "{kind:?}");
        assert!(guest_vm.claims().is_empty(), "{kind:?}: nothing reserved");
        assert_eq!(
            guest.open(id),
            Err(GuestError::VmNotRunning(Power::Created))
        );
        assert_eq!(channel.state(), ChannelState::Offered);

        guest_vm.set_power(Power::Running);
        let offer = guest.only_offer().unwrap();
        assert_eq!(offer.channel, id);
        assert_eq!(
            guest.reservation(id).is_some(),
            kind == GuestKind::Windows,
            "only Windows reserves by itself"
        );
        guest.open(id).unwrap();
        assert_eq!(channel.state(), ChannelState::Running);
        drop(channel);
        sim.assert_clean();
    }
}

#[test]
fn defect_03_a_terminated_vm_closes_the_channel_and_loses_the_offer() {
    let sim = Sim::new();
    let guest_vm = running_vm(GuestKind::Windows);
    let (vm, channel) = offer_to_new_vm(&sim, guest_vm.clone(), &[1 << 20]).unwrap();
    let guest = sim.guest(vm.id);
    let id = guest.only_offer().unwrap().channel;
    guest.open(id).unwrap();
    assert_eq!(
        guest.send(id, b"ping").unwrap(),
        PacketOutcome::Completed(UNSUPPORTED_PACKET_COMPLETION.to_vec())
    );

    sim.clear_log();
    guest_vm.set_power(Power::Stopped);
    assert_eq!(
        sim.callbacks(),
        [CallbackKind::Suspend, CallbackKind::Closed]
    );
    assert_eq!(channel.state(), ChannelState::Closed);
    assert_eq!(channel.stats().unexpected_events, 0);
    assert_eq!(channel.guest_mmio_window(), None);
    assert!(guest.offers().is_empty());
    assert!(
        guest_vm.claims().is_empty(),
        "the reservation went with the VM"
    );
    assert!(guest.events().contains(&GuestEvent::VmGone(Power::Stopped)));
    assert_eq!(
        guest.send(id, b"late"),
        Err(GuestError::VmNotRunning(Power::Stopped))
    );
    assert_eq!(
        guest.open(id),
        Err(GuestError::VmNotRunning(Power::Stopped))
    );
    // The host's channel stays Enabled until the driver disables it.
    assert_eq!(sim.channel(id).unwrap().lifecycle, Lifecycle::Enabled);

    // A restarted VM is offered the channel again and may reopen it.
    guest_vm.set_power(Power::Running);
    assert_eq!(guest.only_offer().unwrap().channel, id);
    assert!(guest.reservation(id).is_some());
    guest.open(id).unwrap();
    assert_eq!(channel.state(), ChannelState::Running);
    assert_eq!(channel.stats().opens, 2);
    drop(channel);
    sim.assert_clean();
}

#[test]
fn defect_03_a_crashed_vm_closes_the_channel_like_a_stopped_one() {
    let sim = Sim::new();
    let guest_vm = running_vm(GuestKind::Linux);
    let (vm, channel) = offer_to_new_vm(&sim, guest_vm.clone(), &[1 << 20]).unwrap();
    let guest = sim.guest(vm.id);
    let id = guest.only_offer().unwrap().channel;
    guest.open(id).unwrap();
    guest
        .claim_offered_mmio(id, hvsim::kmcl::DXGKRNL_MMIO_ALIGNMENT)
        .unwrap();
    guest_vm.crash("VM worker fast-fail");
    assert_eq!(channel.state(), ChannelState::Closed);
    assert!(guest.offers().is_empty());
    assert!(
        guest_vm.claims().is_empty(),
        "the driver's claim went with the VM"
    );
    assert_eq!(
        guest.claim_offered_mmio(id, hvsim::kmcl::DXGKRNL_MMIO_ALIGNMENT),
        Err(GuestError::VmNotRunning(Power::Crashed))
    );
    drop(channel);
    sim.assert_clean();
}

#[test]
fn a_paused_vm_keeps_the_channel_open_but_its_guest_does_nothing() {
    let sim = Sim::new();
    let guest_vm = running_vm(GuestKind::Windows);
    let (vm, channel) = offer_to_new_vm(&sim, guest_vm.clone(), &[1 << 20]).unwrap();
    let guest = sim.guest(vm.id);
    let id = guest.only_offer().unwrap().channel;
    guest.open(id).unwrap();
    guest_vm.set_power(Power::Paused);
    assert_eq!(channel.state(), ChannelState::Running);
    assert_eq!(
        guest.send(id, b"x"),
        Err(GuestError::VmNotRunning(Power::Paused))
    );
    assert_eq!(
        guest.close(id),
        Err(GuestError::VmNotRunning(Power::Paused))
    );
    guest_vm.set_power(Power::Running);
    guest.close(id).unwrap();
    assert_eq!(channel.state(), ChannelState::Closed);
    drop(channel);
    sim.assert_clean();
}

#[test]
fn defect_02_a_linux_guest_reserves_nothing_by_itself() {
    let sim = Sim::new();
    let guest_vm = running_vm(GuestKind::Linux);
    let (vm, channel) = offer_to_new_vm(&sim, guest_vm.clone(), &[64 << 20]).unwrap();
    let guest = sim.guest(vm.id);
    let id = guest.only_offer().unwrap().channel;
    guest.open(id).unwrap();
    assert_eq!(channel.state(), ChannelState::Running);
    assert_eq!(guest.reservation(id), None);
    assert!(guest_vm.claims().is_empty(), "hv_vmbus reserves nothing");
    assert_eq!(
        channel.guest_mmio_window(),
        None,
        "KMCL has nothing to report"
    );
    drop(channel);
    sim.assert_clean();
}
