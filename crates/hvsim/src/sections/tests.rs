//! Tests of the model's own rules (object lifetime, handle tables, process exit, faults).

use kmcl::raw::{STATUS_INSUFFICIENT_RESOURCES, STATUS_INVALID_PARAMETER};
use vmbmmio_core::sections::{RegionAccess, SectionBackend};

use super::*;

const RW: u32 = 0x7;

#[test]
fn create_leaves_one_kernel_reference_and_no_handle() {
    let kernel = SimKernel::new();
    let section = kernel.create_section(8192).unwrap();
    assert_eq!(kernel.live_sections(), 1);
    assert_eq!(
        kernel.handle_count(SYSTEM_PROCESS),
        0,
        "the kernel handle is closed"
    );
    let counters = kernel.counters();
    assert_eq!(
        counters.kernel_handles_opened,
        counters.kernel_handles_closed
    );
    assert_eq!(counters.references_taken, 1);
    kernel.close_section(section);
    assert_eq!(kernel.live_sections(), 0);
    assert!(kernel.counters().all_released());
}

#[test]
fn refuses_sizes_that_are_not_whole_pages() {
    let kernel = SimKernel::new();
    assert_eq!(kernel.create_section(0), Err(STATUS_INVALID_PARAMETER));
    assert_eq!(kernel.create_section(4097), Err(STATUS_INVALID_PARAMETER));
    assert!(kernel.counters().all_released());
}

#[test]
fn user_handle_lands_in_the_current_process_only() {
    let kernel = SimKernel::new();
    let host = kernel.spawn_process();
    let other = kernel.spawn_process();
    let section = kernel.create_section(4096).unwrap();
    kernel.set_current_process(host);
    let handle = kernel.open_user_handle(&section, RW).unwrap().0;
    assert_eq!(
        kernel.handle_info(host, handle),
        Some((section.object(), RW))
    );
    assert_eq!(kernel.handle_info(other, handle), None);
    assert_eq!(
        kernel
            .resolve(other, handle, SectionAccess::READ)
            .unwrap_err(),
        ResolveError::InvalidHandle
    );
    kernel.close_section(section);
    kernel.exit_process(host);
    assert!(kernel.counters().all_released());
}

#[test]
fn bytes_outlive_the_kernel_reference_while_a_handle_or_view_exists() {
    let kernel = SimKernel::new();
    let host = kernel.spawn_process();
    let section = kernel.create_section(4096).unwrap();
    let object = section.object();
    kernel.set_current_process(host);
    let handle = kernel.open_user_handle(&section, RW).unwrap().0;
    let view = kernel
        .map_view(host, handle, SectionAccess::READ_WRITE)
        .unwrap();
    kernel.close_section(section);
    assert!(kernel.is_alive(object), "the handle keeps it");
    kernel.close_handle(host, handle).unwrap();
    assert!(kernel.is_alive(object), "the view keeps it");
    kernel
        .view_memory(host, view)
        .unwrap()
        .write(0, &[1, 2, 3])
        .unwrap();
    assert!(kernel.unmap_view(host, view));
    assert!(!kernel.is_alive(object));
    assert!(kernel.counters().all_released());
}

#[test]
fn process_exit_closes_handles_and_unmaps_views() {
    let kernel = SimKernel::new();
    let host = kernel.spawn_process();
    let section = kernel.create_section(4096).unwrap();
    kernel.set_current_process(host);
    let handle = kernel.open_user_handle(&section, RW).unwrap().0;
    kernel.open_user_handle(&section, RW).unwrap();
    kernel.map_view(host, handle, SectionAccess::READ).unwrap();
    kernel.close_section(section);
    assert_eq!(kernel.exit_process(host), (2, 1));
    assert!(kernel.process_is_clean(host));
    assert_eq!(kernel.live_sections(), 0);
    assert!(kernel.counters().all_released());
    // An exited process gets no new handle.
    let section = kernel.create_section(4096).unwrap();
    assert_eq!(
        kernel.open_user_handle(&section, RW),
        Err(STATUS_PROCESS_IS_TERMINATING)
    );
    kernel.close_section(section);
    assert_eq!(kernel.exit_process(SYSTEM_PROCESS), (0, 0));
}

#[test]
fn read_only_handle_cannot_map_for_write() {
    let kernel = SimKernel::new();
    let host = kernel.spawn_process();
    let section = kernel.create_section(4096).unwrap();
    kernel.set_current_process(host);
    let mask = RegionAccess::ReadOnly.access_mask();
    let handle = kernel.open_user_handle(&section, mask).unwrap().0;
    assert_eq!(
        kernel.map_view(host, handle, SectionAccess::READ_WRITE),
        Err(ResolveError::AccessDenied)
    );
    assert_eq!(
        kernel
            .resolve(host, handle, SectionAccess::READ_WRITE)
            .unwrap_err(),
        ResolveError::AccessDenied
    );
    assert!(kernel.resolve(host, handle, SectionAccess::READ).is_ok());
    kernel.close_section(section);
    kernel.exit_process(host);
}

#[test]
fn a_closed_handle_value_is_reused_for_another_object() {
    // Why the driver never closes a user handle: the value may name something else by then.
    let kernel = SimKernel::new();
    let host = kernel.spawn_process();
    kernel.set_current_process(host);
    let first = kernel.create_section(4096).unwrap();
    let second = kernel.create_section(4096).unwrap();
    let handle = kernel.open_user_handle(&first, RW).unwrap().0;
    kernel.close_handle(host, handle).unwrap();
    let reused = kernel.open_user_handle(&second, RW).unwrap().0;
    assert_eq!(reused, handle);
    assert_eq!(
        kernel.handle_info(host, reused).map(|i| i.0),
        Some(second.object())
    );
    kernel.close_section(first);
    kernel.close_section(second);
    kernel.exit_process(host);
    assert!(kernel.counters().all_released());
}

#[test]
fn duplicated_handles_keep_the_section_in_the_target_process() {
    let kernel = SimKernel::new();
    let host = kernel.spawn_process();
    let worker = kernel.spawn_process();
    let section = kernel.create_section(4096).unwrap();
    let object = section.object();
    kernel.set_current_process(host);
    let handle = kernel.open_user_handle(&section, RW).unwrap().0;
    let copy = kernel.duplicate_handle(host, handle, worker).unwrap();
    kernel.close_section(section);
    kernel.exit_process(host);
    assert!(kernel.is_alive(object));
    assert!(
        kernel
            .resolve(worker, copy, SectionAccess::READ_WRITE)
            .is_ok()
    );
    kernel.exit_process(worker);
    assert!(!kernel.is_alive(object));
    assert!(kernel.counters().all_released());
}

#[test]
fn kernel_handles_are_invisible_to_user_mode() {
    let kernel = SimKernel::new();
    let handle = kernel
        .lock()
        .zw_create_section(4096, SecurityDescriptor::DRIVER)
        .unwrap();
    assert_eq!(handle & KERNEL_HANDLE_BIT, KERNEL_HANDLE_BIT);
    assert_eq!(kernel.handle_count(SYSTEM_PROCESS), 1);
    assert!(matches!(
        kernel.resolve(SYSTEM_PROCESS, handle, SectionAccess::READ),
        Err(ResolveError::InvalidHandle)
    ));
    assert_eq!(
        kernel.close_handle(SYSTEM_PROCESS, handle),
        Err(ResolveError::InvalidHandle)
    );
    kernel.lock().zw_close_kernel(handle).unwrap();
    assert!(kernel.counters().all_released());
}

#[test]
fn faults_fail_the_nth_call_once_and_leave_nothing() {
    let kernel = SimKernel::new();
    kernel.fail_nth(FaultPoint::CreateSection, 2, STATUS_INSUFFICIENT_RESOURCES);
    let first = kernel.create_section(4096).unwrap();
    assert_eq!(
        kernel.create_section(4096),
        Err(STATUS_INSUFFICIENT_RESOURCES)
    );
    let third = kernel.create_section(4096).unwrap();
    assert_eq!(kernel.calls(FaultPoint::CreateSection), 3);

    kernel.fail_nth(
        FaultPoint::ReferenceObject,
        1,
        STATUS_INSUFFICIENT_RESOURCES,
    );
    assert_eq!(
        kernel.create_section(4096),
        Err(STATUS_INSUFFICIENT_RESOURCES)
    );
    // The object made by ZwCreateSection died with its kernel handle.
    assert_eq!(kernel.live_sections(), 2);

    kernel.fail_nth(FaultPoint::OpenUserHandle, 1, STATUS_INSUFFICIENT_RESOURCES);
    assert_eq!(
        kernel.open_user_handle(&first, RW),
        Err(STATUS_INSUFFICIENT_RESOURCES)
    );
    assert_eq!(kernel.handle_count(SYSTEM_PROCESS), 0);
    kernel.close_section(first);
    kernel.close_section(third);
    assert!(kernel.counters().all_released());
}

#[test]
#[should_panic(expected = "without a reference")]
fn over_dereference_is_a_bugcheck() {
    let kernel = SimKernel::new();
    let section = kernel.create_section(4096).unwrap();
    let forged = SimSection(section.object());
    kernel.close_section(section);
    kernel.close_section(forged);
}

/// Defect 8 (issue 7), driver side: the handle the driver opens for the device host
/// (`RegionAccess::access_mask`, `SECTION_MAP_* | SECTION_QUERY`) is one HDV accepts, and a
/// handle without `SECTION_QUERY` is refused (hdv.md §3.3: read/write/query).
#[test]
fn defect_08_the_drivers_handles_carry_the_query_right_hdv_needs() {
    let kernel = SimKernel::new();
    let host = kernel.spawn_process();
    let section = kernel.create_section(4096).unwrap();
    kernel.set_current_process(host);
    let read_write = kernel
        .open_user_handle(&section, RegionAccess::ReadWrite.access_mask())
        .unwrap()
        .0;
    let read_only = kernel
        .open_user_handle(&section, RegionAccess::ReadOnly.access_mask())
        .unwrap()
        .0;
    let no_query = kernel.open_user_handle(&section, 0x6).unwrap().0;
    assert!(
        kernel
            .resolve(host, read_write, SectionAccess::HDV_READ_WRITE)
            .is_ok()
    );
    assert!(
        kernel
            .resolve(host, read_only, SectionAccess::HDV_READ)
            .is_ok()
    );
    assert_eq!(
        kernel
            .resolve(host, read_only, SectionAccess::HDV_READ_WRITE)
            .unwrap_err(),
        ResolveError::AccessDenied
    );
    assert_eq!(
        kernel
            .resolve(host, no_query, SectionAccess::HDV_READ)
            .unwrap_err(),
        ResolveError::AccessDenied,
        "map rights without SECTION_QUERY are not enough for HDV"
    );
    assert!(
        kernel
            .map_view(host, no_query, SectionAccess::READ_WRITE)
            .is_ok(),
        "MapViewOfFile needs no query right"
    );
    kernel.close_section(section);
    kernel.exit_process(host);
    assert!(kernel.counters().all_released());
}

#[test]
fn a_reused_process_id_is_a_new_process_object() {
    let kernel = SimKernel::new();
    let first = kernel.spawn_process();
    let first_key = kernel.process_key(first).unwrap();
    // A live process keeps its id.
    assert_eq!(kernel.spawn_process_reusing(first), None);
    kernel.set_current_process(first);
    let reference = kernel.reference_current_process();
    assert_eq!(kernel.current_process(), first_key);
    kernel.exit_process(first);
    // Strict reading: the id is free as soon as the process exited, even while referenced.
    let second = kernel.spawn_process_reusing(first).unwrap();
    assert_eq!(second, first);
    let second_key = kernel.process_key(second).unwrap();
    assert_ne!(second_key, first_key);
    kernel.set_current_process(second);
    assert_eq!(kernel.current_process(), second_key);
    assert_eq!(kernel.process_id_of(first_key), Some(first));
    assert_eq!(kernel.process_references(first_key), 1);
    assert!(!kernel.counters().all_released());
    drop(reference);
    assert_eq!(kernel.process_references(first_key), 0);
    assert!(kernel.counters().all_released());
}

/// The attack issue 8 item 5 describes: the device host asks `DuplicateHandle` (into itself)
/// for `SECTION_MAP_WRITE` on its read-only handle. Against the driver's descriptor the extra
/// access is checked and refused, and nothing changes.
#[test]
fn a_read_only_handle_cannot_be_duplicated_into_a_writable_one() {
    let kernel = SimKernel::new();
    let host = kernel.spawn_process();
    let section = kernel.create_section(4096).unwrap();
    assert_eq!(
        kernel.security_of(section.object()),
        Some(SecurityDescriptor::DRIVER)
    );
    kernel.set_current_process(host);
    let read_only = kernel
        .open_user_handle(&section, RegionAccess::ReadOnly.access_mask())
        .unwrap()
        .0;
    let before = (kernel.counters(), kernel.handle_count(host));
    for desired in [
        RegionAccess::ReadWrite.access_mask(),
        SECTION_ALL_ACCESS,
        WRITE_DAC,
        RegionAccess::ReadOnly.access_mask() | WRITE_DAC,
    ] {
        assert_eq!(
            kernel.duplicate_handle_with(host, read_only, host, DuplicateAccess::Desired(desired)),
            Err(ResolveError::AccessDenied),
            "desired {desired:#x}"
        );
    }
    assert_eq!((kernel.counters(), kernel.handle_count(host)), before);
    assert_eq!(
        kernel
            .resolve(host, read_only, SectionAccess::HDV_READ_WRITE)
            .unwrap_err(),
        ResolveError::AccessDenied
    );
    kernel.close_section(section);
    kernel.exit_process(host);
    assert!(kernel.counters().all_released());
}

/// The same attack against a section with the creator's default DACL (the old glue): the
/// upgrade succeeds, which is what the explicit descriptor prevents.
#[test]
fn with_the_default_dacl_the_read_only_handle_could_be_upgraded() {
    let kernel = SimKernel::new();
    let host = kernel.spawn_process();
    let section = kernel.create_section_with_default_dacl(4096).unwrap();
    kernel.set_current_process(host);
    let read_only = kernel
        .open_user_handle(&section, RegionAccess::ReadOnly.access_mask())
        .unwrap()
        .0;
    let writable = kernel
        .duplicate_handle_with(
            host,
            read_only,
            host,
            DuplicateAccess::Desired(RegionAccess::ReadWrite.access_mask()),
        )
        .unwrap();
    assert!(
        kernel
            .resolve(host, writable, SectionAccess::HDV_READ_WRITE)
            .is_ok()
    );
    kernel.close_section(section);
    kernel.exit_process(host);
    assert!(kernel.counters().all_released());
}

/// A DACL without an `OWNER RIGHTS` ACE leaves the owner's implicit `WRITE_DAC`, which the
/// model (strictly) counts as everything: an "empty" DACL alone would not hold.
#[test]
fn an_empty_dacl_without_owner_rights_does_not_hold() {
    let empty = SecurityDescriptor::Explicit {
        granted: 0,
        owner_rights: None,
    };
    assert!(empty.grants(RegionAccess::ReadWrite.access_mask()));
    assert!(!SecurityDescriptor::DRIVER.grants(RegionAccess::ReadOnly.access_mask()));
    assert!(!SecurityDescriptor::DRIVER.grants(WRITE_DAC));
    assert!(SecurityDescriptor::DRIVER.grants(vmbmmio_core::sections::READ_CONTROL));
}

#[test]
fn a_subset_or_same_access_duplicate_needs_no_access_check() {
    let kernel = SimKernel::new();
    let host = kernel.spawn_process();
    let worker = kernel.spawn_process();
    let section = kernel.create_section(4096).unwrap();
    kernel.set_current_process(host);
    let writable = kernel
        .open_user_handle(&section, RegionAccess::ReadWrite.access_mask())
        .unwrap()
        .0;
    let read_only = kernel
        .duplicate_handle_with(
            host,
            writable,
            worker,
            DuplicateAccess::Desired(RegionAccess::ReadOnly.access_mask()),
        )
        .unwrap();
    assert_eq!(
        kernel.handle_info(worker, read_only),
        Some((section.object(), RegionAccess::ReadOnly.access_mask()))
    );
    assert!(
        kernel
            .resolve(worker, read_only, SectionAccess::HDV_READ)
            .is_ok()
    );
    let same = kernel
        .duplicate_handle_with(host, writable, worker, DuplicateAccess::Same)
        .unwrap();
    assert!(
        kernel
            .resolve(worker, same, SectionAccess::HDV_READ_WRITE)
            .is_ok()
    );
    // The writable handle of a writable region maps read/write.
    assert!(
        kernel
            .map_view(host, writable, SectionAccess::READ_WRITE)
            .is_ok()
    );
    // And the read-only copy cannot climb back up.
    assert_eq!(
        kernel.duplicate_handle_with(
            worker,
            read_only,
            worker,
            DuplicateAccess::Desired(RegionAccess::ReadWrite.access_mask())
        ),
        Err(ResolveError::AccessDenied)
    );
    kernel.close_section(section);
    kernel.exit_process(host);
    kernel.exit_process(worker);
    assert!(kernel.counters().all_released());
}

#[test]
fn the_section_call_hook_runs_first_with_no_model_lock_held() {
    let kernel = SimKernel::new();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (record, inner) = (Arc::clone(&seen), kernel.clone());
    kernel.on_section_call(move |call| {
        // The model is not locked: the hook may call the kernel itself.
        let live = inner.live_sections();
        record.lock().unwrap().push((call, live));
    });
    let section = kernel.create_section(4096).unwrap();
    let object = section.object();
    kernel.close_section(section);
    kernel.clear_section_hook();
    let again = kernel.create_section(4096).unwrap();
    kernel.close_section(again);
    assert_eq!(
        *seen.lock().unwrap(),
        [
            // Before ZwCreateSection: nothing exists yet.
            (SectionCall::Create { size: 4096 }, 0),
            // Before ObDereferenceObject: the object still lives.
            (SectionCall::Close { object }, 1),
        ]
    );
    assert!(kernel.counters().all_released());
}
