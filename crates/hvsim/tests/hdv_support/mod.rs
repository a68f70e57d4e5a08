//! Shared pieces of the HDV and guest-memory tests: a minimal section handle table (the real
//! one is the section model's), a driver that hands out those handles, and a clock.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hvsim::hdv::{FlexibleIovDevice, HdvSim, HostingModel, VmConfig};
use hvsim::memory::{ProcessId, ResolveError, SectionAccess, SectionMemory, SectionResolver};
use hvsim::vm::{GuestKind, GuestVm};
use vmbmmio_devhost::clock::Clock;
use vmbmmio_devhost::config::DeviceHostConfig;
use vmbmmio_devhost::driver::{
    ActedOn, DriverClient, DriverError, MappingState, SectionAccess as DevhostAccess, SessionId,
    SessionInfo, SessionRequest, SessionState, SessionStatus, StatusCounters,
};
use vmbmmio_devhost::guid::Guid;
use vmbmmio_devhost::layout::BarLayout;
use vmbmmio_devhost::platform::SectionHandle;

pub const DEVICE_HOST: ProcessId = ProcessId(4242);
pub const OTHER_PROCESS: ProcessId = ProcessId(7);
pub const VM: Guid = Guid::from_u128(0x0a0b0c0d_1111_2222_3333_444455556666);
pub const CLASS: Guid = Guid::from_u128(0x9bdff1a3_9ee9_41b5_96ee_5187a86b81fe);
pub const INSTANCE: Guid = Guid::from_u128(0xa298f338_8137_4c56_953b_aa2aa5e4f4ee);

type HandleTable = BTreeMap<(ProcessId, u64), (Arc<SectionMemory>, SectionAccess)>;

/// Handles of (process, value) to a section with some access.
#[derive(Default)]
pub struct Handles {
    table: Mutex<HandleTable>,
    next: Mutex<u64>,
    next_pid: Mutex<u32>,
}

impl Handles {
    pub fn open(
        &self,
        process: ProcessId,
        memory: &Arc<SectionMemory>,
        access: SectionAccess,
    ) -> u64 {
        let mut next = self.next.lock().unwrap();
        *next += 4;
        let handle = 0x100 + *next;
        self.table
            .lock()
            .unwrap()
            .insert((process, handle), (memory.clone(), access));
        handle
    }

    pub fn close(&self, process: ProcessId, handle: u64) {
        assert!(
            self.table
                .lock()
                .unwrap()
                .remove(&(process, handle))
                .is_some(),
            "open handle"
        );
    }

    pub fn open_count(&self) -> usize {
        self.table.lock().unwrap().len()
    }

    /// Open handles in `process`.
    pub fn open_in(&self, process: ProcessId) -> usize {
        self.table
            .lock()
            .unwrap()
            .keys()
            .filter(|(p, _)| *p == process)
            .count()
    }
}

impl SectionResolver for Handles {
    fn resolve(
        &self,
        process: ProcessId,
        handle: u64,
        access: SectionAccess,
    ) -> Result<Arc<SectionMemory>, ResolveError> {
        let table = self.table.lock().unwrap();
        let (memory, granted) = table
            .get(&(process, handle))
            .ok_or(ResolveError::InvalidHandle)?;
        if !granted.allows(access) {
            return Err(ResolveError::AccessDenied);
        }
        Ok(memory.clone())
    }

    fn spawn_process(&self) -> ProcessId {
        let mut next = self.next_pid.lock().unwrap();
        *next += 4;
        ProcessId(9000 + *next)
    }

    fn duplicate_handle(
        &self,
        source: ProcessId,
        handle: u64,
        target: ProcessId,
    ) -> Result<u64, ResolveError> {
        let (memory, access) = self
            .table
            .lock()
            .unwrap()
            .get(&(source, handle))
            .cloned()
            .ok_or(ResolveError::InvalidHandle)?;
        Ok(self.open(target, &memory, access))
    }

    fn close_handle(&self, process: ProcessId, handle: u64) -> Result<(), ResolveError> {
        self.table
            .lock()
            .unwrap()
            .remove(&(process, handle))
            .map(|_| ())
            .ok_or(ResolveError::InvalidHandle)
    }

    fn exit_process(&self, process: ProcessId) {
        self.table.lock().unwrap().retain(|(p, _), _| *p != process);
    }
}

/// The VM configuration with the device declared (hdv.md §5).
pub fn vm_config() -> VmConfig {
    VmConfig {
        flexible_iov: vec![FlexibleIovDevice {
            instance_id: INSTANCE,
            emulator_id: CLASS,
            hosting_model: HostingModel::External,
            configuration: vec!["mode=test".into()],
        }],
    }
}

/// The section handles, the model, and a created Linux VM.
pub fn world() -> (Arc<Handles>, HdvSim) {
    world_of(GuestKind::Linux)
}

/// The section handles, the model, and a created VM whose guest is `kind`.
pub fn world_of(kind: GuestKind) -> (Arc<Handles>, HdvSim) {
    world_with(GuestVm::with_default_pool(kind))
}

/// The section handles, the model, and a created VM whose guest is `guest`.
pub fn world_with(guest: GuestVm) -> (Arc<Handles>, HdvSim) {
    let handles = Arc::new(Handles::default());
    let sim = HdvSim::new(handles.clone(), DEVICE_HOST);
    sim.create_compute_system(VM, vm_config(), guest).unwrap();
    (handles, sim)
}

/// A stand-in for the vmbmmio driver: one section per region, a fresh device-host handle per
/// request.
pub struct TestDriver {
    pub handles: Arc<Handles>,
    pub sections: Arc<Mutex<Vec<Arc<SectionMemory>>>>,
    pub reports: Arc<Mutex<Vec<(u32, MappingState)>>>,
    pub open: bool,
}

impl TestDriver {
    pub fn new(handles: Arc<Handles>) -> Self {
        Self {
            handles,
            sections: Arc::default(),
            reports: Arc::default(),
            open: false,
        }
    }
}

impl DriverClient for TestDriver {
    fn open_session(&mut self, request: &SessionRequest) -> Result<SessionInfo, DriverError> {
        assert_eq!(request.target, VM);
        let layout = BarLayout::plan(&request.region_sizes).unwrap();
        *self.sections.lock().unwrap() = layout
            .regions()
            .iter()
            .map(|region| SectionMemory::new(region.size as usize))
            .collect();
        self.open = true;
        Ok(SessionInfo {
            session: SessionId(1),
            bar_size: layout.bar_size(),
            regions: layout.regions().to_vec(),
        })
    }

    fn region_section(
        &mut self,
        _session: SessionId,
        region: u32,
        access: DevhostAccess,
    ) -> Result<SectionHandle, DriverError> {
        // What the real driver grants (vmbmmio_core RegionAccess::access_mask): map rights
        // and SECTION_QUERY.
        let access = match access {
            DevhostAccess::Read => SectionAccess::HDV_READ,
            DevhostAccess::ReadWrite => SectionAccess::HDV_READ_WRITE,
        };
        let memory = self.sections.lock().unwrap()[region as usize].clone();
        Ok(SectionHandle(self.handles.open(
            DEVICE_HOST,
            &memory,
            access,
        )))
    }

    fn report_mapping(
        &mut self,
        _session: SessionId,
        region: u32,
        state: MappingState,
        _acted_on: ActedOn,
    ) -> Result<(), DriverError> {
        self.reports.lock().unwrap().push((region, state));
        Ok(())
    }

    fn status(&mut self, _session: SessionId) -> Result<SessionStatus, DriverError> {
        Ok(SessionStatus {
            state: SessionState::Open,
            counters: StatusCounters::default(),
        })
    }

    fn close_session(&mut self, _session: SessionId) -> Result<(), DriverError> {
        self.open = false;
        Ok(())
    }
}

/// How many times a [`SimClock`] may be slept on before it fails the test: far more than any
/// flow here needs (the waits for the start and for the placement, the bounded wait for the VM
/// to stop), so a flow that waits for something that never comes fails with a message instead
/// of hanging the test run.
pub const MAX_SLEEPS: u32 = 10_000;

/// A clock that never waits; it can start the VM after some sleeps. It panics after
/// [`MAX_SLEEPS`] sleeps (a stuck wait fails instead of hanging).
pub struct SimClock {
    pub sim: HdvSim,
    pub start_after: Option<u32>,
    pub sleeps: Mutex<u32>,
    pub now: Mutex<Duration>,
}

impl SimClock {
    pub fn new(sim: &HdvSim, start_after: Option<u32>) -> Self {
        Self {
            sim: sim.clone(),
            start_after,
            sleeps: Mutex::new(0),
            now: Mutex::default(),
        }
    }
}

impl Clock for SimClock {
    fn now(&self) -> Duration {
        *self.now.lock().unwrap()
    }

    fn sleep(&self, duration: Duration) {
        *self.now.lock().unwrap() += duration;
        let sleeps = {
            let mut sleeps = self.sleeps.lock().unwrap();
            *sleeps += 1;
            *sleeps
        };
        assert!(
            sleeps <= MAX_SLEEPS,
            "the device host slept {sleeps} times: it waits for something that never comes"
        );
        if Some(sleeps) == self.start_after {
            self.sim.start_compute_system(VM).unwrap();
        }
    }
}

/// The device host's configuration for these tests: regions of 8 KiB and 4 KiB, BAR 2.
pub fn devhost_config() -> DeviceHostConfig {
    let cli = vmbmmio_devhost::config::CliArgs {
        vm_id: Some(VM.to_string()),
        region_sizes: vec!["8K".into(), "4K".into()],
        vendor_id: Some("0x1af4".into()),
        device_id: Some("0x1110".into()),
        emulator_class_id: Some(CLASS.to_string()),
        instance_id: Some(INSTANCE.to_string()),
        ..Default::default()
    };
    vmbmmio_devhost::config::load(&cli).unwrap()
}
