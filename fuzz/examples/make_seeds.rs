//! Writes the seed corpora under `fuzz/corpus/<target>/`: valid messages and whole sessions for
//! `ioctl_parsers` (built with `vmbmmio-proto`'s builders, like the golden and control tests),
//! the synthetic images and module lists of kmcl's PE tests for `pe_exports`, and whole guest
//! conversations (built with the guest library's encoder) for `guest_packets`.
//!
//! `cargo run --manifest-path fuzz/Cargo.toml --example make_seeds` (stable is enough). The
//! files are committed; `tests/corpus.rs` checks they are what this writes.

#[path = "../../crates/kmcl/tests/pe_support/mod.rs"]
mod pe_support;

use std::num::NonZeroU64;
use std::path::Path;

use pe_support::{Built, Func, Spec};
use vmbmmio_fuzz::guest::{Control, GuestScript};
use vmbmmio_fuzz::ioctl::{self, Event, Script};
use vmbmmio_proto::guest::{BarPlacement, DeviceReport, GuestRange, RequestBody, encode_request};
use vmbmmio_proto::ioctl::{
    CloseSessionRequest, GetRegionSectionRequest, IoctlCode, MappingState, OpenSessionRequest,
    QueryDriverRequest, QueryStatusRequest, RegionRequest, ReportMappingRequest, SectionAccess,
    Target, WireGuid, WireMessage,
};

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    for (target, seeds) in [
        ("ioctl_parsers", ioctl_seeds()),
        ("pe_exports", pe_seeds()),
        ("guest_packets", guest_seeds()),
    ] {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).expect("corpus directory");
        for (name, bytes) in seeds {
            std::fs::write(dir.join(name), bytes).expect("seed written");
        }
    }
}

fn encode<M: WireMessage>(message: &M) -> Vec<u8> {
    let mut bytes = vec![0u8; M::SIZE];
    message.encode(&mut bytes).expect("fits");
    bytes
}

fn open(target: Target, sizes: &[u64]) -> Vec<u8> {
    let regions: Vec<RegionRequest> = sizes
        .iter()
        .map(|&size| RegionRequest {
            size,
            guest_writable: true,
        })
        .collect();
    let request = OpenSessionRequest::build(
        target,
        WireGuid::from_u128(0x3c1d_77a0_52e4_4b8e_9d21_6f0a_b5c3_0001),
        WireGuid::from_u128(0x3c1d_77a0_52e4_4b8e_9d21_6f0a_b5c3_1001),
        &regions,
    )
    .expect("a valid request");
    encode(&request)
}

fn section(index: u32) -> Vec<u8> {
    encode(&GetRegionSectionRequest::build(index, SectionAccess::ReadWrite).expect("valid"))
}

fn report(index: u32, state: MappingState) -> Vec<u8> {
    // E_FAIL for a failed mapping (its HRESULT must be a failure), S_OK otherwise.
    let hresult = if state == MappingState::Failed {
        i32::from_le_bytes(0x8000_4005_u32.to_le_bytes())
    } else {
        0
    };
    encode(&ReportMappingRequest::build(index, state, hresult).expect("valid"))
}

/// The seeds of `ioctl_parsers`: (file name, bytes).
pub fn ioctl_seeds() -> Vec<(&'static str, Vec<u8>)> {
    use IoctlCode as C;
    let vm = Target::VmbusHandle(NonZeroU64::new(ioctl::vm_user_handle()).expect("non-zero"));
    let status = encode(&QueryStatusRequest::new());
    let driver = encode(&QueryDriverRequest::new());
    let close = encode(&CloseSessionRequest::new());

    let whole_session = Script::new()
        .ioctl(C::QueryDriver, 0, false, &driver)
        .ioctl(C::OpenSession, 0, false, &open(vm, &[4096, 3 * 4096 + 5]))
        .ioctl(C::GetRegionSection, 0, false, &section(0))
        .ioctl(C::GetRegionSection, 0, false, &section(1))
        .ioctl(
            C::ReportMapping,
            0,
            false,
            &report(0, MappingState::SectionBacked),
        )
        .ioctl(
            C::ReportMapping,
            0,
            false,
            &report(1, MappingState::InterceptFallback),
        )
        .ioctl(C::QueryStatus, 0, false, &status)
        .event(Event::GuestOpen)
        .event(Event::Send(b"guest packet".to_vec()))
        .event(Event::Receive)
        .ioctl(C::QueryStatus, 0, false, &status)
        .ioctl(C::CloseSession, 0, false, &close)
        .event(Event::Cleanup(0))
        .into_bytes();

    // The replies of that session, as request inputs: they reach the reply parsers.
    let mut replies = Script::new();
    for (code, reply) in ioctl::run_recording(&whole_session) {
        replies = replies.ioctl(code, 1, false, &reply);
    }

    let loopback = Script::new()
        .ioctl(
            C::OpenSession,
            1,
            false,
            &open(Target::Loopback, &[1 << 20]),
        )
        .event(Event::GuestOpen)
        .event(Event::Send(vec![0; 16]))
        .event(Event::GuestClose)
        .ioctl(C::QueryStatus, 1, false, &status)
        .event(Event::Cleanup(1))
        .event(Event::Create(1))
        .ioctl(C::OpenSession, 1, false, &open(Target::Loopback, &[4096]))
        .into_bytes();

    let cross_process = Script::new()
        .ioctl(C::OpenSession, 3, true, &open(vm, &[4096]))
        .ioctl(C::OpenSession, 0, false, &open(vm, &[4096]))
        .ioctl(C::GetRegionSection, 0, true, &section(0))
        .ioctl(C::QueryStatus, 3, false, &status)
        .event(Event::Exit(3))
        .event(Event::Create(3))
        .ioctl(C::QueryDriver, 3, true, &driver)
        .into_bytes();

    let vm_lifecycle = Script::new()
        .ioctl(C::OpenSession, 2, false, &open(vm, &[4096, 4096]))
        .event(Event::GuestOpen)
        .event(Event::Power(1))
        .event(Event::Power(0))
        .event(Event::Power(2))
        .ioctl(C::QueryStatus, 2, false, &status)
        .event(Event::Power(0))
        .event(Event::GuestOpen)
        .event(Event::Power(3))
        .ioctl(C::CloseSession, 2, false, &close)
        .event(Event::Exit(0))
        .into_bytes();

    let bad_buffers = Script::new()
        .raw(0x0022_2000, 0, &status, 64)
        .ioctl(C::OpenSession, 0, false, &open(vm, &[4096])[..40])
        .raw(C::QueryStatus.code(), 0, &status, 8)
        .ioctl(C::GetRegionSection, 0, false, &section(7))
        .ioctl(C::OpenSession, 0, false, &open(vm, &[4096]))
        .ioctl(C::OpenSession, 0, false, &open(vm, &[4096]))
        .ioctl(C::GetRegionSection, 0, false, &section(1))
        .ioctl(C::CloseSession, 0, false, &close)
        .ioctl(C::CloseSession, 0, false, &close)
        .into_bytes();

    let mut seeds = vec![
        ("whole_session", whole_session),
        ("replies_as_input", replies.into_bytes()),
        ("loopback", loopback),
        ("cross_process", cross_process),
        ("vm_lifecycle", vm_lifecycle),
        ("bad_buffers", bad_buffers),
    ];
    // Each request on its own.
    let single = |code, input: &[u8]| Script::new().ioctl(code, 0, false, input).into_bytes();
    seeds.push(("open_session", single(C::OpenSession, &open(vm, &[4096]))));
    seeds.push((
        "get_region_section",
        single(C::GetRegionSection, &section(0)),
    ));
    seeds.push((
        "report_mapping",
        single(C::ReportMapping, &report(0, MappingState::Failed)),
    ));
    seeds.push(("query_status", single(C::QueryStatus, &status)));
    seeds.push(("close_session", single(C::CloseSession, &close)));
    seeds.push(("query_driver", single(C::QueryDriver, &driver)));
    seeds
}

/// One guest request's bytes.
fn guest(id: u64, body: RequestBody) -> Vec<u8> {
    let mut buf = [0u8; 128];
    let len = encode_request(&mut buf, id, &body).expect("fits");
    buf[..len].to_vec()
}

/// The paired device's report: the bench's instance, a 1 MiB BAR at `base`.
fn device(base: u64, decode: bool) -> RequestBody {
    RequestBody::ReportDevice(DeviceReport {
        instance: hvsim::guest_session::INTERFACE_INSTANCE,
        segment: 0,
        bus: 0,
        devfn: 8,
        bar_index: 0,
        bar: BarPlacement {
            base,
            size: 1 << 20,
            memory_decode: decode,
        },
    })
}

/// `HELLO` and `SELECT_VERSION` 1.0 with ids `first` and `first + 1`.
fn negotiate(script: GuestScript, first: u64) -> GuestScript {
    script
        .packet(&guest(first, RequestBody::Hello))
        .packet(&guest(
            first + 1,
            RequestBody::SelectVersion {
                version: 0x0001_0000,
            },
        ))
}

/// Seeds of `guest_packets`: a whole valid conversation, one with every hostile case, a flood,
/// and a kexec that says `HELLO` again on the open channel.
pub fn guest_seeds() -> Vec<(&'static str, Vec<u8>)> {
    const BASE: u64 = 0xF800_0000;
    let whole = negotiate(GuestScript::new(), 1)
        .control(Control::Wait(0))
        .packet(&guest(3, RequestBody::ReportReservation(None)))
        .packet(&guest(4, device(BASE, true)))
        .packet(&guest(5, RequestBody::Ready))
        .control(Control::Drain)
        .packet(&guest(6, RequestBody::WaitEvent { last_seen: 0 }))
        .control(Control::ReportMapping(0, 1))
        .control(Control::ReportMapping(1, 1))
        .packet(&guest(7, RequestBody::GetLayout))
        .packet(&guest(8, RequestBody::WaitEvent { last_seen: 1 }))
        .control(Control::ReportMapping(1, 2))
        .packet(&guest(9, RequestBody::Releasing))
        .control(Control::Status)
        .control(Control::Drain)
        .control(Control::Close)
        .control(Control::Reopen);
    let whole = negotiate(whole, 1).into_bytes();

    let mut hostile = negotiate(GuestScript::new(), 1)
        .packet(&guest(
            3,
            RequestBody::ReportReservation(Some(GuestRange {
                base: BASE - (1 << 19),
                size: 1 << 20,
            })),
        ))
        .packet(&guest(3, RequestBody::GetLayout))
        .packet(&guest(4, device(BASE, true)))
        .packet(&guest(5, device(BASE + 4096, true)))
        .packet(&guest(6, device(1 << 52, true)))
        .packet(&guest(7, device(0, true)))
        .packet(&guest(8, RequestBody::Ready))
        .packet(&guest(9, RequestBody::WaitEvent { last_seen: 0 }))
        .packet(&guest(10, RequestBody::WaitEvent { last_seen: 0 }))
        .packet(b"garbage");
    for id in 11..24 {
        hostile = hostile.packet(&guest(id, RequestBody::SelectVersion { version: 7 }));
    }
    let hostile = hostile
        .packet(&guest(30, RequestBody::Hello))
        .control(Control::Drain)
        .control(Control::Close)
        .control(Control::Reopen);
    let hostile = negotiate(hostile, 1).into_bytes();

    let mut flood = negotiate(GuestScript::new(), 1).control(Control::Wait(0));
    for id in 3..43 {
        flood = flood.packet(&guest(id, RequestBody::ReportReservation(None)));
    }
    let flood = flood
        .control(Control::Drain)
        .control(Control::Status)
        .into_bytes();

    let kexec = negotiate(GuestScript::new(), 1)
        .packet(&guest(3, device(BASE, true)))
        .packet(&guest(4, RequestBody::Ready))
        .packet(&guest(5, RequestBody::WaitEvent { last_seen: 0 }))
        .control(Control::Drain)
        .control(Control::ReportMapping(0, 1))
        .control(Control::ReportMapping(1, 1))
        .packet(&guest(6, RequestBody::WaitEvent { last_seen: 1 }));
    let kexec = negotiate(kexec, 7)
        .packet(&guest(9, RequestBody::WaitEvent { last_seen: 0 }))
        .control(Control::Drain)
        .control(Control::ReportMapping(0, 0))
        .packet(&guest(10, device(BASE + (2 << 20), true)))
        .packet(&guest(11, RequestBody::Ready))
        .control(Control::ReportMapping(0, 1))
        .control(Control::Drain)
        .into_bytes();
    vec![
        ("whole_conversation", whole),
        ("hostile", hostile),
        ("flood", flood),
        ("kexec", kexec),
    ]
}

/// The KMCL entry names, sorted (as a real export name table is).
fn kmcl_names() -> Vec<&'static str> {
    let mut names: Vec<&str> = kmcl::resolve::ENTRIES.iter().map(|e| e.name).collect();
    names.sort_unstable();
    names
}

/// One `AUX_MODULE_EXTENDED_INFO` record (x64 layout), as kmcl's host-library tests build it.
fn record(base: u64, size: u32, path: &str) -> Vec<u8> {
    let mut bytes = vec![0u8; kmcl::resolve::loaded::AUX_MODULE_EXTENDED_INFO_SIZE];
    bytes[0..8].copy_from_slice(&base.to_le_bytes());
    bytes[8..12].copy_from_slice(&size.to_le_bytes());
    let name_offset = path.rfind('\\').map_or(0, |i| i + 1) as u16;
    bytes[12..14].copy_from_slice(&name_offset.to_le_bytes());
    bytes[14..14 + path.len()].copy_from_slice(path.as_bytes());
    bytes
}

/// The seeds of `pe_exports`: (file name, bytes).
pub fn pe_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let kmcl = Built::new(&Spec::named(&kmcl_names()));
    let mut forwarding = Spec::named(&["VmbChannelAllocate", "VmbChannelCleanup"]);
    forwarding.names.push(("VmbChannelEnable".into(), 2));
    forwarding
        .funcs
        .push(Func::Forward("vmbusr.VmbChannelEnable".into()));
    forwarding.funcs.push(Func::Empty);
    let forwarding = Built::new(&forwarding);
    let unsorted = Built::new(&Spec::named(&["b", "a", "c"]));
    let mut list = record(
        0xFFFF_F800_0000_0000,
        0x10_0000,
        "\\SystemRoot\\system32\\ntoskrnl.exe",
    );
    list.extend(record(
        0xFFFF_F800_1000_0000,
        kmcl.mapped.len() as u32,
        "\\SystemRoot\\system32\\drivers\\vmbkmclr.sys",
    ));
    vec![
        ("kmcl_mapped", kmcl.mapped.clone()),
        ("kmcl_file", kmcl.file),
        ("forwarders_file", forwarding.file),
        ("forwarders_mapped", forwarding.mapped),
        ("unsorted_mapped", unsorted.mapped),
        ("module_list", list),
    ]
}
