//! The library's in-process session (`vmbmmio_guest::Session`) against the fake uio device
//! whose host is the driver's real guest-packet handler (`support/fake_uio.rs`): a program
//! opens the shared memory, waits until it is backed, uses a region by name or id through its
//! volatile view, follows a BAR that moved or vanished, and releases on drop.
#![cfg(target_os = "linux")]

#[path = "support/consumer.rs"]
mod consumer;
#[path = "support/fake_sysfs.rs"]
mod fake_sysfs;
#[path = "support/fake_uio.rs"]
mod fake_uio;

use std::time::Duration;

use fake_sysfs::{BAR_FLAGS_64_PREFETCH, resource_text};
use fake_uio::{BAR_BASE, BDF, Host, HostReport, INSTANCE, SIZES, TYPE, World};
use vmbmmio_guest::discover::Target;
use vmbmmio_guest::linux::{AgentError, BarCheck};
use vmbmmio_guest::{Options, Session};
use vmbmmio_proto::ioctl::WireGuid;

const BACKED_WITHIN: Duration = Duration::from_secs(10);

fn options(world: &World, instance: Option<u128>) -> Options {
    Options {
        sysfs: world.sysfs.root().to_path_buf(),
        dev: world.sysfs.path("dev"),
        target: Target {
            interface_type: WireGuid::from_u128(TYPE),
            instance: instance.map(WireGuid::from_u128),
            bar_index: 2,
        },
    }
}

/// Runs `work` with a session open on a fresh host; returns what the host saw, checked
/// balanced.
fn with_session(world: &World, backs: bool, work: impl FnOnce(&mut Session)) -> HostReport {
    let host = Host::start(&world.node(), backs);
    let mut session = Session::open(&options(world, None)).expect("the session opens");
    work(&mut session);
    drop(session);
    let report = host.finish();
    assert!(report.left.is_empty(), "left over: {}", report.left);
    report
}

/// Moves the function's BAR 2 to `base` (what a PCI rescan that reassigns it shows).
fn move_bar(world: &World, base: u64) {
    let end = base + world.bar_size - 1;
    world.sysfs.write(
        &format!("bus/pci/devices/{BDF}/resource"),
        resource_text(&[(0, 0, 0), (0, 0, 0), (base, end, BAR_FLAGS_64_PREFETCH)]),
    );
}

#[test]
fn a_region_by_name_or_id_is_a_checked_volatile_view_of_the_bar() {
    let world = World::new();
    let report = with_session(&world, true, |session| {
        assert!(!session.may_use() || session.layout().is_some());
        session.wait_backed(BACKED_WITHIN).expect("backed");
        assert!(session.may_use());
        let generation = session.generation();
        assert!(generation >= 1);
        let layout = *session.layout().expect("a layout");
        let first = layout.regions().first().copied().expect("a region");

        let view = session.region("0").expect("region 0 by id");
        assert_eq!(view.generation(), generation);
        assert_eq!(view.region().id, 0);
        assert_eq!(Some(view.len()), first.length_bytes());
        // A version-1 session names no region: an empty name finds none (names:
        // `tests/session_doorbells.rs`).
        assert!(first.name.is_empty());
        let unnamed = session.region("").expect_err("no region by an empty name");
        assert_eq!(unnamed.kind(), "no_such_region");

        view.write_u64(8, 0x6f69_6d6d_626d_7600)
            .expect("a volatile write");
        assert_eq!(view.read_u64(8).expect("read back"), 0x6f69_6d6d_626d_7600);
        view.write(32, b"guest").expect("a slice write");
        let mut back = [0u8; 5];
        view.read(32, &mut back).expect("a slice read");
        assert_eq!(&back, b"guest");
        assert!(!view.as_ptr().is_null());

        // Every access outside the region, or misaligned, is refused.
        assert!(view.read_u32(view.len()).is_err());
        assert!(view.read_u32(2).is_err());
        assert!(view.write(view.len() - 2, b"abc").is_err());

        let missing = session.region("nope").expect_err("no such region");
        assert_eq!(missing.kind(), "no_such_region");
        assert!(missing.to_string().contains("(0)"), "{missing}");

        // The bytes are in the BAR at the region's offset.
        let bar = std::fs::read(world.bar_file()).expect("the BAR file");
        let at = usize::try_from(first.offset_bytes().expect("offset")).expect("usize");
        assert_eq!(bar.get(at + 32..at + 37), Some(&b"guest"[..]));

        let counters = session.counters();
        assert!(counters.channel.packets_sent >= 6, "{counters:?}");
        assert_eq!(
            counters.channel.packets_sent,
            counters.channel.completions_received + 1,
            "every request but the held WAIT_EVENT was answered: {counters:?}"
        );
        assert!(counters.changes >= 1, "{counters:?}");
    });
    assert!(report.ever_backed);
    // Dropping the session released it before the BAR was unmapped.
    assert!(report.saw_releasing, "{report:?}");
}

#[test]
fn regions_are_refused_once_released() {
    let world = World::new();
    with_session(&world, true, |session| {
        session.wait_backed(BACKED_WITHIN).expect("backed");
        session.release().expect("released");
        assert!(!session.may_use());
        let refused = session.region("0").expect_err("released");
        assert!(matches!(refused, AgentError::NotUsable), "{refused}");
        // Releasing again is nothing.
        session.release().expect("idempotent");
    });
}

#[test]
fn a_moved_bar_is_released_remapped_and_reported_where_it_is_now() {
    let world = World::new();
    let moved_to = BAR_BASE + 4 * world.bar_size;
    let report = with_session(&world, true, |session| {
        session.wait_backed(BACKED_WITHIN).expect("backed");
        assert_eq!(session.check_bar().expect("checked"), BarCheck::Unchanged);
        move_bar(&world, moved_to);
        assert_eq!(
            session.check_bar().expect("checked"),
            BarCheck::Moved {
                base: moved_to,
                size: world.bar_size
            }
        );
        assert_eq!(session.located().function.bar.start, moved_to);
        session
            .wait_backed(BACKED_WITHIN)
            .expect("backed again at the new place");
        assert_eq!(session.counters().bar_moves, 1);
        session.region("0").expect("usable again");
    });
    assert_eq!(report.backed_at, vec![BAR_BASE, moved_to], "{report:?}");
    assert!(report.saw_releasing);
}

#[test]
fn a_function_that_vanished_is_released_and_found_again_when_it_comes_back() {
    let world = World::new();
    with_session(&world, true, |session| {
        session.wait_backed(BACKED_WITHIN).expect("backed");
        let dir = format!("bus/pci/devices/{BDF}");
        let saved = world.sysfs.path("saved-function");
        std::fs::rename(world.sysfs.path(&dir), &saved).expect("remove the function");
        assert_eq!(session.check_bar().expect("checked"), BarCheck::Gone);
        assert!(!session.may_use());
        assert!(matches!(session.region("0"), Err(AgentError::NotUsable)));
        std::fs::rename(&saved, world.sysfs.path(&dir)).expect("the function is back");
        assert!(matches!(
            session.check_bar().expect("checked"),
            BarCheck::Moved { .. }
        ));
        session.wait_backed(BACKED_WITHIN).expect("backed again");
    });
}

#[test]
fn a_host_that_never_backs_is_not_backed_in_time() {
    let world = World::new();
    let report = with_session(&world, false, |session| {
        let error = session
            .wait_backed(Duration::from_millis(200))
            .expect_err("never backed");
        assert_eq!(error.kind(), "not_backed");
        assert!(!session.may_use());
        assert!(matches!(session.region("0"), Err(AgentError::NotUsable)));
    });
    assert!(!report.ever_backed);
    assert!(report.saw_releasing);
}

#[test]
fn the_channel_is_chosen_by_instance_too() {
    let world = World::new();
    let host = Host::start(&world.node(), true);
    let mut session = Session::open(&options(&world, Some(INSTANCE))).expect("by instance");
    session.wait_backed(BACKED_WITHIN).expect("backed");
    assert_eq!(
        session.generation(),
        session.layout().map_or(0, |l| l.generation())
    );
    drop(session);
    let report = host.finish();
    assert!(report.left.is_empty(), "{}", report.left);
    assert_eq!(SIZES.len(), report.regions.len());
}
