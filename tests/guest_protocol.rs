//! The guest control protocol end to end (docs/protocol.md): a simulated guest speaking through
//! the guest library (`vmbmmio_proto::guest::GuestClient`) over the session's real channel, the
//! driver's real packet handler and control device, and the device host's IOCTLs. One test per
//! rule of the hostile-guest list, each checking that the refusal is counted and that
//! nothing placeable reaches the device host.

use hvsim::guest_session::{GuestSession, INTERFACE_INSTANCE};
use hvsim::kmcl::PacketOutcome;
use vmbmmio_core::control::{Delivered, Handled};
use vmbmmio_proto::guest::{
    BarPlacement, ClientEvent, ClientState, DeviceReport, ERROR_LIMIT, ErrorCode, EventKind,
    GuestClient, GuestRange, LARGEST_MESSAGE, RegionState, ReplyBody, RequestBody, Sent,
    encode_request, parse_reply,
};
use vmbmmio_proto::ioctl::{
    GuestEvent, GuestEventKind, IoctlCode, MappingState, WireGuid, parse_wait_guest_event_reply,
};

/// Two regions: a 1 MiB BAR.
const SIZES: [u64; 2] = [512 << 10, 256 << 10];
const BAR: u64 = 1 << 20;
const BAR_BASE: u64 = 0xF800_0000;

fn device(base: u64, size: u64, decode: bool) -> DeviceReport {
    DeviceReport {
        instance: INTERFACE_INSTANCE,
        segment: 0,
        bus: 0,
        devfn: 1 << 3,
        bar_index: 0,
        bar: BarPlacement {
            base,
            size,
            memory_decode: decode,
        },
    }
}

/// The bench: one session, one guest.
struct Rig {
    session: GuestSession,
    client: GuestClient,
    /// The device host's `last_seen`.
    last_seen: u64,
}

/// What a request came back with.
#[derive(Debug)]
enum Got {
    Now(ClientEvent),
    Pending(u64),
}

impl Rig {
    fn new() -> Self {
        let session = GuestSession::open(&SIZES).unwrap();
        assert_eq!(session.bar_size(), BAR);
        Self {
            session,
            client: GuestClient::new(),
            last_seen: 0,
        }
    }

    /// The client builds a request, the guest sends it, the client takes the reply.
    fn call(&mut self, build: impl FnOnce(&mut GuestClient, &mut [u8]) -> Sent) -> Got {
        let mut buf = [0u8; LARGEST_MESSAGE];
        let sent = build(&mut self.client, &mut buf);
        match self.session.send(&buf[..sent.len]).unwrap() {
            PacketOutcome::Completed(reply) => Got::Now(self.client.on_reply(&reply).unwrap()),
            PacketOutcome::Pending(token) => Got::Pending(token),
            PacketOutcome::Failed => panic!("the host failed the packet"),
        }
    }

    fn now(&mut self, build: impl FnOnce(&mut GuestClient, &mut [u8]) -> Sent) -> ClientEvent {
        match self.call(build) {
            Got::Now(event) => event,
            Got::Pending(token) => panic!("request {token} pends"),
        }
    }

    /// A request the client would not send (or a forged one): the raw reply.
    fn raw(&mut self, id: u64, body: RequestBody) -> Vec<u8> {
        let mut buf = [0u8; LARGEST_MESSAGE];
        let len = encode_request(&mut buf, id, &body).unwrap();
        self.raw_bytes(&buf[..len])
    }

    fn raw_bytes(&mut self, bytes: &[u8]) -> Vec<u8> {
        match self.session.send(bytes).unwrap() {
            PacketOutcome::Completed(reply) => reply,
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    fn negotiate(&mut self) {
        self.now(|c, b| c.hello(b).unwrap());
        self.now(|c, b| c.select_version(b).unwrap());
        assert_eq!(self.client.state(), ClientState::Versioned);
    }

    fn next_id(&self) -> u64 {
        self.client.next_request_id()
    }

    /// Every event the device host has not seen yet (WAIT_GUEST_EVENT until it would pend).
    fn device_host_events(&mut self) -> Vec<GuestEvent> {
        let mut events = Vec::new();
        loop {
            let mut output = vec![0u8; IoctlCode::WaitGuestEvent.reply_size()];
            match self
                .session
                .wait_guest_event(self.last_seen, &mut output)
                .unwrap()
            {
                Handled::Done(written) => {
                    let event = parse_wait_guest_event_reply(&output[..written]).unwrap();
                    self.last_seen = event.sequence();
                    events.push(event);
                }
                Handled::Pending(pending) => {
                    pending.cancel();
                    return events;
                }
            }
        }
    }

    fn errors_left(&self) -> u32 {
        self.session
            .events()
            .inspect_shared(|shared| shared.engine().conversation().errors_left)
    }

    fn protocol_errors(&mut self) -> u64 {
        self.session.status().unwrap().counters.protocol_errors
    }

    fn close(self) {
        let left = self.session.close();
        assert!(left.is_empty(), "left over: {left}");
    }
}

fn error(reply: &[u8]) -> Option<ErrorCode> {
    match parse_reply(reply).unwrap().body {
        ReplyBody::Error(info) => Some(info.code),
        _ => None,
    }
}

fn kinds(events: &[GuestEvent]) -> Vec<GuestEventKind> {
    events.iter().map(GuestEvent::kind).collect()
}

#[test]
fn the_whole_conversation_reaches_the_device_host_and_back() {
    let mut rig = Rig::new();
    // The device host waits before the guest says anything.
    let mut output = vec![0u8; IoctlCode::WaitGuestEvent.reply_size()];
    let Handled::Pending(parked) = rig.session.wait_guest_event(0, &mut output).unwrap() else {
        panic!("nothing to report yet");
    };
    assert_eq!(parked.parked(), None);

    rig.negotiate();
    rig.now(|c, b| c.report_reservation(b, None).unwrap());
    // The guest's report woke the parked request, from the packet callback.
    let wakes = rig.session.take_wakes();
    assert_eq!(wakes.len(), 1);
    assert_eq!(wakes[0].file, rig.session.caller.file());
    let Delivered::Completed(written) = parked.deliver(&mut output) else {
        panic!("the woken request completes");
    };
    let first = parse_wait_guest_event_reply(&output[..written]).unwrap();
    assert_eq!(first.kind(), GuestEventKind::GuestReport);
    rig.last_seen = first.sequence();

    rig.now(|c, b| c.report_device(b, &device(BAR_BASE, BAR, true)).unwrap());
    rig.now(|c, b| c.ready(b).unwrap());
    let events = rig.device_host_events();
    assert_eq!(
        kinds(&events),
        [GuestEventKind::GuestReport, GuestEventKind::GuestReady]
    );
    let dev = events[1].snapshot().device.unwrap();
    assert!(dev.wants_backing());
    assert_eq!((dev.bar_base, dev.bar_size), (BAR_BASE, BAR));
    // The host states 1.0..=1.1 and the guest library picks the highest both speak.
    assert_eq!(events[1].snapshot().protocol_version, 0x0001_0001);

    // The guest waits for the mapping; the device host maps both regions.
    let Got::Pending(token) = rig.call(|c, b| c.wait_event(b).unwrap()) else {
        panic!("nothing happened yet: the wait is held");
    };
    rig.session
        .report_mapping(0, MappingState::SectionBacked)
        .unwrap();
    assert_eq!(
        rig.session.completion(token),
        None,
        "one region is not an event"
    );
    rig.session
        .report_mapping(1, MappingState::SectionBacked)
        .unwrap();
    let reply = rig
        .session
        .completion(token)
        .expect("the held wait completed");
    match rig.client.on_reply(&reply).unwrap() {
        ClientEvent::Event(event) => {
            assert_eq!(event.kind, EventKind::RegionsMapped);
            assert_eq!(event.sequence, 1);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(rig.client.state(), ClientState::Mapped);

    rig.now(|c, b| c.get_layout(b).unwrap());
    let layout = rig.client.layout().unwrap();
    assert!(rig.client.layout_is_current());
    assert_eq!(layout.bar_size(), BAR);
    assert_eq!(layout.regions().len(), 2);
    assert!(
        layout
            .regions()
            .iter()
            .all(|r| r.state == RegionState::Mapped)
    );
    assert_eq!(layout.regions()[1].offset_pages, 128);

    let status = rig.session.status().unwrap();
    assert_eq!(status.counters.guest_packets, 7);
    assert_eq!(status.counters.protocol_errors, 0);
    assert_eq!(status.counters.regions_mapped, 2);

    rig.now(|c, b| c.releasing(b).unwrap());
    let events = rig.device_host_events();
    assert_eq!(kinds(&events), [GuestEventKind::GuestReleasing]);
    rig.close();
}

#[test]
fn a_flooding_guest_gets_busy_and_its_state_stays_bounded() {
    let mut rig = Rig::new();
    rig.negotiate();
    let first = rig.next_id();
    let mut accepted = 0;
    let mut busy = 0;
    for id in first..first + 200 {
        match error(&rig.raw(id, RequestBody::ReportReservation(None))) {
            None => accepted += 1,
            Some(ErrorCode::Busy) => busy += 1,
            Some(other) => panic!("{other:?}"),
        }
    }
    // 32 slots, 2 kept for the terminal events; BUSY is not counted.
    assert_eq!((accepted, busy), (30, 170));
    assert_eq!(rig.errors_left(), ERROR_LIMIT);
    assert_eq!(rig.session.events().inspect(|q| q.len()), 30);
    // Once the device host catches up, reports go through again.
    assert_eq!(rig.device_host_events().len(), 30);
    let _ = rig.device_host_events(); // acknowledges the last one
    assert_eq!(
        error(&rig.raw(first + 200, RequestBody::ReportReservation(None))),
        None
    );
    rig.close();
}

#[test]
fn a_replayed_request_is_refused() {
    let mut rig = Rig::new();
    rig.negotiate();
    let id = rig.next_id();
    assert_eq!(
        error(&rig.raw(id, RequestBody::ReportDevice(device(BAR_BASE, BAR, true)))),
        None
    );
    let before = rig.device_host_events().len();
    assert_eq!(before, 1);
    // The same bytes again, and an older id.
    for replayed in [id, id - 1] {
        let reply = rig.raw(
            replayed,
            RequestBody::ReportDevice(device(BAR_BASE, BAR, true)),
        );
        assert_eq!(error(&reply), Some(ErrorCode::Replayed));
    }
    assert_eq!(rig.errors_left(), ERROR_LIMIT - 2);
    assert_eq!(rig.protocol_errors(), 2);
    assert!(rig.device_host_events().is_empty());
    rig.close();
}

#[test]
fn a_reordered_conversation_is_refused() {
    let mut rig = Rig::new();
    // Before a version: only HELLO and SELECT_VERSION.
    for (id, body) in [
        (1, RequestBody::ReportDevice(device(BAR_BASE, BAR, true))),
        (2, RequestBody::Ready),
        (3, RequestBody::GetLayout),
        (4, RequestBody::WaitEvent { last_seen: 0 }),
    ] {
        assert_eq!(error(&rig.raw(id, body)), Some(ErrorCode::OutOfOrder));
    }
    rig.client = GuestClient::starting_at(5.try_into().unwrap());
    rig.negotiate();
    // READY before a decoded device report.
    let id = rig.next_id();
    assert_eq!(
        error(&rig.raw(id, RequestBody::Ready)),
        Some(ErrorCode::OutOfOrder)
    );
    let reply = rig.raw(id + 1, RequestBody::ReportDevice(device(0, BAR, false)));
    assert_eq!(error(&reply), None);
    assert_eq!(
        error(&rig.raw(id + 2, RequestBody::Ready)),
        Some(ErrorCode::OutOfOrder)
    );
    assert_eq!(rig.errors_left(), ERROR_LIMIT - 6);
    let events = rig.device_host_events();
    assert_eq!(kinds(&events), [GuestEventKind::GuestReport]);
    assert!(!events[0].snapshot().device.unwrap().decode_on);
    rig.close();
}

/// A lying device report is refused with `code`, counted, and nothing placeable reaches the
/// device host: no report, and READY is then out of order.
fn refused_report(report: DeviceReport, code: ErrorCode) {
    let mut rig = Rig::new();
    rig.negotiate();
    rig.now(|c, b| {
        c.report_reservation(
            b,
            Some(GuestRange {
                base: BAR_BASE - BAR / 2,
                size: BAR,
            }),
        )
        .unwrap()
    });
    let reported = rig.device_host_events();
    assert_eq!(kinds(&reported), [GuestEventKind::GuestReport]);
    let errors = rig.protocol_errors();
    let id = rig.next_id();
    assert_eq!(
        error(&rig.raw(id, RequestBody::ReportDevice(report))),
        Some(code)
    );
    assert_eq!(
        error(&rig.raw(id + 1, RequestBody::Ready)),
        Some(ErrorCode::OutOfOrder)
    );
    assert_eq!(rig.protocol_errors(), errors + 2);
    assert_eq!(rig.errors_left(), ERROR_LIMIT - 2);
    assert!(
        rig.device_host_events().is_empty(),
        "nothing reached the device host"
    );
    let snapshot = rig.session.events().inspect(|q| q.current());
    assert_eq!(snapshot.device, None);
    rig.close();
}

#[test]
fn a_bar_beyond_the_guest_physical_address_space_is_refused() {
    refused_report(device(1 << 52, BAR, true), ErrorCode::BadPlacement);
    refused_report(
        device(u64::MAX - BAR + 1, BAR, true),
        ErrorCode::BadPlacement,
    );
}

#[test]
fn a_misaligned_bar_is_refused() {
    refused_report(device(BAR_BASE + 4096, BAR, true), ErrorCode::BadPlacement);
}

#[test]
fn a_bar_of_the_wrong_size_is_refused() {
    refused_report(device(BAR_BASE, BAR * 2, true), ErrorCode::BadPlacement);
    refused_report(device(BAR_BASE, BAR / 2, false), ErrorCode::BadPlacement);
    refused_report(device(BAR_BASE, 3 << 20, true), ErrorCode::BadPlacement);
}

#[test]
fn a_decoded_bar_at_zero_is_refused() {
    refused_report(device(0, BAR, true), ErrorCode::BadPlacement);
}

#[test]
fn a_bar_partly_over_the_channel_reservation_is_refused() {
    // The rig's reservation is [BAR_BASE - BAR/2, BAR_BASE + BAR/2).
    refused_report(device(BAR_BASE, BAR, true), ErrorCode::BadPlacement);
}

#[test]
fn a_report_for_another_function_is_not_paired() {
    let report = DeviceReport {
        instance: WireGuid::from_u128(0xdead_beef),
        ..device(BAR_BASE + 4 * BAR, BAR, true)
    };
    refused_report(report, ErrorCode::NotPaired);
}

#[test]
fn the_allowance_running_out_stops_the_conversation() {
    let mut rig = Rig::new();
    rig.negotiate();
    rig.now(|c, b| c.report_device(b, &device(BAR_BASE, BAR, true)).unwrap());
    let Got::Pending(token) = rig.call(|c, b| c.wait_event(b).unwrap()) else {
        panic!("held");
    };
    assert_eq!(rig.device_host_events().len(), 1);
    for n in 1..=ERROR_LIMIT {
        let reply = rig.raw_bytes(&[0xAB; 7]);
        let parsed = parse_reply(&reply).unwrap();
        let ReplyBody::Error(info) = parsed.body else {
            panic!("an error");
        };
        assert_eq!(info.code, ErrorCode::Malformed);
        assert_eq!(info.errors_left, ERROR_LIMIT - n);
    }
    // The held wait was answered, and the device host told.
    let held = rig.session.completion(token).unwrap();
    assert_eq!(error(&held), Some(ErrorCode::ChannelClosing));
    let events = rig.device_host_events();
    assert_eq!(kinds(&events), [GuestEventKind::GuestStopped]);
    assert_eq!(events[0].snapshot().errors_left, 0);
    // Later packets change nothing, however well-formed.
    let id = rig.next_id() + 10;
    for body in [
        RequestBody::Hello,
        RequestBody::ReportDevice(device(BAR_BASE + BAR, BAR, true)),
        RequestBody::Ready,
    ] {
        let reply = rig.raw(id, body);
        let ReplyBody::Error(info) = parse_reply(&reply).unwrap().body else {
            panic!("an error");
        };
        assert_eq!(
            (info.code, info.errors_left),
            (ErrorCode::ChannelClosing, 0)
        );
    }
    assert!(rig.device_host_events().is_empty());
    let status = rig.session.status().unwrap();
    assert_eq!(status.counters.protocol_errors, u64::from(ERROR_LIMIT) + 3);
    rig.close();
}

#[test]
fn a_held_wait_is_completed_when_the_guest_closes_the_channel() {
    let mut rig = Rig::new();
    rig.negotiate();
    let Got::Pending(token) = rig.call(|c, b| c.wait_event(b).unwrap()) else {
        panic!("held");
    };
    rig.session.guest.close(rig.session.channel).unwrap();
    let reply = rig.session.completion(token).unwrap();
    assert_eq!(error(&reply), Some(ErrorCode::ChannelClosing));
    // KMCL's rules held (the channel itself is cleaned up only when the session closes).
    assert_eq!(rig.session.sim.violations(), []);
    let events = rig.device_host_events();
    assert_eq!(kinds(&events), [GuestEventKind::ChannelClosed]);
    // Reopened: a fresh conversation, ids from 1 again.
    rig.session.guest.open(rig.session.channel).unwrap();
    rig.client = GuestClient::new();
    rig.negotiate();
    rig.close();
}

#[test]
fn a_held_wait_is_completed_when_the_device_host_closes_the_session() {
    let mut rig = Rig::new();
    rig.negotiate();
    let Got::Pending(token) = rig.call(|c, b| c.wait_event(b).unwrap()) else {
        panic!("held");
    };
    let session = rig.session;
    let guest = session.guest;
    let left = session.close();
    assert!(left.is_empty(), "{left}");
    let reply = guest.completion(token).unwrap();
    assert_eq!(error(&reply), Some(ErrorCode::ChannelClosing));
}

#[test]
fn a_second_wait_is_busy() {
    let mut rig = Rig::new();
    rig.negotiate();
    let Got::Pending(_) = rig.call(|c, b| c.wait_event(b).unwrap()) else {
        panic!("held");
    };
    let reply = rig.raw(rig.next_id(), RequestBody::WaitEvent { last_seen: 0 });
    assert_eq!(error(&reply), Some(ErrorCode::Busy));
    assert_eq!(rig.errors_left(), ERROR_LIMIT);
    rig.close();
}

#[test]
fn a_fresh_report_after_hello_again_is_taken() {
    let mut rig = Rig::new();
    rig.negotiate();
    rig.now(|c, b| c.report_device(b, &device(BAR_BASE, BAR, true)).unwrap());
    rig.now(|c, b| c.ready(b).unwrap());
    let Got::Pending(old_wait) = rig.call(|c, b| c.wait_event(b).unwrap()) else {
        panic!("held");
    };
    rig.session
        .report_mapping(0, MappingState::SectionBacked)
        .unwrap();
    rig.session
        .report_mapping(1, MappingState::SectionBacked)
        .unwrap();
    let mapped = rig.session.completion(old_wait).unwrap();
    rig.client.on_reply(&mapped).unwrap();
    let Got::Pending(stale_wait) = rig.call(|c, b| c.wait_event(b).unwrap()) else {
        panic!("held");
    };
    assert_eq!(
        kinds(&rig.device_host_events()),
        [GuestEventKind::GuestReport, GuestEventKind::GuestReady]
    );

    // kexec: a new kernel, a new client above the old ids, the channel still open.
    let first = rig.next_id().try_into().unwrap();
    rig.client = GuestClient::starting_at(first);
    rig.negotiate();
    // The old kernel's wait was released (BUSY, not counted) so the new one can wait.
    assert_eq!(
        error(&rig.session.completion(stale_wait).unwrap()),
        Some(ErrorCode::Busy)
    );
    let Got::Pending(new_wait) = rig.call(|c, b| c.wait_event(b).unwrap()) else {
        panic!("held: the events before HELLO are forgotten");
    };
    // The device host hears the reset, unmaps, then the new report moves the BAR.
    assert_eq!(
        kinds(&rig.device_host_events()),
        [GuestEventKind::GuestReset]
    );
    rig.session
        .report_mapping(1, MappingState::Unmapped)
        .unwrap();
    let unmapped = rig.session.completion(new_wait).unwrap();
    match rig.client.on_reply(&unmapped).unwrap() {
        ClientEvent::Event(event) => assert_eq!(event.kind, EventKind::RegionsUnmapped),
        other => panic!("{other:?}"),
    }
    rig.session
        .report_mapping(0, MappingState::Unmapped)
        .unwrap();
    rig.now(|c, b| {
        c.report_device(b, &device(BAR_BASE + 2 * BAR, BAR, true))
            .unwrap()
    });
    rig.now(|c, b| c.ready(b).unwrap());
    let events = rig.device_host_events();
    assert_eq!(
        kinds(&events),
        [GuestEventKind::GuestReport, GuestEventKind::GuestReady]
    );
    assert_eq!(
        events[1].snapshot().device.unwrap().bar_base,
        BAR_BASE + 2 * BAR
    );
    let Got::Pending(wait) = rig.call(|c, b| c.wait_event(b).unwrap()) else {
        panic!("held");
    };
    rig.session
        .report_mapping(0, MappingState::SectionBacked)
        .unwrap();
    rig.session
        .report_mapping(1, MappingState::InterceptFallback)
        .unwrap();
    match rig
        .client
        .on_reply(&rig.session.completion(wait).unwrap())
        .unwrap()
    {
        ClientEvent::Event(event) => assert_eq!(event.kind, EventKind::RegionsIntercepted),
        other => panic!("{other:?}"),
    }
    assert_eq!(rig.client.state(), ClientState::Mapped);
    assert_eq!(rig.errors_left(), ERROR_LIMIT);
    rig.close();
}
