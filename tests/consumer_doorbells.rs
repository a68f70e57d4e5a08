//! Doorbells both ways end to end (docs/host-consumers.md, docs/protocol.md 1.1): a simulated
//! guest speaking protocol 1.1 through the guest library over the session's real channel, host
//! consumers through IOCTL bytes, the driver's real engine and control device. Floods both ways
//! are refused and counted without blocking anything else: the same session's device host and
//! another VM's session keep working.

mod consumer_support;
mod control_support;

use consumer_support::{Hosted, REGIONS, VM_A, VM_B};
use control_support::Bench;
use hvsim::kmcl::{ChannelId, PacketOutcome, SimGuest};

use vmbmmio_core::consumers::{BURST, rate::TICKS_PER_TOKEN};
use vmbmmio_core::control::{STATUS_NOT_SUPPORTED, STATUS_RETRY};
use vmbmmio_proto::guest::{
    ClientEvent, ERROR_LIMIT, ErrorCode, EventKind, GuestClient, Kind, LARGEST_MESSAGE,
    PROTOCOL_VERSION_1_0, PROTOCOL_VERSION_1_1, RequestBody, Sent, encode_request,
};
use vmbmmio_proto::ioctl::SectionAccess;

/// The guest's end of one session's channel, speaking through the guest library.
struct Guest {
    guest: SimGuest,
    channel: ChannelId,
    client: GuestClient,
}

/// What a guest request came back with.
enum Got {
    Now(ClientEvent),
    Pending(u64),
}

impl Guest {
    /// The guest opens the session's channel (offered by OPEN_SESSION).
    fn open(bench: &Bench, host: &Hosted) -> Self {
        let guest = bench.sim.guest(host.vm.id);
        let channel = guest.only_offer().unwrap().channel;
        guest.open(channel).unwrap();
        Self {
            guest,
            channel,
            client: GuestClient::new(),
        }
    }

    /// HELLO and SELECT_VERSION: the highest version both speak.
    fn versioned(bench: &Bench, host: &Hosted) -> Self {
        let mut guest = Self::open(bench, host);
        guest.now(|c, b| c.hello(b).unwrap());
        guest.now(|c, b| c.select_version(b).unwrap());
        guest
    }

    fn call(&mut self, build: impl FnOnce(&mut GuestClient, &mut [u8]) -> Sent) -> Got {
        let mut buf = [0u8; LARGEST_MESSAGE];
        let sent = build(&mut self.client, &mut buf);
        match self.guest.send(self.channel, &buf[..sent.len]).unwrap() {
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

    /// The held WAIT_EVENT `token`'s completion, through the client.
    fn completed(&mut self, token: u64) -> ClientEvent {
        let reply = self.guest.completion(token).expect("completed");
        self.client.on_reply(&reply).unwrap()
    }

    fn ring(&mut self, region: u32, value: u64) -> ClientEvent {
        self.now(|c, b| c.doorbell(b, region, value).unwrap())
    }
}

fn is_ack(event: &ClientEvent) -> bool {
    matches!(event, ClientEvent::Acked(ack) if ack.acked_kind == Kind::Doorbell)
}

fn rate_limited(event: &ClientEvent) -> bool {
    matches!(event, ClientEvent::Error(info) if info.code == ErrorCode::RateLimited)
}

#[test]
fn the_host_offers_doorbells_and_a_1_0_guest_has_none() {
    let mut bench = Bench::new();
    let a = bench.host_v2(1, VM_A, &REGIONS);
    let mut guest = Guest::open(&bench, &a);
    match guest.now(|c, b| c.hello(b).unwrap()) {
        ClientEvent::HelloReply { host, chosen } => {
            assert_eq!(host.max_version, PROTOCOL_VERSION_1_1);
            assert_eq!(chosen, Some(PROTOCOL_VERSION_1_1));
        }
        other => panic!("{other:?}"),
    }
    // This guest selects 1.0 by hand: DOORBELL does not exist for it, and nobody can ring it.
    let mut buf = [0u8; LARGEST_MESSAGE];
    let len = encode_request(
        &mut buf,
        100,
        &RequestBody::SelectVersion {
            version: PROTOCOL_VERSION_1_0,
        },
    )
    .unwrap();
    assert!(matches!(
        guest.guest.send(guest.channel, &buf[..len]).unwrap(),
        PacketOutcome::Completed(_)
    ));
    let len = encode_request(
        &mut buf,
        101,
        &RequestBody::Doorbell {
            region: 0,
            value: 1,
        },
    )
    .unwrap();
    let PacketOutcome::Completed(reply) = guest.guest.send(guest.channel, &buf[..len]).unwrap()
    else {
        panic!("answered at once");
    };
    let error = vmbmmio_proto::guest::parse_reply(&reply).unwrap();
    assert!(
        format!("{error:?}").contains("UnknownKind"),
        "a 1.0 conversation has no DOORBELL: {error:?}"
    );
    let (consumer, file) = bench.consumer(2);
    let ring = bench
        .attach(file, VM_A, "ring", SectionAccess::Read)
        .unwrap();
    assert_eq!(
        bench.ring(file, ring.attachment(), 5).err(),
        Some(STATUS_NOT_SUPPORTED)
    );
    assert_eq!(
        bench
            .take(file, ring.attachment())
            .unwrap()
            .refused_to_guest,
        0
    );

    bench.control.file_cleanup(file.file());
    bench.control.file_cleanup(a.caller.file());
    bench.kernel.exit_process(consumer);
    bench.kernel.exit_process(a.process);
    bench.assert_consumers_released();
    bench.assert_nothing_left();
}

#[test]
fn a_guest_doorbell_flood_is_refused_counted_and_blocks_nothing_else() {
    let mut bench = Bench::new();
    let a = bench.host_v2(1, VM_A, &REGIONS);
    let b = bench.host_v2(2, VM_B, &REGIONS);
    let mut guest_a = Guest::versioned(&bench, &a);
    let mut guest_b = Guest::versioned(&bench, &b);
    let (consumer, file) = bench.consumer(3);
    let on_a = bench
        .attach(file, VM_A, "ring", SectionAccess::Read)
        .unwrap();
    let on_frame = bench
        .attach(file, VM_A, "frame", SectionAccess::Read)
        .unwrap();
    let on_b = bench
        .attach(file, VM_B, "ring", SectionAccess::Read)
        .unwrap();
    let event = bench.kernel.create_event(consumer).unwrap();
    bench.set_event(file, on_a.attachment(), event).unwrap();

    // One ring: counted for the region's consumers only, the event set.
    assert!(is_ack(&guest_a.ring(0, 7)));
    let taken = bench.take(file, on_a.attachment()).unwrap();
    assert_eq!((taken.count, taken.last_value), (1, 7));
    assert_eq!(bench.take(file, on_frame.attachment()).unwrap().count, 0);
    assert_eq!(bench.kernel.event_signals(consumer, event), Some(1));

    // The flood, all at one instant: the burst passes, the rest is refused, not counted as
    // misbehaviour (the guest keeps its allowance).
    let (mut acked, mut refused) = (0u64, 0u64);
    for value in 0..200u64 {
        let got = guest_a.ring(0, 1000 + value);
        if is_ack(&got) {
            acked += 1;
        } else if rate_limited(&got) {
            refused += 1;
            if let ClientEvent::Error(info) = got {
                assert_eq!(info.errors_left, ERROR_LIMIT);
            }
        } else {
            panic!("{got:?}");
        }
    }
    assert_eq!(acked, u64::from(BURST) - 1);
    assert_eq!(refused, 200 - acked);
    let taken = bench.take(file, on_a.attachment()).unwrap();
    assert_eq!(taken.count, acked);
    assert_eq!(
        taken.last_value,
        1000 + acked - 1,
        "the last admitted value"
    );
    assert_eq!(taken.refused_from_guest, refused);
    assert_eq!(bench.kernel.event_signals(consumer, event), Some(1 + acked));

    // Nothing else is held up: the other VM's guest and consumer, and A's device host.
    assert!(is_ack(&guest_b.ring(0, 42)));
    let taken_b = bench.take(file, on_b.attachment()).unwrap();
    assert_eq!(
        (
            taken_b.count,
            taken_b.last_value,
            taken_b.refused_from_guest
        ),
        (1, 42, 0)
    );
    bench.status(a.caller).unwrap();
    assert!(matches!(
        guest_a.now(|c, b| c.get_layout(b).unwrap()),
        ClientEvent::Layout { .. }
    ));

    // Time refills the guest's bucket: one token per 100 µs.
    bench.kernel.clock().advance(10 * TICKS_PER_TOKEN);
    let admitted = (0..11).filter(|&v| is_ack(&guest_a.ring(0, v))).count();
    assert_eq!(admitted, 10);
    let counters = bench
        .control
        .guest_events(a.caller.file())
        .unwrap()
        .counters();
    assert_eq!(counters.doorbells_from_guest, 1 + acked + 10);
    assert_eq!(counters.doorbells_refused, refused + 1);
    assert_eq!(counters.counted_errors, 0);

    bench.control.file_cleanup(file.file());
    for host in [&a, &b] {
        bench.control.file_cleanup(host.caller.file());
        bench.kernel.exit_process(host.process);
    }
    bench.kernel.exit_process(consumer);
    bench.assert_consumers_released();
    bench.assert_nothing_left();
}

#[test]
fn consumer_rings_reach_the_guest_coalesced_and_a_flood_is_refused() {
    let mut bench = Bench::new();
    let a = bench.host_v2(1, VM_A, &REGIONS);
    let b = bench.host_v2(2, VM_B, &REGIONS);
    let mut guest = Guest::versioned(&bench, &a);
    let mut guest_b = Guest::versioned(&bench, &b);
    let (consumer, file) = bench.consumer(3);
    let ring = bench
        .attach(file, VM_A, "ring", SectionAccess::Read)
        .unwrap();
    let frame = bench
        .attach(file, VM_A, "frame", SectionAccess::Read)
        .unwrap();
    let id = ring.attachment();

    // Three rings before the guest looks: one event, the latest value.
    for value in [1, 2, 3] {
        bench.ring(file, id, value).unwrap();
    }
    bench.ring(file, frame.attachment(), 77).unwrap();
    let ClientEvent::Event(first) = guest.now(|c, b| c.wait_event(b).unwrap()) else {
        panic!("an event is waiting");
    };
    assert_eq!(first.kind, EventKind::Doorbell);
    assert_eq!((first.region, first.value), (0, 3));
    let ClientEvent::Event(second) = guest.now(|c, b| c.wait_event(b).unwrap()) else {
        panic!("the other region's event");
    };
    assert_eq!((second.region, second.value), (1, 77));
    // Sent events are never rewritten: a new ring makes a new event, which answers the held
    // wait.
    let Got::Pending(token) = guest.call(|c, b| c.wait_event(b).unwrap()) else {
        panic!("nothing new: the wait is held");
    };
    bench.ring(file, id, 9).unwrap();
    let ClientEvent::Event(third) = guest.completed(token) else {
        panic!("the ring answers the held wait");
    };
    assert_eq!(
        (third.kind, third.region, third.value),
        (EventKind::Doorbell, 0, 9)
    );
    assert!(third.sequence > second.sequence);
    let counters = bench
        .control
        .guest_events(a.caller.file())
        .unwrap()
        .counters();
    assert_eq!(
        (counters.doorbells_to_guest, counters.doorbells_coalesced),
        (5, 2)
    );

    // The flood: this attachment's bucket runs dry (4 of its tokens are used); the other
    // attachment of the same session and the other VM keep working.
    let mut refused = 0u64;
    for value in 0..100 {
        match bench.ring(file, id, value) {
            Ok(()) => {}
            Err(status) => {
                assert_eq!(status, STATUS_RETRY);
                refused += 1;
            }
        }
    }
    assert_eq!(refused, 100 - (u64::from(BURST) - 4));
    assert_eq!(bench.take(file, id).unwrap().refused_to_guest, refused);
    bench.ring(file, frame.attachment(), 78).unwrap();
    let on_b = bench
        .attach(file, VM_B, "ring", SectionAccess::Read)
        .unwrap();
    bench.ring(file, on_b.attachment(), 5).unwrap();
    let ClientEvent::Event(at_b) = guest_b.now(|c, b| c.wait_event(b).unwrap()) else {
        panic!("B's guest hears its ring");
    };
    assert_eq!((at_b.region, at_b.value), (0, 5));
    // The flooded guest's queue holds at most one unsent DOORBELL event per region.
    let ClientEvent::Event(flooded) = guest.now(|c, b| c.wait_event(b).unwrap()) else {
        panic!("the flood's event");
    };
    assert_eq!(flooded.kind, EventKind::Doorbell);
    bench.status(a.caller).unwrap();

    bench.control.file_cleanup(file.file());
    for host in [&a, &b] {
        bench.control.file_cleanup(host.caller.file());
        bench.kernel.exit_process(host.process);
    }
    bench.kernel.exit_process(consumer);
    bench.assert_consumers_released();
    bench.assert_nothing_left();
}
