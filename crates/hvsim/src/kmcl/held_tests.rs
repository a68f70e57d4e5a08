//! Deferred completion through the `kmcl` wrapper's `HeldPacket`, against the model: a packet
//! held past its callback is completed later (the control protocol's `WAIT_EVENT` pattern), and
//! the model's rules catch a holder that keeps it past Suspend or completes it after Closed.

use std::sync::Mutex;

use kmcl::raw::*;
use kmcl::server::{ChannelHandler, ChannelRef, HeldPacket, IncomingPacket, ServerChannel};

use super::*;

/// Holds every `wait` request; answers anything else at once. With `complete_in_suspend`, it
/// retires its held requests in Suspend, as the `ChannelHandler::suspend` docs require.
#[derive(Default)]
struct Waiter {
    held: Mutex<Vec<HeldPacket>>,
    complete_in_suspend: bool,
}

impl ChannelHandler for Waiter {
    fn process_packet(&self, _: &ChannelRef<'_>, packet: IncomingPacket<'_>) {
        if packet.data() == b"wait" {
            let held = packet.hold();
            self.held.lock().unwrap().push(held);
        } else {
            packet.complete(b"now").unwrap();
        }
    }

    fn suspend(&self, _: &ChannelRef<'_>) {
        if self.complete_in_suspend {
            for held in self.take() {
                held.complete(b"cancelled").unwrap();
            }
        }
    }
}

impl Waiter {
    fn take(&self) -> Vec<HeldPacket> {
        std::mem::take(&mut *self.held.lock().unwrap())
    }
}

fn open(sim: &Sim, waiter: Waiter) -> (ServerChannel<HvsimKmcl, Waiter>, ChannelId) {
    let params = kmcl::server::ServerChannelParams {
        parent: sim.parent_device(),
        vmbus_handle: None,
        incoming_at_passive: false,
        maximum_packet_size: 128,
        interface_type: GUID::from_u128(7),
        interface_instance: GUID::from_u128(8),
        server_flags: VMBUS_SERVER_CHANNEL_INIT_FLAG_LOOPBACK_OFFER,
        friendly_name: "held",
        mmio_megabytes: 2,
        mmio_megabytes_optional: 0,
    };
    let channel = ServerChannel::<HvsimKmcl, Waiter>::create(params, waiter).unwrap();
    let guest = sim.loopback_guest();
    let id = guest.only_offer().unwrap().channel;
    guest.open(id).unwrap();
    (channel, id)
}

fn send_wait(sim: &Sim, id: ChannelId) -> u64 {
    match sim.loopback_guest().send(id, b"wait").unwrap() {
        PacketOutcome::Pending(token) => token,
        other => panic!("the wait request was not held: {other:?}"),
    }
}

fn rules(sim: &Sim) -> Vec<Rule> {
    sim.take_violations().into_iter().map(|v| v.rule).collect()
}

#[test]
fn a_held_packet_completed_later_reaches_the_guest() {
    let sim = Sim::new();
    let (channel, id) = open(&sim, Waiter::default());
    let guest = sim.loopback_guest();
    let token = send_wait(&sim, id);
    assert_eq!(guest.completion(token), None);
    // Holding one packet does not stop the others.
    assert_eq!(
        guest.send(id, b"x").unwrap(),
        PacketOutcome::Completed(b"now".to_vec())
    );
    let mut held = channel.handler().take();
    assert_eq!(held.len(), 1);
    held.pop().unwrap().complete(b"event").unwrap();
    assert_eq!(guest.completion(token), Some(b"event".to_vec()));
    drop(channel);
    sim.assert_clean();
}

#[test]
fn a_dropped_held_packet_reaches_the_guest_empty() {
    let sim = Sim::new();
    let (channel, id) = open(&sim, Waiter::default());
    let token = send_wait(&sim, id);
    drop(channel.handler().take());
    assert_eq!(sim.loopback_guest().completion(token), Some(Vec::new()));
    drop(channel);
    sim.assert_clean();
}

#[test]
fn held_packets_completed_in_suspend_are_clean() {
    // The guest closes the channel.
    let sim = Sim::new();
    let waiter = Waiter {
        complete_in_suspend: true,
        ..Waiter::default()
    };
    let (channel, id) = open(&sim, waiter);
    let first = send_wait(&sim, id);
    let second = send_wait(&sim, id);
    sim.loopback_guest().close(id).unwrap();
    for token in [first, second] {
        assert_eq!(
            sim.loopback_guest().completion(token),
            Some(b"cancelled".to_vec())
        );
    }
    drop(channel);
    sim.assert_clean();

    // The driver disables the open channel.
    let sim = Sim::new();
    let waiter = Waiter {
        complete_in_suspend: true,
        ..Waiter::default()
    };
    let (channel, id) = open(&sim, waiter);
    let token = send_wait(&sim, id);
    drop(channel);
    assert_eq!(
        sim.loopback_guest().completion(token),
        Some(b"cancelled".to_vec())
    );
    sim.assert_clean();
}

#[test]
fn a_packet_held_past_suspend_is_caught() {
    let sim = Sim::new();
    let (channel, id) = open(&sim, Waiter::default());
    let token = send_wait(&sim, id);
    sim.loopback_guest().close(id).unwrap();
    // A real KMCL would still be waiting at Suspend.
    assert_eq!(rules(&sim), [Rule::PacketsOutstandingAtSuspend]);
    // Completing it after Closed uses a stale context: flagged, and nothing reaches the guest.
    channel
        .handler()
        .take()
        .pop()
        .unwrap()
        .complete(b"late")
        .unwrap();
    assert_eq!(rules(&sim), [Rule::PacketCompletedAfterClosed]);
    assert_eq!(sim.loopback_guest().completion(token), None);
    drop(channel);
    assert_eq!(rules(&sim), [Rule::PacketsOutstandingAtCleanup]);
    assert!(!sim.counters().balanced());
}

#[test]
fn a_packet_held_past_cleanup_is_caught() {
    let sim = Sim::new();
    let (channel, id) = open(&sim, Waiter::default());
    send_wait(&sim, id);
    let held = channel.handler().take();
    drop(channel); // Disable: Suspend, Closed; then Cleanup
    assert_eq!(
        rules(&sim),
        [
            Rule::PacketsOutstandingAtSuspend,
            Rule::PacketsOutstandingAtCleanup
        ]
    );
    drop(held); // the empty completion comes after Cleanup: a use after free on a real host
    assert_eq!(rules(&sim), [Rule::PacketCompletedAfterClosed]);
}
