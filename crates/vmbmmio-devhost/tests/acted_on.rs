//! Which guest event each REPORT_MAPPING answers (`acted_on`, docs/ioctl.md): every report
//! names the newest guest event the device host had applied when it decided, and an event that
//! changes nothing mapped (a report of the placement already mapped, a reservation alone) makes
//! the device host report its mapped regions again with the newer `acted_on`, so the driver can
//! tell the guest they are backed (docs/devhost.md, "Following the guest"). A device host that
//! does not follow the guest's events names none (version 1).

mod support;

use std::sync::{Arc, Mutex};

use support::{BASE, Fake, FakeClock, FakeGuest, config, guest_event, stop_flag};
use vmbmmio_devhost::driver::{ActedOn, MappingState};
use vmbmmio_devhost::sequence::{DeviceHost, Event, EventLog, Progress};
use vmbmmio_proto::ioctl::{EVENT_FLAG_RESERVATION, GuestEvent, GuestEventKind, GuestReservation};

type Host = DeviceHost<Fake, Fake, Fake, Fake>;
type Recorded = Arc<Mutex<Vec<Event>>>;

const READY: Option<(bool, bool, bool)> = Some((true, true, false));
const NOT_READY: Option<(bool, bool, bool)> = Some((true, false, false));

fn recorder() -> (Recorded, EventLog) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    (
        events,
        Box::new(move |event: &Event| sink.lock().unwrap().push(event.clone())),
    )
}

fn following_host(fake: &Fake) -> (Host, Recorded, Arc<FakeGuest>) {
    let guest = fake.with_guest();
    let (events, log) = recorder();
    let host = DeviceHost::start(&config(), fake.backends(), log).unwrap();
    guest.settled(0);
    fake.start_vm();
    (host, events, guest)
}

fn deliver(guest: &FakeGuest, event: GuestEvent) {
    let sequence = event.sequence();
    guest.post(Ok(event));
    guest.settled(sequence);
}

/// The reports made since `from`: (region, state, acted_on).
fn reports_since(fake: &Fake, from: usize) -> Vec<(u32, MappingState, ActedOn)> {
    let world = fake.world();
    world.report_log[from..]
        .iter()
        .zip(&world.acted_log[from..])
        .map(|(&(region, state), &acted_on)| (region, state, acted_on))
        .collect()
}

fn reports(fake: &Fake) -> usize {
    fake.world().report_log.len()
}

fn rereported(events: &Recorded) -> Vec<(u64, usize)> {
    events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|event| match event {
            Event::MappingReReported { acted_on, regions } => Some((*acted_on, *regions)),
            _ => None,
        })
        .collect()
}

/// A reservation report alone (the device still ready at `base`).
fn reservation_report(sequence: u64, base: u64) -> GuestEvent {
    let mut snapshot = *guest_event(sequence, GuestEventKind::GuestReady, base, READY).snapshot();
    snapshot.reservation = Some(GuestReservation {
        base: 0xFD00_0000,
        size: 1 << 20,
    });
    GuestEvent::new(
        sequence,
        GuestEventKind::GuestReport,
        EVENT_FLAG_RESERVATION,
        snapshot,
    )
    .unwrap()
}

#[test]
fn every_report_names_the_newest_event_applied() {
    let fake = Fake::default();
    let (mut host, _events, guest) = following_host(&fake);
    let clock = FakeClock { fake: fake.clone() };
    fake.guest_sets(BASE, true);
    // Two events before the device host looks: the mapping answers the second.
    deliver(
        &guest,
        guest_event(1, GuestEventKind::GuestReport, BASE, NOT_READY),
    );
    deliver(
        &guest,
        guest_event(2, GuestEventKind::GuestReady, BASE, READY),
    );
    assert_eq!(
        host.map_regions(&clock, &*stop_flag()).unwrap(),
        Progress::Mapped
    );
    assert_eq!(
        reports_since(&fake, 0),
        [
            (0, MappingState::SectionBacked, ActedOn::Sequence(2)),
            (1, MappingState::SectionBacked, ActedOn::Sequence(2)),
        ]
    );
    // RELEASING: the unmapping answers event 3.
    deliver(
        &guest,
        guest_event(
            3,
            GuestEventKind::GuestReleasing,
            BASE,
            Some((true, false, true)),
        ),
    );
    host.follow_placement(&clock, &*stop_flag()).unwrap();
    assert_eq!(
        reports_since(&fake, 2),
        [
            (1, MappingState::Unmapped, ActedOn::Sequence(3)),
            (0, MappingState::Unmapped, ActedOn::Sequence(3)),
        ]
    );
    fake.stop_vm();
    assert!(host.shutdown().is_clean());
    fake.world().assert_nothing_left();
}

#[test]
fn an_event_that_changes_nothing_mapped_makes_the_mapped_regions_reported_again() {
    let fake = Fake::default();
    let (mut host, events, guest) = following_host(&fake);
    let clock = FakeClock { fake: fake.clone() };
    fake.guest_sets(BASE, true);
    deliver(
        &guest,
        guest_event(1, GuestEventKind::GuestReady, BASE, READY),
    );
    host.map_regions(&clock, &*stop_flag()).unwrap();
    let mapped = reports(&fake);
    let ranges = fake.world().create_log.len();

    // The guest reports the same placement again (a new conversation's REPORT_DEVICE and
    // READY at the same base look like this to the device host): nothing to remap, so the
    // regions are reported again as of event 2.
    deliver(
        &guest,
        guest_event(2, GuestEventKind::GuestReport, BASE, READY),
    );
    host.follow_placement(&clock, &*stop_flag()).unwrap();
    assert_eq!(
        reports_since(&fake, mapped),
        [
            (0, MappingState::SectionBacked, ActedOn::Sequence(2)),
            (1, MappingState::SectionBacked, ActedOn::Sequence(2)),
        ]
    );
    assert_eq!(rereported(&events), [(2, 2)]);
    assert_eq!(
        fake.world().create_log.len(),
        ranges,
        "nothing was remapped"
    );

    // A reservation report alone: again.
    let before = reports(&fake);
    deliver(&guest, reservation_report(3, BASE));
    host.follow_placement(&clock, &*stop_flag()).unwrap();
    assert_eq!(
        reports_since(&fake, before),
        [
            (0, MappingState::SectionBacked, ActedOn::Sequence(3)),
            (1, MappingState::SectionBacked, ActedOn::Sequence(3)),
        ]
    );
    // No new event: nothing is reported (one report per region per look with new events).
    let before = reports(&fake);
    host.follow_placement(&clock, &*stop_flag()).unwrap();
    host.follow_placement(&clock, &*stop_flag()).unwrap();
    assert_eq!(reports(&fake), before);
    assert_eq!(rereported(&events), [(2, 2), (3, 2)]);
    assert_eq!(
        events
            .lock()
            .unwrap()
            .iter()
            .find(|e| matches!(e, Event::MappingReReported { .. }))
            .unwrap()
            .to_string(),
        "guest events up to 2 change nothing mapped: 2 region(s) reported again as of event 2"
    );
    fake.stop_vm();
    assert!(host.shutdown().is_clean());
    fake.world().assert_nothing_left();
}

#[test]
fn nothing_is_reported_again_while_nothing_is_backed() {
    let fake = Fake::default();
    let (mut host, events, guest) = following_host(&fake);
    let clock = FakeClock { fake: fake.clone() };
    fake.guest_sets(BASE, true);
    deliver(
        &guest,
        guest_event(1, GuestEventKind::GuestReady, BASE, READY),
    );
    host.map_regions(&clock, &*stop_flag()).unwrap();
    deliver(
        &guest,
        guest_event(
            2,
            GuestEventKind::GuestReleasing,
            BASE,
            Some((true, false, true)),
        ),
    );
    host.follow_placement(&clock, &*stop_flag()).unwrap();
    let unmapped = reports(&fake);
    // A report without READY while nothing is mapped: nothing to do, nothing to report.
    deliver(
        &guest,
        guest_event(3, GuestEventKind::GuestReport, BASE, NOT_READY),
    );
    host.follow_placement(&clock, &*stop_flag()).unwrap();
    assert_eq!(reports(&fake), unmapped);
    assert!(rereported(&events).is_empty());
    fake.stop_vm();
    assert!(host.shutdown().is_clean());
    fake.world().assert_nothing_left();
}

#[test]
fn without_guest_events_reports_name_no_event() {
    let fake = Fake::default();
    let (_events, log) = recorder();
    let mut host: Host = DeviceHost::start(&config(), fake.backends(), log).unwrap();
    let clock = FakeClock { fake: fake.clone() };
    fake.start_vm();
    fake.config_program_bar(BASE);
    assert_eq!(
        host.map_regions(&clock, &*stop_flag()).unwrap(),
        Progress::Mapped
    );
    let reported = reports_since(&fake, 0);
    assert_eq!(reported.len(), 2);
    assert!(
        reported
            .iter()
            .all(|(_, _, acted)| *acted == ActedOn::Unknown)
    );
    // And no re-report either.
    host.follow_placement(&clock, &*stop_flag()).unwrap();
    assert_eq!(reports(&fake), 2);
    fake.stop_vm();
    assert!(host.shutdown().is_clean());
    fake.world().assert_nothing_left();
}
