//! The control device end to end through IOCTL bytes: sessions, isolation, and bad buffers that
//! get the documented NTSTATUS and change nothing (docs/ioctl.md, docs/sections.md).

mod control_support;

use control_support::{Bench, encode, open_session_bytes, vm_target};
use hvsim::memory::{SectionAccess as Rights, SectionResolver};
use kmcl::raw::{
    STATUS_ACCESS_DENIED, STATUS_BUFFER_TOO_SMALL, STATUS_INVALID_BUFFER_SIZE,
    STATUS_INVALID_DEVICE_REQUEST, STATUS_INVALID_DEVICE_STATE, STATUS_INVALID_PARAMETER,
    STATUS_QUOTA_EXCEEDED, STATUS_REVISION_MISMATCH,
};
use vmbmmio_core::mmio_plan::MmioPlan;
use vmbmmio_core::sections::SectionQuotas;
use vmbmmio_proto::ioctl::{
    GetRegionSectionRequest, IoctlCode, MappingState, SectionAccess, SessionState, Target,
};

const SIZES: [u64; 3] = [4096, 3 * 4096 + 5, 1 << 20];

#[test]
fn a_session_offers_the_plan_and_hands_out_its_sections() {
    let mut bench = Bench::new();
    let (devhost, vm) = bench.device_host_with_vm();
    let caller = bench.open_file(devhost, 1);
    let opened = bench.open_session(caller, vm_target(&vm), &SIZES).unwrap();

    // The offer the guest sees carries exactly the plan's MMIO reservation.
    let plan = MmioPlan::new(&SIZES).unwrap();
    let offer = bench.sim.guest(vm.id).only_offer().unwrap();
    assert_eq!(offer.mmio_megabytes, plan.mmio_megabytes());
    assert_eq!(
        offer.mmio_megabytes_optional,
        plan.mmio_megabytes_optional()
    );
    assert_eq!(opened.bar_size(), plan.bar_size());
    assert_eq!(opened.regions().len(), SIZES.len());

    // Every region's handle lives in the device host, maps read/write, and is its own section.
    let mut objects = Vec::new();
    for (index, placement) in plan.regions().iter().enumerate() {
        let (handle, size, offset) = bench.region_section(caller, index as u32).unwrap();
        assert_eq!((size, offset), (placement.size, placement.offset));
        let memory = bench
            .kernel
            .resolve(devhost, handle, Rights::READ_WRITE)
            .unwrap();
        assert_eq!(memory.size(), placement.size);
        objects.push(bench.kernel.handle_info(devhost, handle).unwrap().0);
        bench
            .report_mapping(caller, index as u32, MappingState::SectionBacked)
            .unwrap();
    }
    objects.dedup();
    assert_eq!(objects.len(), SIZES.len());

    let status = bench.status(caller).unwrap();
    assert_eq!(status.state, SessionState::Offered);
    assert_eq!(status.counters.sections_created, 3);
    assert_eq!(status.counters.section_handles_issued, 3);
    assert_eq!(status.counters.regions_mapped, 3);

    // The guest opens the channel; the session reports it.
    bench.sim.guest(vm.id).open(offer.channel).unwrap();
    assert_eq!(bench.status(caller).unwrap().state, SessionState::Open);

    bench.close_session(caller).unwrap();
    bench.kernel.exit_process(devhost);
    bench.control.file_cleanup(caller.file());
    bench.assert_nothing_left();
}

#[test]
fn a_loopback_offer_goes_to_the_host_itself() {
    let mut bench = Bench::new();
    let devhost = bench.kernel.spawn_process();
    let caller = bench.open_file(devhost, 1);
    bench
        .open_session(caller, Target::Loopback, &[4096])
        .unwrap();
    let offer = bench.sim.loopback_guest().only_offer().unwrap();
    assert_eq!(offer.mmio_megabytes, 1);
    bench.control.shutdown();
    bench.kernel.exit_process(devhost);
    bench.assert_nothing_left();
}

/// What is alive now: what a failed request that had to undo its own work must leave unchanged.
fn live(bench: &Bench) -> (u64, u64, u64, usize, u64, u64, u64, usize) {
    let ledger = bench.control.section_counters();
    let objects = bench.kernel.counters();
    let kmcl = bench.sim.counters();
    (
        ledger.live_sessions,
        ledger.live_sections,
        ledger.bytes_in_use,
        bench.kernel.live_sections(),
        objects.user_handles_opened - objects.user_handles_closed,
        kmcl.channels_allocated - kmcl.channels_cleaned_up,
        kmcl.kernel_handles_converted - kmcl.kernel_handles_closed,
        bench.control.live_sessions(),
    )
}

#[test]
fn bad_buffers_get_the_documented_status_and_change_nothing() {
    let mut bench = Bench::new();
    let (devhost, vm) = bench.device_host_with_vm();
    let caller = bench.open_file(devhost, 1);
    bench.open_session(caller, vm_target(&vm), &SIZES).unwrap();
    let good = encode(&GetRegionSectionRequest::build(0, SectionAccess::ReadWrite).unwrap());
    let code = IoctlCode::GetRegionSection.code();
    let out = IoctlCode::GetRegionSection.reply_size();

    let mut wrong_version = good.clone();
    wrong_version[4] = 2;
    let mut reserved = good.clone();
    *reserved.last_mut().unwrap() = 1;
    let mut oversized = good.clone();
    oversized.push(0);
    let foreign_index = encode(&GetRegionSectionRequest::build(3, SectionAccess::Read).unwrap());

    let cases: Vec<(&str, u32, Vec<u8>, usize, i32)> = vec![
        (
            "truncated",
            code,
            good[..good.len() - 1].to_vec(),
            out,
            STATUS_BUFFER_TOO_SMALL,
        ),
        (
            "oversized",
            code,
            oversized,
            out,
            STATUS_INVALID_BUFFER_SIZE,
        ),
        (
            "wrong version",
            code,
            wrong_version,
            out,
            STATUS_REVISION_MISMATCH,
        ),
        (
            "reserved field set",
            code,
            reserved,
            out,
            STATUS_INVALID_PARAMETER,
        ),
        (
            "output too small",
            code,
            good.clone(),
            out - 1,
            STATUS_BUFFER_TOO_SMALL,
        ),
        (
            "unknown code",
            code + 0x100,
            good.clone(),
            out,
            STATUS_INVALID_DEVICE_REQUEST,
        ),
        (
            "region out of range",
            code,
            foreign_index,
            out,
            STATUS_INVALID_PARAMETER,
        ),
        (
            "second session on one file",
            IoctlCode::OpenSession.code(),
            open_session_bytes(Target::Loopback, &[4096]),
            IoctlCode::OpenSession.reply_size(),
            STATUS_INVALID_DEVICE_STATE,
        ),
    ];
    for (name, code, input, out_len, status) in cases {
        let before = bench.snapshot();
        assert_eq!(
            bench.ioctl(caller, code, &input, out_len),
            Err(status),
            "{name}"
        );
        assert_eq!(bench.snapshot(), before, "{name} changed something");
    }
    assert_eq!(bench.status(caller).unwrap().counters.protocol_errors, 8);
    bench.control.shutdown();
    bench.kernel.exit_process(devhost);
    bench.assert_nothing_left();
}

#[test]
fn a_session_reaches_only_its_own_regions() {
    let mut bench = Bench::new();
    let (host_a, vm_a) = bench.device_host_with_vm();
    let (host_b, vm_b) = bench.device_host_with_vm();
    let a = bench.open_file(host_a, 1);
    let b = bench.open_file(host_b, 2);
    bench.open_session(a, vm_target(&vm_a), &SIZES).unwrap();
    bench.open_session(b, vm_target(&vm_b), &[4096]).unwrap();

    // B's region 0 is its own section, never one of A's.
    let (a0, ..) = bench.region_section(a, 0).unwrap();
    let (b0, ..) = bench.region_section(b, 0).unwrap();
    let object_a = bench.kernel.handle_info(host_a, a0).unwrap().0;
    let object_b = bench.kernel.handle_info(host_b, b0).unwrap().0;
    assert_ne!(object_a, object_b);
    // A's other regions do not exist for B.
    let before = bench.snapshot();
    assert_eq!(bench.region_section(b, 2), Err(STATUS_INVALID_PARAMETER));
    assert_eq!(bench.snapshot(), before);
    // A's file handle used from B's process is refused.
    let stolen = bench
        .caller(
            host_b,
            a.file(),
            vmbmmio_core::control::RequestorMode::UserMode,
        )
        .unwrap();
    assert_eq!(bench.region_section(stolen, 0), Err(STATUS_ACCESS_DENIED));
    assert_eq!(bench.snapshot(), before);
    // A VMBus handle of another process cannot be converted: the offer is refused, and what
    // the request created on the way is released again.
    let c = bench.open_file(host_b, 3);
    let before = live(&bench);
    assert!(bench.open_session(c, vm_target(&vm_a), &[4096]).is_err());
    assert_eq!(live(&bench), before);

    bench.control.shutdown();
    bench.kernel.exit_process(host_a);
    bench.kernel.exit_process(host_b);
    bench.sim.take_violations();
    bench.assert_nothing_left();
}

#[test]
fn quota_exceeded_is_refused_before_anything_is_created() {
    let quotas = SectionQuotas {
        session_bytes: 8192,
        ..SectionQuotas::default()
    };
    let mut bench = Bench::with_quotas(quotas);
    let (devhost, vm) = bench.device_host_with_vm();
    let caller = bench.open_file(devhost, 1);
    let before = bench.snapshot();
    assert_eq!(
        bench.open_session(caller, vm_target(&vm), &SIZES),
        Err(STATUS_QUOTA_EXCEEDED)
    );
    assert_eq!(bench.snapshot(), before);
    assert!(bench.sim.guest(vm.id).offers().is_empty());
}

#[test]
fn the_precheck_refuses_codes_and_lengths_before_any_buffer_is_touched() {
    let mut bench = Bench::new();
    let devhost = bench.kernel.spawn_process();
    let caller = bench.open_file(devhost, 1);
    let code = IoctlCode::GetRegionSection;
    let cases = [
        (code.code() + 0x100, 32, 40, STATUS_INVALID_DEVICE_REQUEST),
        (code.code(), 33, 40, STATUS_INVALID_BUFFER_SIZE),
        (code.code(), 1 << 20, 40, STATUS_INVALID_BUFFER_SIZE),
        (code.code(), 32, 39, STATUS_BUFFER_TOO_SMALL),
    ];
    for (code, input_len, output_len, status) in cases {
        let before = bench.snapshot();
        let result = bench.control.precheck(caller, code, input_len, output_len);
        assert_eq!(result.map_err(|e| e.to_ntstatus()), Err(status));
        assert_eq!(bench.snapshot(), before);
    }
    // A request that fits is let through (shorter input is the parser's to refuse).
    assert_eq!(bench.control.precheck(caller, code.code(), 31, 40), Ok(()));
    assert_eq!(bench.status(caller).unwrap().counters.protocol_errors, 4);
}

#[test]
fn defect_03_a_session_rests_on_a_named_assumption_and_follows_the_vm() {
    let mut bench = Bench::new();
    let (devhost, vm, assumption) = bench.device_host_with_vm_assumed();
    // Giving the device host the VM's VMBus handle is stated, not hidden.
    assert_eq!(bench.sim.assumptions(), std::slice::from_ref(&assumption));
    assert!(assumption.to_string().starts_with("ASSUMPTION"));
    let guest_vm = bench.sim.guest_vm(vm.id).unwrap();
    guest_vm.set_power(hvsim::kmcl::Power::Paused);
    let caller = bench.open_file(devhost, 1);
    bench.open_session(caller, vm_target(&vm), &[4096]).unwrap();
    assert!(
        bench.sim.guest(vm.id).offers().is_empty(),
        "paused: no offer yet"
    );
    guest_vm.set_power(hvsim::kmcl::Power::Running);
    let offer = bench.sim.guest(vm.id).only_offer().unwrap();
    bench.sim.guest(vm.id).open(offer.channel).unwrap();
    assert_eq!(bench.status(caller).unwrap().state, SessionState::Open);
    // The VM stops: the channel is closed under the session, which is offered again.
    guest_vm.set_power(hvsim::kmcl::Power::Stopped);
    assert_eq!(bench.status(caller).unwrap().state, SessionState::Offered);
    assert!(bench.sim.guest(vm.id).offers().is_empty());
    bench.close_session(caller).unwrap();
    bench.kernel.exit_process(devhost);
    bench.control.file_cleanup(caller.file());
    bench.assert_nothing_left();
}

/// A layout whose BAR would exceed the 32 GiB the plan allows is refused with
/// `STATUS_INVALID_PARAMETER` before the driver makes a single KMCL call or section.
#[test]
fn an_impossible_layout_is_refused_before_any_kmcl_call() {
    let mut bench = Bench::with_quotas(SectionQuotas {
        session_bytes: 64 << 30,
        global_bytes: 64 << 30,
        ..SectionQuotas::default()
    });
    let (devhost, vm) = bench.device_host_with_vm();
    let caller = bench.open_file(devhost, 1);
    bench.sim.clear_log();
    // Nine regions of 4 GiB, 36 GiB, over the largest BAR: no encoder builds that, so the
    // bytes of eight (exactly 32 GiB) get a ninth entry by hand (docs/ioctl.md layout).
    let mut bytes = open_session_bytes(vm_target(&vm), &[4 << 30; 8]);
    bytes[20..24].copy_from_slice(&9u32.to_le_bytes());
    let ninth = 80 + 16 * 8;
    bytes[ninth..ninth + 8].copy_from_slice(&(4u64 << 30).to_le_bytes());
    bytes[ninth + 8..ninth + 12].copy_from_slice(&1u32.to_le_bytes());
    let result = bench.ioctl(
        caller,
        IoctlCode::OpenSession.code(),
        &bytes,
        IoctlCode::OpenSession.reply_size(),
    );
    assert_eq!(result.err(), Some(STATUS_INVALID_PARAMETER));
    assert!(
        bench.sim.call_names().is_empty(),
        "{:?}",
        bench.sim.call_names()
    );
    assert_eq!(bench.kernel.counters().sections_created, 0);
    assert!(bench.sim.guest(vm.id).offers().is_empty());
}
