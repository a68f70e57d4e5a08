//! The engine on its own: packets built by the guest library, the device host's queue as
//! plain data, the held packet played by hand.

use alloc::vec::Vec;

use vmbmmio_proto::guest::{
    BarPlacement, ClientEvent, ClientState, DeviceReport, ErrorCode, EventKind, GuestClient,
    GuestRange, Kind, ReplyBody, RequestBody, encode_request, parse_reply,
};
use vmbmmio_proto::ioctl::{ActedOn, MappingState, WireGuid};

use super::limits::{ERROR_LIMIT, LARGEST_MESSAGE};
use super::*;
use crate::control::FileKey;
use crate::guest_events::{EVENT_CAPACITY, GuestEventQueue};
use crate::mmio_plan::MmioPlan;

const INSTANCE: WireGuid = WireGuid::from_u128(0x1234);
const BAR: u64 = 1 << 20;
const BAR_BASE: u64 = 0xF800_0000;

fn device(base: u64, size: u64, decode: bool) -> DeviceReport {
    DeviceReport {
        instance: INSTANCE,
        segment: 0,
        bus: 0,
        devfn: 0,
        bar_index: 0,
        bar: BarPlacement {
            base,
            size,
            memory_decode: decode,
        },
    }
}

struct Rig {
    engine: Engine,
    queue: GuestEventQueue,
    client: GuestClient,
    /// The held packet's request id (what the shared layer keeps as a `HeldPacket`).
    held: Option<u64>,
    /// Completions of held packets.
    held_replies: Vec<Vec<u8>>,
}

impl Rig {
    fn new() -> Self {
        let plan = MmioPlan::new(&[512 << 10, 256 << 10]).unwrap();
        let mut engine = Engine::new(SessionContext::new(INSTANCE, &plan, &[true, false]));
        engine.opened();
        engine.started();
        Self {
            engine,
            queue: GuestEventQueue::new(FileKey(1)),
            client: GuestClient::new(),
            held: None,
            held_replies: Vec::new(),
        }
    }

    /// Sends `bytes`; returns the immediate reply (`None` when held).
    fn raw(&mut self, bytes: &[u8]) -> Option<Vec<u8>> {
        let mut out = [0u8; LARGEST_MESSAGE];
        let outcome = self.engine.packet(&mut self.queue, bytes, &mut out);
        self.take_held(outcome.held);
        match outcome.action {
            Action::Reply(len) => Some(out[..len].to_vec()),
            Action::Hold => {
                assert!(self.held.is_none(), "two packets held");
                self.held = Some(1);
                None
            }
        }
    }

    fn take_held(&mut self, reply: Option<HeldReply>) {
        if let Some(reply) = reply {
            assert!(self.held.take().is_some(), "a reply for no held packet");
            self.held_replies.push(reply.bytes().to_vec());
        }
    }

    /// Sends what the client built and hands the reply back to it.
    fn client_send(
        &mut self,
        build: impl FnOnce(&mut GuestClient, &mut [u8]) -> vmbmmio_proto::guest::Sent,
    ) -> Option<ClientEvent> {
        let mut buf = [0u8; LARGEST_MESSAGE];
        let sent = build(&mut self.client, &mut buf);
        let reply = self.raw(&buf[..sent.len])?;
        Some(
            self.client
                .on_reply(&reply)
                .expect("a reply the guest accepts"),
        )
    }

    fn hello_and_select(&mut self) {
        self.client_send(|c, b| c.hello(b).unwrap()).unwrap();
        self.client_send(|c, b| c.select_version(b).unwrap())
            .unwrap();
        assert_eq!(self.client.state(), ClientState::Versioned);
    }

    fn report(&mut self, report: DeviceReport) -> ClientEvent {
        self.client_send(|c, b| c.report_device(b, &report).unwrap())
            .unwrap()
    }

    fn request(&mut self, id: u64, body: RequestBody) -> Option<Vec<u8>> {
        let mut buf = [0u8; LARGEST_MESSAGE];
        let len = encode_request(&mut buf, id, &body).unwrap();
        self.raw(&buf[..len])
    }

    fn error_code(reply: &[u8]) -> Option<ErrorCode> {
        match parse_reply(reply).unwrap().body {
            ReplyBody::Error(error) => Some(error.code),
            _ => None,
        }
    }
}

#[test]
fn a_whole_conversation() {
    let mut rig = Rig::new();
    rig.hello_and_select();
    rig.client_send(|c, b| c.report_reservation(b, None).unwrap())
        .unwrap();
    rig.report(device(BAR_BASE, BAR, true));
    rig.client_send(|c, b| c.ready(b).unwrap()).unwrap();
    assert_eq!(rig.queue.newest(), 3);
    assert!(rig.queue.current().device.unwrap().ready);
    // The guest waits: held.
    assert_eq!(rig.client_send(|c, b| c.wait_event(b).unwrap()), None);
    // The device host maps region 0: not every region is backed, no event.
    assert_eq!(
        rig.engine
            .mapping(0, MappingState::SectionBacked, ActedOn::Unknown),
        None
    );
    let reply = rig
        .engine
        .mapping(1, MappingState::SectionBacked, ActedOn::Unknown);
    rig.take_held(reply);
    assert_eq!(rig.engine.generation(), 3);
    let event = rig.client.on_reply(&rig.held_replies[0]).unwrap();
    assert!(
        matches!(event, ClientEvent::Event(e) if e.kind == EventKind::RegionsMapped && e.sequence == 1 && e.generation == 3)
    );
    assert_eq!(rig.client.state(), ClientState::Mapped);
    rig.client_send(|c, b| c.get_layout(b).unwrap()).unwrap();
    let layout = rig.client.layout().unwrap();
    assert_eq!(layout.bar_size(), BAR);
    assert_eq!(layout.regions().len(), 2);
    assert!(rig.client.layout_is_current());
    rig.client_send(|c, b| c.releasing(b).unwrap()).unwrap();
    assert_eq!(rig.queue.newest(), 4);
    assert!(rig.queue.current().device.unwrap().releasing);
    let counters = rig.engine.counters();
    assert_eq!(counters.protocol_errors, 0);
    assert_eq!(counters.internal_errors, 0);
}

#[test]
fn before_a_version_only_hello_and_select_are_accepted() {
    let mut rig = Rig::new();
    let reply = rig.request(1, RequestBody::GetLayout).unwrap();
    assert_eq!(Rig::error_code(&reply), Some(ErrorCode::OutOfOrder));
    let reply = rig
        .request(2, RequestBody::SelectVersion { version: 2 << 16 })
        .unwrap();
    assert_eq!(Rig::error_code(&reply), Some(ErrorCode::UnsupportedVersion));
    let reply = rig
        .request(3, RequestBody::SelectVersion { version: 1 << 16 })
        .unwrap();
    assert_eq!(Rig::error_code(&reply), None);
    // Replayed and 0 ids.
    let reply = rig.request(3, RequestBody::GetLayout).unwrap();
    assert_eq!(Rig::error_code(&reply), Some(ErrorCode::Replayed));
    assert_eq!(rig.engine.conversation().errors_left, ERROR_LIMIT - 3);
}

#[test]
fn ready_needs_a_decoded_report_and_refusals_change_nothing() {
    let mut rig = Rig::new();
    rig.hello_and_select();
    let reply = rig.request(10, RequestBody::Ready).unwrap();
    assert_eq!(Rig::error_code(&reply), Some(ErrorCode::OutOfOrder));
    // Wrong size, misaligned, unpaired: refused, nothing queued.
    for (report, code) in [
        (device(BAR_BASE, BAR * 2, true), ErrorCode::BadPlacement),
        (device(BAR_BASE + 4096, BAR, true), ErrorCode::BadPlacement),
        (
            DeviceReport {
                instance: WireGuid::from_u128(0x9999),
                ..device(BAR_BASE, BAR, true)
            },
            ErrorCode::NotPaired,
        ),
    ] {
        let id = rig.client.next_request_id() + 100;
        let reply = rig.request(id, RequestBody::ReportDevice(report)).unwrap();
        assert_eq!(Rig::error_code(&reply), Some(code));
    }
    assert_eq!(rig.queue.newest(), 0);
    assert_eq!(rig.engine.conversation().reports, Reports::default());
}

#[test]
fn a_bar_partly_over_the_reservation_is_refused_either_way_round() {
    let mut rig = Rig::new();
    rig.hello_and_select();
    let reservation = GuestRange {
        base: BAR_BASE + BAR / 2,
        size: BAR,
    };
    rig.client_send(|c, b| c.report_reservation(b, Some(reservation)).unwrap())
        .unwrap();
    let id = rig.client.next_request_id();
    let reply = rig
        .request(id, RequestBody::ReportDevice(device(BAR_BASE, BAR, true)))
        .unwrap();
    assert_eq!(Rig::error_code(&reply), Some(ErrorCode::BadPlacement));
    // Inside or disjoint is fine.
    let reply = rig
        .request(
            id + 1,
            RequestBody::ReportDevice(device(BAR_BASE + 4 * BAR, BAR, true)),
        )
        .unwrap();
    assert_eq!(Rig::error_code(&reply), None);
    // A reservation reported after the device must not partly overlap it either.
    let reply = rig
        .request(
            id + 2,
            RequestBody::ReportReservation(Some(GuestRange {
                base: BAR_BASE + 4 * BAR + BAR / 2,
                size: BAR,
            })),
        )
        .unwrap();
    assert_eq!(Rig::error_code(&reply), Some(ErrorCode::BadPlacement));
    assert_eq!(rig.queue.newest(), 2);
}

#[test]
fn the_allowance_runs_out_then_everything_is_closing() {
    let mut rig = Rig::new();
    rig.hello_and_select();
    assert_eq!(rig.client_send(|c, b| c.wait_event(b).unwrap()), None);
    for n in 1..=ERROR_LIMIT {
        let reply = rig.raw(&[0xFF; 3]).unwrap();
        assert_eq!(Rig::error_code(&reply), Some(ErrorCode::Malformed), "{n}");
    }
    assert!(rig.engine.conversation().stopped);
    // The held wait was answered CHANNEL_CLOSING; the device host heard GUEST_STOPPED.
    assert_eq!(rig.held_replies.len(), 1);
    assert_eq!(
        Rig::error_code(&rig.held_replies[0]),
        Some(ErrorCode::ChannelClosing)
    );
    assert_eq!(rig.queue.newest(), 1);
    assert_eq!(rig.queue.current().errors_left, 0);
    let before = rig.engine.conversation().reports;
    let reply = rig.request(1000, RequestBody::Hello).unwrap();
    assert_eq!(Rig::error_code(&reply), Some(ErrorCode::ChannelClosing));
    assert_eq!(rig.engine.conversation().reports, before);
    assert_eq!(
        rig.engine
            .mapping(0, MappingState::SectionBacked, ActedOn::Unknown),
        None
    );
}

#[test]
fn a_full_device_host_queue_refuses_reports_with_busy_but_keeps_room_for_the_stop() {
    let mut rig = Rig::new();
    rig.hello_and_select();
    let first = rig.client.next_request_id();
    let mut accepted = 0;
    for id in first..first + 2 * EVENT_CAPACITY as u64 {
        let reply = rig
            .request(id, RequestBody::ReportReservation(None))
            .unwrap();
        match Rig::error_code(&reply) {
            None => accepted += 1,
            Some(code) => assert_eq!(code, ErrorCode::Busy),
        }
    }
    assert_eq!(accepted, EVENT_CAPACITY - 2);
    for _ in 0..ERROR_LIMIT {
        rig.raw(&[0; 1]);
    }
    assert_eq!(rig.queue.newest(), EVENT_CAPACITY as u64 - 1);
    let (held, _) = rig.engine.closed(&mut rig.queue);
    assert!(held.is_none());
    assert_eq!(rig.queue.newest(), EVENT_CAPACITY as u64);
    assert_eq!(rig.engine.counters().events_lost, 0);
}

#[test]
fn a_second_wait_is_busy_and_suspend_completes_the_held_one() {
    let mut rig = Rig::new();
    rig.hello_and_select();
    assert_eq!(
        rig.request(10, RequestBody::WaitEvent { last_seen: 0 }),
        None
    );
    let reply = rig
        .request(11, RequestBody::WaitEvent { last_seen: 0 })
        .unwrap();
    assert_eq!(Rig::error_code(&reply), Some(ErrorCode::Busy));
    let reply = rig.engine.suspend();
    rig.take_held(reply);
    assert_eq!(
        Rig::error_code(&rig.held_replies[0]),
        Some(ErrorCode::ChannelClosing)
    );
    let reply = rig.request(12, RequestBody::GetLayout).unwrap();
    assert_eq!(Rig::error_code(&reply), Some(ErrorCode::ChannelClosing));
    rig.engine.started();
    let reply = rig.request(13, RequestBody::GetLayout).unwrap();
    assert_eq!(parse_reply(&reply).unwrap().body.kind(), Kind::Layout);
}

#[test]
fn hello_again_forgets_the_reports_and_releases_the_wait() {
    let mut rig = Rig::new();
    rig.hello_and_select();
    rig.report(device(BAR_BASE, BAR, true));
    assert_eq!(rig.client_send(|c, b| c.wait_event(b).unwrap()), None);
    // A kexec'd guest: a new client above the old ids.
    let first = core::num::NonZeroU64::new(rig.client.next_request_id()).unwrap();
    rig.client = GuestClient::starting_at(first);
    rig.hello_and_select();
    assert_eq!(rig.held_replies.len(), 1);
    assert_eq!(Rig::error_code(&rig.held_replies[0]), Some(ErrorCode::Busy));
    assert_eq!(rig.queue.newest(), 2);
    assert_eq!(rig.queue.current().device, None);
    rig.report(device(BAR_BASE + BAR, BAR, true));
    assert_eq!(rig.queue.current().device.unwrap().bar_base, BAR_BASE + BAR);
}

#[test]
fn short_packets_echo_what_they_hold() {
    let mut rig = Rig::new();
    let reply = rig.raw(&[0x07, 0x00, 0x00]).unwrap();
    let parsed = parse_reply(&reply).unwrap();
    assert_eq!(parsed.request_id, 0);
    match parsed.body {
        ReplyBody::Error(error) => {
            assert_eq!(error.request_kind, 7);
            assert_eq!(error.code, ErrorCode::Malformed);
        }
        other => panic!("{other:?}"),
    }
}

mod acted;
