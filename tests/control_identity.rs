//! Who may use a file handle of the control device: the process *object* that opened it, and
//! only from user mode (issue 8, "caller identity by process object"; docs/ioctl.md).
//!
//! Process ids are reused once a process has exited (Microsoft docs, "Process Handles and
//! Identifiers"), and a duplicated or inherited file handle keeps the file object open after
//! its opener exits. The section model gives every process a new object, even one that reuses
//! an id (`SimKernel::spawn_process_reusing`), so a driver that compared ids would hand the
//! first process's sections to the second one here.

mod control_support;

use control_support::{Bench, encode, open_session_bytes, vm_target};
use hvsim::sections::SYSTEM_PROCESS;
use kmcl::raw::STATUS_ACCESS_DENIED;
use vmbmmio_core::control::{Caller, FileKey, RequestorMode};
use vmbmmio_proto::ioctl::{
    CloseSessionRequest, GetRegionSectionRequest, IoctlCode, MappingState, QueryDriverRequest,
    QueryStatusRequest, ReportMappingRequest, SectionAccess, Target,
};

const SIZES: [u64; 2] = [4096, 8192];

/// Every IOCTL of the protocol, well-formed, with its reply size.
fn every_request() -> Vec<(u32, Vec<u8>, usize)> {
    vec![
        (
            IoctlCode::OpenSession.code(),
            open_session_bytes(Target::Loopback, &[4096]),
            IoctlCode::OpenSession.reply_size(),
        ),
        (
            IoctlCode::GetRegionSection.code(),
            encode(&GetRegionSectionRequest::build(0, SectionAccess::ReadWrite).unwrap()),
            IoctlCode::GetRegionSection.reply_size(),
        ),
        (
            IoctlCode::ReportMapping.code(),
            encode(&ReportMappingRequest::build(0, MappingState::SectionBacked, 0).unwrap()),
            IoctlCode::ReportMapping.reply_size(),
        ),
        (
            IoctlCode::QueryStatus.code(),
            encode(&QueryStatusRequest::new()),
            IoctlCode::QueryStatus.reply_size(),
        ),
        (
            IoctlCode::QueryDriver.code(),
            encode(&QueryDriverRequest::new()),
            IoctlCode::QueryDriver.reply_size(),
        ),
        (
            IoctlCode::CloseSession.code(),
            encode(&CloseSessionRequest::new()),
            IoctlCode::CloseSession.reply_size(),
        ),
    ]
}

#[test]
fn a_process_that_reuses_the_openers_id_cannot_reach_its_session() {
    let mut bench = Bench::new();
    let (first, vm) = bench.device_host_with_vm();
    let opener = bench.open_file(first, 1);
    bench.open_session(opener, vm_target(&vm), &SIZES).unwrap();
    let (handle, ..) = bench.region_section(opener, 0).unwrap();
    assert!(bench.kernel.handle_info(first, handle).is_some());
    // The driver holds the opener's process object while the file is open.
    assert_eq!(bench.kernel.process_references(opener.process()), 1);

    // The device host exits, but its file handle lives on (it was duplicated into, or
    // inherited by, another process), so no file cleanup runs. A new process gets its id.
    bench.kernel.exit_process(first);
    let second = bench.kernel.spawn_process_reusing(first).unwrap();
    assert_eq!(second, first, "the id is reused");
    let intruder = bench
        .caller(second, opener.file(), RequestorMode::UserMode)
        .unwrap();
    assert_ne!(intruder.process(), opener.process(), "a new process object");

    // Nothing the protocol offers reaches the first process's session from the second one,
    // and no request changes anything (not even the opener's error counter).
    let before = bench.snapshot();
    for (code, input, output_len) in every_request() {
        assert_eq!(
            bench.ioctl(intruder, code, &input, output_len),
            Err(STATUS_ACCESS_DENIED),
            "IOCTL {code:#x}"
        );
        assert_eq!(
            bench
                .control
                .precheck(intruder, code, input.len(), output_len),
            Ok(())
        );
    }
    assert_eq!(bench.snapshot(), before);
    assert_eq!(bench.control.live_sessions(), 1);
    assert_eq!(
        bench.kernel.handle_count(second),
        0,
        "no section handle landed in the second process"
    );

    // The last handle closes: file cleanup ends the session and lets go of the process object.
    bench.control.file_cleanup(opener.file());
    assert_eq!(bench.kernel.process_references(opener.process()), 0);
    bench.kernel.exit_process(second);
    bench.sim.take_violations();
    bench.assert_nothing_left();
}

#[test]
fn a_new_process_with_a_reused_id_opens_its_own_file_and_gets_its_own_sections() {
    let mut bench = Bench::new();
    let first = bench.kernel.spawn_process();
    let a = bench.open_file(first, 1);
    bench.open_session(a, Target::Loopback, &[4096]).unwrap();
    bench.kernel.exit_process(first);
    let second = bench.kernel.spawn_process_reusing(first).unwrap();
    let b = bench.open_file(second, 2);
    bench.open_session(b, Target::Loopback, &[4096]).unwrap();
    let (handle_b, ..) = bench.region_section(b, 0).unwrap();
    let region_b = bench.control.region_section(b.file(), 0).unwrap().object();
    assert_eq!(
        bench.kernel.handle_info(second, handle_b).unwrap().0,
        region_b
    );
    let region_a = bench.control.region_section(a.file(), 0).unwrap().object();
    assert_ne!(region_a, region_b);
    // B's caller still cannot use A's file.
    let stolen = bench
        .caller(second, a.file(), RequestorMode::UserMode)
        .unwrap();
    assert_eq!(bench.region_section(stolen, 0), Err(STATUS_ACCESS_DENIED));

    bench.control.shutdown();
    assert_eq!(bench.kernel.process_references(a.process()), 0);
    assert_eq!(bench.kernel.process_references(b.process()), 0);
    bench.kernel.exit_process(second);
    bench.assert_nothing_left();
}

#[test]
fn kernel_mode_requests_are_refused_and_change_nothing() {
    let mut bench = Bench::new();
    let (host, vm) = bench.device_host_with_vm();
    let caller = bench.open_file(host, 1);
    bench.open_session(caller, vm_target(&vm), &SIZES).unwrap();
    let before = bench.snapshot();

    // A kernel-mode request through the device host's own file, from its own process, and
    // one from the System process: refused at admission, before the control device (and its
    // lock) is reached at all; `Caller::admit` is the only way to make a `Caller`.
    for process in [host, SYSTEM_PROCESS] {
        assert_eq!(
            bench.caller(process, caller.file(), RequestorMode::KernelMode),
            Err(STATUS_ACCESS_DENIED)
        );
    }
    assert_eq!(
        Caller::admit(caller.file(), caller.process(), RequestorMode::from_raw(0))
            .map_err(|e| e.to_ntstatus()),
        Err(STATUS_ACCESS_DENIED)
    );
    // A kernel-mode create is refused the same way, and takes no process reference.
    for process in [host, SYSTEM_PROCESS] {
        assert_eq!(
            bench
                .opener(process, 9, RequestorMode::KernelMode)
                .map(|_| ()),
            Err(STATUS_ACCESS_DENIED)
        );
    }
    assert_eq!(bench.snapshot(), before);
    assert_eq!(bench.kernel.handle_count(SYSTEM_PROCESS), 0);
    let status = bench.status(caller).unwrap();
    assert_eq!(status.counters.protocol_errors, 0);

    bench.control.file_cleanup(caller.file());
    bench.kernel.exit_process(host);
    bench.sim.take_violations();
    bench.assert_nothing_left();
}

#[test]
fn the_openers_process_reference_lives_exactly_as_long_as_the_file() {
    let mut bench = Bench::new();
    let host = bench.kernel.spawn_process();
    let caller = bench.open_file(host, 1);
    assert_eq!(bench.kernel.process_references(caller.process()), 1);
    // A refused create (same file announced twice) releases the reference it was given.
    let again = bench.opener(host, 1, RequestorMode::UserMode).unwrap();
    assert_eq!(bench.kernel.process_references(caller.process()), 2);
    assert!(bench.control.file_create(again).is_err());
    assert_eq!(bench.kernel.process_references(caller.process()), 1);
    // After the process exits its object stays referenced until file cleanup.
    bench.kernel.exit_process(host);
    assert_eq!(bench.kernel.process_references(caller.process()), 1);
    bench.control.file_cleanup(FileKey(1));
    assert_eq!(bench.kernel.process_references(caller.process()), 0);
    assert_eq!(bench.control.open_files(), 0);
    bench.assert_nothing_left();
}
