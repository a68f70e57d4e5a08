//! The device host asks the driver what it runs without (QUERY_DRIVER) at start, logs one line,
//! and goes on whatever the answer: a driver older than the request must not stop it.

mod support;

use std::sync::{Arc, Mutex};

use support::{Fake, config};
use vmbmmio_devhost::IoctlFailure;
use vmbmmio_devhost::driver::{
    ActedOn, ChannelIdentity, DriverClient, DriverError, DriverFacts, MappingState, SectionAccess,
    SessionId, SessionInfo, SessionRequest, SessionStatus,
};
use vmbmmio_devhost::platform::SectionHandle;
use vmbmmio_devhost::sequence::{Backends, DeviceHost, Event, EventLog};

type Recorded = Arc<Mutex<Vec<Event>>>;

fn recorder() -> (Recorded, EventLog) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    (
        events,
        Box::new(move |event: &Event| sink.lock().unwrap().push(event.clone())),
    )
}

/// The fake driver of the sequence tests, answering QUERY_DRIVER with `answer`.
struct Reporting {
    inner: Fake,
    answer: Option<Result<DriverFacts, DriverError>>,
    asked: usize,
}

impl DriverClient for Reporting {
    fn open_session(&mut self, request: &SessionRequest) -> Result<SessionInfo, DriverError> {
        self.inner.open_session(request)
    }
    fn region_section(
        &mut self,
        session: SessionId,
        region: u32,
        access: SectionAccess,
    ) -> Result<SectionHandle, DriverError> {
        self.inner.region_section(session, region, access)
    }
    fn report_mapping(
        &mut self,
        session: SessionId,
        region: u32,
        state: MappingState,
        acted_on: ActedOn,
    ) -> Result<(), DriverError> {
        self.inner.report_mapping(session, region, state, acted_on)
    }
    fn status(&mut self, session: SessionId) -> Result<SessionStatus, DriverError> {
        self.inner.status(session)
    }
    fn close_session(&mut self, session: SessionId) -> Result<(), DriverError> {
        self.inner.close_session(session)
    }
    fn channel_identity(&self) -> Option<ChannelIdentity> {
        self.inner.channel_identity()
    }
    fn driver_facts(&mut self) -> Option<Result<DriverFacts, DriverError>> {
        self.asked += 1;
        self.answer.clone()
    }
}

type Host = DeviceHost<Fake, Fake, Reporting, Fake>;

/// Starts a device host whose driver answers QUERY_DRIVER with `answer`; returns the events.
fn start(answer: Option<Result<DriverFacts, DriverError>>) -> (Fake, Host, Vec<Event>) {
    let fake = Fake::default();
    let backends = Backends {
        hcs: fake.clone(),
        hdv: fake.clone(),
        driver: Reporting {
            inner: fake.clone(),
            answer,
            asked: 0,
        },
        mapper: fake.clone(),
    };
    let (events, log) = recorder();
    let host = DeviceHost::start(&config(), backends, log).unwrap();
    assert_eq!(host.backends().driver.asked, 1, "asked exactly once");
    let events = events.lock().unwrap().clone();
    assert_eq!(events.last(), Some(&Event::Ready), "{events:?}");
    (fake, host, events)
}

fn position(events: &[Event], wanted: impl Fn(&Event) -> bool) -> usize {
    events.iter().position(wanted).expect("event logged")
}

fn finish(fake: &Fake, host: Host) {
    let report = host.shutdown();
    assert!(report.is_clean(), "{report}");
    fake.world().assert_nothing_left();
}

#[test]
fn the_missing_entries_are_logged_once_before_the_session_opens() {
    let facts = DriverFacts::new(27, 1 << 26, 1, 0).unwrap();
    let (fake, host, events) = start(Some(Ok(facts)));
    let logged = position(&events, |e| *e == Event::DriverFacts(facts));
    let opened = position(&events, |e| matches!(e, Event::SessionOpened { .. }));
    assert!(logged < opened, "{events:?}");
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, Event::DriverFacts(_)))
            .count(),
        1
    );
    assert_eq!(
        events[logged].to_string(),
        "driver: KMCL entries unavailable: VmbChannelGetMmioSpace (1 file handle(s) open, 0 \
         session(s))"
    );
    finish(&fake, host);
}

#[test]
fn a_driver_without_the_request_does_not_stop_the_device_host() {
    let failure = IoctlFailure::Win32(1);
    let (fake, host, events) = start(Some(Err(DriverError::Ioctl {
        request: "QUERY_DRIVER",
        failure,
    })));
    let logged = position(&events, |e| matches!(e, Event::DriverFactsUnavailable(_)));
    assert_eq!(
        events[logged].to_string(),
        "driver: could not ask what it runs without: QUERY_DRIVER failed: Win32 error 1 \
         (ERROR_INVALID_FUNCTION)"
    );
    // The session opened and every region got its section all the same.
    assert!(position(&events, |e| matches!(e, Event::SessionOpened { .. })) > logged);
    assert!(host.layout().is_some());
    finish(&fake, host);
}

#[test]
fn a_client_without_the_request_logs_nothing_about_it() {
    let (fake, host, events) = start(None);
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::DriverFacts(_) | Event::DriverFactsUnavailable(_))),
        "{events:?}"
    );
    finish(&fake, host);
}

#[test]
fn the_line_names_every_missing_entry_in_table_order() {
    let line = |bits: u32, entries: u32| {
        Event::DriverFacts(DriverFacts::new(entries, bits, 2, 1).unwrap()).to_string()
    };
    assert_eq!(
        line(0, 27),
        "driver: every KMCL entry available (2 file handle(s) open, 1 session(s))"
    );
    // Bits 5 (VmbChannelPause) and 26 (VmbChannelGetMmioSpace).
    assert_eq!(
        line((1 << 26) | (1 << 5), 27),
        "driver: KMCL entries unavailable: VmbChannelPause, VmbChannelGetMmioSpace (2 file \
         handle(s) open, 1 session(s))"
    );
    // A newer driver with a longer table: entries this device host cannot name keep their index.
    assert_eq!(
        line((1 << 29) | (1 << 26), 30),
        "driver: KMCL entries unavailable: VmbChannelGetMmioSpace, entry 29 (unknown to this \
         device host) (2 file handle(s) open, 1 session(s))"
    );
    assert_eq!(
        line(1 << 31, 32),
        "driver: KMCL entries unavailable: entry 31 (unknown to this device host) (2 file \
         handle(s) open, 1 session(s))"
    );
}
