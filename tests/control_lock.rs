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
//!
//! Section creation and release (`ZwCreateSection`, the final `ObDereferenceObject`, which take
//! real time for large sections) are checked from inside the simulated kernel call
//! (`SimKernel::on_section_call`): other files' requests run through the served sequence
//! there, with a table lock that fails the test if it is taken while held.

mod control_support;

use std::cell::RefCell;
use std::rc::Rc;

use control_support::{Bench, encode, open_session_bytes, vm_target};
use hvsim::kmcl::SimVm;
use hvsim::memory::ProcessId;
use hvsim::platform::SimPlatform;
use hvsim::sections::{FaultPoint, SectionCall, SimKernel};
use kmcl::raw::{
    STATUS_DEVICE_REMOVED, STATUS_INSUFFICIENT_RESOURCES, STATUS_QUOTA_EXCEEDED,
    STATUS_UNSUCCESSFUL,
};
use vmbmmio_core::control::serve::{self, TableLock};
use vmbmmio_core::control::{
    Begun, Caller, ControlDevice, ControlError, Rundown, STATUS_DEVICE_BUSY,
};
use vmbmmio_core::sections::SectionQuotas;
use vmbmmio_proto::ioctl::{
    CloseSessionRequest, GetRegionSectionRequest, IoctlCode, MappingState, QueryStatusRequest,
    SectionAccess, SessionState, parse_open_session_reply, parse_query_status_reply,
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
    try_begin(bench, caller, code, input).ok().unwrap()
}

/// Step one of a request, under the "lock", in the caller's process.
fn try_begin(
    bench: &mut Bench,
    caller: Caller,
    code: IoctlCode,
    input: &[u8],
) -> Result<Begun<SimPlatform>, ControlError> {
    let process = bench.kernel.process_id_of(caller.process()).unwrap();
    let mut output = vec![0u8; code.reply_size()];
    let control = &mut bench.control;
    bench.sim.in_process(process, || {
        control.begin(caller, code.code(), input, &mut output)
    })
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
    // Under the lock only the sections' quota and id were reserved: nothing exists yet.
    assert_eq!(bench.kernel.counters().sections_created, 0);
    let reserved = bench.control.section_counters();
    assert_eq!((reserved.pending_sessions, reserved.live_sessions), (1, 0));
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
    // The unlocked step created the sections; the ledger has not taken them yet.
    assert_eq!(bench.kernel.counters().sections_created, SIZES.len() as u64);
    assert_eq!(bench.control.section_counters().live_sessions, 0);
    let finished = bench.control.finish_open(done);
    assert!(finished.teardown.is_none());
    let committed = bench.control.section_counters();
    assert_eq!(
        (committed.pending_sessions, committed.live_sessions),
        (0, 1)
    );
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

#[test]
fn concurrent_opens_cannot_together_exceed_the_byte_quota() {
    // Room for one session of SIZES (1 MiB + 4 KiB), not two.
    let mut bench = Bench::with_quotas(SectionQuotas {
        global_bytes: 3 << 19,
        ..SectionQuotas::default()
    });
    let (process_a, vm_a) = bench.device_host_with_vm();
    let a = bench.open_file(process_a, 1);
    let (process_b, vm_b) = bench.device_host_with_vm();
    let b = bench.open_file(process_b, 2);
    let open_a = open_session_bytes(vm_target(&vm_a), &SIZES);
    let open_b = open_session_bytes(vm_target(&vm_b), &SIZES);

    // A's open has reserved its bytes and is creating its sections without the lock.
    let Begun::Open(work) = begin(&mut bench, a, IoctlCode::OpenSession, &open_a) else {
        panic!("OPEN_SESSION must hand back its work");
    };
    // B's open is refused although no section exists yet.
    let refused = try_begin(&mut bench, b, IoctlCode::OpenSession, &open_b).err();
    assert_eq!(
        refused.map(ControlError::to_ntstatus),
        Some(STATUS_QUOTA_EXCEEDED)
    );
    assert_eq!(bench.kernel.counters().sections_created, 0);

    // A's creation fails part-way: finish_open cancels, the reservation's bytes are free.
    bench
        .kernel
        .fail_nth(FaultPoint::CreateSection, 2, STATUS_INSUFFICIENT_RESOURCES);
    let mut output = vec![0u8; IoctlCode::OpenSession.reply_size()];
    let done = bench.sim.in_process(process_a, || work.run(&mut output));
    let finished = bench.control.finish_open(done);
    assert_eq!(
        finished.result.map_err(ControlError::to_ntstatus),
        Err(STATUS_INSUFFICIENT_RESOURCES)
    );
    let ledger = bench.control.section_counters();
    assert!(ledger.all_released(), "{ledger:?}");
    assert_eq!((ledger.sections_created, ledger.sections_released), (1, 1));

    // Now B fits, and A, retrying, does not.
    bench.open_session(b, vm_target(&vm_b), &SIZES).unwrap();
    assert_eq!(
        bench.open_session(a, vm_target(&vm_a), &SIZES).err(),
        Some(STATUS_QUOTA_EXCEEDED)
    );
    bench.control.file_cleanup(a.file());
    bench.control.file_cleanup(b.file());
    bench.assert_nothing_left();
}

#[test]
fn concurrent_opens_cannot_together_exceed_max_sessions() {
    let mut bench = Bench::with_quotas(SectionQuotas {
        max_sessions: 1,
        ..SectionQuotas::default()
    });
    let (process_a, vm_a) = bench.device_host_with_vm();
    let a = bench.open_file(process_a, 1);
    let (process_b, vm_b) = bench.device_host_with_vm();
    let b = bench.open_file(process_b, 2);
    let Begun::Open(work) = begin(
        &mut bench,
        a,
        IoctlCode::OpenSession,
        &open_session_bytes(vm_target(&vm_a), &SIZES),
    ) else {
        panic!("OPEN_SESSION must hand back its work");
    };
    let refused = try_begin(
        &mut bench,
        b,
        IoctlCode::OpenSession,
        &open_session_bytes(vm_target(&vm_b), &SIZES),
    )
    .err();
    assert_eq!(
        refused.map(ControlError::to_ntstatus),
        Some(STATUS_QUOTA_EXCEEDED)
    );
    let mut output = vec![0u8; IoctlCode::OpenSession.reply_size()];
    let done = bench.sim.in_process(process_a, || work.run(&mut output));
    bench.control.finish_open(done).result.unwrap();
    assert_eq!(bench.control.live_sessions(), 1);
    bench.close_session(a).unwrap();
    bench.open_session(b, vm_target(&vm_b), &SIZES).unwrap();
    bench.control.file_cleanup(a.file());
    bench.control.file_cleanup(b.file());
    bench.assert_nothing_left();
}

/// A table lock over a shared cell, so code run from inside a simulated kernel call can take
/// it too. Taking it while it is held fails the test: that is what proves the served sequence
/// does not hold it across section creation or release.
#[derive(Clone)]
struct SharedLock(Rc<RefCell<ControlDevice<SimPlatform>>>);

impl TableLock<SimPlatform> for SharedLock {
    fn locked<R>(&self, f: impl FnOnce(&mut ControlDevice<SimPlatform>) -> R) -> Option<R> {
        let mut control = self
            .0
            .try_borrow_mut()
            .expect("table lock taken while held");
        Some(f(&mut control))
    }
}

impl SharedLock {
    fn new(control: ControlDevice<SimPlatform>) -> Self {
        Self(Rc::new(RefCell::new(control)))
    }

    /// The control device back, once no clone of the lock is left.
    fn into_inner(self) -> ControlDevice<SimPlatform> {
        Rc::try_unwrap(self.0)
            .ok()
            .expect("a clone of the lock is still alive")
            .into_inner()
    }
}

type Inside = (fn(&SectionCall) -> bool, Box<dyn FnOnce()>);

thread_local! {
    /// What runs inside the next simulated section call of one kind. The kernel's hook must be
    /// `Send`; the control device is not, so this part lives on the test's thread (the hook
    /// runs on the calling thread).
    static INSIDE: RefCell<Option<Inside>> = const { RefCell::new(None) };
}

/// Runs `f` inside the next section call that `kind` accepts.
fn inside_next(kernel: &SimKernel, kind: fn(&SectionCall) -> bool, f: impl FnOnce() + 'static) {
    INSIDE.with(|inside| *inside.borrow_mut() = Some((kind, Box::new(f))));
    kernel.on_section_call(|call| {
        let due = INSIDE.with(|inside| {
            let mut inside = inside.borrow_mut();
            match inside.take() {
                Some((kind, f)) if kind(&call) => Some(f),
                other => {
                    *inside = other;
                    None
                }
            }
        });
        if let Some(f) = due {
            f();
        }
    });
}

fn is_create(call: &SectionCall) -> bool {
    matches!(call, SectionCall::Create { .. })
}

fn is_close(call: &SectionCall) -> bool {
    matches!(call, SectionCall::Close { .. })
}

/// One IOCTL through the served sequence (the glue's path), with its own rundown reference.
fn served(
    table: &SharedLock,
    rundown: &Rundown,
    caller: Caller,
    code: IoctlCode,
    input: &[u8],
) -> Result<Vec<u8>, ControlError> {
    let in_flight = rundown.acquire().expect("not removing");
    let mut output = vec![0u8; code.reply_size()];
    let written = serve::dispatch(&in_flight, table, caller, code.code(), input, &mut output)?;
    output.truncate(written);
    Ok(output)
}

fn served_state(
    table: &SharedLock,
    rundown: &Rundown,
    caller: Caller,
) -> Result<SessionState, ControlError> {
    let status = encode(&QueryStatusRequest::new());
    served(table, rundown, caller, IoctlCode::QueryStatus, &status)
        .map(|reply| parse_query_status_reply(&reply).unwrap().state)
}

fn get_region(index: u32) -> Vec<u8> {
    encode(&GetRegionSectionRequest::build(index, SectionAccess::ReadWrite).unwrap())
}

#[test]
fn sections_are_created_without_the_table_lock_while_other_files_proceed() {
    let mut bench = Bench::new();
    let (process_b, vm_b) = bench.device_host_with_vm();
    let b = bench.open_file(process_b, 2);
    bench.open_session(b, vm_target(&vm_b), &SIZES).unwrap();
    let (process_a, vm_a) = bench.device_host_with_vm();
    let a = bench.open_file(process_a, 1);
    let Bench {
        sim,
        kernel,
        control,
    } = bench;
    let table = SharedLock::new(control);
    let rundown = Rc::new(Rundown::new());
    let ran = Rc::new(RefCell::new(false));
    {
        let (table, rundown, ran, inner) = (
            table.clone(),
            Rc::clone(&rundown),
            Rc::clone(&ran),
            kernel.clone(),
        );
        inside_next(&kernel, is_create, move || {
            // A's first ZwCreateSection is running. B's requests take the lock and complete.
            inner.set_current_process(process_b);
            assert_eq!(served_state(&table, &rundown, b), Ok(SessionState::Offered));
            served(
                &table,
                &rundown,
                b,
                IoctlCode::GetRegionSection,
                &get_region(1),
            )
            .unwrap();
            // A's own file is busy opening: refused, nothing changed.
            inner.set_current_process(process_a);
            assert_eq!(
                served_state(&table, &rundown, a),
                Err(ControlError::SessionBusy)
            );
            // The reservation is pending; the ledger holds only B's session.
            let ledger = table.locked(|c| c.section_counters()).unwrap();
            assert_eq!((ledger.pending_sessions, ledger.live_sessions), (1, 1));
            *ran.borrow_mut() = true;
        });
    }
    kernel.set_current_process(process_a);
    let input = open_session_bytes(vm_target(&vm_a), &SIZES);
    let reply = sim
        .in_process(process_a, || {
            served(&table, &rundown, a, IoctlCode::OpenSession, &input)
        })
        .unwrap();
    parse_open_session_reply(&reply).unwrap();
    assert!(*ran.borrow(), "the open created no section");
    kernel.clear_section_hook();
    assert_eq!(served_state(&table, &rundown, a), Ok(SessionState::Offered));

    let mut bench = Bench {
        sim,
        kernel,
        control: table.into_inner(),
    };
    bench.close_session(a).unwrap();
    bench.close_session(b).unwrap();
    // B's device host still holds the section handle it got meanwhile; it exits.
    bench.kernel.exit_process(process_b);
    bench.control.file_cleanup(a.file());
    bench.control.file_cleanup(b.file());
    bench.assert_nothing_left();
}

#[test]
fn sections_are_released_without_the_table_lock_while_other_files_proceed() {
    let (bench, (process_a, a), (process_b, b), _vms) = two_sessions();
    let Bench {
        sim,
        kernel,
        control,
    } = bench;
    let table = SharedLock::new(control);
    let rundown = Rc::new(Rundown::new());
    let ran = Rc::new(RefCell::new(false));
    {
        let (table, rundown, ran, inner) = (
            table.clone(),
            Rc::clone(&rundown),
            Rc::clone(&ran),
            kernel.clone(),
        );
        inside_next(&kernel, is_close, move || {
            // A's session left the ledger under the lock; its first ObDereferenceObject runs.
            let ledger = table.locked(|c| c.section_counters()).unwrap();
            assert_eq!(ledger.live_sessions, 1);
            // A's entry is idle again, B's requests complete.
            assert_eq!(
                served_state(&table, &rundown, a),
                Ok(SessionState::NoSession)
            );
            inner.set_current_process(process_b);
            served(
                &table,
                &rundown,
                b,
                IoctlCode::GetRegionSection,
                &get_region(0),
            )
            .unwrap();
            assert_eq!(served_state(&table, &rundown, b), Ok(SessionState::Offered));
            inner.set_current_process(process_a);
            *ran.borrow_mut() = true;
        });
    }
    kernel.set_current_process(process_a);
    let close = encode(&CloseSessionRequest::new());
    sim.in_process(process_a, || {
        served(&table, &rundown, a, IoctlCode::CloseSession, &close)
    })
    .unwrap();
    assert!(*ran.borrow(), "the close released no section");
    kernel.clear_section_hook();
    // Everything of A's session is gone.
    let ledger = table.locked(|c| c.section_counters()).unwrap();
    assert_eq!(ledger.live_sessions, 1);
    assert_eq!(kernel.live_sections(), SIZES.len());

    let mut bench = Bench {
        sim,
        kernel,
        control: table.into_inner(),
    };
    bench.close_session(b).unwrap();
    bench.kernel.exit_process(process_b);
    bench.control.file_cleanup(a.file());
    bench.control.file_cleanup(b.file());
    bench.assert_nothing_left();
}

#[test]
fn a_file_cleaned_up_while_its_sections_are_created_leaves_nothing() {
    let mut bench = Bench::new();
    let (process_a, vm_a) = bench.device_host_with_vm();
    let a = bench.open_file(process_a, 1);
    let Bench {
        sim,
        kernel,
        control,
    } = bench;
    let table = SharedLock::new(control);
    let rundown = Rc::new(Rundown::new());
    {
        let (table, rundown) = (table.clone(), Rc::clone(&rundown));
        inside_next(&kernel, is_create, move || {
            // The device host exits while its first section is being created.
            let in_flight = rundown.acquire().unwrap();
            serve::file_cleanup(&in_flight, &table, a.file());
            assert_eq!(table.locked(|c| c.open_files()), Some(0));
        });
    }
    kernel.set_current_process(process_a);
    let input = open_session_bytes(vm_target(&vm_a), &SIZES);
    let result = sim.in_process(process_a, || {
        served(&table, &rundown, a, IoctlCode::OpenSession, &input)
    });
    assert_eq!(result.err(), Some(ControlError::UnknownFile));
    kernel.clear_section_hook();
    assert_eq!(rundown.in_flight(), 0);

    let bench = Bench {
        sim,
        kernel,
        control: table.into_inner(),
    };
    assert_eq!(bench.control.open_files(), 0);
    let ledger = bench.control.section_counters();
    assert_eq!(ledger.sections_created, SIZES.len() as u64);
    bench.assert_nothing_left();
}
