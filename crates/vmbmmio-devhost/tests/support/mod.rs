//! Fakes of HCS, HDV, the driver and the section mapper for the device host's tests.
//!
//! One shared `World` records every call, counts every acquisition against its release and
//! can fail the n-th forward call once, so a test can inject a failure at every step of the
//! sequence and check that nothing is left afterwards.
//!
//! The fake platform is as strict as the reference: a range created while the guest's memory
//! decode is off is recorded as the observed VM-worker crash (hdv.md §3.3) and fails the test,
//! and `HdvTeardownDeviceHost` is refused while the VM runs (hdv.md §3.1, §5).

#![allow(dead_code)]

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use vmbmmio_devhost::callbacks::PciDeviceCallbacks;
use vmbmmio_devhost::clock::{Clock, RetryPolicy};
use vmbmmio_devhost::config::DeviceHostConfig;
use vmbmmio_devhost::driver::{
    ActedOn, ChannelIdentity, DriverClient, DriverError, MappingState, RegionInfo, SectionAccess,
    SessionId, SessionInfo, SessionRequest, SessionState, SessionStatus, StatusCounters,
};
use vmbmmio_devhost::guid::Guid;
use vmbmmio_devhost::hresult::HResult;
use vmbmmio_devhost::layout::BarLayout;
use vmbmmio_devhost::platform::{
    ComputeSystem, DeviceHandle, DeviceHostFlags, DeviceHostHandle, HcsApi, HdvApi, MmioRange,
    SectionHandle,
};
use vmbmmio_devhost::sequence::Backends;
use vmbmmio_devhost::sequence::guest_wait::{GuestEventSource, GuestEventTap, WaitFailure};
use vmbmmio_devhost::views::{SectionMapper, SectionView, ViewError, check_bounds};
use vmbmmio_proto::ioctl::{
    EVENT_FLAG_DEVICE, GuestDevice, GuestEvent, GuestEventKind, GuestReservation, GuestSnapshot,
};

pub const VM: Guid = Guid::from_u128(0x11111111_2222_3333_4444_555555555555);
/// Where the tests' guest places the 16 KiB BAR.
pub const BASE: u64 = 0xF_0000_0000;

/// A valid configuration with two regions (8 KiB and 4 KiB).
pub fn config() -> DeviceHostConfig {
    let cli = vmbmmio_devhost::config::CliArgs {
        vm_id: Some(VM.to_string()),
        region_sizes: vec!["8KiB".into(), "4096".into()],
        vendor_id: Some("0x1af4".into()),
        device_id: Some("0x1110".into()),
        ..Default::default()
    };
    let mut config = vmbmmio_devhost::config::load(&cli).expect("valid test configuration");
    config.map_retry = RetryPolicy {
        max_attempts: 5,
        interval: Duration::from_millis(1),
    };
    config
}

#[derive(Default)]
pub struct World {
    pub journal: Vec<String>,
    /// Fail the forward call with this index (counted from 0), once.
    pub fail_at: Option<usize>,
    pub forward_calls: usize,
    /// Forward calls made before the first release call.
    pub forward_calls_before_release: Option<usize>,
    /// Fail the first release call with this name (and as many more as
    /// `fail_release_again` says).
    pub fail_release: Option<&'static str>,
    pub fail_release_again: usize,
    pub com_too_late: bool,
    /// `create_range` answers INVALID_STATE this many times first.
    pub invalid_state_replies: u32,
    /// `create_range` fails with this after the INVALID_STATE replies.
    pub create_error: Option<HResult>,
    /// The VM starts (the emulator gets Initialize..Start) after this many sleeps.
    pub start_after_sleeps: Option<u32>,
    /// Replaces the layout the fake driver returns.
    pub session_override: Option<SessionInfo>,
    /// The regions' names and access modes of the open session.
    pub session_regions: Vec<vmbmmio_devhost::driver::RegionIdentity>,
    /// The access of every view mapped, in order.
    pub view_access: Vec<SectionAccess>,
    /// The offer GUIDs the fake driver client says it uses.
    pub identity: Option<ChannelIdentity>,
    /// Once the VM starts, the guest programs the BAR at this base through configuration
    /// space (forwarded to the emulator) and enables decode.
    pub program_bar_on_start: Option<u64>,
    /// A sleep after the first release call stops the VM (an operator's Stop-VM after Ctrl-C).
    pub stop_vm_after_release: bool,
    /// The guest's BAR as the platform sees it: base and memory decode.
    pub guest_bar: Option<u64>,
    pub guest_decode: bool,
    /// Ranges created while the guest's decode was off: on the observed build this crashed the
    /// VM worker (hdv.md §3.3). Must stay 0.
    pub created_before_decode: u32,
    /// Every create call's (BAR base, decode) at the time.
    pub create_log: Vec<(Option<u64>, bool)>,
    /// Teardown calls refused because the VM ran.
    pub teardown_refused_while_running: u32,
    pub sleeps: u32,
    pub slept: Duration,
    pub now: Duration,
    pub running: bool,
    pub paused: bool,
    pub emulator: Option<Arc<dyn PciDeviceCallbacks>>,
    pub systems_open: i64,
    pub hosts_live: i64,
    pub devices_live: i64,
    pub sessions_open: i64,
    pub handles_open: i64,
    pub ranges: BTreeMap<(u8, u64), MmioRange>,
    pub reports: BTreeMap<u32, MappingState>,
    pub report_log: Vec<(u32, MappingState)>,
    /// Every report's `acted_on`, in order (parallel to `report_log`).
    pub acted_log: Vec<ActedOn>,
    pub next: u64,
    /// Section memory per region, and which region each open handle names.
    pub sections: Vec<Arc<Mutex<Vec<u8>>>>,
    pub handles: BTreeMap<u64, usize>,
    pub views_mapped: Arc<AtomicU64>,
    pub views_unmapped: Arc<AtomicU64>,
    /// The driver's WAIT_GUEST_EVENT side; `None`: the fake client offers no guest events.
    pub guest: Option<Arc<FakeGuest>>,
}

impl World {
    fn forward(&mut self, call: String) -> Result<(), ()> {
        self.journal.push(call);
        let index = self.forward_calls;
        self.forward_calls += 1;
        if self.fail_at == Some(index) {
            self.fail_at = None;
            self.journal.push("  -> injected failure".into());
            return Err(());
        }
        Ok(())
    }

    fn release(&mut self, call: &'static str) -> Result<(), ()> {
        self.forward_calls_before_release
            .get_or_insert(self.forward_calls);
        self.journal.push(call.to_string());
        if self.fail_release == Some(call) {
            if self.fail_release_again == 0 {
                self.fail_release = None;
            } else {
                self.fail_release_again -= 1;
            }
            return Err(());
        }
        Ok(())
    }

    fn handle(&mut self) -> u64 {
        self.next += 1;
        self.next
    }

    /// What the test asserts after every run: nothing acquired is still held.
    pub fn assert_nothing_left(&self) {
        let context = self.journal.join("\n");
        assert_eq!(self.systems_open, 0, "compute systems\n{context}");
        assert_eq!(self.hosts_live, 0, "device hosts\n{context}");
        assert_eq!(self.devices_live, 0, "devices\n{context}");
        assert_eq!(self.sessions_open, 0, "sessions\n{context}");
        assert_eq!(self.handles_open, 0, "section handles\n{context}");
        assert!(self.ranges.is_empty(), "ranges\n{context}");
        assert!(!self.paused, "VM left paused\n{context}");
        assert_eq!(
            self.created_before_decode, 0,
            "a range was created before the guest enabled decode\n{context}"
        );
        assert_eq!(
            self.views_mapped.load(Ordering::SeqCst),
            self.views_unmapped.load(Ordering::SeqCst),
            "views\n{context}"
        );
        for (region, state) in &self.reports {
            assert_eq!(
                *state,
                MappingState::Unmapped,
                "region {region} report\n{context}"
            );
        }
    }
}

/// A handle on the shared world; implements every platform trait.
#[derive(Clone, Default)]
pub struct Fake(pub Arc<Mutex<World>>);

impl Fake {
    pub fn world(&self) -> MutexGuard<'_, World> {
        self.0.lock().unwrap()
    }

    pub fn backends(&self) -> Backends<Fake, Fake, Fake, Fake> {
        Backends {
            hcs: self.clone(),
            hdv: self.clone(),
            driver: self.clone(),
            mapper: self.clone(),
        }
    }

    /// Powers the VM on the way HDV does (hdv.md §3.7 order).
    pub fn start_vm(&self) {
        let emulator = {
            let mut world = self.world();
            world.running = true;
            world.emulator.clone()
        };
        if let Some(emulator) = emulator {
            emulator.initialize().unwrap();
            emulator.set_configuration(&[]).unwrap();
            let mut bars = [0; 6];
            emulator.get_details(&mut bars).unwrap();
            emulator.start().unwrap();
        }
    }

    /// Stops and cleans up the VM the way HDV does (Stop, then Teardown; hdv.md §3.7).
    pub fn stop_vm(&self) {
        let emulator = {
            let mut world = self.world();
            world.journal.push("vm stopped".into());
            world.running = false;
            world.paused = false;
            world.guest_decode = false;
            world.emulator.clone()
        };
        if let Some(emulator) = emulator {
            emulator.stop();
            emulator.teardown();
        }
    }

    fn emulator(&self) -> Arc<dyn PciDeviceCallbacks> {
        self.world().emulator.clone().expect("a device exists")
    }

    /// The guest writes a configuration-space dword; the platform forwards it to the emulator.
    pub fn config_write(&self, offset: u32, value: u32) {
        self.emulator().write_config_space(offset, value).unwrap();
    }

    /// The guest reads a configuration-space dword.
    pub fn config_read(&self, offset: u32) -> u32 {
        self.emulator().read_config_space(offset).unwrap()
    }

    /// The guest turns memory decode on or off through configuration space.
    pub fn config_decode(&self, on: bool) {
        let command = self.config_read(0x04) & 0xFFFF;
        let command = if on { command | 2 } else { command & !2 };
        self.config_write(0x04, command);
        self.world().guest_decode = on;
    }

    /// The guest places BAR2/3 at `base` through configuration space (decode off around the
    /// BAR writes, as Linux's `prepopulate_bars` does) and enables decode.
    pub fn config_program_bar(&self, base: u64) {
        self.config_decode(false);
        self.config_write(0x18, base as u32);
        self.config_write(0x1C, (base >> 32) as u32);
        self.world().guest_bar = Some(base);
        self.config_decode(true);
    }

    /// The guest's BAR and decode as the platform sees them, without telling the emulator (a
    /// platform that handles the BAR registers itself).
    pub fn guest_sets(&self, base: u64, decode: bool) {
        let mut world = self.world();
        world.guest_bar = Some(base);
        world.guest_decode = decode;
    }

    /// Gives the fake driver a WAIT_GUEST_EVENT side (the client then offers guest events).
    pub fn with_guest(&self) -> Arc<FakeGuest> {
        let guest = Arc::new(FakeGuest::default());
        self.world().guest = Some(Arc::clone(&guest));
        guest
    }

    /// Index of the first journal entry equal to `entry`.
    pub fn journal_index(&self, entry: &str) -> Option<usize> {
        self.world().journal.iter().position(|e| e == entry)
    }

    pub fn section_bytes(&self, region: usize, offset: usize, len: usize) -> Vec<u8> {
        let memory = self.world().sections[region].clone();
        let bytes = memory.lock().unwrap();
        bytes[offset..offset + len].to_vec()
    }
}

fn platform_error() -> HResult {
    HResult::E_FAIL
}

impl HcsApi for Fake {
    fn open_compute_system(&mut self, vm_id: Guid) -> Result<ComputeSystem, HResult> {
        let mut world = self.world();
        world
            .forward(format!("open_compute_system {vm_id}"))
            .map_err(|()| platform_error())?;
        world.systems_open += 1;
        Ok(ComputeSystem(world.handle() as usize))
    }

    fn pause(&mut self, _system: ComputeSystem) -> Result<(), HResult> {
        let mut world = self.world();
        world
            .forward("pause".into())
            .map_err(|()| platform_error())?;
        if !world.running || world.paused {
            return Err(HResult::INVALID_STATE);
        }
        world.paused = true;
        Ok(())
    }

    fn resume(&mut self, _system: ComputeSystem) -> Result<(), HResult> {
        let mut world = self.world();
        world
            .forward("resume".into())
            .map_err(|()| platform_error())?;
        if !world.paused {
            return Err(HResult::INVALID_STATE);
        }
        world.paused = false;
        Ok(())
    }

    fn close_compute_system(&mut self, _system: ComputeSystem) {
        let mut world = self.world();
        world.journal.push("close_compute_system".into());
        world.systems_open -= 1;
    }
}

impl HdvApi for Fake {
    fn initialize_device_host(
        &mut self,
        _system: ComputeSystem,
        flags: DeviceHostFlags,
    ) -> Result<DeviceHostHandle, HResult> {
        let mut world = self.world();
        world
            .forward(format!("initialize_device_host {flags:?}"))
            .map_err(|()| platform_error())?;
        if world.com_too_late && flags == DeviceHostFlags::InitializeComSecurity {
            return Err(HResult::RPC_E_TOO_LATE);
        }
        world.hosts_live += 1;
        Ok(DeviceHostHandle(world.handle() as usize))
    }

    fn create_pci_device(
        &mut self,
        _host: DeviceHostHandle,
        _class_id: Guid,
        _instance_id: Guid,
        emulator: Arc<dyn PciDeviceCallbacks>,
    ) -> Result<DeviceHandle, HResult> {
        let mut world = self.world();
        world
            .forward("create_pci_device".into())
            .map_err(|()| platform_error())?;
        world.devices_live += 1;
        world.emulator = Some(emulator);
        Ok(DeviceHandle(world.handle() as usize))
    }

    fn create_section_backed_mmio_range(
        &mut self,
        _device: DeviceHandle,
        range: &MmioRange,
    ) -> Result<(), HResult> {
        let mut world = self.world();
        world
            .forward(format!("create_range {range:?}"))
            .map_err(|()| platform_error())?;
        assert!(
            world.paused,
            "mapping changes happen with the VM paused (hdv.md §3.3)"
        );
        let at_call = (world.guest_bar, world.guest_decode);
        world.create_log.push(at_call);
        if !world.guest_decode {
            world.created_before_decode += 1;
        }
        if world.invalid_state_replies > 0 {
            world.invalid_state_replies -= 1;
            return Err(HResult::INVALID_STATE);
        }
        if let Some(error) = world.create_error {
            return Err(error);
        }
        assert!(
            world.handles.contains_key(&range.section.0),
            "section handle is open"
        );
        world.ranges.insert((range.bar, range.offset_pages), *range);
        Ok(())
    }

    fn destroy_section_backed_mmio_range(
        &mut self,
        _device: DeviceHandle,
        bar: u8,
        offset_pages: u64,
    ) -> Result<(), HResult> {
        let mut world = self.world();
        world
            .release("destroy_range")
            .map_err(|()| platform_error())?;
        world
            .ranges
            .remove(&(bar, offset_pages))
            .map(|_| ())
            .ok_or(HResult::E_INVALIDARG)
    }

    fn teardown_device_host(&mut self, _host: DeviceHostHandle) -> Result<(), HResult> {
        let mut world = self.world();
        world
            .release("teardown_device_host")
            .map_err(|()| platform_error())?;
        if world.running {
            // hdv.md §3.1 / §5: teardown comes after the VM was terminated.
            world.teardown_refused_while_running += 1;
            return Err(HResult::INVALID_STATE);
        }
        world.hosts_live -= 1;
        world.devices_live = 0;
        world.emulator = None;
        Ok(())
    }
}

impl DriverClient for Fake {
    fn open_session(&mut self, request: &SessionRequest) -> Result<SessionInfo, DriverError> {
        let mut world = self.world();
        world
            .forward("open_session".into())
            .map_err(|()| DriverError::Rejected {
                reason: "injected".into(),
            })?;
        let layout = BarLayout::plan(&request.region_sizes).unwrap();
        world.sections = layout
            .regions()
            .iter()
            .map(|region| Arc::new(Mutex::new(vec![0; region.size as usize])))
            .collect();
        world.sessions_open += 1;
        world.session_regions = request.regions.clone();
        let info = SessionInfo {
            session: SessionId(77),
            bar_size: layout.bar_size(),
            regions: layout.regions().to_vec(),
        };
        Ok(world.session_override.clone().unwrap_or(info))
    }

    fn region_section(
        &mut self,
        session: SessionId,
        region: u32,
        access: SectionAccess,
    ) -> Result<SectionHandle, DriverError> {
        assert_eq!(session, SessionId(77));
        let mut world = self.world();
        // Like the driver: a read-write handle only to a guest-writable region; the device
        // host asks for exactly what the region's access mode gives it.
        let expected = world
            .session_regions
            .get(region as usize)
            .map_or(SectionAccess::ReadWrite, |r| r.access.device_host_access());
        assert_eq!(access, expected, "region {region}");
        world
            .forward(format!("region_section {region}"))
            .map_err(|()| DriverError::Os { code: 5 })?;
        let handle = world.handle();
        world.handles.insert(handle, region as usize);
        world.handles_open += 1;
        Ok(SectionHandle(handle))
    }

    fn report_mapping(
        &mut self,
        _session: SessionId,
        region: u32,
        state: MappingState,
        acted_on: ActedOn,
    ) -> Result<(), DriverError> {
        let mut world = self.world();
        let injected = DriverError::Os { code: 31 };
        if state == MappingState::Unmapped {
            world.release("report_unmapped").map_err(|()| injected)?;
        } else {
            world
                .forward(format!("report_mapping {region} {state:?}"))
                .map_err(|()| injected)?;
        }
        world.reports.insert(region, state);
        world.report_log.push((region, state));
        world.acted_log.push(acted_on);
        Ok(())
    }

    fn status(&mut self, _session: SessionId) -> Result<SessionStatus, DriverError> {
        let world = self.world();
        let mapped = world
            .reports
            .values()
            .filter(|state| **state == MappingState::SectionBacked)
            .count();
        Ok(SessionStatus {
            state: SessionState::Open,
            counters: StatusCounters {
                sections_created: world.sections.len() as u64,
                regions_mapped: mapped as u64,
                ..StatusCounters::default()
            },
        })
    }

    fn close_session(&mut self, _session: SessionId) -> Result<(), DriverError> {
        let mut world = self.world();
        let result = world.release("close_session");
        // The session is gone even if the driver reports an error closing it.
        world.sessions_open -= 1;
        result.map_err(|()| DriverError::Os { code: 6 })
    }

    fn channel_identity(&self) -> Option<ChannelIdentity> {
        self.world().identity
    }

    fn guest_events(&mut self) -> Option<GuestEventTap> {
        let guest = {
            let mut world = self.world();
            world.journal.push("guest_events".into());
            world.guest.clone()?
        };
        let canceller = (Arc::clone(&guest), self.clone());
        Some(GuestEventTap {
            source: Box::new(FakeGuestSource {
                guest,
                fake: self.clone(),
            }),
            cancel: Box::new(move || canceller.0.cancel(&canceller.1)),
        })
    }
}

/// The driver's side of WAIT_GUEST_EVENT: scripted answers, at most one wait pending, and
/// `CancelIoEx`'s effect (a pending wait returns cancelled; with nothing pending, nothing
/// happens). Calls are recorded in the world's journal: `wait_guest_event N` when a wait starts
/// pending, `CancelIoEx`, `wait cancelled`, and `guest source dropped` when the loop's thread
/// lets go of its source (it ends right after).
#[derive(Default)]
pub struct FakeGuest {
    state: Mutex<GuestState>,
    changed: Condvar,
}

#[derive(Default)]
pub struct GuestState {
    /// What the next waits return, in order.
    pub queue: VecDeque<Result<GuestEvent, WaitFailure>>,
    /// A wait is pending (blocked in the fake driver).
    pub pending: bool,
    /// A cancellation the pending wait has not seen yet.
    cancel: bool,
    /// The `last_seen` of every wait.
    pub asked: Vec<u64>,
}

impl FakeGuest {
    fn lock(&self) -> MutexGuard<'_, GuestState> {
        self.state.lock().unwrap()
    }

    /// The driver has `event` (or a failure) for the next wait.
    pub fn post(&self, answer: Result<GuestEvent, WaitFailure>) {
        self.lock().queue.push_back(answer);
        self.changed.notify_all();
    }

    /// `CancelIoEx`: cancels the pending wait, if one is.
    fn cancel(&self, fake: &Fake) {
        let mut state = self.lock();
        fake.world().journal.push("CancelIoEx".into());
        if state.pending {
            state.cancel = true;
            self.changed.notify_all();
        }
    }

    /// Waits (real time, bounded) until the loop handled everything up to `last_seen` and its
    /// next wait pends.
    pub fn settled(&self, last_seen: u64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut state = self.lock();
        while !(state.pending && state.asked.last() == Some(&last_seen)) {
            assert!(
                Instant::now() < deadline,
                "the guest-event loop did not settle at {last_seen}: asked {:?}",
                state.asked
            );
            state = self
                .changed
                .wait_timeout(state, Duration::from_millis(10))
                .unwrap()
                .0;
        }
    }

    /// The `last_seen` of every wait so far.
    pub fn asked(&self) -> Vec<u64> {
        self.lock().asked.clone()
    }
}

/// The loop's source: blocks in [`FakeGuest`].
struct FakeGuestSource {
    guest: Arc<FakeGuest>,
    fake: Fake,
}

impl GuestEventSource for FakeGuestSource {
    fn wait(&mut self, last_seen: u64) -> Result<GuestEvent, WaitFailure> {
        let mut state = self.guest.lock();
        state.asked.push(last_seen);
        loop {
            if let Some(answer) = state.queue.pop_front() {
                state.pending = false;
                self.guest.changed.notify_all();
                return answer;
            }
            if std::mem::take(&mut state.cancel) {
                state.pending = false;
                self.fake.world().journal.push("wait cancelled".into());
                self.guest.changed.notify_all();
                return Err(WaitFailure::Cancelled);
            }
            if !state.pending {
                state.pending = true;
                self.fake
                    .world()
                    .journal
                    .push(format!("wait_guest_event {last_seen}"));
                self.guest.changed.notify_all();
            }
            state = self.guest.changed.wait(state).unwrap();
        }
    }
}

impl Drop for FakeGuestSource {
    fn drop(&mut self) {
        self.fake
            .world()
            .journal
            .push("guest source dropped".into());
    }
}

/// A checked guest event for the tests' 16 KiB BAR at `base`: `device` is `(decode_on, ready,
/// releasing)`, or `None` for no device report.
pub fn guest_event(
    sequence: u64,
    kind: GuestEventKind,
    base: u64,
    device: Option<(bool, bool, bool)>,
) -> GuestEvent {
    let flags = if kind == GuestEventKind::GuestReport {
        EVENT_FLAG_DEVICE
    } else {
        0
    };
    let snapshot = GuestSnapshot {
        reservation: Some(GuestReservation {
            base: 0xFE00_0000,
            size: 1 << 20,
        }),
        device: device.map(|(decode_on, ready, releasing)| GuestDevice {
            bar_index: 2,
            bar_base: base,
            bar_size: 16384,
            decode_on,
            ready,
            releasing,
        }),
        protocol_version: 0x0001_0000,
        guest_packets: sequence,
        counted_errors: 0,
        errors_left: 16,
    };
    GuestEvent::new(sequence, kind, flags, snapshot).unwrap()
}

/// A view over a fake section's bytes.
pub struct FakeView {
    memory: Arc<Mutex<Vec<u8>>>,
    size: u64,
    unmapped: Arc<AtomicU64>,
}

impl SectionView for FakeView {
    fn size(&self) -> u64 {
        self.size
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), ViewError> {
        check_bounds(offset, out.len(), self.size)?;
        let bytes = self.memory.lock().unwrap();
        out.copy_from_slice(&bytes[offset as usize..offset as usize + out.len()]);
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), ViewError> {
        check_bounds(offset, data.len(), self.size)?;
        let mut bytes = self.memory.lock().unwrap();
        bytes[offset as usize..offset as usize + data.len()].copy_from_slice(data);
        Ok(())
    }
}

impl Drop for FakeView {
    fn drop(&mut self) {
        self.unmapped.fetch_add(1, Ordering::SeqCst);
    }
}

impl SectionMapper for Fake {
    type View = FakeView;

    fn map_view(
        &mut self,
        handle: SectionHandle,
        size: u64,
        access: SectionAccess,
    ) -> Result<FakeView, ViewError> {
        let mut world = self.world();
        world.view_access.push(access);
        world
            .forward(format!("map_view {}", handle.0))
            .map_err(|()| ViewError::Os { code: 8 })?;
        let region = *world
            .handles
            .get(&handle.0)
            .ok_or(ViewError::InvalidHandle)?;
        let memory = world.sections[region].clone();
        let available = memory.lock().unwrap().len() as u64;
        if size > available {
            return Err(ViewError::TooLarge {
                requested: size,
                available,
            });
        }
        world.views_mapped.fetch_add(1, Ordering::SeqCst);
        Ok(FakeView {
            memory,
            size,
            unmapped: world.views_unmapped.clone(),
        })
    }

    fn close_handle(&mut self, handle: SectionHandle) {
        let mut world = self.world();
        world.journal.push(format!("close_handle {}", handle.0));
        assert!(
            world.handles.remove(&handle.0).is_some(),
            "closing an open handle"
        );
        world.handles_open -= 1;
    }
}

/// A clock whose sleep advances time; it can power the VM on after some sleeps.
pub struct FakeClock {
    pub fake: Fake,
}

impl Clock for FakeClock {
    fn now(&self) -> Duration {
        self.fake.world().now
    }

    fn sleep(&self, duration: Duration) {
        let (start, program, stop) = {
            let mut world = self.fake.world();
            world.sleeps += 1;
            world.now += duration;
            world.slept += duration;
            let stop = world.stop_vm_after_release
                && world.running
                && world.forward_calls_before_release.is_some();
            (
                world.start_after_sleeps == Some(world.sleeps),
                world.program_bar_on_start,
                stop,
            )
        };
        if start {
            self.fake.start_vm();
            if let Some(base) = program {
                self.fake.config_program_bar(base);
            }
        }
        if stop {
            self.fake.stop_vm();
        }
    }
}

/// A stop flag tests can raise.
pub fn stop_flag() -> Arc<AtomicBool> {
    Arc::new(AtomicBool::new(false))
}

/// Region placement the fake driver uses for `config()`.
pub fn regions() -> Vec<RegionInfo> {
    BarLayout::plan(&[8192, 4096]).unwrap().regions().to_vec()
}
