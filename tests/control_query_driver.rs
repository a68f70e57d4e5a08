//! QUERY_DRIVER against the driver's real control device (issue 8: "a missing optional KMCL
//! entry leaves a working driver that reports it"; docs/ioctl.md).
//!
//! The same control device runs on two simulated platforms: [`SimPlatform`], whose KMCL table
//! has every entry, and [`SimPlatformWithoutMmioSpace`], whose table lacks the optional
//! `VmbChannelGetMmioSpace`. On the second one the reply names exactly that entry, and a whole
//! session still opens, offers its channel, hands out its sections and carries guest packets.
//! The device host's client (`ProtoDriverClient`) reads the same reply through the bytes.

mod control_support;

use control_support::{Bench, SimulatedPlatform, encode, open_session_bytes, vm_target};
use hvsim::kmcl::{LogEntry, PacketOutcome, SimVm};
use hvsim::memory::{ProcessId, SectionAccess as Rights, SectionResolver};
use hvsim::platform::{SimPlatform, SimPlatformWithoutMmioSpace};
use kmcl::raw::{
    NTSTATUS, STATUS_ACCESS_DENIED, STATUS_BUFFER_TOO_SMALL, STATUS_INVALID_BUFFER_SIZE,
    STATUS_INVALID_DEVICE_REQUEST, STATUS_INVALID_PARAMETER,
};
use kmcl::{EntrySet, KmclFunction};
use vmbmmio_core::control::{Caller, FileKey, RequestorMode};
use vmbmmio_devhost::driver::{DriverClient, SectionAccess as HostAccess, SessionRequest};
use vmbmmio_devhost::driver_ioctl::{DriverSessionSettings, DriverTarget};
use vmbmmio_devhost::guid::Guid;
use vmbmmio_devhost::{IoctlFailure, IoctlTransport, ProtoDriverClient};
use vmbmmio_proto::ioctl::{
    DriverFacts, IoctlCode, MappingState, QueryDriverRequest, QueryStatusRequest, SessionState,
    parse_open_session_reply, parse_query_driver_reply, parse_query_status_reply,
};

const SIZES: [u64; 2] = [4096, 3 * 4096];

/// The shared bench on platform `X`, plus this file's helpers.
struct Driver<X: SimulatedPlatform> {
    bench: Bench<X>,
}

impl<X: SimulatedPlatform> std::ops::Deref for Driver<X> {
    type Target = Bench<X>;
    fn deref(&self) -> &Bench<X> {
        &self.bench
    }
}

impl<X: SimulatedPlatform> std::ops::DerefMut for Driver<X> {
    fn deref_mut(&mut self) -> &mut Bench<X> {
        &mut self.bench
    }
}

impl<X: SimulatedPlatform> Driver<X> {
    fn new() -> Self {
        Self {
            bench: Bench::on_platform(),
        }
    }

    /// One IOCTL from `caller` in the glue's order: precheck, then dispatch.
    fn ioctl(
        &mut self,
        caller: Caller,
        code: u32,
        input: &[u8],
        output_len: usize,
    ) -> Result<Vec<u8>, NTSTATUS> {
        self.bench.ioctl_prechecked(caller, code, input, output_len)
    }

    fn query_driver(&mut self, caller: Caller) -> Result<DriverFacts, NTSTATUS> {
        let reply = self.ioctl(
            caller,
            IoctlCode::QueryDriver.code(),
            &encode(&QueryDriverRequest::new()),
            IoctlCode::QueryDriver.reply_size(),
        )?;
        Ok(parse_query_driver_reply(&reply).unwrap())
    }

    fn session_state(&mut self, caller: Caller) -> SessionState {
        let reply = self
            .ioctl(
                caller,
                IoctlCode::QueryStatus.code(),
                &encode(&QueryStatusRequest::new()),
                IoctlCode::QueryStatus.reply_size(),
            )
            .unwrap();
        parse_query_status_reply(&reply).unwrap().state
    }

    fn get_mmio_space_calls(&self) -> usize {
        self.sim
            .log()
            .iter()
            .filter(|entry| {
                matches!(entry, LogEntry::Call(call)
                    if call.function == KmclFunction::VmbChannelGetMmioSpace)
            })
            .count()
    }

    /// A whole session on `caller`'s file: offer, sections mapped in the device host, the guest
    /// opens the channel and sends packets; then everything is released.
    fn run_a_session(&mut self, devhost: ProcessId, vm: &SimVm, caller: Caller) {
        let reply = self
            .ioctl(
                caller,
                IoctlCode::OpenSession.code(),
                &open_session_bytes(vm_target(vm), &SIZES),
                IoctlCode::OpenSession.reply_size(),
            )
            .unwrap();
        let opened = parse_open_session_reply(&reply).unwrap();
        assert_eq!(opened.regions().len(), SIZES.len());
        let offer = self.sim.guest(vm.id).only_offer().unwrap();
        assert_eq!(offer.mmio_megabytes, opened.mmio_megabytes());
        assert_eq!(self.session_state(caller), SessionState::Offered);

        for index in 0..SIZES.len() as u32 {
            let request = vmbmmio_proto::ioctl::GetRegionSectionRequest::build(
                index,
                vmbmmio_proto::ioctl::SectionAccess::ReadWrite,
            )
            .unwrap();
            let reply = self
                .ioctl(
                    caller,
                    IoctlCode::GetRegionSection.code(),
                    &encode(&request),
                    IoctlCode::GetRegionSection.reply_size(),
                )
                .unwrap();
            let section = vmbmmio_proto::ioctl::parse_get_region_section_reply(&reply).unwrap();
            let memory = self
                .kernel
                .resolve(devhost, section.section_handle(), Rights::READ_WRITE)
                .unwrap();
            assert_eq!(memory.size(), section.size());
            let report = vmbmmio_proto::ioctl::ReportMappingRequest::build(
                index,
                MappingState::SectionBacked,
                0,
            )
            .unwrap();
            self.ioctl(
                caller,
                IoctlCode::ReportMapping.code(),
                &encode(&report),
                IoctlCode::ReportMapping.reply_size(),
            )
            .unwrap();
        }

        let guest = self.sim.guest(vm.id);
        guest.open(offer.channel).unwrap();
        assert_eq!(self.session_state(caller), SessionState::Open);
        for _ in 0..3 {
            assert!(matches!(
                guest.send(offer.channel, b"ping").unwrap(),
                PacketOutcome::Completed(_)
            ));
        }
        let reply = self
            .ioctl(
                caller,
                IoctlCode::QueryStatus.code(),
                &encode(&QueryStatusRequest::new()),
                IoctlCode::QueryStatus.reply_size(),
            )
            .unwrap();
        let status = parse_query_status_reply(&reply).unwrap();
        // Every packet reached the driver and was completed (b"ping" is no protocol message:
        // the engine answers each with an ERROR reply).
        assert_eq!(status.counters.guest_packets, 3);
        assert_eq!(status.counters.regions_mapped, SIZES.len() as u64);
    }

    fn close_session(&mut self, caller: Caller) {
        self.ioctl(
            caller,
            IoctlCode::CloseSession.code(),
            &encode(&vmbmmio_proto::ioctl::CloseSessionRequest::new()),
            IoctlCode::CloseSession.reply_size(),
        )
        .unwrap();
    }

    fn assert_nothing_left(&self) {
        assert_eq!(self.control.live_sessions(), 0);
        assert!(self.control.section_counters().all_released());
        assert_eq!(self.kernel.live_sections(), 0);
        assert!(self.kernel.counters().all_released());
        self.sim.assert_clean();
    }
}

/// Bit of `function` in the reply's `kmcl_missing_optional`.
fn bit(function: KmclFunction) -> u32 {
    let index = KmclFunction::ALL
        .iter()
        .position(|&f| f == function)
        .unwrap();
    1 << index
}

#[test]
fn with_the_full_table_nothing_is_missing() {
    let mut driver = Driver::<SimPlatform>::new();
    let devhost = driver.kernel.spawn_process();
    let caller = driver.open_file(devhost, 1);
    // No session on the file: QUERY_DRIVER needs none.
    let facts = driver.query_driver(caller).unwrap();
    assert_eq!(facts.kmcl_entries(), 27);
    assert_eq!(facts.kmcl_entries() as usize, KmclFunction::ALL.len());
    assert_eq!(facts.kmcl_missing_optional(), 0);
    assert_eq!((facts.open_files(), facts.live_sessions()), (1, 0));
    assert_eq!(driver.control.driver_facts().unwrap(), facts);
    // It changes nothing: QUERY_STATUS still says "no session" with no protocol error.
    assert_eq!(driver.session_state(caller), SessionState::NoSession);
    driver.control.file_cleanup(caller.file());
    driver.assert_nothing_left();
}

#[test]
fn a_missing_optional_entry_is_reported_and_the_driver_still_works() {
    let mut driver = Driver::<SimPlatformWithoutMmioSpace>::new();
    let (devhost, vm) = driver.device_host_with_vm();
    let caller = driver.open_file(devhost, 1);

    let facts = driver.query_driver(caller).unwrap();
    assert_eq!(facts.kmcl_entries(), 27);
    assert_eq!(
        facts.kmcl_missing_optional(),
        bit(KmclFunction::VmbChannelGetMmioSpace)
    );
    assert_eq!(facts.kmcl_missing_optional(), 1 << 26);
    let missing = EntrySet::from_bits(facts.kmcl_missing_optional());
    assert_eq!(
        missing.iter().collect::<Vec<_>>(),
        [KmclFunction::VmbChannelGetMmioSpace]
    );
    assert_eq!(missing.to_string(), "VmbChannelGetMmioSpace");

    // A working driver: a whole session runs without the entry, which is never called.
    driver.run_a_session(devhost, &vm, caller);
    assert_eq!(driver.get_mmio_space_calls(), 0);
    let facts = driver.query_driver(caller).unwrap();
    assert_eq!((facts.open_files(), facts.live_sessions()), (1, 1));
    assert_eq!(facts.kmcl_missing_optional(), 1 << 26);

    driver.close_session(caller);
    assert_eq!(driver.query_driver(caller).unwrap().live_sessions(), 0);
    driver.kernel.exit_process(devhost);
    driver.control.file_cleanup(caller.file());
    driver.assert_nothing_left();
}

#[test]
fn the_full_table_runs_the_same_session_and_calls_the_entry() {
    // The counterpart of the test above: the same session on the full table, where the driver
    // does ask for the MMIO space after Opened. So the difference is exactly the missing entry.
    let mut driver = Driver::<SimPlatform>::new();
    let (devhost, vm) = driver.device_host_with_vm();
    let caller = driver.open_file(devhost, 1);
    driver.run_a_session(devhost, &vm, caller);
    assert!(driver.get_mmio_space_calls() >= 1);
    assert_eq!(
        driver.query_driver(caller).unwrap().kmcl_missing_optional(),
        0
    );
    driver.close_session(caller);
    driver.kernel.exit_process(devhost);
    driver.control.file_cleanup(caller.file());
    driver.assert_nothing_left();
}

#[test]
fn open_files_and_sessions_are_counted() {
    let mut driver = Driver::<SimPlatform>::new();
    let (first, vm) = driver.device_host_with_vm();
    let second = driver.kernel.spawn_process();
    let a = driver.open_file(first, 1);
    let b = driver.open_file(second, 2);
    let c = driver.open_file(second, 3);
    let counts = |facts: DriverFacts| (facts.open_files(), facts.live_sessions());
    assert_eq!(counts(driver.query_driver(a).unwrap()), (3, 0));

    let reply = driver
        .ioctl(
            a,
            IoctlCode::OpenSession.code(),
            &open_session_bytes(vm_target(&vm), &SIZES),
            IoctlCode::OpenSession.reply_size(),
        )
        .unwrap();
    parse_open_session_reply(&reply).unwrap();
    // Every file sees the same driver-wide numbers.
    for caller in [a, b, c] {
        assert_eq!(counts(driver.query_driver(caller).unwrap()), (3, 1));
    }
    let loopback = driver
        .ioctl(
            b,
            IoctlCode::OpenSession.code(),
            &open_session_bytes(vmbmmio_proto::ioctl::Target::Loopback, &[4096]),
            IoctlCode::OpenSession.reply_size(),
        )
        .unwrap();
    parse_open_session_reply(&loopback).unwrap();
    assert_eq!(counts(driver.query_driver(c).unwrap()), (3, 2));

    driver.close_session(a);
    assert_eq!(counts(driver.query_driver(c).unwrap()), (3, 1));
    driver.control.file_cleanup(b.file());
    assert_eq!(counts(driver.query_driver(c).unwrap()), (2, 0));
    driver.control.file_cleanup(a.file());
    assert_eq!(counts(driver.query_driver(c).unwrap()), (1, 0));
    driver.control.file_cleanup(c.file());
    driver.assert_nothing_left();
}

#[test]
fn query_driver_is_admitted_like_query_status_and_checks_its_buffers() {
    let mut driver = Driver::<SimPlatform>::new();
    let devhost = driver.kernel.spawn_process();
    let caller = driver.open_file(devhost, 1);
    let request = encode(&QueryDriverRequest::new());
    let code = IoctlCode::QueryDriver.code();

    // Another process using the opener's file handle is refused, as for every request.
    let other = driver.kernel.spawn_process();
    let intruder = Caller::admit(
        caller.file(),
        driver.kernel.process_key(other).unwrap(),
        RequestorMode::UserMode,
    )
    .unwrap();
    assert_eq!(
        driver.ioctl(intruder, code, &request, 64),
        Err(STATUS_ACCESS_DENIED)
    );
    // A file the control device does not know.
    let stranger = Caller::admit(
        FileKey(99),
        driver.kernel.process_key(devhost).unwrap(),
        RequestorMode::UserMode,
    )
    .unwrap();
    assert_eq!(
        driver.ioctl(stranger, code, &request, 64),
        Err(STATUS_INVALID_DEVICE_REQUEST)
    );
    // Buffers: output too small, input too long, wrong message.
    assert_eq!(
        driver.ioctl(caller, code, &request, 63),
        Err(STATUS_BUFFER_TOO_SMALL)
    );
    let mut long = request.clone();
    long.push(0);
    assert_eq!(
        driver.ioctl(caller, code, &long, 64),
        Err(STATUS_INVALID_BUFFER_SIZE)
    );
    assert_eq!(
        driver.ioctl(caller, code, &encode(&QueryStatusRequest::new()), 64),
        Err(STATUS_INVALID_PARAMETER)
    );
    // A longer output buffer is fine; the reply is 64 bytes.
    assert_eq!(driver.ioctl(caller, code, &request, 200).unwrap().len(), 64);
    // The opener's rejected requests count as its protocol errors, as for every request.
    let reply = driver
        .ioctl(
            caller,
            IoctlCode::QueryStatus.code(),
            &encode(&QueryStatusRequest::new()),
            IoctlCode::QueryStatus.reply_size(),
        )
        .unwrap();
    assert_eq!(
        parse_query_status_reply(&reply)
            .unwrap()
            .counters
            .protocol_errors,
        3
    );
    driver.control.file_cleanup(caller.file());
    driver.assert_nothing_left();
}

// ---- the device host's client against the simulated driver ----------------------------------

/// The device host's `DeviceIoControl`, delivered in-process to the control device on platform
/// `X` (the glue's order: precheck, then dispatch), like hvsim's demo transport.
struct InProcess<'a, X: SimulatedPlatform> {
    driver: &'a mut Driver<X>,
    caller: Caller,
}

impl<X: SimulatedPlatform> IoctlTransport for InProcess<'_, X> {
    fn ioctl(&mut self, code: u32, input: &[u8], output: &mut [u8]) -> Result<usize, IoctlFailure> {
        let reply = self
            .driver
            .ioctl(self.caller, code, input, output.len())
            .map_err(IoctlFailure::NtStatus)?;
        output[..reply.len()].copy_from_slice(&reply);
        Ok(reply.len())
    }

    fn close_handle(&mut self, handle: u64) {
        let process = self.driver.kernel.process_id_of(self.caller.process());
        let _ = self.driver.kernel.close_handle(process.unwrap(), handle);
    }
}

#[test]
fn the_device_host_client_reads_the_missing_entry_and_still_opens_its_session() {
    let mut driver = Driver::<SimPlatformWithoutMmioSpace>::new();
    let (devhost, vm) = driver.device_host_with_vm();
    let caller = driver.open_file(devhost, 1);
    let transport = InProcess {
        driver: &mut driver,
        caller,
    };
    let settings = DriverSessionSettings::new(DriverTarget::VmbusHandle(vm.user_handle));
    let mut client = ProtoDriverClient::new(transport, settings);

    let facts = client.query_driver().unwrap();
    assert_eq!(
        EntrySet::from_bits(facts.kmcl_missing_optional()).to_string(),
        "VmbChannelGetMmioSpace"
    );
    assert_eq!((facts.open_files(), facts.live_sessions()), (1, 0));
    // The device host's start-up line.
    assert_eq!(
        vmbmmio_devhost::sequence::Event::DriverFacts(facts).to_string(),
        "driver: KMCL entries unavailable: VmbChannelGetMmioSpace (1 file handle(s) open, 0 \
         session(s))"
    );

    let info = client
        .open_session(&SessionRequest::with_default_names(
            Guid::from_u128(0x62cdfa57_7648_44f3_b164_98e2da991ec5),
            &SIZES,
        ))
        .unwrap();
    for index in 0..SIZES.len() as u32 {
        client
            .region_section(info.session, index, HostAccess::ReadWrite)
            .unwrap();
    }
    assert_eq!(client.query_driver().unwrap().live_sessions(), 1);
    client.close_session(info.session).unwrap();
    // The client's borrow of the driver ends here; the device host exits.
    driver.kernel.exit_process(devhost);
    driver.control.file_cleanup(caller.file());
    driver.assert_nothing_left();
}

#[test]
fn the_device_host_asks_at_start_in_the_demo() {
    // The whole device-host sequence against the simulated driver (hvsim's demo, full KMCL
    // table): QUERY_DRIVER is asked at start and logged before the session opens.
    let mut out = Vec::new();
    let report = hvsim::demo::run(
        &hvsim::demo::DemoOptions {
            region_sizes: vec![4096],
            ..Default::default()
        },
        &mut out,
    )
    .unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(report.passed(), "{report:?}\n{text}");
    let facts = text.find("DriverFacts(").expect(&text);
    let session = text.find("SessionOpened").expect(&text);
    assert!(facts < session, "{text}");
    assert!(
        text.contains(
            "kmcl_entries: 27, kmcl_missing_optional: 0, open_files: 1, live_sessions: 0"
        ),
        "{text}"
    );
}

#[test]
fn the_documented_bit_order_is_the_drivers_table() {
    // docs/ioctl.md's QUERY_DRIVER table: `| bit | `name` | Required/Optional | why |`.
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/ioctl.md")).unwrap();
    let rows: Vec<(usize, String, String)> = doc
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let bit = cells.get(1)?.parse().ok()?;
            let name = cells.get(2)?.strip_prefix('`')?.strip_suffix('`')?;
            let policy = *cells.get(3)?;
            Some((bit, name.to_string(), policy.to_string()))
        })
        .collect();
    let expected: Vec<(usize, String, String)> = kmcl::resolve::ENTRIES
        .iter()
        .enumerate()
        .map(|(bit, spec)| {
            assert_eq!(KmclFunction::ALL[bit], spec.function);
            let policy = match spec.policy {
                kmcl::resolve::EntryPolicy::Required => "Required",
                kmcl::resolve::EntryPolicy::Optional => "Optional",
            };
            (bit, spec.name.to_string(), policy.to_string())
        })
        .collect();
    assert_eq!(rows, expected);
    // Every optional entry's bit is what `missing_optional` reports for a table without it;
    // a table without every optional entry reports exactly the optional rows.
    let optional: u32 = expected
        .iter()
        .filter(|(_, _, policy)| policy == "Optional")
        .map(|(bit, _, _)| 1u32 << bit)
        .sum();
    let mut none = *<hvsim::kmcl::HvsimKmcl as kmcl::KmclProvider>::api();
    none.VmbChannelPause = None;
    none.VmbChannelInitSetFlags = None;
    none.VmbChannelPacketDeferToPassive = None;
    none.VmbChannelPacketFail = None;
    none.VmbPacketAllocate = None;
    none.VmbPacketFree = None;
    none.VmbPacketSetCompletionRoutine = None;
    none.VmbPacketSend = None;
    none.VmbChannelGetMmioSpace = None;
    assert_eq!(none.missing_optional().bits(), optional);
}
