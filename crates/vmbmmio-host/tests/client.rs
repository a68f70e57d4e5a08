//! The client over the scripted fake driver: listing, attach access rules, bounds and
//! alignment, doorbells both ways, the session closing, strict reply parsing and the one
//! release path (nothing leaks).

use std::thread;
use std::time::Duration;

use vmbmmio_host::failure::DriverFailure;
use vmbmmio_host::fake::{FakeDriver, FakeRegion};
use vmbmmio_host::{Access, Error, Host, RegionState, VmId};
use vmbmmio_proto::ioctl::IoctlCode;

const VM_A: VmId = VmId::from_u128(0x1111_1111_2222_3333_4444_5555_5555_5555);
const VM_B: VmId = VmId::from_u128(0xaaaa_aaaa_bbbb_cccc_dddd_eeee_eeee_eeee);

/// A fake with VM A (`frames` 64 KiB consumer-writable, `log` 4 KiB read-only for consumers)
/// and VM B (`frames` 8 KiB); the host over it; A's session id.
fn setup() -> (FakeDriver, Host, u64) {
    let fake = FakeDriver::new();
    let a = fake.add_session(
        VM_A,
        &[
            FakeRegion::new("frames", 64 << 10).consumer_writable(),
            FakeRegion::new("log", 4 << 10).state(RegionState::Intercepted),
        ],
    );
    fake.add_session(
        VM_B,
        &[FakeRegion::new("frames", 8 << 10).guest_read_only()],
    );
    (fake.clone(), Host::with_driver(fake), a)
}

fn assert_released(fake: &FakeDriver) {
    assert_eq!(fake.live_attachments(), 0, "attachments");
    assert_eq!(fake.open_handles(), 0, "handles");
    assert_eq!(fake.live_mappings(), 0, "mappings");
}

#[test]
fn list_shows_every_session_with_its_regions() {
    let (_fake, host, a) = setup();
    let sessions = host.list().unwrap();
    assert_eq!(sessions.len(), 2);
    assert_eq!(sessions[0].vm_id, VM_A);
    assert_eq!(sessions[0].session_id, a);
    let names: Vec<&str> = sessions[0]
        .regions
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(names, ["frames", "log"]);
    let log = &sessions[0].regions[1];
    assert_eq!((log.index, log.size), (1, 4096));
    assert_eq!(log.max_access(), Access::Read);
    assert_eq!(log.state, RegionState::Intercepted);
    assert_eq!(sessions[0].regions[0].max_access(), Access::ReadWrite);
    assert!(!sessions[1].regions[0].guest_writable);
    let (vm, region) = host.find("log").unwrap().unwrap();
    assert_eq!((vm, region.index), (VM_A, 1));
}

#[test]
fn list_stops_at_no_more_entries_in_either_spelling() {
    let (fake, host, _) = setup();
    // The Win32 spelling of STATUS_NO_MORE_ENTRIES (ERROR_NO_MORE_ITEMS) on the first call.
    fake.fail_next(
        Some(IoctlCode::ListSessions.code()),
        DriverFailure::Win32(259),
    );
    assert!(host.list().unwrap().is_empty());
    let empty = Host::with_driver(FakeDriver::new());
    assert!(empty.list().unwrap().is_empty());
}

#[test]
fn a_listing_that_answers_another_cursor_is_refused() {
    let (fake, host, _) = setup();
    fake.edit_next_reply(IoctlCode::ListSessions.code(), |reply| {
        // index (offset 20) := 1 while cursor 0 was asked (total is 2, so it parses).
        reply[20] = 1;
    });
    let error = host.list().unwrap_err();
    assert!(
        matches!(
            error,
            Error::MalformedReply {
                request: "LIST_SESSIONS",
                ..
            }
        ),
        "{error}"
    );
}

#[test]
fn attach_maps_the_shared_memory_both_ways() {
    let (fake, host, a) = setup();
    let frames = host.attach(VM_A, "frames", Access::ReadWrite).unwrap();
    assert_eq!(
        (frames.size(), frames.access(), frames.region_index()),
        (65536, Access::ReadWrite, 0)
    );
    assert_ne!(frames.section_handle(), 0);
    let view = frames.map().unwrap();
    assert_eq!(view.len(), 65536);
    view.write_u32(0, 0x1234_5678).unwrap();
    view.write_u64(8, 0x0102_0304_0506_0708).unwrap();
    view.write(100, b"hello").unwrap();
    let mut seen = [0u8; 16];
    assert!(fake.guest_read(a, 0, 0, &mut seen));
    assert_eq!(&seen[..4], &0x1234_5678u32.to_le_bytes());
    assert_eq!(&seen[8..], &0x0102_0304_0506_0708u64.to_le_bytes());
    assert!(fake.guest_write(a, 0, 200, b"guest"));
    let mut got = [0u8; 5];
    view.read(200, &mut got).unwrap();
    assert_eq!(&got, b"guest");
    assert_eq!(view.read_u16(200).unwrap(), u16::from_le_bytes(*b"gu"));
    // Unaligned scalars are fine (volatile byte copies); atomics need alignment.
    view.write_u32(3, 7).unwrap();
    assert_eq!(view.read_u32(3).unwrap(), 7);
    let counter = view.atomic_u64(16).unwrap();
    counter.fetch_add(5, std::sync::atomic::Ordering::AcqRel);
    assert_eq!(view.read_u64(16).unwrap(), 5);
    view.atomic_u32(65532).unwrap();
    drop(view);
    frames.detach().unwrap();
    assert_released(&fake);
}

#[test]
fn accesses_are_bounds_and_alignment_checked() {
    let (fake, host, _) = setup();
    let frames = host.attach(VM_A, "frames", Access::ReadWrite).unwrap();
    let view = frames.map().unwrap();
    let out = |e: Error| matches!(e, Error::OutOfBounds { .. });
    assert!(out(view.read_u32(65533).unwrap_err()));
    assert!(out(view.write(65535, &[0, 0]).unwrap_err()));
    assert!(out(view.read(u64::MAX, &mut [0u8; 1]).unwrap_err()));
    assert!(out(view.atomic_u64(65536).unwrap_err()));
    assert!(matches!(
        view.atomic_u32(2).unwrap_err(),
        Error::Misaligned { align: 4, .. }
    ));
    assert!(matches!(
        view.atomic_u64(4).unwrap_err(),
        Error::Misaligned { align: 8, .. }
    ));
    view.read(65536, &mut []).unwrap();
    drop((view, frames));
    assert_released(&fake);
}

#[test]
fn a_consumer_gets_at_most_the_regions_access() {
    let (fake, host, _) = setup();
    let denied = host.attach(VM_A, "log", Access::ReadWrite).unwrap_err();
    assert!(
        matches!(
            denied,
            Error::AccessDenied {
                request: "ATTACH_REGION"
            }
        ),
        "{denied}"
    );
    assert_eq!(denied.kind(), "access_denied");
    let log = host.attach(VM_A, "log", Access::Read).unwrap();
    let view = log.map().unwrap();
    assert!(!view.is_writable());
    assert_eq!(view.write_u8(0, 1).unwrap_err(), Error::ReadOnly);
    assert_eq!(view.atomic_u32(0).unwrap_err(), Error::ReadOnly);
    assert_eq!(view.read_u32(0).unwrap(), 0);
    drop((view, log));
    assert_released(&fake);
}

#[test]
fn unknown_vms_regions_and_bad_names_are_clear_errors() {
    let (fake, host, _) = setup();
    let other = VmId::from_u128(7);
    assert_eq!(
        host.attach(other, "frames", Access::Read).unwrap_err(),
        Error::VmNotFound { vm_id: other }
    );
    let missing = host.attach(VM_A, "nope", Access::Read).unwrap_err();
    assert_eq!(
        missing,
        Error::RegionNotFound {
            vm_id: VM_A,
            name: "nope".into()
        }
    );
    assert!(missing.to_string().contains("nope"));
    // VM B's `frames` is another VM's region: attaching names the VM, so A's never leaks.
    let b = host.attach(VM_B, "frames", Access::Read).unwrap();
    assert_eq!(b.size(), 8192);
    drop(b);
    for bad in ["", "a\u{1}b", "x\0y", &"n".repeat(33)] {
        let error = host.attach(VM_A, bad, Access::Read).unwrap_err();
        assert!(
            matches!(error, Error::InvalidArgument { .. }),
            "{bad:?}: {error}"
        );
    }
    assert!(matches!(
        host.attach(VmId::from_u128(0), "frames", Access::Read)
            .unwrap_err(),
        Error::InvalidArgument { .. }
    ));
    assert_released(&fake);
}

#[test]
fn guest_doorbells_wake_the_waiter_and_coalesce() {
    let (fake, host, a) = setup();
    let frames = host.attach(VM_A, "frames", Access::Read).unwrap();
    assert_eq!(
        frames
            .wait_doorbell(Some(Duration::from_millis(10)))
            .unwrap(),
        None
    );
    // Two rings before the wait: one wake, count 2, the latest value.
    fake.guest_doorbell(a, 0, 5);
    fake.guest_doorbell(a, 0, 6);
    let bells = frames
        .wait_doorbell(Some(Duration::from_secs(5)))
        .unwrap()
        .unwrap();
    assert_eq!((bells.count, bells.last_value), (2, 6));
    // A ring from another thread while waiting.
    let ringer = {
        let fake = fake.clone();
        thread::spawn(move || {
            thread::sleep(Duration::from_millis(20));
            fake.guest_doorbell(a, 0, 9);
        })
    };
    let bells = frames
        .wait_doorbell(Some(Duration::from_secs(5)))
        .unwrap()
        .unwrap();
    assert_eq!((bells.count, bells.last_value), (1, 9));
    ringer.join().unwrap();
    // Another region's doorbell does not wake this one.
    fake.guest_doorbell(a, 1, 1);
    assert_eq!(
        frames
            .wait_doorbell(Some(Duration::from_millis(10)))
            .unwrap(),
        None
    );
    assert_eq!(frames.take_doorbells().unwrap().count, 0);
    drop(frames);
    assert_released(&fake);
}

#[test]
fn rings_reach_the_guest_until_the_rate_limit_refuses_them() {
    let (fake, host, _) = setup();
    let frames = host.attach(VM_A, "frames", Access::Read).unwrap();
    fake.limit_rings(2);
    frames.ring(1).unwrap();
    frames.ring(2).unwrap();
    let refused = frames.ring(3).unwrap_err();
    assert_eq!(refused, Error::RateLimited);
    assert!(!refused.is_setup());
    assert_eq!(frames.take_doorbells().unwrap().refused_to_guest, 1);
    let id = frames.id();
    assert_eq!(fake.rings(), [(id, 1), (id, 2)]);
    // The Win32 spellings (what DeviceIoControl reports) mean the same.
    fake.fail_next(
        Some(IoctlCode::RingGuest.code()),
        DriverFailure::Win32(1237),
    );
    assert_eq!(frames.ring(4).unwrap_err(), Error::RateLimited);
    fake.fail_next(Some(IoctlCode::RingGuest.code()), DriverFailure::Win32(240));
    assert_eq!(frames.ring(4).unwrap_err(), Error::SessionClosed);
}

#[test]
fn a_guest_without_doorbells_is_not_supported() {
    let (fake, host, a) = setup();
    fake.without_guest_doorbells(a);
    let frames = host.attach(VM_A, "frames", Access::Read).unwrap();
    let error = frames.ring(1).unwrap_err();
    assert!(
        matches!(
            error,
            Error::NotSupported {
                request: "RING_GUEST"
            }
        ),
        "{error}"
    );
}

#[test]
fn after_the_session_closes_the_view_keeps_the_last_data() {
    let (fake, host, a) = setup();
    let frames = host.attach(VM_A, "frames", Access::ReadWrite).unwrap();
    frames.set_event().unwrap();
    let view = frames.map().unwrap();
    view.write_u64(0, 42).unwrap();
    let waiter = {
        thread::scope(|scope| {
            let waiting = scope.spawn(|| frames.wait_doorbell(Some(Duration::from_secs(5))));
            thread::sleep(Duration::from_millis(20));
            fake.close_session(a);
            waiting.join().unwrap()
        })
    };
    // The final signal wakes the waiter; the take then says the session closed.
    assert_eq!(waiter.unwrap_err(), Error::SessionClosed);
    // No further signal will come: a second wait fails at once instead of hanging.
    assert_eq!(
        frames.wait_doorbell(None).unwrap_err(),
        Error::SessionClosed
    );
    assert_eq!(frames.ring(1).unwrap_err(), Error::SessionClosed);
    assert_eq!(frames.take_doorbells().unwrap_err(), Error::SessionClosed);
    assert!(host.list().unwrap().iter().all(|s| s.vm_id != VM_A));
    assert!(matches!(
        host.attach(VM_A, "frames", Access::Read).unwrap_err(),
        Error::VmNotFound { .. }
    ));
    // Detach still works; the view is still memory with the last data.
    frames.detach().unwrap();
    assert_eq!(view.read_u64(0).unwrap(), 42);
    view.write_u64(0, 43).unwrap();
    drop(view);
    assert_released(&fake);
}

#[test]
fn malformed_replies_are_refused_and_nothing_leaks() {
    let (fake, host, _) = setup();
    // A truncated ATTACH_REGION reply: refused; the driver's attachment is released at file
    // cleanup (here: the fake keeps it until the host is dropped).
    fake.edit_next_reply(IoctlCode::AttachRegion.code(), |reply| reply.truncate(40));
    let error = host.attach(VM_A, "frames", Access::Read).unwrap_err();
    assert!(
        matches!(
            error,
            Error::MalformedReply {
                request: "ATTACH_REGION",
                ..
            }
        ),
        "{error}"
    );
    // A reply granting write when read was asked: refused and released at once.
    fake.edit_next_reply(IoctlCode::AttachRegion.code(), |reply| reply[40] = 3);
    let error = host.attach(VM_A, "frames", Access::Read).unwrap_err();
    assert!(matches!(error, Error::MalformedReply { .. }), "{error}");
    let frames = host.attach(VM_A, "frames", Access::Read).unwrap();
    // A reply naming another attachment.
    fake.edit_next_reply(IoctlCode::TakeDoorbells.code(), |reply| reply[16] ^= 0x40);
    let error = frames.take_doorbells().unwrap_err();
    assert!(error.to_string().contains("instead of"), "{error}");
    // A reply longer than the buffer.
    fake.edit_next_reply(IoctlCode::RingGuest.code(), |reply| reply.resize(100, 0));
    assert!(matches!(
        frames.ring(1).unwrap_err(),
        Error::MalformedReply { .. }
    ));
    // Reserved header bytes not zero.
    fake.edit_next_reply(IoctlCode::TakeDoorbells.code(), |reply| reply[12] = 1);
    assert!(matches!(
        frames.take_doorbells().unwrap_err(),
        Error::MalformedReply { .. }
    ));
    drop(frames);
    assert_eq!(
        fake.open_handles(),
        1,
        "the truncated reply's section handle was never seen"
    );
}

#[test]
fn release_happens_once_whatever_the_driver_says() {
    let (fake, host, _) = setup();
    let frames = host.attach(VM_A, "frames", Access::ReadWrite).unwrap();
    frames.set_event().unwrap();
    frames.set_event().unwrap();
    let view = frames.map().unwrap();
    assert_eq!(fake.open_handles(), 2);
    fake.fail_next(
        Some(IoctlCode::DetachRegion.code()),
        DriverFailure::Win32(87),
    );
    let error = frames.detach().unwrap_err();
    assert!(
        matches!(
            error,
            Error::Driver {
                request: "DETACH_REGION",
                ..
            }
        ),
        "{error}"
    );
    // The handles are closed anyway; the driver releases its side at file cleanup.
    assert_eq!(fake.open_handles(), 0);
    assert_eq!(fake.live_mappings(), 1);
    drop(view);
    assert_eq!(fake.live_mappings(), 0);
    // A refused event registration closes the event it created.
    let frames = host.attach(VM_A, "frames", Access::Read).unwrap();
    fake.fail_next(
        Some(IoctlCode::SetDoorbellEvent.code()),
        DriverFailure::nt(0xC000_0008),
    );
    assert!(matches!(
        frames.set_event().unwrap_err(),
        Error::InvalidHandle { .. }
    ));
    assert_eq!(fake.open_handles(), 1);
    drop(frames);
    assert_eq!((fake.open_handles(), fake.live_mappings()), (0, 0));
    // Only the attachment whose DETACH failed is left: the driver's file cleanup's.
    assert_eq!(fake.live_attachments(), 1);
}

#[test]
fn opening_the_driver_off_windows_says_so() {
    if cfg!(windows) {
        return;
    }
    let error = Host::open().unwrap_err();
    assert_eq!(error, Error::Unsupported);
    assert!(error.to_string().contains("only on Windows"));
    assert!(error.is_setup());
}
