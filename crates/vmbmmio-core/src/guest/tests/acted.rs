//! Which REPORT_MAPPINGs the guest hears of: a report decided before the newest device-host
//! event (`acted_on` older than the engine's epoch) updates the regions but is not announced as
//! mapped; `REGIONS_UNMAPPED` always is (whenever the regions stop being all backed); a
//! version-1 report keeps its old meaning.

use alloc::vec::Vec;

use vmbmmio_proto::guest::{ClientEvent, ClientState, EventKind, GuestClient, RegionState};
use vmbmmio_proto::ioctl::{ActedOn, GuestEventKind, GuestSnapshot, MappingState};

use super::super::shared::{ActedBeyondNewest, GuestShared, HeldCompletion};
use super::super::{Backing, Engine, SessionContext};
use super::{BAR, BAR_BASE, INSTANCE, Rig, device};
use crate::control::FileKey;
use crate::guest_events::EVENT_CAPACITY;
use crate::mmio_plan::MmioPlan;

const fn at(sequence: u64) -> ActedOn {
    ActedOn::Sequence(sequence)
}

impl Rig {
    /// HELLO, SELECT_VERSION, REPORT_DEVICE (decode on), READY: the device host's events
    /// `GUEST_REPORT` and `GUEST_READY`; returns the sequence of the latter.
    fn ready_guest(&mut self, base: u64) -> u64 {
        self.hello_and_select();
        self.report(device(base, BAR, true));
        self.client_send(|c, b| c.ready(b).unwrap()).unwrap();
        let ready = self.queue.newest();
        assert!(self.queue.current().device.unwrap().ready);
        ready
    }

    /// The device host reports both regions as `state`, decided at `acted_on`; what the held
    /// `WAIT_EVENT` was completed with, if anything.
    fn map_both(&mut self, state: MappingState, acted_on: ActedOn) -> Option<ClientEvent> {
        let before = self.held_replies.len();
        for index in 0..2 {
            let reply = self.engine.mapping(index, state, acted_on);
            self.take_held(reply);
        }
        assert!(self.held_replies.len() <= before + 1, "one event at most");
        let reply = self.held_replies.get(before)?.clone();
        Some(
            self.client
                .on_reply(&reply)
                .expect("an event the guest accepts"),
        )
    }

    fn wait(&mut self) {
        assert_eq!(self.client_send(|c, b| c.wait_event(b).unwrap()), None);
    }

    fn region_states(&self) -> Vec<RegionState> {
        self.engine
            .context()
            .regions()
            .iter()
            .map(|r| r.state)
            .collect()
    }
}

fn kind(event: Option<ClientEvent>) -> Option<EventKind> {
    match event {
        Some(ClientEvent::Event(event)) => Some(event.kind),
        _ => None,
    }
}

#[test]
fn every_queued_event_moves_the_epoch() {
    let mut rig = Rig::new();
    assert_eq!(rig.engine.mapping_epoch(), 0);
    let ready = rig.ready_guest(BAR_BASE);
    assert_eq!(ready, 2);
    assert_eq!(rig.engine.mapping_epoch(), 2);
    rig.client_send(|c, b| c.report_reservation(b, None).unwrap())
        .unwrap();
    assert_eq!(rig.engine.mapping_epoch(), 3);
    assert!(!rig.engine.is_current(at(2)));
    assert!(rig.engine.is_current(at(3)));
    assert!(rig.engine.is_current(ActedOn::Unknown));
}

#[test]
fn a_report_decided_before_ready_is_not_announced_and_a_fresh_one_is() {
    let mut rig = Rig::new();
    let ready = rig.ready_guest(BAR_BASE);
    rig.wait();
    // Decided after the device report, before READY: the states follow, the guest hears
    // nothing and its wait stays held.
    assert_eq!(
        rig.map_both(MappingState::SectionBacked, at(ready - 1)),
        None
    );
    assert_eq!(
        rig.region_states(),
        [RegionState::Mapped, RegionState::Mapped]
    );
    assert_eq!(rig.engine.conversation().announced, Backing::Incomplete);
    assert_eq!(rig.client.state(), ClientState::Ready);
    // The device host applied READY and found nothing to change: its re-report (same states)
    // is what announces.
    let event = rig.map_both(MappingState::SectionBacked, at(ready));
    assert_eq!(kind(event), Some(EventKind::RegionsMapped));
    assert_eq!(rig.client.state(), ClientState::Mapped);
    assert_eq!(rig.engine.conversation().announced, Backing::Mapped);
    // Said once: another current report of the same states announces nothing.
    rig.wait();
    assert_eq!(rig.map_both(MappingState::SectionBacked, at(ready)), None);
}

#[test]
fn a_stale_intercept_report_is_not_announced_either() {
    let mut rig = Rig::new();
    let ready = rig.ready_guest(BAR_BASE);
    rig.wait();
    assert_eq!(
        rig.map_both(MappingState::InterceptFallback, at(0)),
        None,
        "nothing applied at all"
    );
    let event = rig.map_both(MappingState::InterceptFallback, at(ready));
    assert_eq!(kind(event), Some(EventKind::RegionsIntercepted));
}

#[test]
fn unmapped_is_announced_from_a_stale_report_too() {
    let mut rig = Rig::new();
    let ready = rig.ready_guest(BAR_BASE);
    rig.wait();
    assert_eq!(
        kind(rig.map_both(MappingState::SectionBacked, at(ready))),
        Some(EventKind::RegionsMapped)
    );
    // The guest reports its BAR again (a move): a newer event the device host has not applied.
    rig.report(device(BAR_BASE + BAR, BAR, true));
    assert!(!rig.engine.is_current(at(ready)));
    rig.wait();
    // A report decided before that event unmaps: said at once.
    let reply = rig.engine.mapping(1, MappingState::Unmapped, at(ready));
    rig.take_held(reply);
    let event = rig
        .client
        .on_reply(rig.held_replies.last().unwrap())
        .unwrap();
    assert_eq!(kind(Some(event)), Some(EventKind::RegionsUnmapped));
    assert_eq!(rig.engine.conversation().announced, Backing::Incomplete);
    // Remapped for the old placement (stale): not announced; for the new one: announced.
    rig.wait();
    let before = rig.held_replies.len();
    let reply = rig
        .engine
        .mapping(1, MappingState::SectionBacked, at(ready));
    rig.take_held(reply);
    assert_eq!(rig.held_replies.len(), before);
    let newest = rig.queue.newest();
    let event = rig.map_both(MappingState::SectionBacked, at(newest));
    assert_eq!(kind(event), Some(EventKind::RegionsMapped));
}

#[test]
fn a_report_for_the_old_conversation_is_not_announced_to_the_new_one() {
    let mut rig = Rig::new();
    let old_ready = rig.ready_guest(BAR_BASE);
    // The guest closes and reopens its channel before the device host's report arrives.
    let (held, _) = rig.engine.closed(&mut rig.queue);
    assert!(held.is_none());
    let closed = rig.queue.newest();
    assert_eq!(closed, old_ready + 1);
    rig.engine.opened();
    rig.engine.started();
    rig.client = GuestClient::new();
    let new_ready = rig.ready_guest(BAR_BASE + BAR);
    rig.wait();
    // The old READY's mapping arrives now: recorded, not announced.
    assert_eq!(
        rig.map_both(MappingState::SectionBacked, at(old_ready)),
        None
    );
    assert_eq!(
        rig.region_states(),
        [RegionState::Mapped, RegionState::Mapped]
    );
    // The device host applies CHANNEL_CLOSED (unmap: the regions stop being backed, which any
    // guest may hear), then the new READY (map): announced.
    let event = rig.map_both(MappingState::Unmapped, at(closed));
    assert_eq!(kind(event), Some(EventKind::RegionsUnmapped));
    assert_eq!(rig.client.state(), ClientState::Ready);
    rig.wait();
    let event = rig.map_both(MappingState::SectionBacked, at(new_ready));
    assert_eq!(kind(event), Some(EventKind::RegionsMapped));
}

#[test]
fn a_report_made_before_a_new_hello_is_not_announced_after_it() {
    let mut rig = Rig::new();
    let old_ready = rig.ready_guest(BAR_BASE);
    // A kexec'd guest on the open channel: HELLO (GUEST_RESET), then its own report and READY.
    let first = core::num::NonZeroU64::new(rig.client.next_request_id()).unwrap();
    rig.client = GuestClient::starting_at(first);
    let new_ready = rig.ready_guest(BAR_BASE);
    assert!(new_ready > old_ready + 1);
    rig.wait();
    assert_eq!(
        rig.map_both(MappingState::SectionBacked, at(old_ready)),
        None
    );
    let event = rig.map_both(MappingState::SectionBacked, at(new_ready));
    assert_eq!(kind(event), Some(EventKind::RegionsMapped));
}

#[test]
fn a_version_1_report_keeps_its_old_meaning() {
    let mut rig = Rig::new();
    rig.ready_guest(BAR_BASE);
    rig.wait();
    let event = rig.map_both(MappingState::SectionBacked, ActedOn::Unknown);
    assert_eq!(kind(event), Some(EventKind::RegionsMapped));
}

#[test]
fn a_lost_terminal_event_blocks_every_report_made_before_a_later_event() {
    let plan = MmioPlan::new(&[512 << 10, 256 << 10]).unwrap();
    let mut rig = Rig::new();
    rig.engine = Engine::new(SessionContext::new(INSTANCE, &plan, &[true, false]));
    rig.engine.opened();
    rig.engine.started();
    // Fill the queue behind the engine's back (the engine itself keeps two slots free).
    for _ in 0..EVENT_CAPACITY {
        rig.queue
            .push(GuestEventKind::GuestReset, 0, GuestSnapshot::default())
            .unwrap();
    }
    let newest = rig.queue.newest();
    let _ = rig.engine.closed(&mut rig.queue);
    assert_eq!(rig.engine.counters().events_lost, 1);
    assert_eq!(rig.engine.mapping_epoch(), newest + 1);
    assert!(!rig.engine.is_current(at(newest)));
}

/// A stand-in for the held KMCL packet (none is held in this test).
struct NoPacket;

impl HeldCompletion for NoPacket {
    fn complete(self, _reply: &[u8]) {}

    fn complete_empty(self) {}
}

#[test]
fn an_acted_on_beyond_the_newest_event_is_refused_and_changes_nothing() {
    let plan = MmioPlan::new(&[512 << 10, 256 << 10]).unwrap();
    let mut shared: GuestShared<NoPacket> = GuestShared::new(
        FileKey(1),
        SessionContext::new(INSTANCE, &plan, &[true, false]),
    );
    assert_eq!(
        shared.mapping_changed(0, MappingState::SectionBacked, at(1)),
        Err(ActedBeyondNewest {
            acted_on: 1,
            newest: 0
        })
    );
    assert_eq!(shared.engine().generation(), 1);
    assert_eq!(
        shared.engine().context().regions()[0].state,
        RegionState::Unmapped
    );
    assert_eq!(
        shared.mapping_changed(0, MappingState::SectionBacked, at(0)),
        Ok(())
    );
    assert_eq!(
        shared.mapping_changed(0, MappingState::Unmapped, ActedOn::Unknown),
        Ok(())
    );
    assert_eq!(shared.engine().generation(), 3);
    assert!(!shared.has_held_packet());
}
