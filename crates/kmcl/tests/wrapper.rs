//! The safe wrapper against a minimal recording fake of the KMCL table (no simulator needed):
//! init order, exactly-once cleanup on every failure, teardown order, callback dispatch and
//! exactly-once packet completion, inline or held and completed later.

use std::cell::RefCell;
use std::ffi::c_void;
use std::ptr;
use std::sync::Mutex;

use kmcl::raw::*;
use kmcl::server::{
    ChannelHandler, ChannelRef, HeldPacket, IncomingPacket, ParentDevice, ServerChannel,
    ServerChannelParams,
};
use kmcl::{ContextEvent, ErrorStatus, KmclApi, KmclFunction, KmclProvider, SetupError};

#[derive(Clone, Debug, PartialEq, Eq)]
enum Event {
    Call(KmclFunction),
    Context(ContextEvent),
    HandlerDropped,
}

#[derive(Default)]
struct Fake {
    log: Vec<Event>,
    fail: Option<(KmclFunction, NTSTATUS)>,
    pointer: usize,
    callbacks: Option<VMB_CHANNEL_STATE_CHANGE_CALLBACKS>,
    process_packet: PFN_VMB_CHANNEL_PROCESS_PACKET,
    completions: Vec<(usize, Vec<u8>)>,
    name: Vec<u16>,
    mmio: Option<(u16, u16)>,
}

thread_local! {
    static FAKE: RefCell<Fake> = RefCell::new(Fake::default());
}

const CHANNEL: usize = 0x1000;
const KERNEL_HANDLE: usize = 0xFFFF_8000_0000_0040;

fn log(function: KmclFunction) -> NTSTATUS {
    FAKE.with_borrow_mut(|fake| {
        fake.log.push(Event::Call(function));
        match fake.fail {
            Some((failing, status)) if failing == function => status,
            _ => STATUS_SUCCESS,
        }
    })
}

unsafe extern "system" fn allocate(
    _: PDEVICE_OBJECT,
    is_server: BOOLEAN,
    out: *mut VMBCHANNEL,
) -> NTSTATUS {
    assert_eq!(is_server, TRUE);
    let status = log(KmclFunction::VmbChannelAllocate);
    if NT_SUCCESS(status) {
        // SAFETY: the wrapper passes a writable out-parameter.
        unsafe { out.write(ptr::without_provenance_mut(CHANNEL)) };
    }
    status
}
unsafe extern "system" fn cleanup(_: VMBCHANNEL) {
    log(KmclFunction::VmbChannelCleanup);
}
unsafe extern "system" fn enable(_: VMBCHANNEL) -> NTSTATUS {
    log(KmclFunction::VmbChannelEnable)
}
unsafe extern "system" fn disable(_: VMBCHANNEL) {
    log(KmclFunction::VmbChannelDisable);
}
unsafe extern "system" fn start(_: VMBCHANNEL) {
    log(KmclFunction::VmbChannelStart);
}
unsafe extern "system" fn max_packet(_: VMBCHANNEL, _: u32) -> NTSTATUS {
    log(KmclFunction::VmbChannelInitSetMaximumPacketSize)
}
unsafe extern "system" fn state_callbacks(
    _: VMBCHANNEL,
    cbs: PVMB_CHANNEL_STATE_CHANGE_CALLBACKS,
) -> NTSTATUS {
    // SAFETY: the wrapper passes a valid callback table (`_In_`).
    let copy = unsafe { *cbs };
    FAKE.with_borrow_mut(|fake| fake.callbacks = Some(copy));
    log(KmclFunction::VmbChannelInitSetStateChangeCallbacks)
}
unsafe extern "system" fn packet_callbacks(
    _: VMBCHANNEL,
    process: PFN_VMB_CHANNEL_PROCESS_PACKET,
    _: PFN_VMB_CHANNEL_PROCESSING_COMPLETE,
) -> NTSTATUS {
    FAKE.with_borrow_mut(|fake| fake.process_packet = process);
    log(KmclFunction::VmbChannelInitSetProcessPacketCallbacks)
}
unsafe extern "system" fn friendly_name(_: VMBCHANNEL, name: PCUNICODE_STRING) -> NTSTATUS {
    // SAFETY: the wrapper passes a valid UNICODE_STRING (`_In_`).
    let name = unsafe { *name };
    // SAFETY: its buffer holds `Length` bytes of UTF-16.
    let units = unsafe { std::slice::from_raw_parts(name.Buffer, usize::from(name.Length / 2)) };
    FAKE.with_borrow_mut(|fake| fake.name = units.to_vec());
    log(KmclFunction::VmbChannelInitSetFriendlyName)
}
unsafe extern "system" fn server_flags(_: VMBCHANNEL, _: u32) -> NTSTATUS {
    log(KmclFunction::VmbServerChannelInitSetFlags)
}
unsafe extern "system" fn mmio(_: VMBCHANNEL, mb: u16, optional: u16) -> NTSTATUS {
    FAKE.with_borrow_mut(|fake| fake.mmio = Some((mb, optional)));
    log(KmclFunction::VmbServerChannelInitSetMmioMegabytes)
}
unsafe extern "system" fn interface_id(_: VMBCHANNEL, _: GUID, _: GUID) -> NTSTATUS {
    log(KmclFunction::VmbServerChannelInitSetTargetInterfaceId)
}
unsafe extern "system" fn vmbus_handle(_: VMBCHANNEL, handle: HANDLE) -> NTSTATUS {
    assert_eq!(handle.addr(), KERNEL_HANDLE);
    log(KmclFunction::VmbServerChannelInitSetVmbusHandle)
}
unsafe extern "system" fn convert(user: HANDLE, out: *mut HANDLE) -> NTSTATUS {
    let status = log(KmclFunction::VmbConvertVmbusHandleToKernelHandle);
    if NT_SUCCESS(status) && user.addr() != 0x99 {
        // SAFETY: the caller passes a writable out-parameter.
        unsafe { out.write(ptr::without_provenance_mut(KERNEL_HANDLE)) };
    }
    status
}
unsafe extern "system" fn set_pointer(_: VMBCHANNEL, pointer: *mut c_void) {
    FAKE.with_borrow_mut(|fake| fake.pointer = pointer.expose_provenance());
    log(KmclFunction::VmbChannelSetPointer);
}
unsafe extern "system" fn get_pointer(_: VMBCHANNEL) -> *mut c_void {
    // The wrapper's own pointer, with its provenance (the fake stores only the address).
    FAKE.with_borrow(|fake| ptr::with_exposed_provenance_mut(fake.pointer))
}
unsafe extern "system" fn at_passive(_: VMBCHANNEL, require: BOOLEAN) {
    assert_eq!(require, TRUE);
    log(KmclFunction::VmbChannelSetIncomingProcessingAtPassive);
}
unsafe extern "system" fn complete(packet: VMBPACKETCOMPLETION, buffer: *mut c_void, size: u32) {
    let bytes = if buffer.is_null() {
        Vec::new()
    } else {
        // SAFETY: a non-NULL completion buffer holds `size` readable bytes.
        unsafe { std::slice::from_raw_parts(buffer.cast::<u8>(), size as usize) }.to_vec()
    };
    COMPLETED_ANYWHERE
        .lock()
        .unwrap()
        .push((packet.addr(), bytes.clone()));
    FAKE.with_borrow_mut(|fake| fake.completions.push((packet.addr(), bytes)));
}

/// Every completion, from any thread (the fake's state is per thread; a held packet may be
/// completed on another one). Tests tell theirs apart by their own packet values.
static COMPLETED_ANYWHERE: Mutex<Vec<(usize, Vec<u8>)>> = Mutex::new(Vec::new());

fn completed_anywhere(packet: usize) -> Vec<Vec<u8>> {
    COMPLETED_ANYWHERE
        .lock()
        .unwrap()
        .iter()
        .filter(|(p, _)| *p == packet)
        .map(|(_, bytes)| bytes.clone())
        .collect()
}
unsafe extern "system" fn get_mmio(_: VMBCHANNEL, address: *mut u64, size: *mut u64) {
    // SAFETY: the wrapper passes writable out-parameters.
    unsafe { address.write(0xF800_0000) };
    // SAFETY: as above.
    unsafe { size.write(0x20_0000) };
}

const BASE: KmclApi = KmclApi {
    VmbChannelAllocate: allocate,
    VmbChannelCleanup: cleanup,
    VmbChannelEnable: enable,
    VmbChannelDisable: disable,
    VmbChannelStart: start,
    VmbChannelPause: None,
    VmbChannelInitSetMaximumPacketSize: max_packet,
    VmbChannelInitSetStateChangeCallbacks: state_callbacks,
    VmbChannelInitSetProcessPacketCallbacks: packet_callbacks,
    VmbChannelInitSetFriendlyName: friendly_name,
    VmbChannelInitSetFlags: None,
    VmbServerChannelInitSetFlags: server_flags,
    VmbServerChannelInitSetMmioMegabytes: mmio,
    VmbServerChannelInitSetTargetInterfaceId: interface_id,
    VmbServerChannelInitSetVmbusHandle: vmbus_handle,
    VmbConvertVmbusHandleToKernelHandle: convert,
    VmbChannelSetPointer: set_pointer,
    VmbChannelGetPointer: get_pointer,
    VmbChannelSetIncomingProcessingAtPassive: at_passive,
    VmbChannelPacketComplete: complete,
    VmbChannelPacketDeferToPassive: None,
    VmbChannelPacketFail: None,
    VmbPacketAllocate: None,
    VmbPacketFree: None,
    VmbPacketSetCompletionRoutine: None,
    VmbPacketSend: None,
    VmbChannelGetMmioSpace: None,
};
static WITHOUT_MMIO_QUERY: KmclApi = BASE;
static WITH_MMIO_QUERY: KmclApi = KmclApi {
    VmbChannelGetMmioSpace: Some(get_mmio),
    ..BASE
};

struct Fake1;
impl KmclProvider for Fake1 {
    fn api() -> &'static KmclApi {
        &WITHOUT_MMIO_QUERY
    }
    fn context_event(event: ContextEvent) {
        FAKE.with_borrow_mut(|fake| fake.log.push(Event::Context(event)));
    }
}
struct FakeWithMmio;
impl KmclProvider for FakeWithMmio {
    fn api() -> &'static KmclApi {
        &WITH_MMIO_QUERY
    }
}

/// Records what the callbacks saw; its drop is logged so tests see when the context is freed.
#[derive(Default)]
struct Recorder {
    refuse_open: Option<NTSTATUS>,
    reply: Option<Vec<u8>>,
}
impl ChannelHandler for Recorder {
    fn opened(&self, _: &ChannelRef<'_>) -> Result<(), ErrorStatus> {
        self.refuse_open
            .map_or(Ok(()), |status| Err(ErrorStatus::new(status)))
    }
    fn process_packet(&self, _: &ChannelRef<'_>, packet: IncomingPacket<'_>) {
        assert_eq!(packet.data(), b"ping");
        if let Some(reply) = &self.reply {
            packet.complete(reply).unwrap();
        }
        // else: dropped, which completes it empty
    }
}
impl Drop for Recorder {
    fn drop(&mut self) {
        FAKE.with_borrow_mut(|fake| fake.log.push(Event::HandlerDropped));
    }
}

fn parent() -> ParentDevice {
    // SAFETY: the fake never dereferences the device pointer.
    unsafe { ParentDevice::from_raw(ptr::without_provenance_mut(0x40)) }.unwrap()
}

fn params(handle: bool, passive: bool) -> ServerChannelParams<'static> {
    ServerChannelParams {
        parent: parent(),
        vmbus_handle: handle.then(|| ptr::without_provenance_mut(KERNEL_HANDLE)),
        incoming_at_passive: passive,
        maximum_packet_size: 4096,
        interface_type: GUID::from_u128(1),
        interface_instance: GUID::from_u128(2),
        server_flags: VMBUS_SERVER_CHANNEL_INIT_FLAG_ENUMERATE_DEVICE_INTERFACE,
        friendly_name: "vmbmmio",
        mmio_megabytes: 4,
        mmio_megabytes_optional: 3,
    }
}

fn reset() {
    FAKE.with_borrow_mut(|fake| *fake = Fake::default());
}

fn calls() -> Vec<KmclFunction> {
    FAKE.with_borrow(|fake| {
        fake.log
            .iter()
            .filter_map(|event| match event {
                Event::Call(function) => Some(*function),
                _ => None,
            })
            .collect()
    })
}

fn events() -> Vec<Event> {
    FAKE.with_borrow(|fake| fake.log.clone())
}

use KmclFunction as F;
const FULL_ORDER: [KmclFunction; 13] = [
    F::VmbChannelAllocate,
    F::VmbChannelSetIncomingProcessingAtPassive,
    F::VmbServerChannelInitSetVmbusHandle,
    F::VmbChannelInitSetMaximumPacketSize,
    F::VmbChannelSetPointer,
    F::VmbServerChannelInitSetTargetInterfaceId,
    F::VmbChannelInitSetStateChangeCallbacks,
    F::VmbChannelInitSetProcessPacketCallbacks,
    F::VmbServerChannelInitSetFlags,
    F::VmbChannelInitSetFriendlyName,
    F::VmbServerChannelInitSetMmioMegabytes,
    F::VmbChannelEnable,
    F::VmbChannelStart,
];

#[test]
fn create_calls_kmcl_in_the_reference_order_and_drop_tears_down_in_order() {
    reset();
    let channel =
        ServerChannel::<Fake1, Recorder>::create(params(true, true), Recorder::default()).unwrap();
    assert_eq!(calls(), FULL_ORDER);
    let expected_name: Vec<u16> = "vmbmmio".encode_utf16().collect();
    FAKE.with_borrow(|fake| {
        assert_eq!(fake.name, expected_name);
        assert_eq!(fake.mmio, Some((4, 3)));
    });
    reset();
    drop(channel);
    assert_eq!(
        events(),
        [
            Event::Call(F::VmbChannelDisable),
            Event::Call(F::VmbChannelCleanup),
            Event::HandlerDropped,
            Event::Context(ContextEvent::Freed),
        ]
    );
}

#[test]
fn loopback_without_passive_skips_those_two_calls() {
    reset();
    let channel =
        ServerChannel::<Fake1, Recorder>::create(params(false, false), Recorder::default())
            .unwrap();
    let expected: Vec<_> = FULL_ORDER
        .into_iter()
        .filter(|f| {
            *f != F::VmbServerChannelInitSetVmbusHandle
                && *f != F::VmbChannelSetIncomingProcessingAtPassive
        })
        .collect();
    assert_eq!(calls(), expected);
    drop(channel);
}

#[test]
fn a_failure_at_every_step_cleans_up_exactly_once_and_frees_the_context() {
    for (index, failing) in FULL_ORDER.into_iter().enumerate() {
        if !failing.returns_status() {
            continue;
        }
        reset();
        FAKE.with_borrow_mut(|fake| fake.fail = Some((failing, STATUS_INVALID_PARAMETER_2)));
        let error =
            ServerChannel::<Fake1, Recorder>::create(params(true, true), Recorder::default())
                .err()
                .unwrap();
        assert_eq!(
            error,
            SetupError::Kmcl(kmcl::KmclError {
                call: failing,
                status: STATUS_INVALID_PARAMETER_2
            })
        );
        let mut expected: Vec<Event> = vec![Event::Context(ContextEvent::Allocated)];
        expected.extend(FULL_ORDER[..=index].iter().map(|f| Event::Call(*f)));
        if failing != F::VmbChannelAllocate {
            expected.push(Event::Call(F::VmbChannelCleanup));
        }
        expected.push(Event::HandlerDropped);
        expected.push(Event::Context(ContextEvent::Freed));
        assert_eq!(events(), expected, "failing {failing:?}");
    }
}

#[test]
fn a_name_too_long_fails_before_any_kmcl_call() {
    reset();
    let name: String = "x".repeat(kmcl::server::MAX_NAME_UNITS + 1);
    let mut p = params(true, true);
    p.friendly_name = &name;
    let error = ServerChannel::<Fake1, Recorder>::create(p, Recorder::default())
        .err()
        .unwrap();
    assert_eq!(error, SetupError::NameTooLong);
    assert_eq!(events(), [Event::HandlerDropped]);
}

fn state_table() -> VMB_CHANNEL_STATE_CHANGE_CALLBACKS {
    FAKE.with_borrow(|fake| fake.callbacks.unwrap())
}

fn channel_handle() -> VMBCHANNEL {
    ptr::without_provenance_mut(CHANNEL)
}

#[test]
fn opened_passes_the_handler_status_through() {
    reset();
    let refusing = Recorder {
        refuse_open: Some(STATUS_INSUFFICIENT_RESOURCES),
        reply: None,
    };
    let channel = ServerChannel::<Fake1, Recorder>::create(params(true, true), refusing).unwrap();
    let opened = state_table().EvtChannelOpened.unwrap();
    // SAFETY: the channel exists and this is the callback KMCL would call.
    let status = unsafe { opened(channel_handle()) };
    assert_eq!(status, STATUS_INSUFFICIENT_RESOURCES);
    // The other state callbacks are registered too and reach the (default) handler methods.
    let table = state_table();
    for callback in [
        table.EvtChannelStarted,
        table.EvtChannelPostStarted,
        table.EvtChannelSuspend,
        table.EvtChannelClosed,
    ] {
        // SAFETY: as above.
        unsafe { callback.unwrap()(channel_handle()) };
    }
    drop(channel);

    reset();
    let channel =
        ServerChannel::<Fake1, Recorder>::create(params(true, true), Recorder::default()).unwrap();
    let opened = state_table().EvtChannelOpened.unwrap();
    // SAFETY: as above.
    let status = unsafe { opened(channel_handle()) };
    assert_eq!(status, STATUS_SUCCESS);
    drop(channel);
}

fn deliver(packet: usize) {
    let process = FAKE.with_borrow(|fake| fake.process_packet).unwrap();
    let mut data = *b"ping";
    // SAFETY: the trampoline gets the channel it was registered for and a 4-byte buffer.
    unsafe {
        process(
            channel_handle(),
            ptr::without_provenance_mut(packet),
            data.as_mut_ptr().cast(),
            4,
            0,
        )
    };
}

#[test]
fn every_packet_is_completed_exactly_once() {
    reset();
    let channel =
        ServerChannel::<Fake1, Recorder>::create(params(true, true), Recorder::default()).unwrap();
    deliver(0x51);
    deliver(0x52);
    assert_eq!(
        FAKE.with_borrow(|fake| fake.completions.clone()),
        [(0x51, vec![]), (0x52, vec![])]
    );
    drop(channel);

    reset();
    let replying = Recorder {
        refuse_open: None,
        reply: Some(vec![1, 2, 3]),
    };
    let channel = ServerChannel::<Fake1, Recorder>::create(params(true, true), replying).unwrap();
    deliver(0x53);
    assert_eq!(
        FAKE.with_borrow(|fake| fake.completions.clone()),
        [(0x53, vec![1, 2, 3])]
    );
    drop(channel);
}

#[test]
fn mmio_space_is_none_without_the_optional_entry() {
    reset();
    let channel =
        ServerChannel::<Fake1, Recorder>::create(params(true, true), Recorder::default()).unwrap();
    assert_eq!(channel.get_mmio_space(), None);
    drop(channel);
    let channel =
        ServerChannel::<FakeWithMmio, Recorder>::create(params(true, true), Recorder::default())
            .unwrap();
    let space = channel.get_mmio_space().unwrap();
    assert_eq!((space.address, space.size), (0xF800_0000, 0x20_0000));
    drop(channel);
}

#[test]
fn handle_conversion_reports_failures_and_null_handles() {
    reset();
    assert_eq!(
        kmcl::convert_vmbus_handle::<Fake1>(0x44).unwrap().addr(),
        KERNEL_HANDLE
    );
    let null = kmcl::convert_vmbus_handle::<Fake1>(0x99).unwrap_err();
    assert_eq!(null.status, STATUS_INVALID_HANDLE);
    FAKE.with_borrow_mut(|fake| {
        fake.fail = Some((F::VmbConvertVmbusHandleToKernelHandle, STATUS_ACCESS_DENIED))
    });
    let denied = kmcl::convert_vmbus_handle::<Fake1>(0x44).unwrap_err();
    assert_eq!(
        (denied.call, denied.status),
        (F::VmbConvertVmbusHandleToKernelHandle, STATUS_ACCESS_DENIED)
    );
}

/// Parses the packet inside the callback, then holds it (the `WAIT_EVENT` pattern). Storing the
/// held packets in a `Mutex` inside a `Send + Sync` handler needs `HeldPacket: Send`.
#[derive(Default)]
struct Holder {
    held: Mutex<Vec<(Vec<u8>, HeldPacket)>>,
}
impl ChannelHandler for Holder {
    fn process_packet(&self, _: &ChannelRef<'_>, packet: IncomingPacket<'_>) {
        let request = packet.data().to_vec(); // parse first: the data ends with `hold`
        let held = packet.hold();
        self.held.lock().unwrap().push((request, held));
    }
}
impl Holder {
    fn take(&self) -> Vec<(Vec<u8>, HeldPacket)> {
        std::mem::take(&mut *self.held.lock().unwrap())
    }
}

const _: () = {
    const fn assert_send<T: Send>() {}
    assert_send::<HeldPacket>();
};

/// A held packet is not completed when the callback returns, and is completed exactly once,
/// with its payload, when its owner completes it.
#[test]
fn a_held_packet_is_completed_later_with_its_payload() {
    reset();
    let channel =
        ServerChannel::<Fake1, Holder>::create(params(true, true), Holder::default()).unwrap();
    deliver(0x61);
    deliver(0x62);
    assert_eq!(FAKE.with_borrow(|fake| fake.completions.clone()), []);
    let held = channel.handler().take();
    assert_eq!(held.len(), 2);
    let mut held = held.into_iter();
    let (request, first) = held.next().unwrap();
    assert_eq!(request, b"ping");
    let (_, second) = held.next().unwrap();
    // Completed out of order, later: allowed ("either inline or later").
    second.complete(b"event").unwrap();
    first.complete_empty();
    assert_eq!(
        FAKE.with_borrow(|fake| fake.completions.clone()),
        [(0x62, b"event".to_vec()), (0x61, vec![])]
    );
    drop(channel);
}

/// A held packet dropped uncompleted completes empty, exactly once.
#[test]
fn a_dropped_held_packet_completes_empty_once() {
    reset();
    let channel =
        ServerChannel::<Fake1, Holder>::create(params(true, true), Holder::default()).unwrap();
    deliver(0x63);
    drop(channel.handler().take());
    assert_eq!(
        FAKE.with_borrow(|fake| fake.completions.clone()),
        [(0x63, vec![])]
    );
    drop(channel);
    // The channel's teardown did not complete it again.
    assert_eq!(
        FAKE.with_borrow(|fake| fake.completions.clone()),
        [(0x63, vec![])]
    );
}

/// A held packet can move to another thread and be completed there.
#[test]
fn a_held_packet_can_be_completed_on_another_thread() {
    reset();
    let channel =
        ServerChannel::<Fake1, Holder>::create(params(true, true), Holder::default()).unwrap();
    deliver(0x64);
    let (_, held) = channel.handler().take().pop().unwrap();
    std::thread::spawn(move || held.complete(b"from a worker").unwrap())
        .join()
        .unwrap();
    assert_eq!(completed_anywhere(0x64), [b"from a worker".to_vec()]);
    drop(channel);
}
