//! Open, close and reopen cycles; Disable while open; every packet completed exactly once.

mod channel_support;

use channel_support::{offer_to_new_vm, running_channel, running_vm};
use hvsim::kmcl::{CallbackKind, GuestError, GuestEvent, GuestKind, LogEntry, PacketOutcome, Sim};
use kmcl::KmclFunction as F;
use vmbmmio_core::channel::{ChannelState, UNSUPPORTED_PACKET_COMPLETION};

#[test]
fn open_runs_opened_started_post_started_in_order() {
    let sim = Sim::new();
    let (vm, channel) = offer_to_new_vm(&sim, running_vm(GuestKind::Windows), &[1 << 20]).unwrap();
    let guest = sim.guest(vm.id);
    let offer = guest.only_offer().unwrap();
    sim.clear_log();
    guest.open(offer.channel).unwrap();
    use CallbackKind::*;
    assert_eq!(sim.callbacks(), [Opened, Started, PostStarted]);
    assert_eq!(channel.state(), ChannelState::Running);
    assert_eq!(channel.stats().opens, 1);
    assert_eq!(guest.open(offer.channel), Err(GuestError::AlreadyOpen));
    drop(channel);
    sim.assert_clean();
}

#[test]
fn packets_may_arrive_between_started_and_post_started() {
    let sim = Sim::new();
    sim.hold_post_started(true);
    let (vm, channel) = offer_to_new_vm(&sim, running_vm(GuestKind::Windows), &[1 << 20]).unwrap();
    let guest = sim.guest(vm.id);
    let id = guest.only_offer().unwrap().channel;
    sim.clear_log();
    guest.open(id).unwrap();
    assert_eq!(channel.state(), ChannelState::Started);
    let outcome = guest.send(id, b"early").unwrap();
    assert_eq!(
        outcome,
        PacketOutcome::Completed(UNSUPPORTED_PACKET_COMPLETION.to_vec())
    );
    sim.run_post_started(id);
    use CallbackKind::*;
    assert_eq!(
        sim.callbacks(),
        [Opened, Started, ProcessPacket, PostStarted]
    );
    assert_eq!(channel.state(), ChannelState::Running);
    assert_eq!(channel.stats().unexpected_events, 0);
    drop(channel);
    sim.assert_clean();
}

#[test]
fn close_and_reopen_cycles_work() {
    let sim = Sim::new();
    let (vm, channel, id) = running_channel(&sim);
    let guest = sim.guest(vm.id);
    let reservation = guest.reservation(id).unwrap();
    for cycle in 1..=3 {
        sim.clear_log();
        guest.close(id).unwrap();
        use CallbackKind::*;
        assert_eq!(sim.callbacks(), [Suspend, Closed], "cycle {cycle}");
        assert_eq!(channel.state(), ChannelState::Closed);
        assert_eq!(guest.send(id, b"late"), Err(GuestError::NotOpen));
        // The offer and its MMIO stay while the channel is closed.
        assert_eq!(guest.reservation(id), Some(reservation));

        sim.clear_log();
        guest.open(id).unwrap();
        assert_eq!(
            sim.callbacks(),
            [Opened, Started, PostStarted],
            "cycle {cycle}"
        );
        assert_eq!(channel.state(), ChannelState::Running);
        assert!(matches!(
            guest.send(id, b"hello").unwrap(),
            PacketOutcome::Completed(_)
        ));
    }
    assert_eq!(channel.stats().opens, 4);
    assert_eq!(channel.stats().unexpected_events, 0);
    drop(channel);
    sim.assert_clean();
}

#[test]
fn disable_while_open_runs_suspend_then_closed_and_rescinds() {
    let sim = Sim::new();
    let (vm, channel, id) = running_channel(&sim);
    let guest = sim.guest(vm.id);
    sim.clear_log();
    drop(channel);
    let log = sim.log();
    let position = |wanted: &dyn Fn(&LogEntry) -> bool| log.iter().position(wanted).unwrap();
    let disable =
        position(&|e| matches!(e, LogEntry::Call(c) if c.function == F::VmbChannelDisable));
    let suspend = position(&|e| {
        matches!(
            e,
            LogEntry::Callback {
                kind: CallbackKind::Suspend,
                ..
            }
        )
    });
    let closed = position(&|e| {
        matches!(
            e,
            LogEntry::Callback {
                kind: CallbackKind::Closed,
                ..
            }
        )
    });
    let cleanup =
        position(&|e| matches!(e, LogEntry::Call(c) if c.function == F::VmbChannelCleanup));
    assert!(
        disable < suspend && suspend < closed && closed < cleanup,
        "{log:#?}"
    );
    assert!(guest.events().contains(&GuestEvent::Rescinded(id)));
    assert!(guest.offers().is_empty());
    assert_eq!(guest.reservation(id), None, "the guest released the MMIO");
    sim.assert_clean();
}

#[test]
fn every_packet_is_completed_exactly_once_with_the_documented_status() {
    let sim = Sim::new();
    let (vm, channel, id) = running_channel(&sim);
    let guest = sim.guest(vm.id);
    for size in [0_usize, 1, 64, 4096] {
        let outcome = guest.send(id, &vec![0xA5; size]).unwrap();
        assert_eq!(
            outcome,
            PacketOutcome::Completed(UNSUPPORTED_PACKET_COMPLETION.to_vec())
        );
    }
    assert_eq!(guest.send(id, &[0; 4097]), Err(GuestError::PacketTooLarge));
    let counters = sim.counters();
    assert_eq!(
        (counters.packets_delivered, counters.packets_completed),
        (4, 4)
    );
    let stats = channel.stats();
    assert_eq!((stats.packets_received, stats.packets_rejected), (4, 4));
    // Delivered at PASSIVE_LEVEL: the driver asked for incoming processing at passive.
    assert!(sim.channel(id).unwrap().init.incoming_at_passive);
    drop(channel);
    sim.assert_clean();
}

#[test]
fn packets_flow_only_while_running() {
    let sim = Sim::new();
    let (vm, channel) = offer_to_new_vm(&sim, running_vm(GuestKind::Windows), &[4096]).unwrap();
    let guest = sim.guest(vm.id);
    let id = guest.only_offer().unwrap().channel;
    assert_eq!(guest.send(id, b"x"), Err(GuestError::NotOpen));
    guest.open(id).unwrap();
    guest.send(id, b"x").unwrap();
    guest.close(id).unwrap();
    assert_eq!(guest.send(id, b"x"), Err(GuestError::NotOpen));
    drop(channel);
    assert_eq!(guest.send(id, b"x"), Err(GuestError::NoSuchOffer));
    sim.assert_clean();
}

#[test]
fn defect_06_the_driver_asks_for_the_mmio_space_only_after_opened() {
    let sim = Sim::new();
    let (vm, channel) = offer_to_new_vm(&sim, running_vm(GuestKind::Windows), &[1 << 20]).unwrap();
    let guest = sim.guest(vm.id);
    let offer = guest.only_offer().unwrap();
    sim.clear_log();
    guest.open(offer.channel).unwrap();
    // Callbacks are logged when they return, calls when they are made: the query must come
    // after Opened returned, and inside Started (before Started's own entry).
    let log = sim.log();
    let position = |wanted: &dyn Fn(&LogEntry) -> bool| log.iter().position(wanted).unwrap();
    let opened = position(&|e| {
        matches!(
            e,
            LogEntry::Callback {
                kind: CallbackKind::Opened,
                ..
            }
        )
    });
    let started = position(&|e| {
        matches!(
            e,
            LogEntry::Callback {
                kind: CallbackKind::Started,
                ..
            }
        )
    });
    let query = position(
        &|e| matches!(e, LogEntry::Call(call) if call.function == F::VmbChannelGetMmioSpace),
    );
    assert!(opened < query && query < started, "{log:#?}");
    assert!(channel.guest_mmio_window().is_some());
    drop(channel);
    sim.assert_clean();
}
