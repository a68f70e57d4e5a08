//! Doorbells through the library's session (protocol 1.1) against the fake uio device whose
//! host is the driver's real engine and control device (`support/fake_uio.rs`) with host
//! consumers attached by VM id and region name (`support/consumer.rs`): the guest's ring
//! reaches the region's consumers, a consumer's ring reaches the program (by `wait_doorbell`
//! and by `next_changes`, never lost, never disturbing the layout or the backing), a flood is
//! refused as `rate_limited` without ending the session, and a 1.0 host has no doorbells.
#![cfg(target_os = "linux")]

#[path = "support/consumer.rs"]
mod consumer;
#[path = "support/fake_sysfs.rs"]
mod fake_sysfs;
#[path = "support/fake_uio.rs"]
mod fake_uio;

use std::time::{Duration, Instant};

use fake_uio::{Host, HostSetup, NAMES, TYPE, VM_ID, World};
use vmbmmio_core::control::STATUS_NOT_SUPPORTED;
use vmbmmio_guest::discover::Target;
use vmbmmio_guest::linux::AgentError;
use vmbmmio_guest::session::{Change, RETRY_AFTER, SessionError};
use vmbmmio_guest::{Doorbell, Options, Session};
use vmbmmio_proto::guest::{PROTOCOL_VERSION_1_0, PROTOCOL_VERSION_1_1};
use vmbmmio_proto::ioctl::{SectionAccess, WireGuid};

const BACKED_WITHIN: Duration = Duration::from_secs(10);
const HEARD_WITHIN: Duration = Duration::from_secs(10);

fn options(world: &World) -> Options {
    Options {
        sysfs: world.sysfs.root().to_path_buf(),
        dev: world.sysfs.path("dev"),
        target: Target {
            interface_type: WireGuid::from_u128(TYPE),
            instance: None,
            bar_index: 2,
        },
    }
}

/// A host of `setup` with a consumer attached to `frames` (index 0) when the session is named,
/// and a backed session on it.
fn open(world: &World, setup: HostSetup) -> (Host, Session) {
    let host = Host::start_with(&world.node(), setup);
    if setup.named {
        let index = host.run(|side| {
            side.consumers.attach(
                side.host.session_mut(),
                VM_ID,
                "frames",
                SectionAccess::Read,
            )
        });
        assert_eq!(index, Ok(0));
    }
    let mut session = Session::open(&options(world)).expect("the session opens");
    session.wait_backed(BACKED_WITHIN).expect("backed");
    (host, session)
}

fn finish(host: Host, session: Session) {
    drop(session);
    let report = host.finish();
    assert!(report.left.is_empty(), "left over: {}", report.left);
    assert!(report.saw_releasing, "{report:?}");
}

/// The host's consumer 0 rings the guest with `value`.
fn consumer_rings(host: &Host, value: u64) {
    let rung = host.run(move |side| side.consumers.ring(side.host.session_mut(), 0, value));
    assert_eq!(rung, Ok(()), "RING_GUEST {value}");
}

#[test]
fn regions_are_found_by_the_layouts_names() {
    let world = World::new();
    let (host, session) = open(&world, HostSetup::NAMED);
    let layout = *session.layout().expect("a layout");
    for (id, (name, _)) in NAMES.iter().enumerate() {
        let view = session.region(name).expect("by name");
        assert_eq!(view.name(), *name);
        assert_eq!(usize::try_from(view.region().id).unwrap(), id);
        let by_id = session.region(&id.to_string()).expect("by id");
        assert_eq!(by_id.region(), view.region());
        assert_eq!(layout.region(view.region().id), Some(view.region()));
    }
    let missing = session.region("video").expect_err("no such region");
    assert_eq!(missing.kind(), "no_such_region");
    assert!(missing.to_string().contains("frames (0)"), "{missing}");
    // An empty name never finds an unnamed region.
    assert_eq!(
        session.region("").expect_err("empty").kind(),
        "no_such_region"
    );
    finish(host, session);
}

#[test]
fn a_guest_doorbell_reaches_the_regions_host_consumer() {
    let world = World::new();
    let (host, mut session) = open(&world, HostSetup::NAMED);
    assert!(session.doorbells());
    assert_eq!(
        session.protocol().conversation().client.version(),
        Some(PROTOCOL_VERSION_1_1)
    );
    session
        .region("frames")
        .unwrap()
        .write_u64(0, 0xfeed)
        .unwrap();
    assert_eq!(session.ring("frames", 7).expect("rung"), 0);
    // Another region's doorbell is not this consumer's.
    assert_eq!(session.ring("1", 3).expect("rung by id"), 1);
    let taken = host
        .run(|side| side.consumers.take(side.host.session_mut(), 0))
        .expect("TAKE_DOORBELLS");
    assert_eq!((taken.count, taken.last_value), (1, 7), "{taken:?}");
    assert_eq!(taken.refused_from_guest, 0);
    let counters = session.counters();
    assert_eq!(counters.doorbells_rung, 2, "{counters:?}");
    // A region the layout does not have is refused before anything is sent.
    let missing = session.ring("video", 1).expect_err("no such region");
    assert_eq!(missing.kind(), "no_such_region");
    assert!(session.may_use());
    finish(host, session);
}

#[test]
fn a_host_consumers_doorbell_reaches_the_program_and_disturbs_nothing_else() {
    let world = World::new();
    let (host, mut session) = open(&world, HostSetup::NAMED);
    let generation = session.generation();

    consumer_rings(&host, 5);
    let heard = session.wait_doorbell(HEARD_WITHIN).expect("waited");
    assert_eq!(
        heard,
        Some(Doorbell {
            region: 0,
            name: "frames".to_owned(),
            value: 5
        })
    );
    // Neither the layout nor the backing changed.
    assert!(session.may_use());
    assert_eq!(session.generation(), generation);
    session.region("frames").expect("still usable");

    // Rings the program has not heard yet coalesce: the latest value wins.
    for value in [8, 9] {
        consumer_rings(&host, value);
    }
    let deadline = Instant::now() + HEARD_WITHIN;
    let mut values = Vec::new();
    while values.last() != Some(&9) && Instant::now() < deadline {
        if let Some(doorbell) = session.wait_doorbell(Duration::from_millis(100)).unwrap() {
            values.push(doorbell.value);
        }
    }
    assert_eq!(values.last(), Some(&9), "{values:?}");
    assert!(values.len() <= 2, "{values:?}");

    // Waiting for another region keeps this one's doorbell for later: nothing is lost.
    consumer_rings(&host, 21);
    let other = session
        .wait_doorbell_on(Some("audio"), Duration::from_millis(300))
        .expect("waited");
    assert_eq!(other, None);
    let kept = session.wait_doorbell(HEARD_WITHIN).expect("waited");
    assert_eq!(kept.map(|doorbell| doorbell.value), Some(21));

    // `next_changes` surfaces doorbells too.
    consumer_rings(&host, 33);
    let deadline = Instant::now() + HEARD_WITHIN;
    let mut changes = Vec::new();
    while !changes.contains(&Change::Doorbell {
        region: 0,
        value: 33,
    }) && Instant::now() < deadline
    {
        changes.extend(session.next_changes(Duration::from_millis(100)).unwrap());
    }
    assert!(
        changes.contains(&Change::Doorbell {
            region: 0,
            value: 33
        }),
        "{changes:?}"
    );
    assert!(
        changes
            .iter()
            .all(|change| matches!(change, Change::Doorbell { .. })),
        "a doorbell brings no other change: {changes:?}"
    );
    assert!(session.may_use());
    assert_eq!(session.generation(), generation);
    assert_eq!(
        session.wait_doorbell(Duration::from_millis(50)).unwrap(),
        None
    );
    assert!(session.counters().doorbells_heard >= 4);
    finish(host, session);
}

#[test]
fn a_guest_doorbell_flood_is_rate_limited_and_the_session_goes_on() {
    let world = World::new();
    let (host, mut session) = open(&world, HostSetup::NAMED);
    let (mut acked, mut refused) = (0u64, 0u64);
    // The simulated clock stands still: the burst passes, the rest is refused.
    for value in 0..100u64 {
        match session.ring("frames", value) {
            Ok(_) => acked += 1,
            Err(error) => {
                assert_eq!(error.kind(), "rate_limited", "{error}");
                assert!(!error.is_setup());
                assert!(
                    matches!(
                        error,
                        AgentError::Protocol(SessionError::RateLimited {
                            region: 0,
                            retry_after
                        }) if retry_after == RETRY_AFTER
                    ),
                    "{error:?}"
                );
                refused += 1;
            }
        }
    }
    assert_eq!(
        acked,
        u64::from(vmbmmio_core::consumers::BURST),
        "{refused}"
    );
    assert_eq!(acked + refused, 100);
    let counters = session.counters();
    assert_eq!(
        (counters.doorbells_rung, counters.doorbells_refused),
        (acked, refused)
    );
    // Not misbehaviour: the session is usable and rings again once time passed.
    assert!(session.may_use() && !session.closed());
    host.run(|side| side.host.session_mut().kernel.clock().advance_seconds(1));
    session
        .ring("frames", 1000)
        .expect("the allowance refilled");
    let taken = host
        .run(|side| side.consumers.take(side.host.session_mut(), 0))
        .expect("TAKE_DOORBELLS");
    assert_eq!(taken.count, acked + 1, "{taken:?}");
    assert_eq!(taken.last_value, 1000);
    assert_eq!(taken.refused_from_guest, refused);
    finish(host, session);
}

#[test]
fn a_1_0_host_has_no_doorbells_and_says_so() {
    let world = World::new();
    let setup = HostSetup {
        only_1_0: true,
        ..HostSetup::NAMED
    };
    let (host, mut session) = open(&world, setup);
    assert_eq!(
        session.protocol().conversation().client.version(),
        Some(PROTOCOL_VERSION_1_0)
    );
    assert!(!session.doorbells());
    let refused = session.ring("frames", 1).expect_err("no doorbells");
    assert_eq!(refused.kind(), "doorbells_unsupported");
    assert!(refused.is_setup());
    assert!(refused.to_string().contains("1.1"), "{refused}");
    let refused = session
        .wait_doorbell(Duration::from_millis(10))
        .expect_err("no doorbells");
    assert_eq!(refused.kind(), "doorbells_unsupported");
    // Nobody can ring this guest, and the session is unaffected.
    let ring = host.run(|side| side.consumers.ring(side.host.session_mut(), 0, 5));
    assert_eq!(ring, Err(STATUS_NOT_SUPPORTED));
    assert!(session.may_use());
    session.region("frames").expect("names still work");
    finish(host, session);
}
