//! Shared setup of the control-device tests: the driver's real `ControlDevice` over the
//! simulated platform (KMCL model, object-manager model), driven with IOCTL bytes built by
//! `vmbmmio-proto`, exactly as the glue would pass them.
#![allow(dead_code)] // each test crate uses a different subset

use hvsim::clock::SimClock;
use hvsim::kmcl::SimHandleCloser;
use hvsim::kmcl::{Assumption, GuestKind, GuestVm, Power, Sim, SimVm};
use hvsim::memory::ProcessId;
use hvsim::platform::{SimEventLock, SimPlatform};
use hvsim::sections::SimProcessRef;
use hvsim::sections::{SYSTEM_PROCESS, SimKernel};
use kmcl::raw::NTSTATUS;
use vmbmmio_core::control::{
    Caller, ControlDevice, FileKey, Handled, OfferSettings, Opener, PendingWait, Platform,
    RequestorMode,
};
use vmbmmio_core::sections::SectionQuotas;
use vmbmmio_proto::ioctl::{
    CloseSessionRequest, GetRegionSectionRequest, GuestEvent, IoctlCode, MappingState,
    OpenSessionRequest, QueryStatusRequest, RegionRequest, ReportMappingRequest, SectionAccess,
    SessionOpened, SessionStatus, Target, WaitGuestEventRequest, WireGuid, WireMessage,
    parse_get_region_section_reply, parse_open_session_reply, parse_query_status_reply,
    parse_wait_guest_event_reply,
};

/// Interface type GUID of the tests' sessions.
pub const INTERFACE_TYPE: WireGuid = WireGuid::from_u128(0x3c1d_77a0_52e4_4b8e_9d21_6f0a_b5c3_0001);
/// Interface instance GUID of the tests' sessions.
pub const INTERFACE_INSTANCE: WireGuid =
    WireGuid::from_u128(0x3c1d_77a0_52e4_4b8e_9d21_6f0a_b5c3_1001);

/// A simulated platform: hvsim's sections, processes, kernel-handle closer and event lock, with
/// any KMCL table (`SimPlatform`, or `SimPlatformWithoutMmioSpace`).
pub trait SimulatedPlatform:
    Platform<
        Sections = SimKernel,
        Process = SimProcessRef,
        HandleCloser = SimHandleCloser,
        EventLock = SimEventLock,
        Clock = SimClock,
        Events = SimKernel,
    >
{
}

impl<
    X: Platform<
            Sections = SimKernel,
            Process = SimProcessRef,
            HandleCloser = SimHandleCloser,
            EventLock = SimEventLock,
            Clock = SimClock,
            Events = SimKernel,
        >,
> SimulatedPlatform for X
{
}

/// The driver's control device and the simulated host around it, on platform `X`.
pub struct Bench<X: SimulatedPlatform = SimPlatform> {
    pub sim: Sim,
    pub kernel: SimKernel,
    pub control: ControlDevice<X>,
}

impl Bench {
    pub fn new() -> Self {
        Self::with_quotas(SectionQuotas::default())
    }

    pub fn with_quotas(quotas: SectionQuotas) -> Self {
        Self::on_platform_with_quotas(quotas)
    }
}

impl<X: SimulatedPlatform> Bench<X> {
    /// A bench on platform `X` (e.g. `Bench::<SimPlatformWithoutMmioSpace>::on_platform()`).
    pub fn on_platform() -> Self {
        Self::on_platform_with_quotas(SectionQuotas::default())
    }

    pub fn on_platform_with_quotas(quotas: SectionQuotas) -> Self {
        let sim = Sim::new();
        let kernel = SimKernel::new();
        let control = ControlDevice::new(
            sim.parent_device(),
            kernel.clone(),
            kernel.clone(),
            kernel.clock(),
            quotas,
            OfferSettings::default(),
        );
        Self {
            sim,
            kernel,
            control,
        }
    }

    /// A device-host process that owns the VMBus handle of a new, running, Windows-like VM:
    /// an ASSUMPTION (no documented way gives a third party a VM's VMBus handle), recorded in
    /// `sim.assumptions()`.
    pub fn device_host_with_vm(&self) -> (ProcessId, SimVm) {
        let (process, vm, _) = self.device_host_with_vm_assumed();
        (process, vm)
    }

    /// As [`Bench::device_host_with_vm`], also returning the assumption the host made.
    pub fn device_host_with_vm_assumed(&self) -> (ProcessId, SimVm, Assumption) {
        let process = self.kernel.spawn_process();
        let guest = GuestVm::with_default_pool(GuestKind::Windows);
        guest.set_power(Power::Running);
        let (vm, assumption) = self.sim.add_vm_assuming_vmbus_handle_in(guest, process);
        (process, vm, assumption)
    }

    /// The device host opens `\\.\vmbmmio`: a new file handle in `process`, created in its
    /// context from user mode (as `EvtDeviceFileCreate` runs); the driver references the
    /// process object.
    pub fn open_file(&mut self, process: ProcessId, file: usize) -> Caller {
        let opener = self.opener(process, file, RequestorMode::UserMode).unwrap();
        let caller = opener.caller();
        self.control.file_create(opener).unwrap();
        caller
    }

    /// The glue's admission of a create of `file` by `process` in `mode`.
    pub fn opener(
        &self,
        process: ProcessId,
        file: usize,
        mode: RequestorMode,
    ) -> Result<Opener<hvsim::sections::SimProcessRef>, NTSTATUS> {
        self.kernel.set_current_process(process);
        let kernel = &self.kernel;
        let opener = Opener::admit(FileKey(file), mode, || kernel.reference_current_process());
        self.kernel.set_current_process(SYSTEM_PROCESS);
        opener.map_err(|error| error.to_ntstatus())
    }

    /// The glue's admission of a request through `file` by a thread of whatever process has
    /// id `process` now, in `mode`.
    pub fn caller(
        &self,
        process: ProcessId,
        file: FileKey,
        mode: RequestorMode,
    ) -> Result<Caller, NTSTATUS> {
        let key = self.kernel.process_key(process).unwrap();
        Caller::admit(file, key, mode).map_err(|error| error.to_ntstatus())
    }

    /// One IOCTL from `caller`, in its process context (as `EvtIoInCallerContext` runs).
    pub fn ioctl(
        &mut self,
        caller: Caller,
        code: u32,
        input: &[u8],
        output_len: usize,
    ) -> Result<Vec<u8>, NTSTATUS> {
        let process = self.kernel.process_id_of(caller.process()).unwrap();
        self.kernel.set_current_process(process);
        let mut output = vec![0u8; output_len];
        let control = &mut self.control;
        let result = self.sim.in_process(process, || {
            control.dispatch(caller, code, input, &mut output)
        });
        match result {
            Ok(written) => {
                output.truncate(written);
                Ok(output)
            }
            Err(error) => Err(error.to_ntstatus()),
        }
    }

    /// One IOCTL from `caller` in the glue's order: `ControlDevice::precheck` with the code and
    /// the buffer lengths, then `dispatch` with the bytes.
    pub fn ioctl_prechecked(
        &mut self,
        caller: Caller,
        code: u32,
        input: &[u8],
        output_len: usize,
    ) -> Result<Vec<u8>, NTSTATUS> {
        let process = self.kernel.process_id_of(caller.process()).unwrap();
        self.kernel.set_current_process(process);
        let mut output = vec![0u8; output_len];
        let control = &mut self.control;
        let result = self.sim.in_process(process, || {
            control.precheck(caller, code, input.len(), output.len())?;
            control.dispatch(caller, code, input, &mut output)
        });
        self.kernel.set_current_process(SYSTEM_PROCESS);
        match result {
            Ok(written) => {
                output.truncate(written);
                Ok(output)
            }
            Err(error) => Err(error.to_ntstatus()),
        }
    }

    /// One IOCTL from `caller` through `ControlDevice::handle`: a WAIT_GUEST_EVENT with nothing
    /// to report comes back pending, for the test to keep as the glue keeps the request.
    pub fn handle(
        &mut self,
        caller: Caller,
        code: u32,
        input: &[u8],
        output: &mut [u8],
    ) -> Result<Handled<X>, NTSTATUS> {
        let process = self.kernel.process_id_of(caller.process()).unwrap();
        self.kernel.set_current_process(process);
        let control = &mut self.control;
        let result = self
            .sim
            .in_process(process, || control.handle(caller, code, input, output));
        self.kernel.set_current_process(SYSTEM_PROCESS);
        result.map_err(|error| error.to_ntstatus())
    }

    /// WAIT_GUEST_EVENT(`last_seen`) from `caller`: the event it completed with at once, or the
    /// pending request.
    pub fn wait_guest_event(
        &mut self,
        caller: Caller,
        last_seen: u64,
    ) -> Result<Waited<X>, NTSTATUS> {
        let mut output = vec![0u8; IoctlCode::WaitGuestEvent.reply_size()];
        let input = encode(&WaitGuestEventRequest::new(last_seen));
        match self.handle(
            caller,
            IoctlCode::WaitGuestEvent.code(),
            &input,
            &mut output,
        )? {
            Handled::Done(written) => Ok(Waited::Event(
                parse_wait_guest_event_reply(&output[..written]).unwrap(),
            )),
            Handled::Pending(pending) => Ok(Waited::Pending(pending)),
        }
    }

    pub fn open_session(
        &mut self,
        caller: Caller,
        target: Target,
        sizes: &[u64],
    ) -> Result<SessionOpened, NTSTATUS> {
        let reply = self.ioctl(
            caller,
            IoctlCode::OpenSession.code(),
            &open_session_bytes(target, sizes),
            IoctlCode::OpenSession.reply_size(),
        )?;
        Ok(parse_open_session_reply(&reply).unwrap())
    }

    pub fn region_section(
        &mut self,
        caller: Caller,
        index: u32,
    ) -> Result<(u64, u64, u64), NTSTATUS> {
        let request = GetRegionSectionRequest::build(index, SectionAccess::ReadWrite).unwrap();
        let reply = self.ioctl(
            caller,
            IoctlCode::GetRegionSection.code(),
            &encode(&request),
            IoctlCode::GetRegionSection.reply_size(),
        )?;
        let section = parse_get_region_section_reply(&reply).unwrap();
        Ok((
            section.section_handle(),
            section.size(),
            section.offset_in_bar(),
        ))
    }

    pub fn report_mapping(
        &mut self,
        caller: Caller,
        index: u32,
        state: MappingState,
    ) -> Result<(), NTSTATUS> {
        let request = ReportMappingRequest::build(index, state, 0).unwrap();
        self.ioctl(
            caller,
            IoctlCode::ReportMapping.code(),
            &encode(&request),
            IoctlCode::ReportMapping.reply_size(),
        )
        .map(drop)
    }

    pub fn status(&mut self, caller: Caller) -> Result<SessionStatus, NTSTATUS> {
        let reply = self.ioctl(
            caller,
            IoctlCode::QueryStatus.code(),
            &encode(&QueryStatusRequest::new()),
            IoctlCode::QueryStatus.reply_size(),
        )?;
        Ok(parse_query_status_reply(&reply).unwrap())
    }

    pub fn close_session(&mut self, caller: Caller) -> Result<(), NTSTATUS> {
        self.ioctl(
            caller,
            IoctlCode::CloseSession.code(),
            &encode(&CloseSessionRequest::new()),
            IoctlCode::CloseSession.reply_size(),
        )
        .map(drop)
    }

    /// Everything any session created has been released: the driver's ledger, the section
    /// objects, handles and views, and the KMCL channels, contexts and kernel handles.
    /// Everything observable that a refused request must leave unchanged, on every side.
    pub fn snapshot(&self) -> String {
        format!(
            "{:?} {:?} {:?} {} {}",
            self.control.section_counters(),
            self.kernel.counters(),
            self.sim.counters(),
            self.control.live_sessions(),
            self.control.open_files()
        )
    }

    pub fn assert_nothing_left(&self) {
        assert_eq!(self.control.live_sessions(), 0);
        let ledger = self.control.section_counters();
        assert!(ledger.all_released(), "{ledger:?}");
        assert_eq!(self.kernel.live_sections(), 0);
        let objects = self.kernel.counters();
        assert!(objects.all_released(), "{objects:?}");
        self.sim.assert_clean();
    }
}

/// What a WAIT_GUEST_EVENT came back with.
pub enum Waited<X: SimulatedPlatform = SimPlatform> {
    /// Completed at once.
    Event(GuestEvent),
    /// Kept pending (the glue would park it in its manual queue).
    Pending(PendingWait<X>),
}

impl<X: SimulatedPlatform> Waited<X> {
    pub fn event(self) -> GuestEvent {
        match self {
            Self::Event(event) => event,
            Self::Pending(_) => panic!("expected an event, the request pends"),
        }
    }

    pub fn pending(self) -> PendingWait<X> {
        match self {
            Self::Pending(pending) => pending,
            Self::Event(event) => panic!("expected to pend, got {event:?}"),
        }
    }
}

/// An OPEN_SESSION request for `target` with guest-writable regions of `sizes`.
pub fn open_session_bytes(target: Target, sizes: &[u64]) -> Vec<u8> {
    let regions: Vec<RegionRequest> = sizes
        .iter()
        .map(|&size| RegionRequest {
            size,
            guest_writable: true,
        })
        .collect();
    encode(
        &OpenSessionRequest::build(target, INTERFACE_TYPE, INTERFACE_INSTANCE, &regions).unwrap(),
    )
}

/// A message's bytes.
pub fn encode<M: WireMessage>(message: &M) -> Vec<u8> {
    let mut bytes = vec![0u8; M::SIZE];
    message.encode(&mut bytes).unwrap();
    bytes
}

/// The VMBus-handle target of `vm`.
pub fn vm_target(vm: &SimVm) -> Target {
    Target::VmbusHandle(std::num::NonZeroU64::new(vm.user_handle).unwrap())
}
