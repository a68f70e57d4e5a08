//! The non-paged budget (issue 13): the state the driver keeps per VM session and per region
//! must stay within 8 KiB and 1 KiB, the sections themselves excluded.
//!
//! # How the number is computed
//! `size_of` of every structure the driver allocates for one session, with the platform's
//! handle types taken as what they are in the driver (a pointer each: `WDFSPINLOCK`, the
//! section object, the process object; [`kmcl::Vmbkmclr`] as the KMCL provider):
//! - the file's entry in the control table, which holds the [`Session`] inline (its
//!   `MappingState` table, its [`crate::mmio_plan::MmioPlan`] header and the channel owner);
//! - the plan's region table (`MAX_REGIONS` placements, heap);
//! - the event lock's allocation: two reference counts, the spin lock handle and the whole
//!   [`GuestShared`] (engine, conversation, event ring, the device host's queue, the held
//!   packet), which is where the fixed-size tables live;
//! - the channel's KMCL context: [`ChannelShared`], the state-change callback table, the
//!   friendly name (`MAX_FRIENDLY_NAME_UNITS` UTF-16 units and its `UNICODE_STRING`) and the
//!   boxed guest port;
//! - the ledger's session record and its tables at their limits: `MAX_REGIONS` region records
//!   (size and access, the section pointer) and `DEFAULT_MAX_HANDLES_PER_SESSION` handle
//!   records.
//!
//! Per region: what one more region adds, every per-region slot of the tables above (wire
//! region, placement, mapping state, ledger record, four handle records), i.e. the session's
//! tables divided by `MAX_REGIONS`.
//!
//! # What it does not count
//! The sections and their pages (the shared memory itself), KMCL's own channel object and ring
//! buffers (allocated by `vmbkmclr.sys`, sized by the packet size), WDF's objects (the request,
//! the spin lock's own memory), pool headers and allocation rounding, and transient state
//! (an OPEN_SESSION work item, stack buffers).

use core::mem::size_of;

use kmcl::raw::{UNICODE_STRING, VMB_CHANNEL_STATE_CHANGE_CALLBACKS};
use vmbmmio_proto::guest::Region as WireRegion;
use vmbmmio_proto::ioctl::{MAX_REGIONS, MappingState};

use super::session::FileEntry;
use super::{Platform, ProcessReference};
use crate::channel::{
    ChannelShared, KernelHandleCloser, KernelHandleValue, MAX_FRIENDLY_NAME_UNITS,
};
use crate::guest::{GuestShared, HeldReply};
use crate::guest_events::{EventLock, Wake};
use crate::mmio_plan::RegionPlacement;
use crate::sections::{
    HandedOutHandle, ProcessKey, RegionInfo, SectionBackend, UserHandle,
    quota::DEFAULT_MAX_HANDLES_PER_SESSION,
};

/// Documented budget per VM session (docs/performance.md).
pub const SESSION_BUDGET: usize = 8 * 1024;
/// Documented budget per region (docs/performance.md).
pub const REGION_BUDGET: usize = 1024;

struct Driverlike;

struct NoClose;
impl KernelHandleCloser for NoClose {
    unsafe fn close(_handle: KernelHandleValue) {}
}

#[derive(Clone)]
struct PointerSections;
impl SectionBackend for PointerSections {
    type Section = *mut u8;
    fn create_section(&self, _size: u64) -> Result<*mut u8, kmcl::raw::NTSTATUS> {
        Err(-1)
    }
    fn current_process(&self) -> ProcessKey {
        ProcessKey(0)
    }
    fn open_user_handle(&self, _: &*mut u8, _: u32) -> Result<UserHandle, kmcl::raw::NTSTATUS> {
        Err(-1)
    }
    fn close_section(&self, _section: *mut u8) {}
}

struct PointerProcess(#[allow(dead_code)] usize);
impl ProcessReference for PointerProcess {
    fn key(&self) -> ProcessKey {
        ProcessKey(0)
    }
}

/// A spin lock handle and the shared state, like the glue's `SpinEventLock`.
struct SpinLike {
    _lock: usize,
    shared: std::sync::Mutex<GuestShared>,
}
impl EventLock for SpinLike {
    fn new(shared: GuestShared) -> Option<Self> {
        Some(Self {
            _lock: 0,
            shared: std::sync::Mutex::new(shared),
        })
    }
    fn with<R>(&self, f: impl FnOnce(&mut GuestShared) -> R) -> R {
        f(&mut self.shared.lock().unwrap())
    }
    fn wake(&self, _wake: Wake) {}
}

impl Platform for Driverlike {
    type Kmcl = kmcl::Vmbkmclr;
    type HandleCloser = NoClose;
    type Sections = PointerSections;
    type Process = PointerProcess;
    type EventLock = SpinLike;
    type Clock = NoClock;
    type Events = NoEvents;
}

#[derive(Clone)]
struct NoClock;
impl crate::consumers::Clock for NoClock {
    fn now(&self) -> u64 {
        0
    }
}

#[derive(Clone)]
struct NoEvents;
impl crate::consumers::UserEvents for NoEvents {
    fn reference(&self, _: u64) -> Result<crate::consumers::EventRef, kmcl::raw::NTSTATUS> {
        Err(-1)
    }
    fn signal(&self, _: &crate::consumers::EventRef) {}
    fn release(&self, _: crate::consumers::EventRef) {}
}

const POINTER: usize = size_of::<usize>();

/// (bytes per session, bytes per region), as the module docs compute them.
fn footprint() -> (usize, usize) {
    let entry = size_of::<FileEntry<Driverlike>>();
    let plan_table = MAX_REGIONS * size_of::<RegionPlacement>();
    let event_lock = 2 * POINTER + POINTER + size_of::<GuestShared>();
    let kmcl_context = size_of::<ChannelShared>()
        + size_of::<VMB_CHANNEL_STATE_CHANGE_CALLBACKS>()
        + MAX_FRIENDLY_NAME_UNITS * size_of::<u16>()
        + 3 * POINTER
        + size_of::<UNICODE_STRING>()
        + POINTER;
    let ledger_region = size_of::<RegionInfo>() + POINTER;
    let ledger = 8
        + 8
        + 2 * 3 * POINTER
        + MAX_REGIONS * ledger_region
        + DEFAULT_MAX_HANDLES_PER_SESSION * size_of::<HandedOutHandle>();
    let session = entry + plan_table + event_lock + kmcl_context + ledger;
    let per_region = size_of::<WireRegion>()
        + size_of::<RegionPlacement>()
        + size_of::<MappingState>()
        + ledger_region
        + DEFAULT_MAX_HANDLES_PER_SESSION / MAX_REGIONS * size_of::<HandedOutHandle>()
        // The session's other fixed tables (event ring, queue slots, held reply) spread over
        // its regions.
        + (size_of::<GuestShared>() - MAX_REGIONS * size_of::<WireRegion>()) / MAX_REGIONS;
    let _ = size_of::<HeldReply>();
    (session, per_region)
}

#[test]
fn per_session_state_fits_the_budget() {
    let (session, per_region) = footprint();
    std::println!(
        "non-paged per session: {session} B (budget {SESSION_BUDGET}); per region: {per_region} B (budget {REGION_BUDGET}); GuestShared {} B, FileEntry {} B",
        size_of::<GuestShared>(),
        size_of::<FileEntry<Driverlike>>()
    );
    assert!(
        session <= SESSION_BUDGET,
        "{session} B per session > {SESSION_BUDGET}"
    );
}

#[test]
fn per_region_state_fits_the_budget() {
    let (_, per_region) = footprint();
    assert!(
        per_region <= REGION_BUDGET,
        "{per_region} B per region > {REGION_BUDGET}"
    );
}

/// The doorbell table is allocated apart, at a session's first attachment (module
/// `crate::consumers::hub`): a session without consumers pays only the empty hub inside
/// [`GuestShared`]. Its size is documented in docs/host-consumers.md.
#[test]
fn the_doorbell_table_is_apart_and_small() {
    let table = size_of::<crate::consumers::HubTable>();
    let hub = size_of::<crate::consumers::DoorbellHub>();
    std::println!("doorbell table: {table} B per session with consumers; hub: {hub} B");
    assert!(hub <= 64, "{hub} B");
    assert!(table <= 6 * 1024, "{table} B");
}
