//! Allocation failure at every allocation site of the driver (issue 10): a whole session life
//! through the driver's real control device, channel and guest-protocol engine on the
//! simulator, first unarmed to count the driver's allocations N, then N more times with the
//! n-th allocation failed (hvsim's fault-injecting global allocator, `hvsim::alloc_faults`).
//!
//! Every call the simulated platform or this harness makes into driver code runs in
//! `alloc_faults::driver_scope`; the simulator's own bookkeeping runs in its model scope. An
//! infallible allocation in the driver aborts this test process ("memory allocation of N bytes
//! failed"): set `HVSIM_ALLOC_FAULTS_TRACE=1` and run with `--nocapture` to see where.
//!
//! Each failure must surface as the clean error of the step it hit (an IOCTL or file create
//! failing with `STATUS_INSUFFICIENT_RESOURCES`), the harness then tears down what exists (file
//! cleanup, the device host's exit, unload), and nothing may be left: no session, an empty
//! section ledger, no section object, handle or process reference in the object manager, KMCL
//! counters balanced, no KMCL rule broken.

use std::collections::BTreeMap;
use std::num::NonZeroU64;

use hvsim::alloc_faults::{self, driver_scope};
use hvsim::guest_session::platform_leftovers;
use hvsim::kmcl::{ChannelId, GuestError, GuestKind, GuestVm, PacketOutcome, Power, Sim, SimGuest};
use hvsim::memory::ProcessId;
use hvsim::platform::SimPlatform;
use hvsim::sections::{SYSTEM_PROCESS, SimKernel};
use kmcl::raw::{NTSTATUS, STATUS_INSUFFICIENT_RESOURCES};
use vmbmmio_core::control::{
    Caller, ControlDevice, Delivered, FileKey, Handled, OfferSettings, Opener, PendingWait,
    RequestorMode,
};
use vmbmmio_core::sections::SectionQuotas;
use vmbmmio_proto::guest::{
    BarPlacement, ClientEvent, DeviceReport, EventKind, GuestClient, LARGEST_MESSAGE, Sent,
};
use vmbmmio_proto::ioctl::{
    CloseSessionRequest, GetRegionSectionRequest, GuestEventKind, IoctlCode, MappingState,
    OpenSessionRequest, QueryStatusRequest, RegionRequest, ReportMappingRequest, SectionAccess,
    Target, WaitGuestEventRequest, WireGuid, WireMessage, parse_get_region_section_reply,
    parse_open_session_reply, parse_query_status_reply, parse_wait_guest_event_reply,
};

const INTERFACE_TYPE: WireGuid = WireGuid::from_u128(0x3c1d_77a0_52e4_4b8e_9d21_6f0a_b5c3_0a11);
const INTERFACE_INSTANCE: WireGuid = WireGuid::from_u128(0x3c1d_77a0_52e4_4b8e_9d21_6f0a_b5c3_1a11);
const FILE: FileKey = FileKey(7);
/// Two regions: a 1 MiB BAR.
const SIZES: [u64; 2] = [512 << 10, 256 << 10];
const BAR: u64 = 1 << 20;
const BAR_BASE: u64 = 0xF800_0000;

/// How a step ended when it did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Failure {
    /// The IOCTL (or file create) failed with this status.
    Status(Status),
    /// The guest could not open the channel.
    Open(GuestError),
    /// The host answered a guest request with an error reply (its code).
    GuestReply(String),
    /// The host failed a guest packet (`VmbChannelPacketFail`).
    PacketFailed,
    /// Something else (always a test failure).
    Unexpected(String),
}

/// An NTSTATUS, shown in hex.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Status(NTSTATUS);

impl std::fmt::Debug for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#010x}", self.0)
    }
}

/// Whether `failure` is the clean error a step reports for an allocation that failed.
fn clean(failure: &Failure) -> bool {
    matches!(failure, Failure::Status(Status(status)) if *status == STATUS_INSUFFICIENT_RESOURCES)
        || matches!(
            failure,
            Failure::Open(GuestError::OpenRefused(status))
                if *status == STATUS_INSUFFICIENT_RESOURCES
        )
}

/// The first step that did not succeed, and what the armed failure did.
#[derive(Debug, Default)]
struct Outcome {
    /// `(step, failure)` of the first step that failed.
    failed: Option<(&'static str, Failure)>,
    /// The step during which the armed allocation was failed.
    injected_in: Option<&'static str>,
    /// Driver allocations per step (unarmed run).
    per_step: Vec<(&'static str, u64)>,
    /// How the retry of the failed step failed, if it did.
    retry_failed: Option<Failure>,
    /// Whether the life went on to CLOSE_SESSION.
    completed: bool,
}

/// One session life: the simulated host, the driver, the device host and the guest.
struct Life {
    sim: Sim,
    kernel: SimKernel,
    control: Option<ControlDevice<SimPlatform>>,
    device_host: ProcessId,
    /// The VM's VMBus handle in the device host (the simulator's ASSUMPTION).
    target_handle: u64,
    caller: Option<Caller>,
    guest: SimGuest,
    channel: Option<ChannelId>,
    client: GuestClient,
    pending: Option<PendingWait<SimPlatform>>,
    held_wait: Option<u64>,
    last_seen: u64,
    outcome: Outcome,
}

impl Life {
    fn new() -> Self {
        let sim = Sim::new();
        let kernel = SimKernel::new();
        let device_host = kernel.spawn_process();
        let vm_guest = GuestVm::with_default_pool(GuestKind::Windows);
        vm_guest.set_power(Power::Running);
        let (vm, _assumption) = sim.add_vm_assuming_vmbus_handle_in(vm_guest, device_host);
        let guest = sim.guest(vm.id);
        let mut life = Self {
            sim,
            kernel,
            control: None,
            device_host,
            target_handle: vm.user_handle,
            caller: None,
            guest,
            channel: None,
            client: GuestClient::new(),
            pending: None,
            held_wait: None,
            last_seen: 0,
            outcome: Outcome::default(),
        };
        let parent = life.sim.parent_device();
        let kernel = life.kernel.clone();
        // DriverEntry / EvtDriverDeviceAdd: the control device is made.
        life.control = Some(driver_scope(|| {
            ControlDevice::new(
                parent,
                kernel.clone(),
                kernel.clone(),
                kernel.clock(),
                SectionQuotas::default(),
                OfferSettings::default(),
            )
        }));
        life
    }

    fn control(&mut self) -> &mut ControlDevice<SimPlatform> {
        self.control.as_mut().expect("the driver is loaded")
    }

    fn caller(&self) -> Caller {
        self.caller.expect("the file is open")
    }

    /// Runs one step; records where the armed failure hit and the first failure.
    /// A step that fails cleanly because of the injected failure is tried once more (the
    /// device host retries its request, the guest reopens): the failure must have left the
    /// driver as it was, so the retry succeeds and the life goes on to its end.
    fn step(
        &mut self,
        name: &'static str,
        mut f: impl FnMut(&mut Self) -> Result<(), Failure>,
    ) -> Result<(), ()> {
        let injected = alloc_faults::injected();
        let allocations = alloc_faults::driver_allocations();
        let result = f(self);
        let hit = alloc_faults::injected() != injected;
        if hit {
            self.outcome.injected_in = Some(name);
        }
        self.outcome
            .per_step
            .push((name, alloc_faults::driver_allocations() - allocations));
        let Err(failure) = result else {
            return Ok(());
        };
        let retry = hit && clean(&failure);
        if self.outcome.failed.is_none() {
            self.outcome.failed = Some((name, failure));
        }
        if !retry {
            return Err(());
        }
        f(self).map_err(|again| {
            self.outcome.retry_failed = Some(again);
        })
    }

    /// One IOCTL from the device host in its process, in the glue's order (precheck with the
    /// code and lengths, then `handle`).
    fn ioctl(
        &mut self,
        code: u32,
        input: &[u8],
        output: &mut [u8],
    ) -> Result<Handled<SimPlatform>, Failure> {
        let caller = self.caller();
        let process = self.device_host;
        self.kernel.set_current_process(process);
        let control = self.control.as_mut().expect("loaded");
        let result = self.sim.in_process(process, || {
            driver_scope(|| {
                control.precheck(caller, code, input.len(), output.len())?;
                control.handle(caller, code, input, output)
            })
        });
        self.kernel.set_current_process(SYSTEM_PROCESS);
        result.map_err(|error| Failure::Status(Status(error.to_ntstatus())))
    }

    /// An IOCTL that completes at once: its reply bytes.
    fn ioctl_done(&mut self, code: IoctlCode, input: &[u8]) -> Result<Vec<u8>, Failure> {
        let mut output = vec![0u8; code.reply_size()];
        match self.ioctl(code.code(), input, &mut output)? {
            Handled::Done(written) => {
                output.truncate(written);
                Ok(output)
            }
            Handled::Pending(pending) => {
                driver_scope(|| pending.cancel());
                Err(Failure::Unexpected(format!("{code:?} pends")))
            }
        }
    }

    /// The guest sends one request built by its client library; the reply it got at once
    /// (`Ok(None)`: held by the host).
    fn guest_request(
        &mut self,
        build: impl FnOnce(&mut GuestClient, &mut [u8]) -> Sent,
    ) -> Result<Option<ClientEvent>, Failure> {
        let mut buf = [0u8; LARGEST_MESSAGE];
        let sent = build(&mut self.client, &mut buf);
        let channel = self.channel.expect("the guest opened the channel");
        // The guest's send is the model's; ProcessPacket runs in the driver scope inside it.
        match self.guest.send(channel, &buf[..sent.len]) {
            Ok(PacketOutcome::Completed(reply)) => match self.client.on_reply(&reply) {
                Ok(ClientEvent::Error(info)) => Err(Failure::GuestReply(format!("{info:?}"))),
                Ok(event) => Ok(Some(event)),
                Err(error) => Err(Failure::Unexpected(format!("bad reply: {error:?}"))),
            },
            Ok(PacketOutcome::Pending(token)) => {
                self.held_wait = Some(token);
                Ok(None)
            }
            Ok(PacketOutcome::Failed) => Err(Failure::PacketFailed),
            Err(error) => Err(Failure::Unexpected(format!("send: {error:?}"))),
        }
    }

    fn guest_now(
        &mut self,
        build: impl FnOnce(&mut GuestClient, &mut [u8]) -> Sent,
    ) -> Result<ClientEvent, Failure> {
        self.guest_request(build)?
            .ok_or_else(|| Failure::Unexpected("the request is held".into()))
    }

    /// The whole life up to CLOSE_SESSION; stops at the first failed step.
    fn live(&mut self) -> Result<(), ()> {
        self.step("file create", |life| {
            let process = life.device_host;
            life.kernel.set_current_process(process);
            let kernel = life.kernel.clone();
            let control = life.control.as_mut().expect("loaded");
            let result = driver_scope(|| {
                let opener = Opener::admit(FILE, RequestorMode::UserMode, || {
                    kernel.reference_current_process()
                })?;
                let caller = opener.caller();
                control.file_create(opener).map(|()| caller)
            });
            life.kernel.set_current_process(SYSTEM_PROCESS);
            life.caller =
                Some(result.map_err(|error| Failure::Status(Status(error.to_ntstatus())))?);
            Ok(())
        })?;

        self.step("OPEN_SESSION", |life| {
            let regions: Vec<RegionRequest> = SIZES
                .iter()
                .map(|&size| RegionRequest {
                    size,
                    guest_writable: true,
                })
                .collect();
            let target = Target::VmbusHandle(NonZeroU64::new(life.target_handle).unwrap());
            let request =
                OpenSessionRequest::build(target, INTERFACE_TYPE, INTERFACE_INSTANCE, &regions)
                    .unwrap();
            let reply = life.ioctl_done(IoctlCode::OpenSession, &encode(&request))?;
            let opened = parse_open_session_reply(&reply).unwrap();
            assert_eq!(opened.bar_size(), BAR);
            Ok(())
        })?;

        self.step("WAIT_GUEST_EVENT (pends)", |life| {
            let mut output = vec![0u8; IoctlCode::WaitGuestEvent.reply_size()];
            let input = encode(&WaitGuestEventRequest::new(0));
            match life.ioctl(IoctlCode::WaitGuestEvent.code(), &input, &mut output)? {
                Handled::Pending(pending) => {
                    // The glue parks it in its manual queue, then tells the queue.
                    let wake = driver_scope(|| pending.parked());
                    assert!(wake.is_none(), "nothing happened yet");
                    life.pending = Some(pending);
                    Ok(())
                }
                Handled::Done(_) => Err(Failure::Unexpected("completed at once".into())),
            }
        })?;

        self.step("guest opens the channel", |life| {
            let offer = life
                .guest
                .only_offer()
                .ok_or_else(|| Failure::Unexpected("no offer".into()))?;
            life.guest.open(offer.channel).map_err(Failure::Open)?;
            life.channel = Some(offer.channel);
            Ok(())
        })?;

        self.step("HELLO", |life| {
            life.guest_now(|c, b| c.hello(b).unwrap()).map(drop)
        })?;
        self.step("SELECT_VERSION", |life| {
            life.guest_now(|c, b| c.select_version(b).unwrap())
                .map(drop)
        })?;
        self.step("REPORT_RESERVATION", |life| {
            life.guest_now(|c, b| c.report_reservation(b, None).unwrap())
                .map(drop)
        })?;

        self.step("WAIT_GUEST_EVENT delivered", |life| {
            let pending = life.pending.clone().expect("pending");
            let mut output = vec![0u8; IoctlCode::WaitGuestEvent.reply_size()];
            match driver_scope(|| pending.deliver(&mut output)) {
                Delivered::Completed(written) => {
                    life.pending = None;
                    let event = parse_wait_guest_event_reply(&output[..written]).unwrap();
                    assert_eq!(event.kind(), GuestEventKind::GuestReport);
                    life.last_seen = event.sequence();
                    Ok(())
                }
                Delivered::Failed(error) => Err(Failure::Status(Status(error.to_ntstatus()))),
                Delivered::Requeue => Err(Failure::Unexpected("requeued".into())),
            }
        })?;

        self.step("REPORT_DEVICE", |life| {
            let device = DeviceReport {
                instance: INTERFACE_INSTANCE,
                segment: 0,
                bus: 0,
                devfn: 1 << 3,
                bar_index: 0,
                bar: BarPlacement {
                    base: BAR_BASE,
                    size: BAR,
                    memory_decode: true,
                },
            };
            life.guest_now(|c, b| c.report_device(b, &device).unwrap())
                .map(drop)
        })?;
        self.step("READY", |life| {
            life.guest_now(|c, b| c.ready(b).unwrap()).map(drop)
        })?;

        self.step("WAIT_GUEST_EVENT (at once)", |life| {
            let mut output = vec![0u8; IoctlCode::WaitGuestEvent.reply_size()];
            let input = encode(&WaitGuestEventRequest::new(life.last_seen));
            match life.ioctl(IoctlCode::WaitGuestEvent.code(), &input, &mut output)? {
                Handled::Done(written) => {
                    let event = parse_wait_guest_event_reply(&output[..written]).unwrap();
                    life.last_seen = event.sequence();
                    Ok(())
                }
                Handled::Pending(pending) => {
                    driver_scope(|| pending.cancel());
                    Err(Failure::Unexpected("pends".into()))
                }
            }
        })?;

        self.step("WAIT_EVENT (held)", |life| {
            match life.guest_request(|c, b| c.wait_event(b).unwrap())? {
                None => Ok(()),
                Some(event) => Err(Failure::Unexpected(format!("answered: {event:?}"))),
            }
        })?;

        for index in 0..SIZES.len() as u32 {
            self.step("GET_REGION_SECTION", |life| {
                let request =
                    GetRegionSectionRequest::build(index, SectionAccess::ReadWrite).unwrap();
                let reply = life.ioctl_done(IoctlCode::GetRegionSection, &encode(&request))?;
                let section = parse_get_region_section_reply(&reply).unwrap();
                assert_ne!(section.section_handle(), 0);
                Ok(())
            })?;
        }
        for index in 0..SIZES.len() as u32 {
            self.step("REPORT_MAPPING", |life| {
                let request =
                    ReportMappingRequest::build(index, MappingState::SectionBacked, 0).unwrap();
                life.ioctl_done(IoctlCode::ReportMapping, &encode(&request))
                    .map(drop)
            })?;
        }

        self.step("WAIT_EVENT completed", |life| {
            let token = life.held_wait.expect("held");
            let reply = life
                .guest
                .completion(token)
                .ok_or_else(|| Failure::Unexpected("still held".into()))?;
            life.held_wait = None;
            match life.client.on_reply(&reply) {
                Ok(ClientEvent::Event(event)) if event.kind == EventKind::RegionsMapped => Ok(()),
                other => Err(Failure::Unexpected(format!("{other:?}"))),
            }
        })?;

        self.step("GET_LAYOUT", |life| {
            life.guest_now(|c, b| c.get_layout(b).unwrap()).map(drop)
        })?;

        self.step("QUERY_STATUS", |life| {
            let reply =
                life.ioctl_done(IoctlCode::QueryStatus, &encode(&QueryStatusRequest::new()))?;
            let status = parse_query_status_reply(&reply).unwrap();
            assert_eq!(status.counters.regions_mapped, 2);
            Ok(())
        })?;

        self.step("CLOSE_SESSION", |life| {
            life.ioctl_done(
                IoctlCode::CloseSession,
                &encode(&CloseSessionRequest::new()),
            )
            .map(drop)
        })?;
        Ok(())
    }

    /// Whatever happened: the device host's pending request is cancelled, its file cleaned up,
    /// the process exits, the driver unloads. Returns what is left over.
    fn teardown(mut self) -> (Outcome, Vec<String>) {
        if let Some(pending) = self.pending.take() {
            driver_scope(|| pending.cancel());
        }
        if let Some(caller) = self.caller.take() {
            let control = self.control();
            driver_scope(|| control.file_cleanup(caller.file()));
        }
        self.kernel.exit_process(self.device_host);
        let mut control = self.control.take().expect("loaded");
        let mut left = Vec::new();
        driver_scope(|| control.shutdown());
        if control.live_sessions() != 0 {
            left.push(format!("{} live sessions", control.live_sessions()));
        }
        let ledger = control.section_counters();
        if !ledger.all_released() {
            left.push(format!("section ledger {ledger:?}"));
        }
        // Unload: the control device's state is freed.
        driver_scope(|| drop(control));
        if self.kernel.live_sections() != 0 {
            left.push(format!("{} live sections", self.kernel.live_sections()));
        }
        left.extend(platform_leftovers(&self.sim, &self.kernel));
        (self.outcome, left)
    }
}

/// A message's bytes.
fn encode<M: WireMessage>(message: &M) -> Vec<u8> {
    let mut bytes = vec![0u8; M::SIZE];
    message.encode(&mut bytes).unwrap();
    bytes
}

/// One life; with `arm` set, the `arm`-th driver allocation fails.
fn run(arm: Option<u64>) -> (Outcome, Vec<String>) {
    let mut life = Life::new();
    if let Some(n) = arm {
        alloc_faults::arm_nth(n);
    }
    life.outcome.completed = life.live().is_ok();
    alloc_faults::disarm();
    life.teardown()
}

#[test]
fn allocation_failure_at_every_allocation_site_leaves_nothing() {
    assert_eq!(alloc_faults::driver_entries_in_model_scope(), 0);
    let before = alloc_faults::driver_allocations();
    let (clean_run, left) = run(None);
    let total = alloc_faults::driver_allocations() - before;
    assert!(left.is_empty(), "unarmed run left {left:?}");
    assert_eq!(clean_run.failed, None, "the unarmed life succeeds");
    assert!(clean_run.completed);
    // The life from the control device's creation to CLOSE_SESSION; teardown and unload are
    // counted too (after `live`), so N covers them.
    eprintln!("driver allocations in one life: {total}");
    for (step, count) in &clean_run.per_step {
        if *count != 0 {
            eprintln!("  {step}: {count}");
        }
    }
    assert!(total > 0, "the driver allocates (the scopes are in place)");

    alloc_faults::record_sites(true);
    let mut sites: BTreeMap<String, Vec<(u64, &'static str, String)>> = BTreeMap::new();
    let mut problems = Vec::new();
    for n in 1..=total {
        let injected = alloc_faults::injected();
        let (outcome, left) = run(Some(n));
        if alloc_faults::injected() != injected + 1 {
            problems.push(format!("allocation {n} of {total} was not failed"));
        }
        let site = alloc_faults::take_sites()
            .pop()
            .map_or_else(|| "?".to_string(), |s| s.site);
        if !left.is_empty() {
            problems.push(format!("failing allocation {n} ({site}) left {left:?}"));
        }
        let step = outcome.injected_in.unwrap_or("teardown");
        let result = match &outcome.failed {
            None => "absorbed".to_string(),
            Some((failed_step, failure)) => {
                if Some(*failed_step) != outcome.injected_in {
                    problems.push(format!(
                        "allocation {n} ({site}): step {failed_step} failed with {failure:?}, \
                         but the failure was injected in {:?}",
                        outcome.injected_in
                    ));
                } else if !clean(failure) {
                    problems.push(format!(
                        "allocation {n} ({site}) in {failed_step}: not a clean error: {failure:?}"
                    ));
                } else if let Some(again) = &outcome.retry_failed {
                    problems.push(format!(
                        "allocation {n} ({site}) in {failed_step}: the retry failed: {again:?}"
                    ));
                } else if !outcome.completed {
                    problems.push(format!(
                        "allocation {n} ({site}) in {failed_step}: the life did not go on to \
                         CLOSE_SESSION after the retry"
                    ));
                }
                format!("{failure:?}, retried")
            }
        };
        sites.entry(site).or_default().push((n, step, result));
    }
    alloc_faults::record_sites(false);
    assert_eq!(alloc_faults::driver_entries_in_model_scope(), 0);

    eprintln!("allocation sites hit ({total} driver allocations):");
    for (site, hits) in &sites {
        eprintln!("  {site}");
        for (n, step, result) in hits {
            eprintln!("    #{n} in {step}: {result}");
        }
    }
    // Every failed allocation was the driver's own: the simulator's bookkeeping is in its model
    // scope (an hvsim site here would be a missing `model_scope`).
    const KERNEL_CRATES: [&str; 3] = [
        "crates/kmcl/src/",
        "crates/vmbmmio-core/src/",
        "crates/vmbmmio-proto/src/",
    ];
    for site in sites.keys() {
        assert!(
            KERNEL_CRATES.iter().any(|k| site.starts_with(k)),
            "allocation site outside the driver's kernel crates: {site}"
        );
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
