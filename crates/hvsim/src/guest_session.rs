//! One session of the driver's real control device on a simulated VM whose guest has opened
//! the session's channel: the bench the guest-protocol tests, the `replay` tool and the
//! `guest_packets` fuzz target share.
//!
//! The device host (a simulated process holding the VM's VMBus handle: the same ASSUMPTION as
//! the control tests, recorded in [`Sim::assumptions`]) opens `\\.\vmbmmio` and a session; the
//! guest (a running Windows-like VM) receives the offer and opens the channel. From then on
//! [`GuestSession::send`] delivers a guest packet through KMCL's model to the driver's real
//! packet handler, and the IOCTL helpers play the device host.

use kmcl::raw::NTSTATUS;
use vmbmmio_core::control::{
    Caller, ControlDevice, FileKey, Handled, OfferSettings, Opener, RequestorMode,
};
use vmbmmio_core::guest_events::{GuestEvents, Wake};
use vmbmmio_core::sections::SectionQuotas;
use vmbmmio_proto::ioctl::{
    BarRegion, IoctlCode, MappingState, NamedRegionRequest, OpenSessionRequest,
    OpenSessionV2Request, QueryStatusRequest, RegionRequest, ReportMappingRequest, SessionOpened,
    SessionStatus, Target, WaitGuestEventRequest, WireGuid, WireMessage, parse_open_session_reply,
    parse_query_status_reply,
};

use crate::kmcl::{ChannelId, GuestError, GuestKind, GuestVm, PacketOutcome, Power, Sim, SimGuest};
use crate::memory::ProcessId;
use crate::platform::{SimEventLock, SimPlatform};
use crate::sections::{SYSTEM_PROCESS, SimKernel};

/// Interface type GUID of the session's channel.
pub const INTERFACE_TYPE: WireGuid = WireGuid::from_u128(0x3c1d_77a0_52e4_4b8e_9d21_6f0a_b5c3_0002);
/// Interface instance GUID of the session's channel (what the pairing capability carries, and
/// what a guest's `REPORT_DEVICE` must name).
pub const INTERFACE_INSTANCE: WireGuid =
    WireGuid::from_u128(0x3c1d_77a0_52e4_4b8e_9d21_6f0a_b5c3_2002);
/// The file handle the device host opens.
const FILE: FileKey = FileKey(1);

/// The session's guest-event queue on the simulated platform.
pub type SimGuestEvents = GuestEvents<SimEventLock>;

/// A control device with one open session whose channel the guest has opened.
pub struct GuestSession {
    /// The simulated host.
    pub sim: Sim,
    /// The object manager.
    pub kernel: SimKernel,
    /// The driver's control device.
    pub control: ControlDevice<SimPlatform>,
    /// The device host's file handle.
    pub caller: Caller,
    /// The guest's VMBus driver.
    pub guest: SimGuest,
    /// The session's channel.
    pub channel: ChannelId,
    /// The OPEN_SESSION reply (`None` only while opening).
    opened: Option<SessionOpened>,
    device_host: ProcessId,
}

impl GuestSession {
    /// A session with guest-writable regions of `sizes`, its channel open in a running guest.
    pub fn open(sizes: &[u64]) -> Result<Self, String> {
        Self::open_with(|target| {
            let regions: Vec<RegionRequest> = sizes
                .iter()
                .map(|&size| RegionRequest {
                    size,
                    guest_writable: true,
                })
                .collect();
            OpenSessionRequest::build(target, INTERFACE_TYPE, INTERFACE_INSTANCE, &regions)
                .map(|request| encode(&request))
                .map_err(|error| format!("OPEN_SESSION: {error:?}"))
        })
    }

    /// A version-2 session (named regions, visible to host consumers as VM `vm_id`), its
    /// channel open in a running guest.
    pub fn open_named(vm_id: WireGuid, regions: &[NamedRegionRequest]) -> Result<Self, String> {
        Self::open_with(|target| {
            OpenSessionV2Request::build(target, INTERFACE_TYPE, INTERFACE_INSTANCE, vm_id, regions)
                .map(|request| encode(&request))
                .map_err(|error| format!("OPEN_SESSION v2: {error:?}"))
        })
    }

    /// The bench with the OPEN_SESSION request `request` builds for the VM's target.
    fn open_with(request: impl FnOnce(Target) -> Result<Vec<u8>, String>) -> Result<Self, String> {
        let sim = Sim::new();
        let kernel = SimKernel::new();
        let mut control = ControlDevice::new(
            sim.parent_device(),
            kernel.clone(),
            kernel.clone(),
            kernel.clock(),
            SectionQuotas::default(),
            OfferSettings::default(),
        );
        let device_host = kernel.spawn_process();
        let vm_guest = GuestVm::with_default_pool(GuestKind::Windows);
        vm_guest.set_power(Power::Running);
        let (vm, _) = sim.add_vm_assuming_vmbus_handle_in(vm_guest, device_host);
        kernel.set_current_process(device_host);
        let opener = Opener::admit(FILE, RequestorMode::UserMode, || {
            kernel.reference_current_process()
        })
        .map_err(|error| format!("file create: {error:?}"))?;
        kernel.set_current_process(SYSTEM_PROCESS);
        let caller = opener.caller();
        control
            .file_create(opener)
            .map_err(|error| format!("file create: {error:?}"))?;
        let guest = sim.guest(vm.id);
        let mut session = Self {
            sim,
            kernel,
            control,
            caller,
            guest,
            channel: ChannelId(0),
            opened: None,
            device_host,
        };
        let target = Target::VmbusHandle(
            std::num::NonZeroU64::new(vm.user_handle).ok_or("a VMBus handle of 0")?,
        );
        let request = request(target)?;
        let reply = session
            .ioctl(
                IoctlCode::OpenSession.code(),
                &request,
                IoctlCode::OpenSession.reply_size(),
            )
            .map_err(|status| format!("OPEN_SESSION failed: {status:#x}"))?;
        session.opened =
            Some(parse_open_session_reply(&reply).map_err(|error| format!("{error:?}"))?);
        let offer = session.guest.only_offer().ok_or("the guest got no offer")?;
        session.channel = offer.channel;
        session
            .guest
            .open(offer.channel)
            .map_err(|error| format!("the guest could not open the channel: {error:?}"))?;
        Ok(session)
    }

    /// The session's BAR size.
    pub fn bar_size(&self) -> u64 {
        self.opened.as_ref().map_or(0, SessionOpened::bar_size)
    }

    /// The regions' places in the BAR, as the OPEN_SESSION reply gave them.
    pub fn bar_regions(&self) -> &[BarRegion] {
        self.opened.as_ref().map_or(&[], SessionOpened::regions)
    }

    /// The guest sends `bytes` as one packet on the channel.
    pub fn send(&self, bytes: &[u8]) -> Result<PacketOutcome, GuestError> {
        self.guest.send(self.channel, bytes)
    }

    /// The completion of a packet that was pending when [`GuestSession::send`] returned.
    pub fn completion(&self, token: u64) -> Option<Vec<u8>> {
        self.guest.completion(token)
    }

    /// The session's guest-event queue (and, through it, the engine's state).
    pub fn events(&self) -> SimGuestEvents {
        self.control
            .guest_events(self.caller.file())
            .expect("the session is open")
    }

    /// The wakes the channel's callbacks handed the platform since the last call.
    pub fn take_wakes(&self) -> Vec<Wake> {
        self.control
            .guest_events(self.caller.file())
            .map(|events| events.shared().take_wakes())
            .unwrap_or_default()
    }

    /// One IOCTL of the device host, in its process context.
    pub fn ioctl(
        &mut self,
        code: u32,
        input: &[u8],
        output_len: usize,
    ) -> Result<Vec<u8>, NTSTATUS> {
        let mut output = vec![0u8; output_len];
        match self.handle(code, input, &mut output)? {
            Handled::Done(written) => {
                output.truncate(written);
                Ok(output)
            }
            Handled::Pending(pending) => {
                pending.cancel();
                Err(kmcl::raw::STATUS_CANCELLED)
            }
        }
    }

    /// One IOCTL through `ControlDevice::handle`: a WAIT_GUEST_EVENT may come back pending.
    pub fn handle(
        &mut self,
        code: u32,
        input: &[u8],
        output: &mut [u8],
    ) -> Result<Handled<SimPlatform>, NTSTATUS> {
        let process = self.device_host;
        self.kernel.set_current_process(process);
        let control = &mut self.control;
        let caller = self.caller;
        let result = self
            .sim
            .in_process(process, || control.handle(caller, code, input, output));
        self.kernel.set_current_process(SYSTEM_PROCESS);
        result.map_err(|error| error.to_ntstatus())
    }

    /// REPORT_MAPPING of region `index`.
    pub fn report_mapping(&mut self, index: u32, state: MappingState) -> Result<(), NTSTATUS> {
        let request = ReportMappingRequest::build(index, state, 0)
            .map_err(|_| kmcl::raw::STATUS_INVALID_PARAMETER)?;
        self.ioctl(
            IoctlCode::ReportMapping.code(),
            &encode(&request),
            IoctlCode::ReportMapping.reply_size(),
        )
        .map(drop)
    }

    /// WAIT_GUEST_EVENT(`last_seen`): completed at once, or pending.
    pub fn wait_guest_event(
        &mut self,
        last_seen: u64,
        output: &mut [u8],
    ) -> Result<Handled<SimPlatform>, NTSTATUS> {
        let input = encode(&WaitGuestEventRequest::new(last_seen));
        self.handle(IoctlCode::WaitGuestEvent.code(), &input, output)
    }

    /// QUERY_STATUS.
    pub fn status(&mut self) -> Result<SessionStatus, NTSTATUS> {
        let reply = self.ioctl(
            IoctlCode::QueryStatus.code(),
            &encode(&QueryStatusRequest::new()),
            IoctlCode::QueryStatus.reply_size(),
        )?;
        parse_query_status_reply(&reply).map_err(|_| kmcl::raw::STATUS_INVALID_PARAMETER)
    }

    /// The device host exits: its file is cleaned up (the session's channel closes first), then
    /// its process goes. Returns what is left over, as text (empty when everything balanced:
    /// the section ledger, the object manager, the KMCL model's counters and rules).
    pub fn close(mut self) -> String {
        self.control.file_cleanup(self.caller.file());
        self.kernel.exit_process(self.device_host);
        let mut left = Vec::new();
        if self.control.live_sessions() != 0 {
            left.push(format!("{} live sessions", self.control.live_sessions()));
        }
        let ledger = self.control.section_counters();
        if !ledger.all_released() {
            left.push(format!("section ledger {ledger:?}"));
        }
        left.extend(platform_leftovers(&self.sim, &self.kernel));
        left.join("; ")
    }
}

/// What the object-manager and KMCL models still hold or saw broken (their rule violations are
/// taken), one line each; empty when everything balanced.
pub fn platform_leftovers(sim: &Sim, kernel: &SimKernel) -> Vec<String> {
    let mut left = Vec::new();
    let objects = kernel.counters();
    if !objects.all_released() {
        left.push(format!("object manager {objects:?}"));
    }
    let violations = sim.take_violations();
    if !violations.is_empty() {
        left.push(format!("KMCL rules broken: {violations:?}"));
    }
    let counters = sim.counters();
    if !counters.balanced() {
        left.push(format!("KMCL model {counters:?}"));
    }
    left
}

/// A message's bytes.
fn encode<M: WireMessage>(message: &M) -> Vec<u8> {
    let mut bytes = vec![0u8; M::SIZE];
    // A fixed-size message always fits its own size.
    let _ = message.encode(&mut bytes);
    bytes
}
