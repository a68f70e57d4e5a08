//! Tests of the event-object model (module `events`).

use kmcl::raw::{STATUS_ACCESS_DENIED, STATUS_INSUFFICIENT_RESOURCES, STATUS_INVALID_HANDLE};
use vmbmmio_core::consumers::{Clock, UserEvents};
use vmbmmio_core::sections::SectionBackend;

use super::*;

#[test]
fn reference_signal_release_and_the_handle_may_close_meanwhile() {
    let kernel = SimKernel::new();
    let consumer = kernel.spawn_process();
    let handle = kernel.create_event(consumer).unwrap();
    kernel.set_current_process(consumer);
    let event = kernel.reference(handle).unwrap();
    kernel.set_current_process(SYSTEM_PROCESS);
    kernel.close_handle(consumer, handle).unwrap();
    assert_eq!(kernel.live_events(), 1, "the reference keeps the object");
    kernel.signal(&event);
    kernel.signal(&event);
    let counters = kernel.counters();
    assert_eq!(counters.event_signals, 2);
    kernel.release(event);
    assert_eq!(kernel.live_events(), 0);
    let counters = kernel.counters();
    assert_eq!(counters.event_references_taken, 1);
    assert_eq!(counters.event_references_released, 1);
    assert!(counters.all_released());
}

#[test]
fn signals_are_seen_through_the_consumers_handle() {
    let kernel = SimKernel::new();
    let consumer = kernel.spawn_process();
    let handle = kernel.create_event(consumer).unwrap();
    kernel.set_current_process(consumer);
    let event = kernel.reference(handle).unwrap();
    assert_eq!(kernel.event_signalled(consumer, handle, false), Some(false));
    kernel.signal(&event);
    assert_eq!(kernel.event_signalled(consumer, handle, true), Some(true));
    assert_eq!(kernel.event_signalled(consumer, handle, false), Some(false));
    assert_eq!(kernel.event_signals(consumer, handle), Some(1));
    kernel.release(event);
    kernel.exit_process(consumer);
    assert!(kernel.counters().all_released());
}

#[test]
fn refuses_what_windows_refuses() {
    let kernel = SimKernel::new();
    let consumer = kernel.spawn_process();
    let other = kernel.spawn_process();
    let own = kernel.create_event(consumer).unwrap();
    let foreign = kernel.create_event(other).unwrap();
    let wait_only = kernel
        .create_event_with_access(consumer, SYNCHRONIZE)
        .unwrap();
    let section = kernel.create_section(4096).unwrap();
    kernel.set_current_process(consumer);
    let section_handle = kernel.open_user_handle(&section, 0x7).unwrap();
    assert_eq!(kernel.reference(0), Err(STATUS_INVALID_HANDLE));
    assert_eq!(kernel.reference(0x4000), Err(STATUS_INVALID_HANDLE));
    assert_eq!(
        kernel.reference(section_handle.0),
        Err(STATUS_OBJECT_TYPE_MISMATCH)
    );
    assert_eq!(kernel.reference(wait_only), Err(STATUS_ACCESS_DENIED));
    // The other process's handle value means nothing here (or something else).
    assert_ne!(foreign, 0);
    kernel.close_handle(consumer, own).unwrap();
    assert_eq!(kernel.reference(own), Err(STATUS_INVALID_HANDLE), "closed");
    kernel.fail_nth(FaultPoint::ReferenceEvent, 1, STATUS_INSUFFICIENT_RESOURCES);
    let fresh = kernel.create_event(consumer).unwrap();
    assert_eq!(kernel.reference(fresh), Err(STATUS_INSUFFICIENT_RESOURCES));
    assert_eq!(kernel.counters().event_references_taken, 0);
    kernel.set_current_process(SYSTEM_PROCESS);
    kernel.close_section(section);
    kernel.exit_process(consumer);
    kernel.exit_process(other);
    assert!(kernel.counters().all_released());
}

#[test]
#[should_panic(expected = "without a reference")]
fn a_release_never_taken_is_a_bugcheck() {
    let kernel = SimKernel::new();
    kernel.release(vmbmmio_core::consumers::EventRef::from_raw(77));
}

#[test]
fn the_clock_is_shared_and_manual() {
    let kernel = SimKernel::new();
    let clock = kernel.clock();
    assert_eq!(clock.now(), 0);
    kernel.clock().advance(5);
    assert_eq!(clock.now(), 5);
    clock.advance_seconds(1);
    assert_eq!(kernel.clock().now(), 10_000_005);
}
