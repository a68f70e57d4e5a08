//! The driver's section manager (`vmbmmio_core::sections`) against the simulated kernel
//! (`hvsim::sections`): sizes, quotas, isolation and byte accuracy.
//!
//! Release paths (failures, device-host exit, unload) are in `tests/sections_release.rs`.

use hvsim::memory::{ProcessId, ResolveError, SectionAccess, SectionResolver};
use hvsim::sections::{DuplicateAccess, FaultPoint, SYSTEM_PROCESS, SecurityDescriptor, SimKernel};
use kmcl::raw::{STATUS_ACCESS_DENIED, STATUS_INVALID_PARAMETER, STATUS_QUOTA_EXCEEDED};
use proptest::prelude::*;
use vmbmmio_core::mmio_plan::PAGE_SIZE;
use vmbmmio_core::sections::{
    RegionAccess, RegionId, RegionSpec, SectionError, SectionManager, SectionQuotas, SessionId,
};

const RW: RegionAccess = RegionAccess::ReadWrite;

/// A simulated host: the kernel, the driver's manager and one device host process.
struct Host {
    kernel: SimKernel,
    sections: SectionManager<SimKernel>,
    devhost: ProcessId,
}

impl Host {
    fn new(quotas: SectionQuotas) -> Self {
        let kernel = SimKernel::new();
        let devhost = kernel.spawn_process();
        let sections = SectionManager::new(kernel.clone(), quotas);
        Self {
            kernel,
            sections,
            devhost,
        }
    }

    /// The device host's GET_REGION_SECTION, handled in its own context
    /// (EvtIoInCallerContext), asking for the access the region allows.
    fn handle_for(&mut self, session: SessionId, index: u32) -> Result<u64, SectionError> {
        let region = RegionId::new(session, index);
        let access = self.sections.region(session, region)?.access;
        self.kernel.set_current_process(self.devhost);
        self.sections
            .open_user_handle(
                session,
                region,
                access,
                self.kernel.process_key(self.devhost).unwrap(),
            )
            .map(|handle| handle.0)
    }

    fn driver_bytes(&self, session: SessionId, index: u32, offset: u64, len: usize) -> Vec<u8> {
        let section = self
            .sections
            .kernel_section(session, RegionId::new(session, index))
            .unwrap();
        let memory = self.kernel.kernel_memory(section).unwrap();
        let mut out = vec![0; len];
        memory.read(offset, &mut out).unwrap();
        out
    }
}

#[test]
fn one_region_bytes_written_by_the_device_host_are_the_drivers_bytes() {
    let mut host = Host::new(SectionQuotas::default());
    let session = host
        .sections
        .create_session(&[RegionSpec::read_write(100)])
        .unwrap();
    let handle = host.handle_for(session, 0).unwrap();

    // What HDV gets from the device host's handle (hdv.md §3.3).
    let (_, mask) = host.kernel.handle_info(host.devhost, handle).unwrap();
    assert_eq!(mask, RegionAccess::ReadWrite.access_mask());
    let seen_by_host = host
        .kernel
        .resolve(host.devhost, handle, SectionAccess::READ_WRITE)
        .unwrap();
    assert_eq!(seen_by_host.size(), PAGE_SIZE);

    seen_by_host.write(4000, b"guest-visible").unwrap();
    assert_eq!(host.driver_bytes(session, 0, 4000, 13), b"guest-visible");

    // And the other way: the driver writes, the device host's view reads.
    let view = host
        .kernel
        .map_view(host.devhost, handle, SectionAccess::READ)
        .unwrap();
    let section = host
        .sections
        .kernel_section(session, RegionId::new(session, 0))
        .unwrap();
    host.kernel
        .kernel_memory(section)
        .unwrap()
        .write(0, &[0xA5; 8])
        .unwrap();
    let mut out = [0; 8];
    host.kernel
        .view_memory(host.devhost, view)
        .unwrap()
        .read(0, &mut out)
        .unwrap();
    assert_eq!(out, [0xA5; 8]);
}

#[test]
fn many_regions_each_get_their_own_section() {
    let mut host = Host::new(SectionQuotas::default());
    let specs: Vec<RegionSpec> = (1..=16u64)
        .map(|i| RegionSpec::read_write(i * 3000))
        .collect();
    let session = host.sections.create_session(&specs).unwrap();
    assert_eq!(host.kernel.live_sections(), 16);
    assert_eq!(host.sections.region_count(session), Ok(16));

    let mut objects = Vec::new();
    for index in 0..16u32 {
        let handle = host.handle_for(session, index).unwrap();
        let memory = host
            .kernel
            .resolve(host.devhost, handle, SectionAccess::READ_WRITE)
            .unwrap();
        let info = host
            .sections
            .region(session, RegionId::new(session, index))
            .unwrap();
        assert_eq!(memory.size(), info.size);
        memory.write(0, &[index as u8 + 1]).unwrap();
        objects.push(host.kernel.handle_info(host.devhost, handle).unwrap().0);
    }
    objects.sort();
    objects.dedup();
    assert_eq!(objects.len(), 16, "no two regions share a section");
    for index in 0..16u32 {
        assert_eq!(host.driver_bytes(session, index, 0, 1), [index as u8 + 1]);
    }
    let counters = host.sections.counters();
    assert_eq!(
        (counters.sections_created, counters.handles_handed_out),
        (16, 16)
    );
}

#[test]
fn sizes_round_up_to_whole_pages() {
    let mut host = Host::new(SectionQuotas::default());
    let sizes = [1, 4095, 4096, 4097, 3 * 4096 + 1];
    let specs: Vec<RegionSpec> = sizes.iter().map(|&s| RegionSpec::read_only(s)).collect();
    let session = host.sections.create_session(&specs).unwrap();
    let expected = [4096, 4096, 4096, 8192, 16384];
    for (index, &size) in expected.iter().enumerate() {
        let region = RegionId::new(session, index as u32);
        assert_eq!(host.sections.region(session, region).unwrap().size, size);
        let section = host.sections.kernel_section(session, region).unwrap();
        assert_eq!(host.kernel.kernel_memory(section).unwrap().size(), size);
    }
    assert_eq!(
        host.sections.counters().bytes_in_use,
        expected.iter().sum::<u64>()
    );
}

#[test]
fn read_only_region_hands_out_a_read_only_handle() {
    let mut host = Host::new(SectionQuotas::default());
    let session = host
        .sections
        .create_session(&[RegionSpec::read_only(4096)])
        .unwrap();
    let handle = host.handle_for(session, 0).unwrap();
    let (_, mask) = host.kernel.handle_info(host.devhost, handle).unwrap();
    assert_eq!(mask, RegionAccess::ReadOnly.access_mask());
    assert_eq!(
        host.kernel
            .map_view(host.devhost, handle, SectionAccess::READ_WRITE),
        Err(ResolveError::AccessDenied)
    );
    assert!(
        host.kernel
            .map_view(host.devhost, handle, SectionAccess::READ)
            .is_ok()
    );

    // Asking for write on a read-only region is refused before any kernel call.
    let opens = host.kernel.calls(FaultPoint::OpenUserHandle);
    let error = host
        .sections
        .open_user_handle(
            session,
            RegionId::new(session, 0),
            RW,
            host.kernel.process_key(host.devhost).unwrap(),
        )
        .unwrap_err();
    assert_eq!(error, SectionError::WriteNotAllowed { index: 0 });
    assert_eq!(error.to_ntstatus(), STATUS_ACCESS_DENIED);
    assert_eq!(host.kernel.calls(FaultPoint::OpenUserHandle), opens);
}

/// Issue 8: a read-only handle cannot become writable. The driver's sections carry a
/// descriptor that grants user mode nothing over them, so the device host's `DuplicateHandle`
/// asking for more than its handle has is refused and changes nothing; HDV still maps each
/// handle with the rights it needs, and a writable region's handle stays writable.
#[test]
fn a_read_only_handle_cannot_become_writable() {
    let mut host = Host::new(SectionQuotas::default());
    let session = host
        .sections
        .create_session(&[RegionSpec::read_only(4096), RegionSpec::read_write(4096)])
        .unwrap();
    let read_only = host.handle_for(session, 0).unwrap();
    let writable = host.handle_for(session, 1).unwrap();
    for index in 0..2 {
        let section = host
            .sections
            .kernel_section(session, RegionId::new(session, index))
            .unwrap();
        assert_eq!(
            host.kernel.security_of(section.object()),
            Some(SecurityDescriptor::DRIVER)
        );
    }

    let before = (
        host.kernel.counters(),
        host.kernel.handle_count(host.devhost),
    );
    let upgrade = host.kernel.duplicate_handle_with(
        host.devhost,
        read_only,
        host.devhost,
        DuplicateAccess::Desired(RegionAccess::ReadWrite.access_mask()),
    );
    assert_eq!(upgrade, Err(ResolveError::AccessDenied));
    assert_eq!(
        (
            host.kernel.counters(),
            host.kernel.handle_count(host.devhost)
        ),
        before,
        "a refused duplicate changes nothing"
    );

    // HDV (the model's resolver) maps each handle with what it needs, no more.
    assert!(
        host.kernel
            .resolve(host.devhost, read_only, SectionAccess::HDV_READ)
            .is_ok()
    );
    assert_eq!(
        host.kernel
            .resolve(host.devhost, read_only, SectionAccess::HDV_READ_WRITE)
            .unwrap_err(),
        ResolveError::AccessDenied
    );
    assert!(
        host.kernel
            .resolve(host.devhost, writable, SectionAccess::HDV_READ_WRITE)
            .is_ok()
    );
    // HDV's own hand-over to the VM worker (DUPLICATE_SAME_ACCESS) still works.
    let worker = host.kernel.spawn_process();
    let copy = host
        .kernel
        .duplicate_handle(host.devhost, writable, worker)
        .unwrap();
    assert!(
        host.kernel
            .resolve(worker, copy, SectionAccess::HDV_READ_WRITE)
            .is_ok()
    );
}

#[test]
fn a_read_write_region_can_hand_out_a_read_only_handle() {
    let mut host = Host::new(SectionQuotas::default());
    let session = host
        .sections
        .create_session(&[RegionSpec::read_write(4096)])
        .unwrap();
    host.kernel.set_current_process(host.devhost);
    let handle = host
        .sections
        .open_user_handle(
            session,
            RegionId::new(session, 0),
            RegionAccess::ReadOnly,
            host.kernel.process_key(host.devhost).unwrap(),
        )
        .unwrap()
        .0;
    assert_eq!(
        host.kernel.handle_info(host.devhost, handle).unwrap().1,
        RegionAccess::ReadOnly.access_mask()
    );
    assert_eq!(
        host.kernel
            .resolve(host.devhost, handle, SectionAccess::READ_WRITE)
            .unwrap_err(),
        ResolveError::AccessDenied
    );
    assert_eq!(
        host.sections.handles(session).unwrap()[0].access,
        RegionAccess::ReadOnly
    );
}

#[test]
fn session_quota_exceeded_creates_nothing() {
    let quotas = SectionQuotas {
        session_bytes: 8 * PAGE_SIZE,
        ..Default::default()
    };
    let mut host = Host::new(quotas);
    let error = host
        .sections
        .create_session(&[
            RegionSpec::read_write(4 * PAGE_SIZE),
            RegionSpec::read_write(4 * PAGE_SIZE + 1),
        ])
        .unwrap_err();
    assert_eq!(
        error,
        SectionError::SessionQuotaExceeded {
            requested: 9 * PAGE_SIZE,
            limit: 8 * PAGE_SIZE
        }
    );
    assert_eq!(error.to_ntstatus(), STATUS_QUOTA_EXCEEDED);
    assert_eq!(
        host.kernel.calls(FaultPoint::CreateSection),
        0,
        "checked before any kernel call"
    );
    assert!(host.kernel.counters().all_released());
    assert!(host.sections.counters().all_released());
    // Exactly at the quota is fine.
    assert!(
        host.sections
            .create_session(&[RegionSpec::read_write(8 * PAGE_SIZE)])
            .is_ok()
    );
}

#[test]
fn global_quota_exceeded_creates_nothing_and_frees_up_on_close() {
    let quotas = SectionQuotas {
        session_bytes: 4 * PAGE_SIZE,
        global_bytes: 10 * PAGE_SIZE,
        ..Default::default()
    };
    let mut host = Host::new(quotas);
    let vm1 = host
        .sections
        .create_session(&[RegionSpec::read_write(4 * PAGE_SIZE)])
        .unwrap();
    let _vm2 = host
        .sections
        .create_session(&[RegionSpec::read_write(4 * PAGE_SIZE)])
        .unwrap();
    let before = host.kernel.counters();
    let error = host
        .sections
        .create_session(&[
            RegionSpec::read_write(PAGE_SIZE),
            RegionSpec::read_write(2 * PAGE_SIZE),
        ])
        .unwrap_err();
    assert_eq!(
        error,
        SectionError::GlobalQuotaExceeded {
            requested: 3 * PAGE_SIZE,
            in_use: 8 * PAGE_SIZE,
            limit: 10 * PAGE_SIZE
        }
    );
    assert_eq!(error.to_ntstatus(), STATUS_QUOTA_EXCEEDED);
    assert_eq!(host.kernel.counters(), before, "nothing was created");
    assert_eq!(host.kernel.live_sections(), 2);

    host.sections.close_session(vm1).unwrap();
    assert!(
        host.sections
            .create_session(&[RegionSpec::read_write(3 * PAGE_SIZE)])
            .is_ok()
    );
    assert_eq!(host.sections.counters().bytes_in_use, 7 * PAGE_SIZE);
}

#[test]
fn a_session_cannot_reach_another_sessions_regions() {
    let mut host = Host::new(SectionQuotas::default());
    let vm_a = host
        .sections
        .create_session(&[RegionSpec::read_write(4096)])
        .unwrap();
    let vm_b = host
        .sections
        .create_session(&[RegionSpec::read_write(4096), RegionSpec::read_write(4096)])
        .unwrap();
    let devhost = host.kernel.process_key(host.devhost).unwrap();
    host.kernel.set_current_process(host.devhost);

    // A's device host names B's region.
    let error = host
        .sections
        .open_user_handle(vm_a, RegionId::new(vm_b, 1), RW, devhost)
        .unwrap_err();
    assert_eq!(
        error,
        SectionError::ForeignRegion {
            caller: vm_a,
            owner: vm_b
        }
    );
    assert_eq!(error.to_ntstatus(), STATUS_ACCESS_DENIED);
    assert!(
        host.sections
            .kernel_section(vm_a, RegionId::new(vm_b, 0))
            .is_err()
    );

    // An index past A's regions (B has a region 1; A does not).
    let error = host
        .sections
        .open_user_handle(vm_a, RegionId::new(vm_a, 1), RW, devhost)
        .unwrap_err();
    assert_eq!(error, SectionError::RegionOutOfRange { index: 1, count: 1 });
    assert_eq!(error.to_ntstatus(), STATUS_INVALID_PARAMETER);
    assert!(
        host.sections
            .open_user_handle(vm_a, RegionId::new(vm_a, u32::MAX), RW, devhost)
            .is_err()
    );

    // A closed session's id reaches nothing, even with a new session alive.
    host.sections.close_session(vm_a).unwrap();
    let _vm_c = host
        .sections
        .create_session(&[RegionSpec::read_write(4096)])
        .unwrap();
    assert_eq!(
        host.sections
            .open_user_handle(vm_a, RegionId::new(vm_a, 0), RW, devhost),
        Err(SectionError::UnknownSession { session: vm_a })
    );
    assert_eq!(
        host.kernel.handle_count(host.devhost),
        0,
        "no handle was opened"
    );
}

#[test]
fn one_device_hosts_handle_is_nothing_in_another() {
    let mut host = Host::new(SectionQuotas::default());
    let other = host.kernel.spawn_process();
    let session = host
        .sections
        .create_session(&[RegionSpec::read_write(4096)])
        .unwrap();
    let handle = host.handle_for(session, 0).unwrap();
    assert_eq!(
        host.kernel
            .resolve(other, handle, SectionAccess::READ)
            .unwrap_err(),
        ResolveError::InvalidHandle
    );
}

#[test]
fn refuses_to_open_a_handle_outside_the_requesters_context() {
    let mut host = Host::new(SectionQuotas::default());
    let session = host
        .sections
        .create_session(&[RegionSpec::read_write(4096)])
        .unwrap();
    host.kernel.set_current_process(SYSTEM_PROCESS); // e.g. a worker thread
    let error = host
        .sections
        .open_user_handle(
            session,
            RegionId::new(session, 0),
            RW,
            host.kernel.process_key(host.devhost).unwrap(),
        )
        .unwrap_err();
    assert_eq!(
        error,
        SectionError::WrongProcessContext {
            requester: host.kernel.process_key(host.devhost).unwrap(),
            current: host.kernel.process_key(SYSTEM_PROCESS).unwrap()
        }
    );
    assert_eq!(host.kernel.calls(FaultPoint::OpenUserHandle), 0);
    assert_eq!(host.kernel.handle_count(SYSTEM_PROCESS), 0);
    assert_eq!(host.kernel.handle_count(host.devhost), 0);
}

fn region_spec() -> impl Strategy<Value = RegionSpec> {
    (
        prop_oneof![
            1u64..=3 * PAGE_SIZE,
            (1u64..=16).prop_map(|p| p * PAGE_SIZE)
        ],
        any::<bool>(),
    )
        .prop_map(|(size, ro)| {
            if ro {
                RegionSpec::read_only(size)
            } else {
                RegionSpec::read_write(size)
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any sequence of session creations either succeeds with page-rounded, quota-respecting
    /// sections, or fails leaving the kernel exactly as it was; closing all leaves nothing.
    #[test]
    fn creation_is_all_or_nothing_under_quotas(
        sessions in prop::collection::vec(prop::collection::vec(region_spec(), 1..=5), 1..=6),
        session_pages in 1u64..=24,
        global_pages in 1u64..=64,
    ) {
        let quotas = SectionQuotas {
            session_bytes: session_pages * PAGE_SIZE,
            global_bytes: global_pages * PAGE_SIZE,
            ..Default::default()
        };
        let mut host = Host::new(quotas);
        let mut ids = Vec::new();
        for specs in &sessions {
            let before = host.kernel.counters();
            let rounded: u64 = specs.iter().map(|s| s.size.div_ceil(PAGE_SIZE) * PAGE_SIZE).sum();
            let in_use = host.sections.counters().bytes_in_use;
            match host.sections.create_session(specs) {
                Ok(id) => {
                    prop_assert!(rounded <= quotas.session_bytes);
                    prop_assert!(in_use + rounded <= quotas.global_bytes);
                    ids.push(id);
                }
                Err(error) => {
                    prop_assert_eq!(error.to_ntstatus(), STATUS_QUOTA_EXCEEDED);
                    prop_assert!(rounded > quotas.session_bytes || in_use + rounded > quotas.global_bytes);
                    prop_assert_eq!(host.kernel.counters(), before);
                }
            }
            prop_assert!(host.sections.counters().bytes_in_use <= quotas.global_bytes);
        }
        prop_assert_eq!(host.kernel.live_sections() as u64, host.sections.counters().live_sections);
        for id in ids {
            host.sections.close_session(id).unwrap();
        }
        prop_assert!(host.sections.counters().all_released());
        prop_assert!(host.kernel.counters().all_released());
    }
}
