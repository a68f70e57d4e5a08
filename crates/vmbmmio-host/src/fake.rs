//! [`FakeDriver`]: a scripted, in-process stand-in for the driver's consumer side, so the
//! client (parsing, errors, release paths), the CLI and the C ABI are tested on any system.
//!
//! It speaks the real wire formats (`vmbmmio-proto`'s request parsers and reply builders) and
//! follows docs/ioctl.md's rules for the consumer requests: attach by VM id and name, access
//! at most the region's, doorbells counted and coalesced, rings rate-limited, everything after
//! the session closed refused with `STATUS_VIRTUAL_CIRCUIT_CLOSED` except DETACH. It is *not*
//! the driver: the simulator (hvsim running the driver's core) is the faithful model; this one
//! is small and scriptable (failures and corrupted replies on demand) and counts every handle,
//! mapping and attachment so tests can prove nothing leaks.
//!
//! Memory is 8-byte aligned atomic cells; "handles" are numbers in the fake's own table.

use std::collections::{BTreeMap, VecDeque};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use vmbmmio_proto::guest::{RegionName, RegionState as WireState};
use vmbmmio_proto::ioctl::{
    AttachmentId, DetachRegionReply, DoorbellTally, IoctlCode, ListedRegion, RegionAttached,
    RingGuestReply, SessionListing, SetDoorbellEventReply, WireGuid, WireMessage,
    parse_attach_region, parse_detach_region, parse_list_sessions, parse_ring_guest,
    parse_set_doorbell_event, parse_take_doorbells,
};

use crate::driver::{Driver, Mapping};
use crate::failure::{
    DriverFailure, STATUS_NO_MORE_ENTRIES, STATUS_RETRY, STATUS_VIRTUAL_CIRCUIT_CLOSED,
};
use crate::host::{Host, RegionState};
use crate::vm_id::VmId;

const STATUS_INVALID_PARAMETER: u32 = 0xC000_000D;
const STATUS_INVALID_DEVICE_REQUEST: u32 = 0xC000_0010;
const STATUS_ACCESS_DENIED: u32 = 0xC000_0022;
const STATUS_BUFFER_TOO_SMALL: u32 = 0xC000_0023;
const STATUS_OBJECT_TYPE_MISMATCH: u32 = 0xC000_0024;
const STATUS_OBJECT_NAME_NOT_FOUND: u32 = 0xC000_0034;
const STATUS_QUOTA_EXCEEDED: u32 = 0xC000_0044;
const STATUS_NOT_SUPPORTED: u32 = 0xC000_00BB;
const STATUS_INVALID_HANDLE: u32 = 0xC000_0008;
const STATUS_NOT_FOUND: u32 = 0xC000_0225;
/// Attachments one file handle may hold (docs/ioctl.md).
const PER_FILE_QUOTA: usize = 64;

/// One region of a fake session.
#[derive(Clone, Debug)]
pub struct FakeRegion {
    name: String,
    size: u64,
    guest_writable: bool,
    consumer_writable: bool,
    state: RegionState,
}

impl FakeRegion {
    /// A region `name` of `size` bytes (a multiple of 4096), guest-writable, consumers
    /// read-only, mapped.
    pub fn new(name: &str, size: u64) -> Self {
        Self {
            name: name.to_owned(),
            size,
            guest_writable: true,
            consumer_writable: false,
            state: RegionState::Mapped,
        }
    }

    /// Host consumers may attach it read-write.
    pub fn consumer_writable(mut self) -> Self {
        self.consumer_writable = true;
        self
    }

    /// The guest may only read it.
    pub fn guest_read_only(mut self) -> Self {
        self.guest_writable = false;
        self
    }

    /// Its state as listed.
    pub fn state(mut self, state: RegionState) -> Self {
        self.state = state;
        self
    }
}

/// The shared memory of a fake region: 8-byte cells (so the view's base is 8-aligned).
/// Accessed only through atomics (the guest side here) and the views' volatile accesses,
/// never through references to its bytes.
#[derive(Debug)]
struct Memory {
    cells: Box<[AtomicU64]>,
}

impl Memory {
    fn new(size: u64) -> Arc<Self> {
        let words = usize::try_from(size.div_ceil(8)).unwrap_or(0).max(1);
        Arc::new(Self {
            cells: (0..words).map(|_| AtomicU64::new(0)).collect(),
        })
    }

    fn base(&self) -> NonNull<u8> {
        // A boxed slice of at least one cell: never null.
        NonNull::new(self.cells.as_ptr().cast_mut().cast::<u8>()).unwrap_or(NonNull::dangling())
    }

    fn len(&self) -> usize {
        self.cells.len().saturating_mul(8)
    }

    /// The cell holding byte `offset` and the byte's shift in it (little-endian).
    fn cell(&self, offset: usize) -> Option<(&AtomicU64, u32)> {
        let cell = self.cells.get(offset / 8)?;
        let shift = u32::try_from(offset % 8).ok()?.checked_mul(8)?;
        Some((cell, shift))
    }

    fn read(&self, offset: usize) -> Option<u8> {
        let (cell, shift) = self.cell(offset)?;
        u8::try_from((cell.load(Ordering::SeqCst) >> shift) & 0xFF).ok()
    }

    fn write(&self, offset: usize, byte: u8) -> Option<()> {
        let (cell, shift) = self.cell(offset)?;
        let mask = !(0xFFu64 << shift);
        let _ = cell.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |word| {
            Some((word & mask) | (u64::from(byte) << shift))
        });
        Some(())
    }
}

/// An auto-reset event.
#[derive(Debug, Default)]
struct Event {
    signalled: Mutex<bool>,
    cond: Condvar,
}

impl Event {
    fn set(&self) {
        *lock(&self.signalled) = true;
        self.cond.notify_one();
    }

    fn wait(&self, timeout: Option<Duration>) -> bool {
        let deadline = timeout.and_then(|timeout| Instant::now().checked_add(timeout));
        let mut signalled = lock(&self.signalled);
        loop {
            if *signalled {
                *signalled = false;
                return true;
            }
            signalled = match (timeout, deadline) {
                (Some(_), Some(deadline)) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return false;
                    }
                    self.cond
                        .wait_timeout(signalled, left)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
                _ => self
                    .cond
                    .wait(signalled)
                    .unwrap_or_else(PoisonError::into_inner),
            };
        }
    }
}

#[derive(Debug)]
enum Handle {
    Section(Arc<Memory>),
    Event(Arc<Event>),
}

#[derive(Debug)]
struct Session {
    vm_id: VmId,
    id: u64,
    regions: Vec<(FakeRegion, Arc<Memory>)>,
    closed: bool,
    /// The guest's conversation selected protocol 1.1 (doorbells).
    doorbells: bool,
    refused_from_guest: u64,
}

#[derive(Debug)]
struct Attachment {
    session: u64,
    region: u32,
    event: Option<Arc<Event>>,
    count: u64,
    last_value: u64,
    refused_to_guest: u64,
}

/// A scripted edit of the next reply to one request.
type ReplyEdit = Box<dyn FnOnce(&mut Vec<u8>) + Send>;

#[derive(Default)]
struct State {
    sessions: Vec<Session>,
    attachments: BTreeMap<u64, Attachment>,
    next_attachment: u64,
    next_session: u64,
    next_handle: u64,
    handles: BTreeMap<u64, Handle>,
    mappings: BTreeMap<usize, Arc<Memory>>,
    failures: VecDeque<(Option<u32>, DriverFailure)>,
    edits: VecDeque<(u32, ReplyEdit)>,
    rings: Vec<(u64, u64)>,
    ring_budget: Option<u64>,
    /// The guest answers each ring with a doorbell of `value + 1` on the same region.
    echo: bool,
    /// The guest rings once (value 0x1234) when an event is registered.
    ring_on_register: bool,
}

/// The scripted fake driver. Clones share one state: keep one to script and inspect while a
/// [`Host`] owns another.
#[derive(Clone, Default)]
pub struct FakeDriver {
    state: Arc<Mutex<State>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn nt(status: u32) -> DriverFailure {
    DriverFailure::nt(status)
}

impl FakeDriver {
    /// A fake with no sessions.
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Adds a version-2 session of `vm_id` with `regions` (the guest speaks protocol 1.1);
    /// returns its session id.
    pub fn add_session(&self, vm_id: VmId, regions: &[FakeRegion]) -> u64 {
        let mut state = self.state();
        state.next_session = state.next_session.saturating_add(1);
        let id = state.next_session;
        state.sessions.push(Session {
            vm_id,
            id,
            regions: regions
                .iter()
                .map(|region| (region.clone(), Memory::new(region.size)))
                .collect(),
            closed: false,
            doorbells: true,
            refused_from_guest: 0,
        });
        id
    }

    /// The guest of `session` speaks protocol 1.0 only (RING_GUEST → not supported).
    pub fn without_guest_doorbells(&self, session: u64) {
        if let Some(session) = self.state().sessions.iter_mut().find(|s| s.id == session) {
            session.doorbells = false;
        }
    }

    /// Closes `session` as the driver does: every subscriber's event signalled once; later
    /// requests on its attachments fail with `STATUS_VIRTUAL_CIRCUIT_CLOSED`.
    pub fn close_session(&self, session: u64) {
        let mut state = self.state();
        if let Some(found) = state.sessions.iter_mut().find(|s| s.id == session) {
            found.closed = true;
        }
        for attachment in state.attachments.values_mut() {
            if attachment.session == session
                && let Some(event) = attachment.event.take()
            {
                event.set();
            }
        }
    }

    /// The guest rings `region` of `session` with `value`: each attachment of the region
    /// counts it and its event is signalled.
    pub fn guest_doorbell(&self, session: u64, region: u32, value: u64) {
        Self::ring_subscribers(&mut self.state(), session, region, value);
    }

    fn ring_subscribers(state: &mut State, session: u64, region: u32, value: u64) {
        for attachment in state.attachments.values_mut() {
            if attachment.session == session && attachment.region == region {
                attachment.count = attachment.count.saturating_add(1);
                attachment.last_value = value;
                if let Some(event) = &attachment.event {
                    event.set();
                }
            }
        }
    }

    /// The guest answers every ring with a doorbell of `value + 1` on the same region.
    pub fn echo_rings(&self, on: bool) {
        self.state().echo = on;
    }

    /// The guest rings once (value 0x1234) whenever a consumer registers a doorbell event.
    pub fn ring_on_register(&self, on: bool) {
        self.state().ring_on_register = on;
    }

    /// Only `budget` more rings to the guest pass the rate limit; later ones are refused
    /// (`STATUS_RETRY`) and counted.
    pub fn limit_rings(&self, budget: u64) {
        self.state().ring_budget = Some(budget);
    }

    /// The next request with IOCTL `code` (`None`: any) fails with `failure`.
    pub fn fail_next(&self, code: Option<u32>, failure: DriverFailure) {
        self.state().failures.push_back((code, failure));
    }

    /// The next reply to IOCTL `code` is changed by `edit` before the client sees it.
    pub fn edit_next_reply(&self, code: u32, edit: impl FnOnce(&mut Vec<u8>) + Send + 'static) {
        self.state().edits.push_back((code, Box::new(edit)));
    }

    /// Every ring to the guest that passed: (attachment id, value).
    pub fn rings(&self) -> Vec<(u64, u64)> {
        self.state().rings.clone()
    }

    /// Attachments the driver still holds.
    pub fn live_attachments(&self) -> usize {
        self.state().attachments.len()
    }

    /// Handles (sections, events) still open in the "process".
    pub fn open_handles(&self) -> usize {
        self.state().handles.len()
    }

    /// Views still mapped.
    pub fn live_mappings(&self) -> usize {
        self.state().mappings.len()
    }

    /// The guest reads `buf.len()` bytes at `offset` of `region` of `session` (`false`: no
    /// such region or out of bounds).
    pub fn guest_read(&self, session: u64, region: u32, offset: usize, buf: &mut [u8]) -> bool {
        let Some(memory) = self.memory(session, region) else {
            return false;
        };
        buf.iter_mut().enumerate().all(|(index, slot)| {
            match offset.checked_add(index).and_then(|at| memory.read(at)) {
                Some(byte) => {
                    *slot = byte;
                    true
                }
                None => false,
            }
        })
    }

    /// The guest writes `data` at `offset` of `region` of `session`.
    pub fn guest_write(&self, session: u64, region: u32, offset: usize, data: &[u8]) -> bool {
        let Some(memory) = self.memory(session, region) else {
            return false;
        };
        data.iter().enumerate().all(|(index, byte)| {
            offset
                .checked_add(index)
                .and_then(|at| memory.write(at, *byte))
                .is_some()
        })
    }

    fn memory(&self, session: u64, region: u32) -> Option<Arc<Memory>> {
        let state = self.state();
        let session = state.sessions.iter().find(|s| s.id == session)?;
        let (_, memory) = session.regions.get(usize::try_from(region).ok()?)?;
        Some(Arc::clone(memory))
    }

    fn new_handle(state: &mut State, handle: Handle) -> u64 {
        state.next_handle = state.next_handle.saturating_add(4);
        let value = state.next_handle;
        state.handles.insert(value, handle);
        value
    }

    /// One request: the reply bytes or the status.
    fn respond(
        state: &mut State,
        code: IoctlCode,
        input: &[u8],
        out: &mut [u8],
    ) -> Result<usize, DriverFailure> {
        let malformed = |_| nt(STATUS_INVALID_PARAMETER);
        let small = |_| nt(STATUS_BUFFER_TOO_SMALL);
        match code {
            IoctlCode::ListSessions => {
                let cursor = parse_list_sessions(input).map_err(malformed)?;
                let mut listed: Vec<&Session> =
                    state.sessions.iter().filter(|s| !s.closed).collect();
                listed.sort_by_key(|s| s.id);
                let total = u32::try_from(listed.len()).unwrap_or(u32::MAX);
                let session = usize::try_from(cursor)
                    .ok()
                    .and_then(|index| listed.get(index))
                    .ok_or(nt(STATUS_NO_MORE_ENTRIES))?;
                let regions: Vec<ListedRegion> = session
                    .regions
                    .iter()
                    .map(|(region, _)| ListedRegion {
                        size: region.size,
                        guest_writable: region.guest_writable,
                        consumer_writable: region.consumer_writable,
                        state: match region.state {
                            RegionState::Unmapped => WireState::Unmapped,
                            RegionState::Mapped => WireState::Mapped,
                            RegionState::Intercepted => WireState::Intercepted,
                        },
                        name: RegionName::new(&region.name).unwrap_or(RegionName::EMPTY),
                    })
                    .collect();
                SessionListing::new(
                    total,
                    cursor,
                    WireGuid::from_u128(session.vm_id.to_u128()),
                    session.id,
                    &regions,
                )
                .map_err(malformed)?
                .encode(out)
                .map_err(small)
            }
            IoctlCode::AttachRegion => {
                let params = parse_attach_region(input).map_err(malformed)?;
                let vm_id = VmId::from_u128(params.vm_id.to_u128());
                let session = state
                    .sessions
                    .iter()
                    .find(|s| s.vm_id == vm_id && !s.closed)
                    .ok_or(nt(STATUS_NOT_FOUND))?;
                let (index, (region, memory)) = (0u32..)
                    .zip(session.regions.iter())
                    .find(|(_, (region, _))| region.name == params.name.as_str())
                    .ok_or(nt(STATUS_OBJECT_NAME_NOT_FOUND))?;
                if params.access.writes() && !region.consumer_writable {
                    return Err(nt(STATUS_ACCESS_DENIED));
                }
                if state.attachments.len() >= PER_FILE_QUOTA {
                    return Err(nt(STATUS_QUOTA_EXCEEDED));
                }
                let (session_id, size, memory) = (session.id, region.size, Arc::clone(memory));
                state.next_attachment = state.next_attachment.saturating_add(1);
                let id =
                    AttachmentId::new(state.next_attachment).ok_or(nt(STATUS_QUOTA_EXCEEDED))?;
                let handle = Self::new_handle(state, Handle::Section(memory));
                let reply = RegionAttached::new(id, handle, size, params.access, index);
                let written = reply
                    .map_err(malformed)
                    .and_then(|r| r.encode(out).map_err(small));
                match written {
                    Ok(written) => {
                        state.attachments.insert(
                            id.get(),
                            Attachment {
                                session: session_id,
                                region: index,
                                event: None,
                                count: 0,
                                last_value: 0,
                                refused_to_guest: 0,
                            },
                        );
                        Ok(written)
                    }
                    Err(failure) => {
                        state.handles.remove(&handle);
                        Err(failure)
                    }
                }
            }
            IoctlCode::DetachRegion => {
                let id = parse_detach_region(input).map_err(malformed)?;
                DetachRegionReply::new(id).encode(out).map_err(small)?;
                state
                    .attachments
                    .remove(&id.get())
                    .ok_or(nt(STATUS_INVALID_PARAMETER))?;
                Ok(DetachRegionReply::SIZE)
            }
            IoctlCode::SetDoorbellEvent => {
                let params = parse_set_doorbell_event(input).map_err(malformed)?;
                let event = match params.event_handle {
                    None => None,
                    Some(handle) => match state.handles.get(&handle.get()) {
                        Some(Handle::Event(event)) => Some(Arc::clone(event)),
                        Some(Handle::Section(_)) => return Err(nt(STATUS_OBJECT_TYPE_MISMATCH)),
                        None => return Err(nt(STATUS_INVALID_HANDLE)),
                    },
                };
                let (session, region) = Self::open_attachment(state, params.attachment)?;
                let written = SetDoorbellEventReply::new(params.attachment)
                    .encode(out)
                    .map_err(small)?;
                if let Some(attachment) = state.attachments.get_mut(&params.attachment.get()) {
                    attachment.event = event;
                }
                if state.ring_on_register {
                    Self::ring_subscribers(state, session, region, 0x1234);
                }
                Ok(written)
            }
            IoctlCode::TakeDoorbells => {
                let id = parse_take_doorbells(input).map_err(malformed)?;
                let (session, _) = Self::open_attachment(state, id)?;
                let refused_from_guest = state
                    .sessions
                    .iter()
                    .find(|s| s.id == session)
                    .map_or(0, |s| s.refused_from_guest);
                let attachment = state
                    .attachments
                    .get_mut(&id.get())
                    .ok_or(nt(STATUS_INVALID_PARAMETER))?;
                let tally = DoorbellTally {
                    attachment: id,
                    count: attachment.count,
                    last_value: attachment.last_value,
                    refused_from_guest,
                    refused_to_guest: attachment.refused_to_guest,
                };
                let written = tally.encode(out).map_err(small)?;
                attachment.count = 0;
                Ok(written)
            }
            IoctlCode::RingGuest => {
                let params = parse_ring_guest(input).map_err(malformed)?;
                let (session, region) = Self::open_attachment(state, params.attachment)?;
                let doorbells = state
                    .sessions
                    .iter()
                    .find(|s| s.id == session)
                    .is_some_and(|s| s.doorbells);
                if !doorbells {
                    return Err(nt(STATUS_NOT_SUPPORTED));
                }
                if let Some(budget) = state.ring_budget.as_mut() {
                    if *budget == 0 {
                        if let Some(attachment) =
                            state.attachments.get_mut(&params.attachment.get())
                        {
                            attachment.refused_to_guest =
                                attachment.refused_to_guest.saturating_add(1);
                        }
                        return Err(nt(STATUS_RETRY));
                    }
                    *budget = budget.saturating_sub(1);
                }
                let written = RingGuestReply::new(params.attachment)
                    .encode(out)
                    .map_err(small)?;
                state.rings.push((params.attachment.get(), params.value));
                if state.echo {
                    Self::ring_subscribers(state, session, region, params.value.wrapping_add(1));
                }
                Ok(written)
            }
            _ => Err(nt(STATUS_INVALID_DEVICE_REQUEST)),
        }
    }

    /// The session and region of an attachment this file owns whose session is open.
    fn open_attachment(state: &State, id: AttachmentId) -> Result<(u64, u32), DriverFailure> {
        let attachment = state
            .attachments
            .get(&id.get())
            .ok_or(nt(STATUS_INVALID_PARAMETER))?;
        let closed = state
            .sessions
            .iter()
            .find(|s| s.id == attachment.session)
            .is_none_or(|s| s.closed);
        if closed {
            return Err(nt(STATUS_VIRTUAL_CIRCUIT_CLOSED));
        }
        Ok((attachment.session, attachment.region))
    }
}

impl Driver for FakeDriver {
    fn ioctl(&self, code: u32, input: &[u8], output: &mut [u8]) -> Result<usize, DriverFailure> {
        let mut state = self.state();
        if let Some(&(wanted, failure)) = state.failures.front()
            && wanted.is_none_or(|wanted| wanted == code)
        {
            state.failures.pop_front();
            return Err(failure);
        }
        let request = IoctlCode::from_code(code).ok_or(nt(STATUS_INVALID_DEVICE_REQUEST))?;
        let written = Self::respond(&mut state, request, input, output)?;
        let Some(position) = state.edits.iter().position(|(wanted, _)| *wanted == code) else {
            return Ok(written);
        };
        let Some((_, edit)) = state.edits.remove(position) else {
            return Ok(written);
        };
        let mut reply = output.get(..written).unwrap_or_default().to_vec();
        edit(&mut reply);
        let Some(target) = output.get_mut(..reply.len()) else {
            // An edit that grows the reply past the buffer: the "driver" claims more bytes
            // than the buffer holds, which the client must refuse.
            return Ok(reply.len());
        };
        target.copy_from_slice(&reply);
        Ok(reply.len())
    }

    fn map_section(
        &self,
        section: u64,
        size: u64,
        _writable: bool,
    ) -> Result<Mapping, DriverFailure> {
        let mut state = self.state();
        let memory = match state.handles.get(&section) {
            Some(Handle::Section(memory)) => Arc::clone(memory),
            _ => return Err(DriverFailure::Win32(6)),
        };
        let len = usize::try_from(size).map_err(|_| DriverFailure::Win32(8))?;
        if len > memory.len() {
            return Err(DriverFailure::Win32(87));
        }
        let base = memory.base();
        let address = base.as_ptr() as usize;
        if state.mappings.contains_key(&address) {
            // One live view per region in the fake (the address is the key); enough for tests.
            return Err(DriverFailure::Win32(8));
        }
        state.mappings.insert(address, memory);
        // SAFETY: `base..base + len` is inside the region's cells (len <= memory.len()),
        // 8-aligned (AtomicU64 cells), kept alive by `mappings` until `unmap`; the cells are
        // only reached through atomics and the view's volatile accesses, never references.
        Ok(unsafe { Mapping::new(base, len) })
    }

    fn unmap(&self, mapping: Mapping) {
        self.state()
            .mappings
            .remove(&(mapping.base().as_ptr() as usize));
    }

    fn close_handle(&self, handle: u64) {
        self.state().handles.remove(&handle);
    }

    fn create_event(&self) -> Result<u64, DriverFailure> {
        let mut state = self.state();
        Ok(Self::new_handle(&mut state, Handle::Event(Arc::default())))
    }

    fn wait_event(&self, event: u64, timeout: Option<Duration>) -> Result<bool, DriverFailure> {
        let event = match self.state().handles.get(&event) {
            Some(Handle::Event(event)) => Arc::clone(event),
            _ => return Err(DriverFailure::Win32(6)),
        };
        Ok(event.wait(timeout))
    }
}

/// The VM id of [`demo_host`]'s VM.
pub const DEMO_VM: VmId = VmId::from_u128(0x6ba7_b810_9dad_11d1_80b4_00c0_4fd4_30c8);

/// A fake with one VM ([`DEMO_VM`]) and two regions: `frames` (64 KiB, consumers may write)
/// and `log` (4 KiB, consumers read only); its guest echoes every ring with `value + 1` and
/// rings once when a doorbell event is registered. For the CLI's and the C example's tests.
pub fn demo_driver() -> FakeDriver {
    let fake = FakeDriver::new();
    fake.add_session(
        DEMO_VM,
        &[
            FakeRegion::new("frames", 64 << 10).consumer_writable(),
            FakeRegion::new("log", 4 << 10).state(RegionState::Intercepted),
        ],
    );
    fake.echo_rings(true);
    fake.ring_on_register(true);
    fake
}

/// A [`Host`] over [`demo_driver`].
pub fn demo_host() -> Host {
    Host::with_driver(demo_driver())
}
