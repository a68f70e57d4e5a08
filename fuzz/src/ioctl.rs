//! The IOCTL parsers and the control device, as a stateful sequence.
//!
//! # What one input does
//! 1. Every parser of `vmbmmio_proto::ioctl` (requests and replies) reads the whole input, and
//!    each record's input buffer ([`parse_all`]).
//! 2. A fresh simulated host (the KMCL model, the object manager, one running Windows-like VM
//!    whose VMBus handle lives in the device-host process, as in `tests/control_support`) and the
//!    driver's real `ControlDevice` run the input as up to [`MAX_RECORDS`] records, in order.
//! 3. Everything is closed (every file handle cleaned up, both processes exit) and every counter
//!    must balance: the driver's section ledger (`SectionCounters::all_released`), the object
//!    manager's handles, views and sections, and the KMCL model's channels, packets and contexts,
//!    with no KMCL rule broken.
//!
//! # Record format (all integers little-endian; a short input reads as zeros)
//! `op: u8`, then by `op & 0x07`:
//! - `0..=5`, an IOCTL of `IoctlCode::ALL[op & 7]`; `6`, an IOCTL with a raw code (`code: u32`
//!   follows). Bits 3–4: file handle 0–3 (0–2 opened by the device host, 3 by another process);
//!   bit 5: sent by the *other* process; bit 6: **sized**: the input is exactly the code's
//!   request size and the output exactly its reply size (for a raw code, lengths still follow).
//!   Unsized: `input_len: u16`, `output_len: u16` (capped at [`MAX_BUFFER`]), then the input.
//! - `7`, an event: bits 3–5 pick it, bits 6–7 are its file handle:
//!   `0` file cleanup, `1` file create, `2` the guests open every offer, `3` they close every
//!   offer, `4` the VM's power (`power: u8`, mod 4: running, paused, stopped, crashed),
//!   `5` the guests send a packet on every offer (`len: u8`, then the bytes), `6` the file's
//!   process exits (its files are cleaned up first, as Windows does; the other process is then
//!   replaced by a new one), `7` the guests read what the host sent.
//!
//! [`Script`] writes records in this format (for the seed corpus and the tests).

use hvsim::kmcl::{ChannelId, GuestKind, GuestVm, Power, Rule, Sim, SimGuest, SimVm, Violation};
use hvsim::memory::ProcessId;
use hvsim::platform::SimPlatform;
use hvsim::sections::{SYSTEM_PROCESS, SimKernel};
use vmbmmio_core::control::{Caller, ControlDevice, FileKey, OfferSettings, Opener, RequestorMode};
use vmbmmio_core::sections::SectionQuotas;
use vmbmmio_proto::ioctl::{
    AttachRegionRequest, DetachRegionReply, DetachRegionRequest, ListSessionsRequest,
    OpenSessionV2Request, RingGuestReply, RingGuestRequest, SetDoorbellEventReply,
    SetDoorbellEventRequest, TakeDoorbellsRequest, parse_attach_region, parse_attach_region_reply,
    parse_detach_region, parse_detach_region_reply, parse_list_sessions, parse_list_sessions_reply,
    parse_open_session_any, parse_open_session_v2, parse_ring_guest, parse_ring_guest_reply,
    parse_set_doorbell_event, parse_set_doorbell_event_reply, parse_take_doorbells,
    parse_take_doorbells_reply,
};
use vmbmmio_proto::ioctl::{
    CloseSessionReply, CloseSessionRequest, IoctlCode, QueryDriverRequest, QueryStatusRequest,
    ReportMappingReply, WireMessage, parse_close_session, parse_close_session_reply,
    parse_get_region_section, parse_get_region_section_reply, parse_open_session,
    parse_open_session_reply, parse_query_driver, parse_query_driver_reply, parse_query_status,
    parse_query_status_reply, parse_report_mapping, parse_report_mapping_any,
    parse_report_mapping_reply, parse_report_mapping_v2, parse_wait_guest_event,
    parse_wait_guest_event_reply,
};

use crate::Reader;

/// Records run per input: enough for several sessions' whole lives, bounded so one input stays
/// fast.
pub const MAX_RECORDS: usize = 64;
/// Largest input or output buffer of one record (every message is a few hundred bytes).
pub const MAX_BUFFER: usize = 4096;
/// File handles the sequence can use.
pub const FILES: usize = 4;

const KIND_RAW: u8 = 6;
const KIND_EVENT: u8 = 7;
const FLAG_OTHER: u8 = 0x20;
const FLAG_SIZED: u8 = 0x40;

/// Runs one input: the parsers, then the sequence, then the final checks.
pub fn run(data: &[u8]) {
    run_recording(data);
}

/// [`run`], returning every reply the driver wrote, in order, with its IOCTL (for the tests
/// and the seed generator: they show what a sequence reached).
pub fn run_recording(data: &[u8]) -> Vec<(IoctlCode, Vec<u8>)> {
    parse_all(data);
    let mut bench = Bench::new();
    let mut reader = Reader::new(data);
    for _ in 0..MAX_RECORDS {
        if reader.is_empty() {
            break;
        }
        bench.step(&mut reader);
    }
    let replies = std::mem::take(&mut bench.replies);
    bench.close_everything_and_check();
    replies
}

/// Every IOCTL parser on `bytes`. A message a parser accepts must re-encode to the same bytes
/// (the parsers accept only canonical messages: exact length, reserved fields zero).
pub fn parse_all(bytes: &[u8]) {
    if let Ok(opened) = parse_open_session_reply(bytes) {
        same_bytes(&opened.to_reply(), bytes);
    }
    if let Ok(section) = parse_get_region_section_reply(bytes) {
        same_bytes(&section.to_reply(), bytes);
    }
    if let Ok(status) = parse_query_status_reply(bytes) {
        same_bytes(&status.to_reply(), bytes);
    }
    if let Ok(facts) = parse_query_driver_reply(bytes) {
        same_bytes(&facts.to_reply(), bytes);
    }
    if parse_report_mapping_reply(bytes).is_ok() {
        same_bytes(&ReportMappingReply::new(), bytes);
    }
    if parse_close_session_reply(bytes).is_ok() {
        same_bytes(&CloseSessionReply::new(), bytes);
    }
    if parse_query_status(bytes).is_ok() {
        same_bytes(&QueryStatusRequest::new(), bytes);
    }
    if parse_close_session(bytes).is_ok() {
        same_bytes(&CloseSessionRequest::new(), bytes);
    }
    if parse_query_driver(bytes).is_ok() {
        same_bytes(&QueryDriverRequest::new(), bytes);
    }
    // Requests whose parsed form is not a message: no panic is the oracle.
    let _ = parse_open_session(bytes);
    let _ = parse_get_region_section(bytes);
    let _ = parse_report_mapping(bytes);
    let _ = parse_report_mapping_v2(bytes);
    // The driver's parser for either version agrees with the version-specific ones.
    if let Ok(report) = parse_report_mapping_any(bytes) {
        assert!(
            parse_report_mapping(bytes).is_ok() || parse_report_mapping_v2(bytes).is_ok(),
            "parse_report_mapping_any accepted what neither version's parser accepts"
        );
        let _ = report;
    }
    let _ = parse_wait_guest_event(bytes);
    let _ = parse_wait_guest_event_reply(bytes);
    parse_all_consumer(bytes);
    for code in IoctlCode::ALL {
        let _ = code.check_input_len(bytes.len());
        let _ = code.check_output_len(bytes.len());
    }
}

/// Issue 14's parsers: OPEN_SESSION version 2 and the consumer requests and replies. Accepted
/// messages re-encode to their bytes where the parsed form rebuilds one.
fn parse_all_consumer(bytes: &[u8]) {
    if let Ok(params) = parse_open_session_v2(bytes) {
        assert_eq!(parse_open_session_any(bytes), Ok(params));
        let _ = OpenSessionV2Request::SIZE;
    }
    let _ = parse_open_session_any(bytes);
    if let Ok(cursor) = parse_list_sessions(bytes) {
        same_bytes(&ListSessionsRequest::build(cursor), bytes);
    }
    if let Ok(listing) = parse_list_sessions_reply(bytes) {
        same_bytes(&listing.to_reply(), bytes);
    }
    if let Ok(params) = parse_attach_region(bytes) {
        let request = AttachRegionRequest::build(params.vm_id, &params.name, params.access)
            .expect("an accepted request rebuilds");
        same_bytes(&request, bytes);
    }
    if let Ok(attached) = parse_attach_region_reply(bytes) {
        same_bytes(&attached.to_reply(), bytes);
    }
    if let Ok(id) = parse_detach_region(bytes) {
        same_bytes(&DetachRegionRequest::build(id), bytes);
    }
    if let Ok(id) = parse_detach_region_reply(bytes) {
        same_bytes(&DetachRegionReply::new(id), bytes);
    }
    if let Ok(params) = parse_set_doorbell_event(bytes) {
        same_bytes(
            &SetDoorbellEventRequest::build(params.attachment, params.event_handle),
            bytes,
        );
    }
    if let Ok(id) = parse_set_doorbell_event_reply(bytes) {
        same_bytes(&SetDoorbellEventReply::new(id), bytes);
    }
    if let Ok(id) = parse_take_doorbells(bytes) {
        same_bytes(&TakeDoorbellsRequest::build(id), bytes);
    }
    if let Ok(tally) = parse_take_doorbells_reply(bytes) {
        same_bytes(&tally.to_reply(), bytes);
    }
    if let Ok(params) = parse_ring_guest(bytes) {
        same_bytes(
            &RingGuestRequest::build(params.attachment, params.value),
            bytes,
        );
    }
    if let Ok(id) = parse_ring_guest_reply(bytes) {
        same_bytes(&RingGuestReply::new(id), bytes);
    }
}

fn same_bytes<M: WireMessage>(message: &M, bytes: &[u8]) {
    let mut encoded = vec![0u8; M::SIZE];
    let written = message
        .encode(&mut encoded)
        .expect("a message fits its own size");
    assert_eq!(written, M::SIZE);
    assert_eq!(
        Some(encoded.as_slice()),
        bytes.get(..M::SIZE),
        "an accepted {} does not re-encode to its bytes",
        std::any::type_name::<M>()
    );
}

/// A reply the driver wrote for `code` must parse.
fn check_reply(code: IoctlCode, reply: &[u8]) {
    let result = match code {
        IoctlCode::OpenSession => parse_open_session_reply(reply).map(drop),
        IoctlCode::GetRegionSection => parse_get_region_section_reply(reply).map(drop),
        IoctlCode::ReportMapping => parse_report_mapping_reply(reply),
        IoctlCode::QueryStatus => parse_query_status_reply(reply).map(drop),
        IoctlCode::CloseSession => parse_close_session_reply(reply),
        IoctlCode::QueryDriver => parse_query_driver_reply(reply).map(drop),
        IoctlCode::WaitGuestEvent => parse_wait_guest_event_reply(reply).map(drop),
        IoctlCode::ListSessions => parse_list_sessions_reply(reply).map(drop),
        IoctlCode::AttachRegion => parse_attach_region_reply(reply).map(drop),
        IoctlCode::DetachRegion => parse_detach_region_reply(reply).map(drop),
        IoctlCode::SetDoorbellEvent => parse_set_doorbell_event_reply(reply).map(drop),
        IoctlCode::TakeDoorbells => parse_take_doorbells_reply(reply).map(drop),
        IoctlCode::RingGuest => parse_ring_guest_reply(reply).map(drop),
    };
    if let Err(error) = result {
        panic!("the driver's {code:?} reply does not parse: {error:?}");
    }
}

/// The control device on a fresh simulated host.
struct Bench {
    sim: Sim,
    kernel: SimKernel,
    control: ControlDevice<SimPlatform>,
    guest: GuestVm,
    vm: SimVm,
    device_host: Option<ProcessId>,
    other: Option<ProcessId>,
    replies: Vec<(IoctlCode, Vec<u8>)>,
    /// KMCL rule violations seen so far (see [`Bench::excuse_foreign_handle`]).
    violations: Vec<Violation>,
}

impl Bench {
    fn new() -> Self {
        let sim = Sim::new();
        let kernel = SimKernel::new();
        let control = ControlDevice::new(
            sim.parent_device(),
            kernel.clone(),
            SectionQuotas::default(),
            OfferSettings::default(),
        );
        let device_host = kernel.spawn_process();
        let other = kernel.spawn_process();
        let guest = GuestVm::with_default_pool(GuestKind::Windows);
        guest.set_power(Power::Running);
        // The same ASSUMPTION as tests/control_support: the device host holds the VM's VMBus
        // handle (no documented way gives a third party one).
        let (vm, _) = sim.add_vm_assuming_vmbus_handle_in(guest.clone(), device_host);
        let mut bench = Self {
            sim,
            kernel,
            control,
            guest,
            vm,
            device_host: Some(device_host),
            other: Some(other),
            replies: Vec::new(),
            violations: Vec::new(),
        };
        for file in 0..FILES {
            bench.create(file);
        }
        bench
    }

    /// The process that opens `file`: the other process for the last handle.
    fn opener_of(&self, file: usize) -> Option<ProcessId> {
        if file + 1 == FILES {
            self.other
        } else {
            self.device_host
        }
    }

    fn create(&mut self, file: usize) {
        let Some(process) = self.opener_of(file) else {
            return;
        };
        self.kernel.set_current_process(process);
        let kernel = &self.kernel;
        let opener = Opener::admit(file_key(file), RequestorMode::UserMode, || {
            kernel.reference_current_process()
        });
        self.kernel.set_current_process(SYSTEM_PROCESS);
        if let Ok(opener) = opener {
            let _ = self.control.file_create(opener);
        }
    }

    fn step(&mut self, reader: &mut Reader<'_>) {
        let op = reader.u8();
        let kind = op & 0x07;
        if kind == KIND_EVENT {
            self.event(op >> 3 & 0x07, usize::from(op >> 6), reader);
            return;
        }
        let file = usize::from(op >> 3 & 0x03);
        let process = if op & FLAG_OTHER != 0 {
            self.other
        } else {
            self.device_host
        };
        let known = IoctlCode::ALL.get(usize::from(kind)).copied();
        let code = match known {
            Some(code) => code.code(),
            None => reader.u32(),
        };
        let (input_len, output_len) = match IoctlCode::from_code(code) {
            Some(code) if op & FLAG_SIZED != 0 => (code.request_size(), code.reply_size()),
            _ => (
                usize::from(reader.u16()).min(MAX_BUFFER),
                usize::from(reader.u16()).min(MAX_BUFFER),
            ),
        };
        let input = reader.bytes(input_len);
        parse_all(input);
        if let Some(process) = process {
            self.ioctl(process, file, code, input, output_len);
        }
    }

    fn ioctl(&mut self, process: ProcessId, file: usize, code: u32, input: &[u8], len: usize) {
        let Some(key) = self.kernel.process_key(process) else {
            return;
        };
        let Ok(caller) = Caller::admit(file_key(file), key, RequestorMode::UserMode) else {
            return;
        };
        let mut output = vec![0u8; len];
        self.kernel.set_current_process(process);
        let control = &mut self.control;
        let result = self.sim.in_process(process, || {
            control.dispatch(caller, code, input, &mut output)
        });
        self.kernel.set_current_process(SYSTEM_PROCESS);
        self.excuse_foreign_handle(process);
        if let Ok(written) = result {
            assert!(written <= output.len(), "{written} bytes written to {len}");
            let code = IoctlCode::from_code(code).expect("only known codes succeed");
            check_reply(code, &output[..written]);
            output.truncate(written);
            self.replies.push((code, output));
        }
    }

    /// The model reports a conversion of a VMBus handle value that belongs to another process
    /// as `ConvertOutsideOwningProcess`, which is meant to catch a driver converting in the
    /// wrong process context. Here the driver ran in the caller's context (the dispatch is
    /// synchronous, in `in_process(caller)`), so such a report only means that a hostile caller
    /// named another process's handle value: the driver got `STATUS_INVALID_HANDLE`, as Windows
    /// would answer, and nothing is wrong with it. Any other violation stays.
    fn excuse_foreign_handle(&mut self, caller: ProcessId) {
        let converted_here = format!("converted in {caller:?}");
        let violations = self.sim.take_violations();
        self.violations.extend(violations.into_iter().filter(|v| {
            !(v.rule == Rule::ConvertOutsideOwningProcess && v.detail.ends_with(&converted_here))
        }));
    }

    fn guests(&self) -> [SimGuest; 2] {
        [self.sim.guest(self.vm.id), self.sim.loopback_guest()]
    }

    fn offers(guest: &SimGuest) -> Vec<ChannelId> {
        guest
            .offers()
            .into_iter()
            .map(|offer| offer.channel)
            .collect()
    }

    fn event(&mut self, event: u8, file: usize, reader: &mut Reader<'_>) {
        match event {
            0 => self.control.file_cleanup(file_key(file)),
            1 => self.create(file),
            2 => self.each_offer(|guest, channel| {
                let _ = guest.open(channel);
            }),
            3 => self.each_offer(|guest, channel| {
                let _ = guest.close(channel);
            }),
            4 => {
                let power = [
                    Power::Running,
                    Power::Paused,
                    Power::Stopped,
                    Power::Crashed,
                ];
                self.guest.set_power(power[usize::from(reader.u8() % 4)]);
            }
            5 => {
                let len = usize::from(reader.u8());
                let packet = reader.bytes(len);
                self.each_offer(|guest, channel| {
                    let _ = guest.send(channel, packet);
                });
            }
            6 => self.exit(file),
            _ => self.each_offer(|guest, channel| {
                for _ in 0..16 {
                    if guest.receive(channel).is_none() {
                        break;
                    }
                }
            }),
        }
    }

    fn each_offer(&self, mut f: impl FnMut(&SimGuest, ChannelId)) {
        for guest in self.guests() {
            for channel in Self::offers(&guest) {
                f(&guest, channel);
            }
        }
    }

    /// The process of `file` exits: Windows cleans its file handles up, then the process goes.
    fn exit(&mut self, file: usize) {
        let Some(process) = self.opener_of(file) else {
            return;
        };
        let files: Vec<usize> = (0..FILES)
            .filter(|&f| self.opener_of(f) == Some(process))
            .collect();
        for file in files {
            self.control.file_cleanup(file_key(file));
        }
        self.kernel.exit_process(process);
        if file + 1 == FILES {
            self.other = Some(self.kernel.spawn_process());
        } else {
            self.device_host = None;
        }
    }

    fn close_everything_and_check(mut self) {
        for file in 0..FILES {
            self.control.file_cleanup(file_key(file));
        }
        for process in [self.device_host.take(), self.other.take()]
            .into_iter()
            .flatten()
        {
            self.kernel.exit_process(process);
        }
        assert_eq!(self.control.open_files(), 0);
        assert_eq!(self.control.live_sessions(), 0);
        let ledger = self.control.section_counters();
        assert!(ledger.all_released(), "section ledger: {ledger:?}");
        assert_eq!(self.kernel.live_sections(), 0, "live section objects");
        let objects = self.kernel.counters();
        assert!(objects.all_released(), "object manager: {objects:?}");
        let mut violations = self.violations;
        violations.extend(self.sim.take_violations());
        assert!(violations.is_empty(), "KMCL rules broken: {violations:#?}");
        let counters = self.sim.counters();
        assert!(counters.balanced(), "KMCL model: {counters:?}");
    }
}

fn file_key(file: usize) -> FileKey {
    FileKey(file + 1)
}

/// Writes records in the format [`run`] reads (for seeds and tests).
#[derive(Clone, Debug, Default)]
pub struct Script {
    bytes: Vec<u8>,
}

/// A non-IOCTL step of a [`Script`].
#[derive(Clone, Debug)]
pub enum Event {
    /// The last handle to the file is closed.
    Cleanup(u8),
    /// The file is opened again.
    Create(u8),
    /// The guests open every offer.
    GuestOpen,
    /// The guests close every offer.
    GuestClose,
    /// The VM's power: 0 running, 1 paused, 2 stopped, 3 crashed.
    Power(u8),
    /// The guests send this packet on every offer.
    Send(Vec<u8>),
    /// The file's process exits.
    Exit(u8),
    /// The guests read what the host sent.
    Receive,
}

impl Script {
    /// An empty script.
    pub fn new() -> Self {
        Self::default()
    }

    /// A known IOCTL through `file`, sized when `input` is exactly the request size (the output
    /// is then the reply size), else with explicit lengths and the reply size as output.
    pub fn ioctl(mut self, code: IoctlCode, file: u8, other: bool, input: &[u8]) -> Self {
        let kind = IoctlCode::ALL
            .iter()
            .position(|c| *c == code)
            .expect("a known code") as u8;
        let sized = input.len() == code.request_size();
        self.bytes
            .push(kind | (file & 3) << 3 | flag(other, FLAG_OTHER) | flag(sized, FLAG_SIZED));
        if !sized {
            self.lengths(input.len(), code.reply_size());
        }
        self.bytes.extend_from_slice(input);
        self
    }

    /// An IOCTL with a raw code and explicit lengths.
    pub fn raw(mut self, code: u32, file: u8, input: &[u8], output_len: usize) -> Self {
        self.bytes.push(KIND_RAW | (file & 3) << 3);
        self.bytes.extend_from_slice(&code.to_le_bytes());
        self.lengths(input.len(), output_len);
        self.bytes.extend_from_slice(input);
        self
    }

    fn lengths(&mut self, input: usize, output: usize) {
        for len in [input, output] {
            let len = u16::try_from(len).expect("a record's buffer fits a u16");
            self.bytes.extend_from_slice(&len.to_le_bytes());
        }
    }

    /// An event.
    pub fn event(mut self, event: Event) -> Self {
        let (number, file) = match &event {
            Event::Cleanup(file) => (0, *file),
            Event::Create(file) => (1, *file),
            Event::GuestOpen => (2, 0),
            Event::GuestClose => (3, 0),
            Event::Power(_) => (4, 0),
            Event::Send(_) => (5, 0),
            Event::Exit(file) => (6, *file),
            Event::Receive => (7, 0),
        };
        self.bytes.push(KIND_EVENT | number << 3 | (file & 3) << 6);
        match event {
            Event::Power(power) => self.bytes.push(power),
            Event::Send(packet) => {
                let len = u8::try_from(packet.len()).expect("a packet of at most 255 bytes");
                self.bytes.push(len);
                self.bytes.extend_from_slice(&packet);
            }
            _ => {}
        }
        self
    }

    /// The input bytes.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

fn flag(set: bool, bit: u8) -> u8 {
    if set { bit } else { 0 }
}

/// The VMBus user handle of the simulated VM every input's bench creates (the value an
/// OPEN_SESSION request names to target it).
pub fn vm_user_handle() -> u64 {
    Bench::new().vm.user_handle
}
