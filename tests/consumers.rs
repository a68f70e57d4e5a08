//! Host consumers end to end through IOCTL bytes against the simulator (docs/host-consumers.md):
//! a consumer gets at most the region's consumer access, reaches only the VM it names, fails
//! cleanly once the session closed (its mapping keeps the last data), and every attachment,
//! event reference and handle record is released whatever the order of the cleanups.

mod consumer_support;
mod control_support;

use consumer_support::{REGIONS, VM_A, VM_B};
use control_support::{Bench, open_session_bytes, vm_target};
use hvsim::memory::{SectionAccess as Rights, SectionResolver};
use hvsim::sections::{DuplicateAccess, STATUS_OBJECT_TYPE_MISMATCH, SYNCHRONIZE};
use kmcl::raw::{
    STATUS_ACCESS_DENIED, STATUS_INVALID_DEVICE_STATE, STATUS_INVALID_HANDLE,
    STATUS_INVALID_PARAMETER, STATUS_QUOTA_EXCEEDED,
};
use vmbmmio_core::control::{
    MAX_ATTACHMENTS_PER_FILE, STATUS_NO_MORE_ENTRIES, STATUS_NOT_FOUND, STATUS_NOT_SUPPORTED,
    STATUS_OBJECT_NAME_COLLISION, STATUS_OBJECT_NAME_NOT_FOUND, STATUS_VIRTUAL_CIRCUIT_CLOSED,
};
use vmbmmio_core::sections::{SECTION_MAP_READ, SECTION_MAP_WRITE, SECTION_QUERY};
use vmbmmio_proto::guest::RegionState;
use vmbmmio_proto::ioctl::{AttachmentId, MappingState, SectionAccess};

const WRITE: Rights = Rights {
    read: true,
    write: true,
    query: false,
};

#[test]
fn a_consumer_gets_at_most_the_regions_consumer_access() {
    let mut bench = Bench::new();
    let host = bench.host_v2(1, VM_A, &REGIONS);
    let (consumer, file) = bench.consumer(2);

    // "frame" is guest-writable but not consumer-writable: read only, write refused.
    assert_eq!(
        bench
            .attach(file, VM_A, "frame", SectionAccess::ReadWrite)
            .err(),
        Some(STATUS_ACCESS_DENIED)
    );
    let frame = bench
        .attach(file, VM_A, "frame", SectionAccess::Read)
        .unwrap();
    assert_eq!(frame.region_index(), 1);
    assert_eq!(frame.size(), 4096);
    let handle = frame.section_handle();
    assert_eq!(
        bench
            .kernel
            .handle_info(consumer, handle)
            .map(|(_, mask)| mask),
        Some(SECTION_MAP_READ | SECTION_QUERY),
        "exactly read and query"
    );
    assert_eq!(
        bench.kernel.resolve(consumer, handle, WRITE).err(),
        Some(hvsim::memory::ResolveError::AccessDenied)
    );
    // Nor can the consumer widen it: the section's descriptor grants user mode nothing.
    assert!(
        bench
            .kernel
            .duplicate_handle_with(
                consumer,
                handle,
                consumer,
                DuplicateAccess::Desired(SECTION_MAP_READ | SECTION_MAP_WRITE)
            )
            .is_err()
    );

    // "ring" is consumer-writable: the write handle maps the very bytes the driver shares.
    let ring = bench
        .attach(file, VM_A, "ring", SectionAccess::ReadWrite)
        .unwrap();
    assert_ne!(ring.attachment(), frame.attachment());
    assert_eq!(
        bench
            .kernel
            .handle_info(consumer, ring.section_handle())
            .map(|(_, mask)| mask),
        Some(SECTION_MAP_READ | SECTION_MAP_WRITE | SECTION_QUERY)
    );
    let view = bench
        .kernel
        .map_view(consumer, ring.section_handle(), WRITE)
        .unwrap();
    bench
        .kernel
        .view_memory(consumer, view)
        .unwrap()
        .write(100, b"hello")
        .unwrap();
    let mut seen = [0u8; 5];
    let driver_side = bench
        .control
        .region_section(host_file(&bench), 0)
        .and_then(|s| bench.kernel.kernel_memory(s))
        .unwrap();
    driver_side.read(100, &mut seen).unwrap();
    assert_eq!(&seen, b"hello");
    // A consumer handle never counts against the device host's handle records.
    assert_eq!(bench.control.section_counters().live_handle_records, 0);
    assert_eq!(
        bench.control.section_counters().consumer_handles_handed_out,
        2
    );

    bench.kernel.exit_process(consumer);
    bench.control.file_cleanup(file.file());
    bench.control.file_cleanup(host.caller.file());
    bench.kernel.exit_process(host.process);
    bench.assert_consumers_released();
    bench.assert_nothing_left();
}

fn host_file(bench: &Bench) -> vmbmmio_core::control::FileKey {
    bench.control.session_files().next().unwrap()
}

#[test]
fn a_consumer_reaches_only_the_vm_it_names() {
    let mut bench = Bench::new();
    let a = bench.host_v2(1, VM_A, &REGIONS);
    let b = bench.host_v2(2, VM_B, &REGIONS);
    // A version-1 session is invisible to consumers.
    let (old_host, old_vm) = bench.device_host_with_vm();
    let old = bench.open_file(old_host, 3);
    bench
        .open_session(old, vm_target(&old_vm), &[4096])
        .unwrap();
    let (consumer, file) = bench.consumer(4);

    let listed: Vec<_> = (0..2).map(|i| bench.list(file, i).unwrap()).collect();
    assert_eq!(listed[0].total(), 2);
    assert_eq!(
        listed.iter().map(|l| l.vm_id()).collect::<Vec<_>>(),
        [VM_A, VM_B],
        "by session id"
    );
    assert_eq!(listed[0].session_id(), a.opened.session_id());
    assert_eq!(listed[1].session_id(), b.opened.session_id());
    assert_eq!(listed[0].regions().len(), 2);
    assert_eq!(listed[0].regions()[0].name.as_str(), "ring");
    assert_eq!(bench.list(file, 2).err(), Some(STATUS_NO_MORE_ENTRIES));

    // The listing follows the device host's reports.
    bench
        .report_mapping(a.caller, 0, MappingState::SectionBacked)
        .unwrap();
    assert_eq!(
        bench.list(file, 0).unwrap().regions()[0].state,
        RegionState::Mapped
    );

    let unknown = vmbmmio_proto::ioctl::WireGuid::from_u128(0x1234);
    assert_eq!(
        bench
            .attach(file, unknown, "ring", SectionAccess::Read)
            .err(),
        Some(STATUS_NOT_FOUND)
    );
    assert_eq!(
        bench.attach(file, VM_A, "nope", SectionAccess::Read).err(),
        Some(STATUS_OBJECT_NAME_NOT_FOUND)
    );
    // Same name, two VMs: two different sections.
    let in_a = bench
        .attach(file, VM_A, "ring", SectionAccess::ReadWrite)
        .unwrap();
    let in_b = bench
        .attach(file, VM_B, "ring", SectionAccess::ReadWrite)
        .unwrap();
    let view_a = bench
        .kernel
        .map_view(consumer, in_a.section_handle(), WRITE)
        .unwrap();
    let view_b = bench
        .kernel
        .map_view(consumer, in_b.section_handle(), WRITE)
        .unwrap();
    bench
        .kernel
        .view_memory(consumer, view_a)
        .unwrap()
        .write(0, b"A")
        .unwrap();
    let mut byte = [0u8; 1];
    bench
        .kernel
        .view_memory(consumer, view_b)
        .unwrap()
        .read(0, &mut byte)
        .unwrap();
    assert_eq!(byte, [0], "B's region never sees A's bytes");

    // Another file cannot use this file's attachment ids.
    let (_, other) = bench.consumer(5);
    assert_eq!(
        bench.take(other, in_a.attachment()).err(),
        Some(STATUS_INVALID_PARAMETER)
    );
    assert_eq!(
        bench.detach(other, AttachmentId::new(999).unwrap()).err(),
        Some(STATUS_INVALID_PARAMETER)
    );

    bench.kernel.exit_process(consumer);
    for f in 1..=5 {
        bench
            .control
            .file_cleanup(vmbmmio_core::control::FileKey(f));
    }
    bench.kernel.exit_process(a.process);
    bench.kernel.exit_process(b.process);
    bench.kernel.exit_process(old_host);
    bench.assert_consumers_released();
    bench.assert_nothing_left();
}

#[test]
fn roles_are_exclusive_and_a_vm_id_names_one_session() {
    let mut bench = Bench::new();
    let a = bench.host_v2(1, VM_A, &REGIONS);
    // The device host's handle never attaches.
    assert_eq!(
        bench
            .attach(a.caller, VM_A, "ring", SectionAccess::Read)
            .err(),
        Some(STATUS_INVALID_DEVICE_STATE)
    );
    // A second session for the same VM id is refused, and changes nothing.
    let (host2, vm2) = bench.device_host_with_vm();
    let second = bench.open_file(host2, 2);
    let before = bench.snapshot();
    assert_eq!(
        bench.open_v2(second, vm_target(&vm2), VM_A, &REGIONS).err(),
        Some(STATUS_OBJECT_NAME_COLLISION)
    );
    assert_eq!(bench.snapshot(), before);
    // A consumer's handle never opens a session.
    let (consumer, file) = bench.consumer(3);
    bench
        .attach(file, VM_A, "ring", SectionAccess::Read)
        .unwrap();
    assert_eq!(
        bench
            .ioctl(
                file,
                vmbmmio_proto::ioctl::IoctlCode::OpenSession.code(),
                &open_session_bytes(vm_target(&vm2), &[4096]),
                vmbmmio_proto::ioctl::IoctlCode::OpenSession.reply_size(),
            )
            .err(),
        Some(STATUS_INVALID_DEVICE_STATE)
    );
    // Once A's session closed, its VM id is free again.
    bench.close_session(a.caller).unwrap();
    bench
        .open_v2(second, vm_target(&vm2), VM_A, &REGIONS)
        .unwrap();

    for f in 1..=3 {
        bench
            .control
            .file_cleanup(vmbmmio_core::control::FileKey(f));
    }
    bench.kernel.exit_process(consumer);
    bench.kernel.exit_process(a.process);
    bench.kernel.exit_process(host2);
    bench.assert_consumers_released();
    bench.assert_nothing_left();
}

#[test]
fn after_the_session_closed_requests_fail_cleanly_and_the_mapping_keeps_the_last_data() {
    let mut bench = Bench::new();
    let a = bench.host_v2(1, VM_A, &REGIONS);
    let (consumer, file) = bench.consumer(2);
    let ring = bench
        .attach(file, VM_A, "ring", SectionAccess::ReadWrite)
        .unwrap();
    let id = ring.attachment();
    let event = bench.kernel.create_event(consumer).unwrap();
    bench.set_event(file, id, event).unwrap();
    let view = bench
        .kernel
        .map_view(consumer, ring.section_handle(), WRITE)
        .unwrap();
    let memory = bench.kernel.view_memory(consumer, view).unwrap();
    memory.write(8, b"last words").unwrap();
    // No guest at 1.1 yet: ringing it is not supported (and costs nothing).
    assert_eq!(bench.ring(file, id, 1).err(), Some(STATUS_NOT_SUPPORTED));
    assert_eq!(bench.take(file, id).unwrap().refused_to_guest, 0);

    // The device host exits: the session closes.
    bench.kernel.exit_process(a.process);
    bench.control.file_cleanup(a.caller.file());
    assert_eq!(bench.control.live_sessions(), 0);

    // The consumer was told once, and its event reference is released.
    assert_eq!(bench.kernel.event_signals(consumer, event), Some(1));
    let objects = bench.kernel.counters();
    assert_eq!(
        objects.event_references_taken,
        objects.event_references_released
    );
    // Every request but DETACH fails with STATUS_VIRTUAL_CIRCUIT_CLOSED.
    assert_eq!(
        bench.take(file, id).err(),
        Some(STATUS_VIRTUAL_CIRCUIT_CLOSED)
    );
    assert_eq!(
        bench.ring(file, id, 2).err(),
        Some(STATUS_VIRTUAL_CIRCUIT_CLOSED)
    );
    assert_eq!(
        bench.set_event(file, id, event).err(),
        Some(STATUS_VIRTUAL_CIRCUIT_CLOSED)
    );
    assert_eq!(
        bench.kernel.counters().event_references_taken,
        1,
        "not referenced again"
    );
    assert_eq!(
        bench.attach(file, VM_A, "ring", SectionAccess::Read).err(),
        Some(STATUS_NOT_FOUND)
    );
    assert_eq!(bench.list(file, 0).err(), Some(STATUS_NO_MORE_ENTRIES));
    // The mapping is still memory, with the last data; nothing else shares it now.
    let mut seen = [0u8; 10];
    memory.read(8, &mut seen).unwrap();
    assert_eq!(&seen, b"last words");
    assert_eq!(
        bench.kernel.live_sections(),
        1,
        "the consumer's handle keeps one section"
    );
    bench.detach(file, id).unwrap();
    assert_eq!(bench.detach(file, id).err(), Some(STATUS_INVALID_PARAMETER));

    bench.control.file_cleanup(file.file());
    bench.kernel.exit_process(consumer);
    bench.assert_consumers_released();
    bench.assert_nothing_left();
}

#[test]
fn doorbell_events_are_checked_like_windows_and_released_once() {
    let mut bench = Bench::new();
    let a = bench.host_v2(1, VM_A, &REGIONS);
    let (consumer, file) = bench.consumer(2);
    let ring = bench
        .attach(file, VM_A, "ring", SectionAccess::Read)
        .unwrap();
    let id = ring.attachment();
    assert_eq!(
        bench.set_event(file, id, 0x7ffc).err(),
        Some(STATUS_INVALID_HANDLE)
    );
    assert_eq!(
        bench.set_event(file, id, ring.section_handle()).err(),
        Some(STATUS_OBJECT_TYPE_MISMATCH)
    );
    let wait_only = bench
        .kernel
        .create_event_with_access(consumer, SYNCHRONIZE)
        .unwrap();
    assert_eq!(
        bench.set_event(file, id, wait_only).err(),
        Some(STATUS_ACCESS_DENIED)
    );
    // Another process's event handle value is looked up in the caller's table.
    let stranger = bench.kernel.spawn_process();
    let foreign = bench.kernel.create_event(stranger).unwrap();
    let _ = foreign;
    let first = bench.kernel.create_event(consumer).unwrap();
    let second = bench.kernel.create_event(consumer).unwrap();
    bench.set_event(file, id, first).unwrap();
    // The consumer may close its handle: the driver holds the object.
    bench.kernel.close_handle(consumer, first).unwrap();
    bench.set_event(file, id, second).unwrap();
    let objects = bench.kernel.counters();
    assert_eq!(
        (
            objects.event_references_taken,
            objects.event_references_released
        ),
        (2, 1)
    );
    assert_eq!(
        bench.kernel.live_events(),
        3,
        "the first event is gone (wait-only, foreign, second stay)"
    );
    // Unregister (handle 0).
    bench.set_event(file, id, 0).unwrap();
    let objects = bench.kernel.counters();
    assert_eq!(objects.event_references_released, 2);
    bench.set_event(file, id, second).unwrap();
    bench.detach(file, id).unwrap();
    assert_eq!(bench.kernel.counters().event_references_released, 3);

    bench.control.file_cleanup(file.file());
    bench.control.file_cleanup(a.caller.file());
    bench.kernel.exit_process(consumer);
    bench.kernel.exit_process(stranger);
    bench.kernel.exit_process(a.process);
    bench.assert_consumers_released();
    bench.assert_nothing_left();
}

/// Attachments with events on two sessions, then both cleanups in `consumer_first` order.
fn release_in_order(consumer_first: bool) {
    let mut bench = Bench::new();
    let a = bench.host_v2(1, VM_A, &REGIONS);
    let b = bench.host_v2(2, VM_B, &REGIONS);
    let (consumer, file) = bench.consumer(3);
    for (vm, name) in [
        (VM_A, "ring"),
        (VM_A, "frame"),
        (VM_B, "ring"),
        (VM_B, "ring"),
    ] {
        let attached = bench.attach(file, vm, name, SectionAccess::Read).unwrap();
        let event = bench.kernel.create_event(consumer).unwrap();
        bench.set_event(file, attached.attachment(), event).unwrap();
    }
    assert_eq!(bench.control.attachment_counters().live(), 4);
    if consumer_first {
        bench.control.file_cleanup(file.file());
        bench.kernel.exit_process(consumer);
        bench.assert_consumers_released();
        bench.control.file_cleanup(a.caller.file());
        bench.control.file_cleanup(b.caller.file());
    } else {
        bench.control.file_cleanup(a.caller.file());
        bench.close_session(b.caller).unwrap();
        // Every event was signalled once and released at the close.
        let objects = bench.kernel.counters();
        assert_eq!(objects.event_signals, 4);
        assert_eq!(
            objects.event_references_taken,
            objects.event_references_released
        );
        bench.control.file_cleanup(file.file());
        bench.kernel.exit_process(consumer);
        bench.control.file_cleanup(b.caller.file());
    }
    bench.kernel.exit_process(a.process);
    bench.kernel.exit_process(b.process);
    let attachments = bench.control.attachment_counters();
    assert_eq!((attachments.created, attachments.released), (4, 4));
    bench.assert_consumers_released();
    bench.assert_nothing_left();
    assert_eq!(bench.kernel.live_events(), 0);
}

#[test]
fn everything_is_released_when_the_consumer_goes_first() {
    release_in_order(true);
}

#[test]
fn everything_is_released_when_the_session_goes_first() {
    release_in_order(false);
}

#[test]
fn attachment_quotas_per_file_and_per_session() {
    let mut bench = Bench::new();
    let a = bench.host_v2(1, VM_A, &REGIONS);
    let (consumer, file) = bench.consumer(2);
    for _ in 0..MAX_ATTACHMENTS_PER_FILE {
        bench
            .attach(file, VM_A, "ring", SectionAccess::Read)
            .unwrap();
    }
    let before = bench.snapshot();
    assert_eq!(
        bench.attach(file, VM_A, "ring", SectionAccess::Read).err(),
        Some(STATUS_QUOTA_EXCEEDED)
    );
    assert_eq!(bench.snapshot(), before, "a refused attach changes nothing");
    // The session's 64 slots are used up too: another consumer is refused as well.
    let (other, second) = bench.consumer(3);
    assert_eq!(
        bench
            .attach(second, VM_A, "ring", SectionAccess::Read)
            .err(),
        Some(STATUS_QUOTA_EXCEEDED)
    );
    // ...but not on another VM.
    let b = bench.host_v2(4, VM_B, &REGIONS);
    bench
        .attach(second, VM_B, "frame", SectionAccess::Read)
        .unwrap();

    for f in 1..=4 {
        bench
            .control
            .file_cleanup(vmbmmio_core::control::FileKey(f));
    }
    for p in [consumer, other, a.process, b.process] {
        bench.kernel.exit_process(p);
    }
    bench.assert_consumers_released();
    bench.assert_nothing_left();
}
