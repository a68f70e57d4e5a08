//! Release paths of the control device, counted on every side: a device host that exits at any
//! step, a failure injected at every step of OPEN_SESSION, and driver unload leave no section,
//! handle, view, channel, context or kernel VMBus handle behind.

mod control_support;

use control_support::{Bench, vm_target};
use hvsim::memory::SectionAccess as Rights;
use hvsim::sections::FaultPoint;
use kmcl::KmclFunction as F;
use kmcl::raw::{STATUS_INSUFFICIENT_RESOURCES, STATUS_UNSUCCESSFUL};
use vmbmmio_proto::ioctl::MappingState;

const SIZES: [u64; 3] = [4096, 8192, 1 << 20];

/// How far the device host gets before it exits (or crashes).
const STEPS: usize = 3 + SIZES.len() * 3;

/// Runs the device host's part up to `steps` steps: open session, guest opens the channel, then
/// per region: get its section, map a view, report the mapping.
fn run_until(
    bench: &mut Bench,
    steps: usize,
) -> (hvsim::memory::ProcessId, vmbmmio_core::control::Caller) {
    let (devhost, vm) = bench.device_host_with_vm();
    let caller = bench.open_file(devhost, 7);
    let mut done = 0;
    let step = |done: &mut usize| {
        *done += 1;
        *done <= steps
    };
    if !step(&mut done) {
        return (devhost, caller);
    }
    bench.open_session(caller, vm_target(&vm), &SIZES).unwrap();
    if !step(&mut done) {
        return (devhost, caller);
    }
    let offer = bench.sim.guest(vm.id).only_offer().unwrap();
    bench.sim.guest(vm.id).open(offer.channel).unwrap();
    for index in 0..SIZES.len() as u32 {
        if !step(&mut done) {
            return (devhost, caller);
        }
        let (handle, ..) = bench.region_section(caller, index).unwrap();
        if !step(&mut done) {
            return (devhost, caller);
        }
        bench
            .kernel
            .map_view(devhost, handle, Rights::READ_WRITE)
            .unwrap();
        if !step(&mut done) {
            return (devhost, caller);
        }
        bench
            .report_mapping(caller, index, MappingState::SectionBacked)
            .unwrap();
    }
    step(&mut done);
    (devhost, caller)
}

#[test]
fn device_host_exit_at_any_step_leaves_nothing() {
    for steps in 0..=STEPS {
        let mut bench = Bench::new();
        let (devhost, caller) = run_until(&mut bench, steps);
        // The process dies: the OS closes its handles and views; WDF runs file cleanup.
        bench.kernel.exit_process(devhost);
        bench.control.file_cleanup(caller.file());
        assert_eq!(bench.control.open_files(), 0, "step {steps}");
        bench.assert_nothing_left();
    }
}

#[test]
fn file_cleanup_before_the_process_is_gone_keeps_memory_alive_until_it_is() {
    let mut bench = Bench::new();
    let (devhost, caller) = run_until(&mut bench, STEPS);
    // The last handle to the file is closed while the process still maps the sections.
    bench.control.file_cleanup(caller.file());
    assert_eq!(bench.control.live_sessions(), 0);
    assert_eq!(bench.kernel.live_sections(), SIZES.len());
    bench.kernel.exit_process(devhost);
    bench.assert_nothing_left();
}

#[test]
fn unload_with_live_sessions_releases_everything() {
    let mut bench = Bench::new();
    let (devhost, _) = run_until(&mut bench, STEPS);
    bench.control.shutdown();
    bench.kernel.exit_process(devhost);
    bench.assert_nothing_left();
}

#[test]
fn a_failure_at_every_open_session_step_leaves_nothing() {
    let kmcl_steps = [
        F::VmbConvertVmbusHandleToKernelHandle,
        F::VmbChannelAllocate,
        F::VmbServerChannelInitSetVmbusHandle,
        F::VmbChannelInitSetMaximumPacketSize,
        F::VmbServerChannelInitSetTargetInterfaceId,
        F::VmbChannelInitSetStateChangeCallbacks,
        F::VmbChannelInitSetProcessPacketCallbacks,
        F::VmbServerChannelInitSetFlags,
        F::VmbChannelInitSetFriendlyName,
        F::VmbServerChannelInitSetMmioMegabytes,
        F::VmbChannelEnable,
    ];
    for function in kmcl_steps {
        let mut bench = Bench::new();
        let (devhost, vm) = bench.device_host_with_vm();
        let caller = bench.open_file(devhost, 1);
        bench.sim.fail_nth(function, 1, STATUS_UNSUCCESSFUL);
        let result = bench.open_session(caller, vm_target(&vm), &SIZES);
        assert!(result.is_err(), "{function:?}");
        assert_eq!(bench.control.live_sessions(), 0, "{function:?}");
        assert!(bench.sim.guest(vm.id).offers().is_empty() || function == F::VmbChannelEnable);
        bench.kernel.exit_process(devhost);
        bench.control.file_cleanup(caller.file());
        bench.assert_nothing_left();
    }
    for point in [FaultPoint::CreateSection, FaultPoint::ReferenceObject] {
        for nth in 1..=SIZES.len() as u64 {
            let mut bench = Bench::new();
            let (devhost, vm) = bench.device_host_with_vm();
            let caller = bench.open_file(devhost, 1);
            bench
                .kernel
                .fail_nth(point, nth, STATUS_INSUFFICIENT_RESOURCES);
            let result = bench.open_session(caller, vm_target(&vm), &SIZES);
            assert_eq!(
                result.err(),
                Some(STATUS_INSUFFICIENT_RESOURCES),
                "{point:?} {nth}"
            );
            assert!(bench.sim.guest(vm.id).offers().is_empty());
            bench.kernel.exit_process(devhost);
            bench.control.file_cleanup(caller.file());
            bench.assert_nothing_left();
        }
    }
}
