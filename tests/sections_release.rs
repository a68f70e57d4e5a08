//! Every release path of the section manager, counted on both sides: the driver's ledger
//! (`SectionCounters`) and the simulated kernel's objects, handles, references and views
//! (`SimCounters`).
//!
//! Ownership rule under test (docs/sections.md): the driver owns one kernel reference per
//! section and releases it on session close or unload; user handles are handed to the device
//! host, which (or whose exit) closes them; the driver only drops its records of them.

use hvsim::memory::{ProcessId, SectionAccess, SectionResolver};
use hvsim::sections::{FaultPoint, SimKernel, ViewId};
use kmcl::raw::{STATUS_INSUFFICIENT_RESOURCES, STATUS_INVALID_DEVICE_STATE};
use vmbmmio_core::sections::{
    RegionAccess, RegionId, RegionSpec, SectionError, SectionManager, SectionQuotas, SessionId,
};

const REGIONS: u32 = 4;
const RW: RegionAccess = RegionAccess::ReadWrite;

fn specs() -> Vec<RegionSpec> {
    (0..REGIONS)
        .map(|i| RegionSpec::read_write(u64::from(i + 1) * 4096 - 7))
        .collect()
}

fn setup() -> (SimKernel, SectionManager<SimKernel>, ProcessId) {
    let kernel = SimKernel::new();
    let devhost = kernel.spawn_process();
    let sections = SectionManager::new(kernel.clone(), SectionQuotas::default());
    (kernel, sections, devhost)
}

fn open(
    kernel: &SimKernel,
    sections: &mut SectionManager<SimKernel>,
    devhost: ProcessId,
    session: SessionId,
    index: u32,
) -> u64 {
    kernel.set_current_process(devhost);
    sections
        .open_user_handle(
            session,
            RegionId::new(session, index),
            RW,
            kernel.process_key(devhost).unwrap(),
        )
        .unwrap()
        .0
}

fn assert_nothing_left(kernel: &SimKernel, sections: &SectionManager<SimKernel>) {
    assert_eq!(kernel.live_sections(), 0);
    let sim = kernel.counters();
    assert!(sim.all_released(), "{sim:?}");
    let ledger = sections.counters();
    assert!(ledger.all_released(), "{ledger:?}");
    assert_eq!(ledger.sections_created, sim.references_taken);
    assert_eq!(ledger.sections_released, sim.references_released);
}

#[test]
fn a_failure_at_every_creation_step_leaves_nothing() {
    for point in [FaultPoint::CreateSection, FaultPoint::ReferenceObject] {
        for nth in 1..=u64::from(REGIONS) {
            let (kernel, mut sections, _) = setup();
            kernel.fail_nth(point, nth, STATUS_INSUFFICIENT_RESOURCES);
            let error = sections.create_session(&specs()).unwrap_err();
            assert_eq!(
                error,
                SectionError::Platform {
                    index: nth as usize - 1,
                    status: STATUS_INSUFFICIENT_RESOURCES
                },
                "{point:?} #{nth}"
            );
            assert_eq!(error.to_ntstatus(), STATUS_INSUFFICIENT_RESOURCES);
            let ledger = sections.counters();
            assert_eq!(ledger.sections_created, nth - 1, "{point:?} #{nth}");
            assert_eq!(ledger.sessions_created, 0);
            assert_nothing_left(&kernel, &sections);
            // The manager still works after the failure.
            let session = sections.create_session(&specs()).unwrap();
            sections.close_session(session).unwrap();
            assert_nothing_left(&kernel, &sections);
        }
    }
}

#[test]
fn a_failed_handle_open_records_nothing_and_opens_nothing() {
    let (kernel, mut sections, devhost) = setup();
    let session = sections.create_session(&specs()).unwrap();
    kernel.fail_nth(FaultPoint::OpenUserHandle, 1, STATUS_INSUFFICIENT_RESOURCES);
    kernel.set_current_process(devhost);
    let error = sections
        .open_user_handle(
            session,
            RegionId::new(session, 2),
            RW,
            kernel.process_key(devhost).unwrap(),
        )
        .unwrap_err();
    assert_eq!(
        error,
        SectionError::Platform {
            index: 2,
            status: STATUS_INSUFFICIENT_RESOURCES
        }
    );
    assert_eq!(kernel.handle_count(devhost), 0);
    assert_eq!(sections.counters().handles_handed_out, 0);
    sections.close_session(session).unwrap();
    assert_nothing_left(&kernel, &sections);
}

/// The device host's life, step by step: get a handle to each region and map it.
#[derive(Clone, Copy, Debug)]
enum Step {
    Open(u32),
    Map(u32),
    Write(u32),
}

fn steps() -> Vec<Step> {
    (0..REGIONS)
        .flat_map(|i| [Step::Open(i), Step::Map(i), Step::Write(i)])
        .collect()
}

#[test]
fn device_host_exit_at_any_step_releases_everything() {
    for crash_after in 0..=steps().len() {
        let (kernel, mut sections, devhost) = setup();
        let session = sections.create_session(&specs()).unwrap();
        let mut handles = Vec::new();
        let mut views: Vec<ViewId> = Vec::new();
        for step in steps().into_iter().take(crash_after) {
            match step {
                Step::Open(i) => handles.push(open(&kernel, &mut sections, devhost, session, i)),
                Step::Map(i) => views.push(
                    kernel
                        .map_view(devhost, handles[i as usize], SectionAccess::READ_WRITE)
                        .unwrap(),
                ),
                Step::Write(i) => kernel
                    .view_memory(devhost, views[i as usize])
                    .unwrap()
                    .write(0, &[0xC0 | i as u8])
                    .unwrap(),
            }
        }

        // The device host crashes: the OS closes its handles and unmaps its views, then the
        // driver's file cleanup drops the records.
        let (closed, unmapped) = kernel.exit_process(devhost);
        assert_eq!(
            (closed, unmapped),
            (handles.len(), views.len()),
            "step {crash_after}"
        );
        assert_eq!(
            sections.release_process(kernel.process_key(devhost).unwrap()),
            handles.len()
        );
        assert!(kernel.process_is_clean(devhost));
        assert_eq!(sections.counters().live_handle_records, 0);
        // The sections stay with the session, bytes intact, for a restarted device host.
        assert_eq!(kernel.live_sections(), REGIONS as usize);
        let restarted = kernel.spawn_process();
        for i in 0..views.len().min(handles.len()) as u32 {
            let written = crash_after >= (i as usize + 1) * 3;
            let handle = open(&kernel, &mut sections, restarted, session, i);
            let mut byte = [0];
            kernel
                .resolve(restarted, handle, SectionAccess::READ)
                .unwrap()
                .read(0, &mut byte)
                .unwrap();
            assert_eq!(byte[0], if written { 0xC0 | i as u8 } else { 0 });
        }
        kernel.exit_process(restarted);
        sections.release_process(kernel.process_key(restarted).unwrap());

        sections.close_session(session).unwrap();
        assert_nothing_left(&kernel, &sections);
    }
}

/// docs/ioctl.md: closing the device host's file ends its session. At process exit the OS
/// closes the file handle and the section handles in an order nobody promises, so the file
/// cleanup (close_session + release_process) may run before or after the section handles go.
#[test]
fn crash_with_the_session_ended_by_file_cleanup_leaves_nothing_in_either_order() {
    for cleanup_first in [true, false] {
        for crash_after in 0..=steps().len() {
            let (kernel, mut sections, devhost) = setup();
            let session = sections.create_session(&specs()).unwrap();
            let mut handles = Vec::new();
            for step in steps().into_iter().take(crash_after) {
                match step {
                    Step::Open(i) => {
                        handles.push(open(&kernel, &mut sections, devhost, session, i));
                    }
                    Step::Map(i) => {
                        kernel
                            .map_view(devhost, handles[i as usize], SectionAccess::READ_WRITE)
                            .unwrap();
                    }
                    Step::Write(_) => {}
                }
            }
            let cleanup = |sections: &mut SectionManager<SimKernel>| {
                sections.release_process(kernel.process_key(devhost).unwrap());
                sections.close_session(session).unwrap();
            };
            if cleanup_first {
                cleanup(&mut sections);
                // The driver's references are gone; the device host's handles keep theirs.
                assert_eq!(kernel.live_sections(), handles.len());
                kernel.exit_process(devhost);
            } else {
                kernel.exit_process(devhost);
                cleanup(&mut sections);
            }
            assert_nothing_left(&kernel, &sections);
        }
    }
}

#[test]
fn session_close_while_the_device_host_still_maps_keeps_its_bytes_until_it_exits() {
    let (kernel, mut sections, devhost) = setup();
    let session = sections.create_session(&specs()).unwrap();
    let handle = open(&kernel, &mut sections, devhost, session, 0);
    let view = kernel
        .map_view(devhost, handle, SectionAccess::READ_WRITE)
        .unwrap();

    sections.close_session(session).unwrap();
    // The driver's references are gone; the device host's handle and view keep region 0.
    assert_eq!(kernel.counters().references_released, u64::from(REGIONS));
    assert_eq!(kernel.live_sections(), 1);
    let memory = kernel.view_memory(devhost, view).unwrap();
    memory.write(10, b"still mapped").unwrap();
    assert_eq!(sections.counters().live_handle_records, 0);
    // Nothing the driver holds refers to the handle any more: it never closes it.
    assert_eq!(kernel.counters().user_handles_closed, 0);

    kernel.exit_process(devhost);
    assert_eq!(
        sections.release_process(kernel.process_key(devhost).unwrap()),
        0,
        "already dropped at close"
    );
    assert_nothing_left(&kernel, &sections);
}

#[test]
fn the_device_host_closing_its_own_handles_is_not_a_double_close() {
    let (kernel, mut sections, devhost) = setup();
    let session = sections.create_session(&specs()).unwrap();
    let handle = open(&kernel, &mut sections, devhost, session, 1);
    kernel.close_handle(devhost, handle).unwrap();
    kernel.exit_process(devhost);
    sections.release_process(kernel.process_key(devhost).unwrap());
    sections.close_session(session).unwrap();
    assert_nothing_left(&kernel, &sections);
    assert_eq!(kernel.counters().user_handles_closed, 1);
}

#[test]
fn driver_unload_releases_every_session() {
    let (kernel, mut sections, devhost) = setup();
    let second_host = kernel.spawn_process();
    let vm1 = sections.create_session(&specs()).unwrap();
    let vm2 = sections.create_session(&specs()[..2]).unwrap();
    let h1 = open(&kernel, &mut sections, devhost, vm1, 3);
    let _h2 = open(&kernel, &mut sections, second_host, vm2, 0);
    kernel.map_view(devhost, h1, SectionAccess::READ).unwrap();

    sections.release_all();
    let ledger = sections.counters();
    assert_eq!(ledger.sections_released, u64::from(REGIONS) + 2);
    assert_eq!(ledger.live_handle_records, 0);
    assert!(ledger.all_released());
    // Only what the device hosts still hold is alive, and only until they exit.
    assert_eq!(kernel.live_sections(), 2);
    kernel.exit_process(devhost);
    kernel.exit_process(second_host);
    assert_nothing_left(&kernel, &sections);

    let error = sections.create_session(&specs()).unwrap_err();
    assert_eq!(error, SectionError::Unloading);
    assert_eq!(error.to_ntstatus(), STATUS_INVALID_DEVICE_STATE);
}

#[test]
fn driver_unload_with_no_device_host_leaves_nothing() {
    let (kernel, mut sections, _) = setup();
    for _ in 0..5 {
        sections.create_session(&specs()).unwrap();
    }
    sections.release_all();
    assert_nothing_left(&kernel, &sections);
}

#[test]
fn dropping_the_manager_releases_what_is_left() {
    let (kernel, mut sections, devhost) = setup();
    let session = sections.create_session(&specs()).unwrap();
    open(&kernel, &mut sections, devhost, session, 0);
    drop(sections);
    kernel.exit_process(devhost);
    assert_eq!(kernel.live_sections(), 0);
    assert!(kernel.counters().all_released());
}

/// The steps the driver runs on either side of its table lock, counted on both sides: a
/// reservation whose sections were created and then cancelled (the channel offer failed), a
/// session detached at close and released later, and bundles dropped instead of released.
#[test]
fn reservations_and_detached_sessions_release_everything_outside_the_manager() {
    let (kernel, mut sections, devhost) = setup();

    // Offer failed after the sections existed: cancel under the lock, release without it.
    let mut reservation = sections.reserve(&specs()).unwrap();
    let created = reservation.create_sections().unwrap();
    assert_eq!(kernel.live_sections(), REGIONS as usize);
    sections.cancel(reservation);
    created.release();
    assert_nothing_left(&kernel, &sections);

    // A committed session, a handle handed out, then close: detached under the lock, released
    // after it. The device host's handle keeps the object alive until the host exits.
    let mut reservation = sections.reserve(&specs()).unwrap();
    let created = reservation.create_sections().unwrap();
    let session = sections.commit(reservation, created);
    let handle = open(&kernel, &mut sections, devhost, session, 2);
    let detached = sections.close_session(session).unwrap();
    assert_eq!(sections.counters().live_sessions, 0);
    assert_eq!(kernel.live_sections(), REGIONS as usize);
    detached.release();
    assert_eq!(kernel.live_sections(), 1);
    kernel.close_handle(devhost, handle).unwrap();
    assert_nothing_left(&kernel, &sections);

    // Bundles dropped instead of released (a freed control state) still release.
    let mut reservation = sections.reserve(&specs()).unwrap();
    drop(reservation.create_sections().unwrap());
    sections.cancel(reservation);
    let session = sections.create_session(&specs()).unwrap();
    drop(sections.close_session(session).unwrap());
    assert_nothing_left(&kernel, &sections);
}

#[test]
fn a_failure_part_way_through_a_reservation_leaves_nothing() {
    for nth in 1..=u64::from(REGIONS) {
        let (kernel, mut sections, _) = setup();
        let mut reservation = sections.reserve(&specs()).unwrap();
        kernel.fail_nth(
            FaultPoint::ReferenceObject,
            nth,
            STATUS_INSUFFICIENT_RESOURCES,
        );
        assert!(reservation.create_sections().is_err());
        // Released before create_sections returned, without the manager.
        assert_eq!(kernel.live_sections(), 0);
        sections.cancel(reservation);
        assert_eq!(sections.counters().sections_created, nth - 1);
        assert_nothing_left(&kernel, &sections);
    }
}
