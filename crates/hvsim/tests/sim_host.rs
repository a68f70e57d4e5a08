//! The host library (`vmbmmio-host`) against the simulated platform with the driver's real
//! core (`hvsim::host_sim`): a consumer process lists, attaches by VM id and name, maps the
//! region's real bytes (the guest sees them at the region's BAR offset), exchanges doorbells
//! with the guest's program both ways, is limited by the region's access, fails cleanly once
//! the session closed (its view keeping the data), and leaves nothing behind.

use std::time::Duration;

use hvsim::demo::DemoOptions;
use hvsim::demo::guest_program::{
    ANSWER_OFFSET, ANSWER_XOR, FRAME_MAGIC, LENGTH_OFFSET, MAGIC_OFFSET, PAYLOAD_OFFSET,
    SEQUENCE_OFFSET,
};
use hvsim::host_sim::{SimDriver, SimHost, SimHostOptions};
use vmbmmio_host::{Access, Attachment, Error, Host, RegionState, RegionView, VmId};

/// A small machine: `frames` 64 KiB read-write for consumers, `log` 8 KiB read-only for
/// consumers; the guest's program answers `frames`.
fn start() -> SimHost {
    SimHost::start(SimHostOptions {
        demo: DemoOptions {
            region_sizes: vec![64 << 10, 8 << 10],
            region_names: vec!["frames".into(), "log:host-ro".into()],
            ..DemoOptions::default()
        },
        answer_region: Some("frames".into()),
    })
    .unwrap()
}

fn frames_vm(host: &Host) -> VmId {
    host.find("frames").unwrap().expect("frames is listed").0
}

/// `frames`, attached read-write and mapped.
fn frames_read_write(host: &Host) -> (Attachment, RegionView) {
    let frames = host
        .attach(frames_vm(host), "frames", Access::ReadWrite)
        .unwrap();
    let view = frames.map().unwrap();
    (frames, view)
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Stops the machine and checks that every model released everything.
fn stop_clean(sim: SimHost) {
    let report = sim.stop().unwrap();
    assert_eq!(report.leaks.total(), 0, "{report:?}");
    assert_eq!(report.consumers_left_open, 0, "{report:?}");
    assert_eq!(report.guest_error, None);
    assert!(report.broken_rules.is_empty(), "{:?}", report.broken_rules);
}

#[test]
fn lists_attaches_by_name_and_the_guest_sees_the_bytes_at_the_bar_offset() {
    let sim = start();
    let host = sim.host().unwrap();
    let sessions = host.list().unwrap();
    assert_eq!(sessions.len(), 1);
    let regions = &sessions[0].regions;
    let names: Vec<&str> = regions.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["frames", "log"]);
    assert_eq!(
        (
            regions[0].size,
            regions[0].consumer_writable,
            regions[0].guest_writable
        ),
        (64 << 10, true, true)
    );
    assert_eq!(
        (
            regions[1].size,
            regions[1].consumer_writable,
            regions[1].guest_writable
        ),
        (8 << 10, false, true)
    );
    assert!(regions.iter().all(|r| r.state == RegionState::Mapped));
    let vm = sessions[0].vm_id;

    let frames = host.attach(vm, "frames", Access::ReadWrite).unwrap();
    assert_eq!((frames.size(), frames.region_index()), (64 << 10, 0));
    let view = frames.map().unwrap();
    // Consumer -> guest: the bytes arrive at the region's offset in the BAR, exactly.
    let sent = pattern(300, 7);
    view.write(0x1001, &sent).unwrap();
    let (seen, around) = sim
        .on_world(|world| {
            let mut seen = vec![0u8; 300];
            world.demo.guest_read_region(0, 0x1001, &mut seen).unwrap();
            let mut around = [0xEEu8; 2];
            world
                .demo
                .guest_read_region(0, 0x1000, &mut around[..1])
                .unwrap();
            world
                .demo
                .guest_read_region(0, 0x1001 + 300, &mut around[1..])
                .unwrap();
            (seen, around)
        })
        .unwrap();
    assert_eq!(seen, sent);
    assert_eq!(around, [0, 0], "no byte outside the write changed");

    // Guest -> consumer, in the second region (at its own BAR offset, after `frames`).
    let log = host.attach(vm, "log", Access::Read).unwrap();
    assert_eq!(log.region_index(), 1);
    let log_view = log.map().unwrap();
    let (written, bar_offset) = sim
        .on_world(|world| {
            let written = pattern(64, 99);
            world
                .demo
                .guest_write_region(1, 8192 - 64, &written)
                .unwrap();
            (written, world.demo.region_in_bar(1).unwrap().0)
        })
        .unwrap();
    assert_eq!(bar_offset, 64 << 10, "log follows frames in the BAR");
    let mut back = vec![0u8; 64];
    log_view.read(8192 - 64, &mut back).unwrap();
    assert_eq!(back, written);
    // The two regions are different memory.
    let mut frames_end = vec![0u8; 64];
    view.read((64 << 10) - 64, &mut frames_end).unwrap();
    assert_eq!(frames_end, vec![0u8; 64]);

    // Atomics on the real bytes.
    view.atomic_u64(8)
        .unwrap()
        .store(0x1122_3344_5566_7788, std::sync::atomic::Ordering::Release);
    let word = sim
        .on_world(|world| {
            let mut word = [0u8; 8];
            world.demo.guest_read_region(0, 8, &mut word).unwrap();
            u64::from_le_bytes(word)
        })
        .unwrap();
    assert_eq!(word, 0x1122_3344_5566_7788);

    frames.detach().unwrap();
    log.detach().unwrap();
    drop((view, log_view, host));
    stop_clean(sim);
}

#[test]
fn doorbells_both_ways_with_the_guest_program() {
    let sim = start();
    let host = sim.host().unwrap();
    let (frames, view) = frames_read_write(&host);
    frames.set_event().unwrap();

    // Consumer -> guest -> consumer: a frame, a ring; the guest's program reads it through its
    // BAR, writes the answer and rings back with the value plus one.
    let payload = pattern(1024, 3);
    view.write(PAYLOAD_OFFSET, &payload).unwrap();
    view.write_u32(MAGIC_OFFSET, FRAME_MAGIC).unwrap();
    view.write_u32(LENGTH_OFFSET, 1024).unwrap();
    view.atomic_u64(SEQUENCE_OFFSET)
        .unwrap()
        .store(41, std::sync::atomic::Ordering::Release);
    frames.ring(41).unwrap();
    let bells = frames
        .wait_doorbell(Some(Duration::from_secs(10)))
        .unwrap()
        .expect("the guest rang back");
    assert_eq!((bells.count, bells.last_value), (1, 42));
    let mut answer = vec![0u8; 1024];
    view.read(ANSWER_OFFSET + PAYLOAD_OFFSET, &mut answer)
        .unwrap();
    let expected: Vec<u8> = payload.iter().map(|b| b ^ ANSWER_XOR).collect();
    assert_eq!(answer, expected);
    assert_eq!(view.read_u64(ANSWER_OFFSET + SEQUENCE_OFFSET).unwrap(), 41);
    let heard = sim.on_world(|world| world.guest.heard.clone()).unwrap();
    assert_eq!(heard, [(0, 41)]);

    // Guest -> consumer: a waiter on another thread wakes when the guest rings.
    std::thread::scope(|scope| {
        let waiter = scope.spawn(|| frames.wait_doorbell(Some(Duration::from_secs(10))));
        std::thread::sleep(Duration::from_millis(50));
        let acked = sim
            .on_world(|world| format!("{:?}", world.demo.guest_ring(0, 777).unwrap()))
            .unwrap();
        assert!(acked.contains("Acked"), "{acked}");
        let bells = waiter.join().unwrap().unwrap().expect("woken by the guest");
        assert_eq!((bells.count, bells.last_value), (1, 777));
    });
    // No doorbell: the wait times out.
    assert!(
        frames
            .wait_doorbell(Some(Duration::from_millis(20)))
            .unwrap()
            .is_none()
    );

    frames.detach().unwrap();
    drop((view, host));
    let report = sim.stop().unwrap();
    assert_eq!((report.frames_answered, report.rang_back), (1, 1));
    assert_eq!(report.leaks.total(), 0, "{report:?}");
}

#[test]
fn access_is_limited_by_the_region_and_other_vms_are_unreachable() {
    let sim = start();
    let driver = SimDriver::open(sim.link().unwrap()).unwrap();
    let process = driver.process();
    let host = Host::with_driver(driver);
    let vm = frames_vm(&host);
    assert!(matches!(
        host.attach(vm, "log", Access::ReadWrite),
        Err(Error::AccessDenied { .. })
    ));
    let log = host.attach(vm, "log", Access::Read).unwrap();
    let view = log.map().unwrap();
    assert!(matches!(view.write(0, &[1]), Err(Error::ReadOnly)));
    assert!(matches!(view.atomic_u64(0), Err(Error::ReadOnly)));
    assert!(matches!(
        view.read(8 << 10, &mut [0u8; 1]),
        Err(Error::OutOfBounds { .. })
    ));
    // The section handle the driver opened in this process grants mapping for reading only.
    let handle = log.section_handle();
    let (_, rights) = sim
        .on_world(move |world| world.demo.kernel().handle_info(process, handle))
        .unwrap()
        .expect("the handle is open in the consumer's process");
    const SECTION_MAP_WRITE: u32 = 0x2;
    const SECTION_MAP_READ: u32 = 0x4;
    assert_eq!(
        rights & (SECTION_MAP_READ | SECTION_MAP_WRITE),
        SECTION_MAP_READ
    );

    // Another VM (no session of it on this host) and an unknown name are refused, typed.
    let other: VmId = "0b9f2c1e-1111-4222-8333-444455556666".parse().unwrap();
    assert!(matches!(
        host.attach(other, "frames", Access::Read),
        Err(Error::VmNotFound { .. })
    ));
    assert!(matches!(
        host.attach(vm, "nope", Access::Read),
        Err(Error::RegionNotFound { .. })
    ));
    log.detach().unwrap();
    drop((view, host));
    stop_clean(sim);
}

#[test]
fn a_closed_session_is_a_typed_error_and_the_view_keeps_the_last_data() {
    let sim = start();
    let host = sim.host().unwrap();
    let (frames, view) = frames_read_write(&host);
    let data = pattern(4096, 11);
    view.write(0, &data).unwrap();
    frames.set_event().unwrap();

    std::thread::scope(|scope| {
        let waiter = scope.spawn(|| frames.wait_doorbell(Some(Duration::from_secs(10))));
        std::thread::sleep(Duration::from_millis(50));
        // The VM stops and its device host shuts down: the driver closes the session.
        sim.on_world(|world| world.demo.end_session().unwrap())
            .unwrap();
        assert!(matches!(waiter.join().unwrap(), Err(Error::SessionClosed)));
    });
    assert!(matches!(frames.ring(1), Err(Error::SessionClosed)));
    assert!(matches!(frames.take_doorbells(), Err(Error::SessionClosed)));
    assert!(matches!(
        frames.wait_doorbell(Some(Duration::from_millis(1))),
        Err(Error::SessionClosed)
    ));
    // The view is still valid memory with what was last written, and still writable.
    let mut back = vec![0u8; 4096];
    view.read(0, &mut back).unwrap();
    assert_eq!(back, data);
    view.write_u32(0, 5).unwrap();
    assert_eq!(view.read_u32(0).unwrap(), 5);
    // Nothing is attachable any more; a new map of the old attachment still works (the
    // section handle is the consumer's).
    assert!(host.list().unwrap().is_empty());
    assert!(matches!(
        host.attach(frames.vm_id(), "frames", Access::Read),
        Err(Error::VmNotFound { .. })
    ));
    frames.detach().unwrap();
    drop(host);
    // The view outlives the host handle; once dropped, its process goes.
    assert_eq!(view.read_u32(0).unwrap(), 5);
    drop(view);
    stop_clean(sim);
}

#[test]
fn everything_is_released_after_drop_even_without_detach() {
    let sim = start();
    {
        let host = sim.host().unwrap();
        let vm = frames_vm(&host);
        let a = host.attach(vm, "frames", Access::ReadWrite).unwrap();
        let b = host.attach(vm, "log", Access::Read).unwrap();
        let _va = a.map().unwrap();
        let _vb = b.map().unwrap();
        a.set_event().unwrap();
        b.set_event().unwrap();
        a.ring(1).unwrap();
        let second = sim.host().unwrap();
        let c = second.attach(vm, "frames", Access::Read).unwrap();
        c.set_event().unwrap();
        // Dropped here without detach: the library detaches and closes, the consumers'
        // processes exit.
    }
    let (attachments, objects) = sim
        .on_world(|world| {
            (
                world.demo.attachment_counters(),
                world.demo.kernel().counters(),
            )
        })
        .unwrap();
    assert_eq!(attachments.created, 3);
    assert_eq!(attachments.created, attachments.released, "{attachments:?}");
    assert_eq!(
        objects.event_references_taken, objects.event_references_released,
        "{objects:?}"
    );
    assert_eq!(objects.events_created, 3);
    assert_eq!(
        objects.events_created, objects.events_destroyed,
        "{objects:?}"
    );
    stop_clean(sim);
}
