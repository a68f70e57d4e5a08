//! Locking and removal of the control device: the table lock is never held across a session's
//! blocking KMCL work (open: handle conversion and `VmbChannelEnable`; close:
//! `VmbChannelDisable`, which waits for the guest), so one session's teardown never blocks
//! another's requests; a request on a session being opened or closed is refused with
//! STATUS_DEVICE_BUSY and changes nothing; removal refuses new requests, waits for those in
//! flight and frees nothing under them; query-remove is vetoed while sessions exist.
//!
//! A blocked `VmbChannelDisable` is simulated by the portable API's own steps: the test takes
//! the close's [`Teardown`] out under the "lock" and does not run it until the other session's
//! requests completed.

mod control_support;

use std::cell::RefCell;

use control_support::{Bench, encode, open_session_bytes, vm_target};
use hvsim::kmcl::SimVm;
use hvsim::memory::ProcessId;
use hvsim::platform::SimPlatform;
use kmcl::raw::{STATUS_DEVICE_REMOVED, STATUS_UNSUCCESSFUL};
use vmbmmio_core::control::serve::{self, TableLock};
use vmbmmio_core::control::{
    Begun, Caller, ControlDevice, ControlError, Rundown, STATUS_DEVICE_BUSY,
};
use vmbmmio_proto::ioctl::{
    CloseSessionRequest, IoctlCode, MappingState, QueryStatusRequest, SessionState,
    parse_open_session_reply,
};

const SIZES: [u64; 2] = [4096, 1 << 20];

/// Two device hosts, each with a running session.
/// The VMs are returned so they outlive the sessions.
fn two_sessions() -> (Bench, (ProcessId, Caller), (ProcessId, Caller), [SimVm; 2]) {
    let mut bench = Bench::new();
    let (process_a, vm_a) = bench.device_host_with_vm();
    let a = bench.open_file(process_a, 1);
    bench.open_session(a, vm_target(&vm_a), &SIZES).unwrap();
    let (process_b, vm_b) = bench.device_host_with_vm();
    let b = bench.open_file(process_b, 2);
    bench.open_session(b, vm_target(&vm_b), &SIZES).unwrap();
    (bench, (process_a, a), (process_b, b), [vm_a, vm_b])
}

fn begin(bench: &mut Bench, caller: Caller, code: IoctlCode, input: &[u8]) -> Begun<SimPlatform> {
    let process = bench.kernel.process_id_of(caller.process()).unwrap();
    let mut output = vec![0u8; code.reply_size()];
    let control = &mut bench.control;
    bench
        .sim
        .in_process(process, || {
            control.begin(caller, code.code(), input, &mut output)
        })
        .ok()
        .unwrap()
}

#[test]
fn teardown_of_one_session_does_not_block_requests_of_another() {
    let (mut bench, (_, a), (_, b), _vms) = two_sessions();
    // A's close starts: under the lock its session leaves the table; its Disable "blocks".
    let Begun::Close(teardown) = begin(
        &mut bench,
        a,
        IoctlCode::CloseSession,
        &encode(&CloseSessionRequest::new()),
    ) else {
        panic!("CLOSE_SESSION must hand back its teardown");
    };
    // Meanwhile B's requests all complete.
    assert_eq!(bench.status(b).unwrap().state, SessionState::Offered);
    bench.region_section(b, 1).unwrap();
    bench
        .report_mapping(b, 1, MappingState::SectionBacked)
        .unwrap();
    // A's "Disable" returns; the close finishes under the lock.
    let closed = teardown.run();
    assert_eq!(
        bench.control.finish_close(closed).release(),
        IoctlCode::CloseSession.reply_size()
    );
    assert_eq!(bench.status(a).unwrap().state, SessionState::NoSession);
    assert_eq!(bench.control.live_sessions(), 1);
    bench.close_session(b).unwrap();
    // B's device host still holds its section handle; the sessions themselves are gone.
    assert_eq!(bench.control.live_sessions(), 0);
}

#[test]
fn a_request_on_a_closing_session_is_refused_and_changes_nothing() {
    let (mut bench, (_, a), _, _vms) = two_sessions();
    let Begun::Close(teardown) = begin(
        &mut bench,
        a,
        IoctlCode::CloseSession,
        &encode(&CloseSessionRequest::new()),
    ) else {
        panic!("CLOSE_SESSION must hand back its teardown");
    };
    let before = bench.snapshot();
    for attempt in [
        bench.status(a).map(drop),
        bench.region_section(a, 0).map(drop),
        bench.report_mapping(a, 0, MappingState::SectionBacked),
        bench.close_session(a),
        bench
            .ioctl(
                a,
                IoctlCode::OpenSession.code(),
                &open_session_bytes(vmbmmio_proto::ioctl::Target::Loopback, &SIZES),
                IoctlCode::OpenSession.reply_size(),
            )
            .map(drop),
    ] {
        assert_eq!(attempt, Err(STATUS_DEVICE_BUSY));
    }
    assert_eq!(bench.snapshot(), before);
    let closed = teardown.run();
    bench.control.finish_close(closed).release();
    // Not even the protocol-error counter moved.
    assert_eq!(bench.status(a).unwrap().counters.protocol_errors, 0);
}

#[test]
fn a_request_on_an_opening_session_is_refused_and_the_open_completes() {
    let mut bench = Bench::new();
    let (process, vm) = bench.device_host_with_vm();
    let a = bench.open_file(process, 1);
    let Begun::Open(work) = begin(
        &mut bench,
        a,
        IoctlCode::OpenSession,
        &open_session_bytes(vm_target(&vm), &SIZES),
    ) else {
        panic!("OPEN_SESSION must hand back its channel work");
    };
    let before = bench.snapshot();
    assert_eq!(bench.status(a).map(drop), Err(STATUS_DEVICE_BUSY));
    assert_eq!(bench.snapshot(), before);
    // Query-remove already sees the session being opened.
    assert_eq!(
        bench.control.query_remove(),
        Err(ControlError::SessionsOpen { sessions: 1 })
    );
    // The channel work, without the lock, in the caller's process.
    let mut output = vec![0u8; IoctlCode::OpenSession.reply_size()];
    let done = bench.sim.in_process(process, || work.run(&mut output));
    let finished = bench.control.finish_open(done);
    assert!(finished.teardown.is_none());
    let written = finished.result.unwrap();
    parse_open_session_reply(output.get(..written).unwrap()).unwrap();
    assert_eq!(bench.status(a).unwrap().state, SessionState::Offered);
    bench.close_session(a).unwrap();
    bench.control.file_cleanup(a.file());
    bench.assert_nothing_left();
}

#[test]
fn file_cleanup_during_an_open_tears_the_new_channel_down() {
    let mut bench = Bench::new();
    let (process, vm) = bench.device_host_with_vm();
    let a = bench.open_file(process, 1);
    let Begun::Open(work) = begin(
        &mut bench,
        a,
        IoctlCode::OpenSession,
        &open_session_bytes(vm_target(&vm), &SIZES),
    ) else {
        panic!("OPEN_SESSION must hand back its channel work");
    };
    // The device host exits while its open is in progress.
    bench.control.file_cleanup(a.file());
    let mut output = vec![0u8; IoctlCode::OpenSession.reply_size()];
    let done = bench.sim.in_process(process, || work.run(&mut output));
    let finished = bench.control.finish_open(done);
    assert_eq!(finished.result, Err(ControlError::UnknownFile));
    let teardown = finished.teardown.expect("the offered channel comes back");
    let closed = teardown.run();
    bench.control.finish_close(closed).release();
    assert_eq!(bench.control.open_files(), 0);
    bench.assert_nothing_left();
}

#[test]
fn file_cleanup_during_a_close_leaves_nothing() {
    let (mut bench, (_, a), (_, b), _vms) = two_sessions();
    let Begun::Close(teardown) = begin(
        &mut bench,
        a,
        IoctlCode::CloseSession,
        &encode(&CloseSessionRequest::new()),
    ) else {
        panic!("CLOSE_SESSION must hand back its teardown");
    };
    bench.control.file_cleanup(a.file());
    let closed = teardown.run();
    bench.control.finish_close(closed).release();
    bench.control.file_cleanup(b.file());
    assert_eq!(bench.control.open_files(), 0);
    bench.assert_nothing_left();
}

#[test]
fn query_remove_is_vetoed_while_sessions_exist() {
    let (mut bench, (_, a), (_, b), _vms) = two_sessions();
    let veto = bench.control.query_remove().unwrap_err();
    assert_eq!(veto, ControlError::SessionsOpen { sessions: 2 });
    assert_eq!(veto.to_ntstatus(), STATUS_UNSUCCESSFUL);
    bench.close_session(a).unwrap();
    bench.close_session(b).unwrap();
    // Open files without sessions do not hold removal up.
    assert_eq!(bench.control.query_remove(), Ok(()));
}

/// A table lock over a `RefCell`: taking it while it is held (re-entrance, or a lock held
/// across a step that calls back in) fails the test.
struct CellLock<'a>(RefCell<Option<&'a mut ControlDevice<SimPlatform>>>);

impl TableLock<SimPlatform> for CellLock<'_> {
    fn locked<R>(&self, f: impl FnOnce(&mut ControlDevice<SimPlatform>) -> R) -> Option<R> {
        let mut guard = self
            .0
            .try_borrow_mut()
            .expect("table lock taken while held");
        guard.as_mut().map(|control| f(control))
    }
}

#[test]
fn requests_through_the_served_sequence_open_and_close_sessions() {
    let mut bench = Bench::new();
    let (process, vm) = bench.device_host_with_vm();
    let a = bench.open_file(process, 1);
    let rundown = Rundown::new();
    let Bench { sim, control, .. } = &mut bench;
    let table = CellLock(RefCell::new(Some(control)));
    let in_flight = rundown.acquire().unwrap();
    let mut output = vec![0u8; IoctlCode::OpenSession.reply_size()];
    let input = open_session_bytes(vm_target(&vm), &SIZES);
    let code = IoctlCode::OpenSession.code();
    sim.in_process(process, || {
        serve::dispatch(&in_flight, &table, a, code, &input, &mut output)
    })
    .unwrap();
    let mut output = vec![0u8; IoctlCode::QueryStatus.reply_size()];
    let status = encode(&QueryStatusRequest::new());
    let code = IoctlCode::QueryStatus.code();
    serve::dispatch(&in_flight, &table, a, code, &status, &mut output).unwrap();
    assert!(serve::query_remove(&table).is_err());
    serve::file_cleanup(&in_flight, &table, a.file());
    assert_eq!(serve::query_remove(&table), Ok(()));
    drop(in_flight);
    assert_eq!(rundown.in_flight(), 0);
    bench.assert_nothing_left();
}

#[test]
fn a_request_racing_removal_gets_an_error_and_nothing_is_freed_under_it() {
    let (mut bench, (_, a), _, _vms) = two_sessions();
    let rundown = Rundown::new();
    let Bench { control, .. } = &mut bench;
    let table = CellLock(RefCell::new(Some(control)));
    // A request is in flight (it acquired before removal started).
    let in_flight = RefCell::new(Some(rundown.acquire().unwrap()));
    let mut waits = 0;
    serve::remove(&rundown, &table, || {
        waits += 1;
        // Removal started: a new request is refused before it touches anything.
        assert!(rundown.acquire().is_none());
        assert_eq!(
            ControlError::ShuttingDown.to_ntstatus(),
            STATUS_DEVICE_REMOVED
        );
        // Nothing was shut down or freed under the request in flight: it still completes.
        let guard = in_flight.borrow_mut().take().expect("waited after drained");
        let mut output = vec![0u8; IoctlCode::QueryStatus.reply_size()];
        let status = encode(&QueryStatusRequest::new());
        let code = IoctlCode::QueryStatus.code();
        serve::dispatch(&guard, &table, a, code, &status, &mut output).unwrap();
        assert_eq!(table.locked(|c| c.live_sessions()), Some(2));
        // The request leaves.
        drop(guard);
    });
    // Shutdown waited for it, then ran.
    assert_eq!(waits, 1);
    assert!(rundown.is_drained());
    assert_eq!(table.locked(|c| c.live_sessions()), Some(0));
    // Only now may the state be freed (the glue's `Box::from_raw`).
    *table.0.borrow_mut() = None;
    assert!(rundown.reinitialize());
    bench.assert_nothing_left();
}

#[test]
fn rundown_refuses_after_removal_and_reinitializes_only_when_drained() {
    let rundown = Rundown::new();
    let first = rundown.acquire().unwrap();
    let second = rundown.acquire().unwrap();
    assert_eq!(rundown.in_flight(), 2);
    assert!(!rundown.reinitialize());
    rundown.begin_removal();
    assert!(rundown.acquire().is_none());
    assert!(!rundown.is_drained());
    drop(first);
    assert!(!rundown.is_drained());
    assert!(!rundown.reinitialize());
    drop(second);
    assert!(rundown.is_drained());
    assert!(rundown.reinitialize());
    assert!(rundown.acquire().is_some());
}
