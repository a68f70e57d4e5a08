//! The section manager: reserves each session's quota, takes its sections into the ledger
//! all-or-nothing, hands out user handles to the requesting device host, and gives every
//! resource exactly one release path.
//!
//! # Locking and IRQL
//! Every method takes `&mut self`; the driver keeps the manager behind its one passive-level
//! table lock (a WDF wait lock), never a spin lock. What takes real time runs **without** it:
//! - creating sections: [`SectionManager::reserve`] under the lock,
//!   [`Reservation::create_sections`] without it, [`SectionManager::commit`] or
//!   [`SectionManager::cancel`] under it again (module `reservation`);
//! - releasing them: [`SectionManager::close_session`] detaches the session under the lock and
//!   hands its kernel references back as an [`OwnedSections`], which the caller releases after
//!   unlocking (module `owned`).
//!
//! What stays under the lock:
//! - [`SectionManager::open_user_handle`] (`ObOpenObjectByPointer`): a bounded insert into the
//!   requesting process's handle table that waits for no other party (no I/O, no guest, no
//!   paging of the section's memory), and it needs the session's kernel reference, which must
//!   not be released meanwhile;
//! - [`SectionManager::release_all`] and the manager's `Drop`, which release inline: they run
//!   at unload, once no request is in flight, so nothing waits for the lock then.
//!
//! # Counting
//! [`SectionCounters`] stay exact although the kernel calls run unlocked:
//! - a creation is counted when its reservation reaches the manager again: at commit (the
//!   sections are in the ledger) or at cancel;
//! - a release is counted when the manager gives a reference up to the one owner that
//!   releases it: a part-way failure of `create_sections` (counted at commit or cancel), a
//!   cancel (every reference the reservation created: the bundle can no longer be committed
//!   and its owner releases it, on drop at the latest), `close_session` (the detached bundle),
//!   `release_all` (inline).
//!
//! So `sections_created == sections_released` once every session is closed and every
//! reservation committed or cancelled. A reservation and bundle both dropped without reaching
//! the manager (only when the control state itself is freed) release their references on
//! drop and are counted nowhere: neither the creation nor the release.

use alloc::vec::Vec;

use super::backend::{ProcessKey, RegionAccess, SectionBackend, UserHandle};
use super::error::SectionError;
use super::ledger::{
    HandedOutHandle, Region, RegionId, RegionInfo, SectionCounters, Session, SessionId,
};
use super::owned::OwnedSections;
use super::quota::{RegionSpec, SectionQuotas, section_size, total_bytes};
use super::reservation::Reservation;
use crate::mmio_plan::MAX_REGIONS;

/// Owns every session's sections and the record of every handle handed out.
///
/// Dropping the manager releases everything ([`SectionManager::release_all`]); the driver
/// still calls `release_all` explicitly on unload, at PASSIVE_LEVEL, so the drop finds nothing
/// left.
pub struct SectionManager<B: SectionBackend> {
    backend: B,
    quotas: SectionQuotas,
    /// Live sessions, sorted by id (looked up by binary search).
    sessions: Vec<Session<B::Section>>,
    next_session: u64,
    unloading: bool,
    /// Reservations made and not yet committed or cancelled.
    pending_sessions: usize,
    /// Their page-rounded bytes.
    pending_bytes: u64,
    totals: SectionCounters,
}

impl<B: SectionBackend> SectionManager<B> {
    /// A manager with no sessions.
    ///
    /// IRQL: <= DISPATCH_LEVEL (allocates nothing).
    pub const fn new(backend: B, quotas: SectionQuotas) -> Self {
        Self {
            backend,
            quotas,
            sessions: Vec::new(),
            next_session: 1,
            unloading: false,
            pending_sessions: 0,
            pending_bytes: 0,
            totals: SectionCounters {
                sessions_created: 0,
                sessions_closed: 0,
                sections_created: 0,
                sections_released: 0,
                handles_handed_out: 0,
                handle_records_dropped: 0,
                consumer_handles_handed_out: 0,
                bytes_in_use: 0,
                live_sessions: 0,
                live_sections: 0,
                live_handle_records: 0,
                pending_sessions: 0,
                pending_bytes: 0,
            },
        }
    }

    /// Step one of a new session, **under the lock**: every check, then the session's id and
    /// quota are reserved until [`SectionManager::commit`] or [`SectionManager::cancel`] (one
    /// of the two must follow, module `reservation`). Nothing is created yet.
    ///
    /// Quotas are checked on the page-rounded total against the bytes in use **plus** those of
    /// every reservation still pending, and the session count against live plus pending
    /// sessions, so concurrent opens together stay within the limits. The ledger's capacity
    /// for every pending session is allocated here, so commit cannot fail.
    ///
    /// IRQL: PASSIVE_LEVEL (no kernel call; may allocate).
    pub fn reserve(&mut self, regions: &[RegionSpec]) -> Result<Reservation<B>, SectionError> {
        if self.unloading {
            return Err(SectionError::Unloading);
        }
        let requested = total_bytes(regions)?;
        if self.sessions.len().saturating_add(self.pending_sessions) >= self.quotas.max_sessions {
            return Err(SectionError::TooManySessions {
                limit: self.quotas.max_sessions,
            });
        }
        let reserved = self.totals.bytes_in_use.saturating_add(self.pending_bytes);
        self.quotas.check_bytes(requested, reserved)?;
        let mut infos = [RegionInfo {
            size: 0,
            access: RegionAccess::ReadOnly,
            consumer_writable: false,
        }; MAX_REGIONS];
        for ((index, spec), info) in regions.iter().enumerate().zip(infos.iter_mut()) {
            // Validated by total_bytes above.
            let size = section_size(spec.size).ok_or(SectionError::RegionTooLarge { index })?;
            *info = RegionInfo {
                size,
                access: spec.access,
                consumer_writable: spec.consumer_writable,
            };
        }
        let id = SessionId::from_raw(self.next_session);
        let next = self
            .next_session
            .checked_add(1)
            .ok_or(SectionError::OutOfMemory)?;
        let pending = self
            .pending_sessions
            .checked_add(1)
            .ok_or(SectionError::OutOfMemory)?;
        // Capacity >= live + pending sessions: every commit pushes without allocating.
        self.sessions
            .try_reserve(pending)
            .map_err(|_| SectionError::OutOfMemory)?;

        self.next_session = next;
        self.pending_sessions = pending;
        self.pending_bytes = self.pending_bytes.saturating_add(requested);
        let count = regions.len();
        Ok(Reservation::new(
            id,
            requested,
            infos.get(..count).unwrap_or(&[]),
            self.backend.clone(),
        ))
    }

    /// Last step of a new session, **under the lock**: `sections` (what
    /// `reservation.create_sections()` returned) enter the ledger as the reserved session.
    /// Infallible: the capacity was allocated by [`SectionManager::reserve`].
    ///
    /// `reservation` must come from this manager and `sections` from that reservation; the
    /// control code keeps the two together from creation to commit.
    ///
    /// IRQL: PASSIVE_LEVEL (no kernel call).
    pub fn commit(&mut self, reservation: Reservation<B>, sections: OwnedSections<B>) -> SessionId {
        // Only a reservation whose `create_sections` succeeded is committed: it released nothing.
        self.settle(&reservation);
        self.totals.sessions_created = self.totals.sessions_created.saturating_add(1);
        self.totals.bytes_in_use = self.totals.bytes_in_use.saturating_add(reservation.bytes);
        // Kept sorted by id (commits may come out of reservation order) so lookups are a
        // binary search. No reallocation: `reserve` made room for every pending session.
        let at = self.sessions.partition_point(|s| s.id < reservation.id);
        #[allow(
            clippy::disallowed_methods,
            reason = "`reserve` made room for every pending session: never reallocates"
        )]
        self.sessions.insert(
            at,
            Session {
                id: reservation.id,
                bytes: reservation.bytes,
                regions: sections.take_regions(),
                handles: Vec::new(),
            },
        );
        reservation.id
    }

    /// The other last step, **under the lock**: the reservation's quota is freed and its id is
    /// never used. Every section it created counts as released: the ones a part-way failure
    /// released already, and those in the [`OwnedSections`] its `create_sections` returned,
    /// which cannot be committed any more and which the caller releases (without the lock, or
    /// on drop).
    ///
    /// IRQL: PASSIVE_LEVEL (no kernel call).
    pub fn cancel(&mut self, reservation: Reservation<B>) {
        self.settle(&reservation);
        self.totals.sections_released = self
            .totals
            .sections_released
            .saturating_add(reservation.created);
    }

    /// Frees a reservation's pending quota and counts its creations.
    fn settle(&mut self, reservation: &Reservation<B>) {
        self.pending_sessions = self.pending_sessions.saturating_sub(1);
        self.pending_bytes = self.pending_bytes.saturating_sub(reservation.bytes);
        self.totals.sections_created = self
            .totals
            .sections_created
            .saturating_add(reservation.created);
    }

    /// Creates one section per region, sized to whole pages, or nothing at all:
    /// [`SectionManager::reserve`], [`Reservation::create_sections`], then
    /// [`SectionManager::commit`] or [`SectionManager::cancel`], all with `&mut self` held
    /// (for callers that hold it throughout: tests, tools). The driver's control code runs the
    /// creation without its lock instead.
    ///
    /// IRQL: PASSIVE_LEVEL.
    pub fn create_session(&mut self, regions: &[RegionSpec]) -> Result<SessionId, SectionError> {
        let mut reservation = self.reserve(regions)?;
        match reservation.create_sections() {
            Ok(sections) => Ok(self.commit(reservation, sections)),
            Err(error) => {
                self.cancel(reservation);
                Err(error)
            }
        }
    }

    /// Opens a user-mode handle to `region` in the requesting device host's process, granting
    /// exactly `requested` ([`RegionAccess::access_mask`]), and records it as handed out. The
    /// caller's session must own the region, and a read-only region refuses
    /// [`RegionAccess::ReadWrite`].
    ///
    /// Must run in `requester`'s context (on Windows: from `EvtIoInCallerContext`); otherwise
    /// the handle would land in another process and this fails with
    /// [`SectionError::WrongProcessContext`]. Validate the IOCTL's output buffer **before**
    /// calling: once this returns, the handle belongs to the device host and the driver will
    /// never close it.
    ///
    /// IRQL: PASSIVE_LEVEL.
    pub fn open_user_handle(
        &mut self,
        caller: SessionId,
        region: RegionId,
        requested: RegionAccess,
        requester: ProcessKey,
    ) -> Result<UserHandle, SectionError> {
        if self.unloading {
            return Err(SectionError::Unloading);
        }
        if region.session != caller {
            return Err(SectionError::ForeignRegion {
                caller,
                owner: region.session,
            });
        }
        let session = self
            .sessions
            .binary_search_by_key(&caller, |s| s.id)
            .ok()
            .and_then(|at| self.sessions.get_mut(at))
            .ok_or(SectionError::UnknownSession { session: caller })?;
        let index = usize::try_from(region.index).unwrap_or(usize::MAX);
        let count = session.regions.len();
        let entry = session
            .regions
            .get(index)
            .ok_or(SectionError::RegionOutOfRange {
                index: region.index,
                count,
            })?;
        if requested == RegionAccess::ReadWrite && entry.info.access == RegionAccess::ReadOnly {
            return Err(SectionError::WriteNotAllowed {
                index: region.index,
            });
        }
        if session.handles.len() >= self.quotas.max_handles_per_session {
            return Err(SectionError::HandleQuotaExceeded {
                limit: self.quotas.max_handles_per_session,
            });
        }
        let current = self.backend.current_process();
        if current != requester {
            return Err(SectionError::WrongProcessContext { requester, current });
        }
        // Reserve the record first: a handle that exists must always be recorded.
        session
            .handles
            .try_reserve(1)
            .map_err(|_| SectionError::OutOfMemory)?;
        let handle = self
            .backend
            .open_user_handle(&entry.section, requested.access_mask())
            .map_err(|status| SectionError::Platform { index, status })?;
        #[allow(
            clippy::disallowed_methods,
            reason = "into the room try_reserve(1) made above: never reallocates"
        )]
        session.handles.push(HandedOutHandle {
            region: region.index,
            process: requester,
            handle,
            access: requested,
        });
        self.totals.handles_handed_out = self.totals.handles_handed_out.saturating_add(1);
        Ok(handle)
    }

    /// Opens a user-mode handle to region `index` of `session` in a **host consumer's**
    /// process (ATTACH_REGION), granting `SECTION_MAP_READ | SECTION_QUERY`, plus
    /// `SECTION_MAP_WRITE` if `write` (refused unless the region is consumer-writable). Not
    /// recorded with the session's device-host handles (their quota is the device host's):
    /// the caller's attachment is the record. Must run in `requester`'s context.
    ///
    /// IRQL: PASSIVE_LEVEL, in the consumer's context (`ObOpenObjectByPointer`).
    pub fn open_consumer_handle(
        &mut self,
        session: SessionId,
        index: u32,
        write: bool,
        requester: ProcessKey,
    ) -> Result<UserHandle, SectionError> {
        if self.unloading {
            return Err(SectionError::Unloading);
        }
        let entry = self.region_entry(session, RegionId::new(session, index))?;
        if write && !entry.info.consumer_writable {
            return Err(SectionError::WriteNotAllowed { index });
        }
        let current = self.backend.current_process();
        if current != requester {
            return Err(SectionError::WrongProcessContext { requester, current });
        }
        let access = if write {
            RegionAccess::ReadWrite
        } else {
            RegionAccess::ReadOnly
        };
        let at = usize::try_from(index).unwrap_or(usize::MAX);
        let handle = self
            .backend
            .open_user_handle(&entry.section, access.access_mask())
            .map_err(|status| SectionError::Platform { index: at, status })?;
        self.totals.consumer_handles_handed_out =
            self.totals.consumer_handles_handed_out.saturating_add(1);
        Ok(handle)
    }

    /// Device-host exit or file cleanup: drops the records of every handle handed out to
    /// `process`, in every session, and returns how many. The handles are not closed here:
    /// the process closes them, or the OS does at its exit (see `backend`). Sections stay with
    /// their sessions.
    ///
    /// IRQL: PASSIVE_LEVEL (the cleanup callback; the method itself makes no kernel call).
    pub fn release_process(&mut self, process: ProcessKey) -> usize {
        let mut dropped = 0usize;
        for session in &mut self.sessions {
            let before = session.handles.len();
            session.handles.retain(|record| record.process != process);
            dropped = dropped.saturating_add(before.saturating_sub(session.handles.len()));
        }
        self.count_dropped_records(dropped);
        dropped
    }

    /// Channel teardown, **under the lock**: the session leaves the ledger (its bytes return
    /// to the quota, its handle records are dropped) and its kernel references come back as an
    /// [`OwnedSections`], which the caller releases **after unlocking**
    /// ([`OwnedSections::release`]; dropping it releases too, wherever that happens). Device
    /// hosts that still hold handles keep the section objects alive until they close them or
    /// exit.
    ///
    /// IRQL: PASSIVE_LEVEL (no kernel call here; the release is the caller's).
    pub fn close_session(&mut self, session: SessionId) -> Result<OwnedSections<B>, SectionError> {
        let position = self
            .sessions
            .binary_search_by_key(&session, |s| s.id)
            .map_err(|_| SectionError::UnknownSession { session })?;
        // `remove`, not `swap_remove`: the table stays sorted by id.
        let closed = self.sessions.remove(position);
        Ok(self.detach_session(closed))
    }

    /// Driver unload: releases every session **inline** and refuses new sessions, reservations
    /// and handles from now on. Idempotent. Inline is right here: it runs once no request is in
    /// flight (`control::serve::remove` drains the rundown first), so no other request waits.
    ///
    /// IRQL: PASSIVE_LEVEL.
    pub fn release_all(&mut self) {
        self.unloading = true;
        while let Some(session) = self.sessions.pop() {
            self.detach_session(session).release();
        }
    }

    /// What the ledger knows about `region`, if `caller` owns it.
    ///
    /// IRQL: <= DISPATCH_LEVEL (no kernel call), but callers hold the passive-level lock.
    pub fn region(&self, caller: SessionId, region: RegionId) -> Result<RegionInfo, SectionError> {
        self.region_entry(caller, region).map(|entry| entry.info)
    }

    /// The driver's kernel reference to `region`'s section, if `caller` owns it (for the
    /// driver's own view of the bytes).
    ///
    /// IRQL: <= DISPATCH_LEVEL (no kernel call), but callers hold the passive-level lock.
    pub fn kernel_section(
        &self,
        caller: SessionId,
        region: RegionId,
    ) -> Result<&B::Section, SectionError> {
        self.region_entry(caller, region)
            .map(|entry| &entry.section)
    }

    /// How many regions `session` has.
    ///
    /// IRQL: <= DISPATCH_LEVEL (no kernel call).
    pub fn region_count(&self, session: SessionId) -> Result<usize, SectionError> {
        self.session(session).map(|s| s.regions.len())
    }

    /// The handles `session` has handed out and not yet dropped from the ledger.
    ///
    /// IRQL: <= DISPATCH_LEVEL (no kernel call).
    pub fn handles(&self, session: SessionId) -> Result<&[HandedOutHandle], SectionError> {
        self.session(session).map(|s| s.handles.as_slice())
    }

    /// Totals and what is live now.
    ///
    /// IRQL: <= DISPATCH_LEVEL (no kernel call).
    pub fn counters(&self) -> SectionCounters {
        let mut counters = self.totals;
        counters.live_sessions = self.sessions.len() as u64;
        counters.live_sections = self.sessions.iter().map(|s| s.regions.len() as u64).sum();
        counters.live_handle_records = self.sessions.iter().map(|s| s.handles.len() as u64).sum();
        counters.pending_sessions = self.pending_sessions as u64;
        counters.pending_bytes = self.pending_bytes;
        counters
    }

    /// The limits in force.
    pub const fn quotas(&self) -> &SectionQuotas {
        &self.quotas
    }

    /// The backend (the simulator in tests).
    pub const fn backend(&self) -> &B {
        &self.backend
    }

    fn session(&self, session: SessionId) -> Result<&Session<B::Section>, SectionError> {
        self.sessions
            .binary_search_by_key(&session, |s| s.id)
            .ok()
            .and_then(|at| self.sessions.get(at))
            .ok_or(SectionError::UnknownSession { session })
    }

    fn region_entry(
        &self,
        caller: SessionId,
        region: RegionId,
    ) -> Result<&Region<B::Section>, SectionError> {
        if region.session != caller {
            return Err(SectionError::ForeignRegion {
                caller,
                owner: region.session,
            });
        }
        let session = self.session(caller)?;
        let index = usize::try_from(region.index).unwrap_or(usize::MAX);
        session
            .regions
            .get(index)
            .ok_or(SectionError::RegionOutOfRange {
                index: region.index,
                count: session.regions.len(),
            })
    }

    /// The one path by which a session leaves the ledger: its records are dropped, its bytes
    /// freed, and its kernel references handed to the one owner that releases them (counted
    /// as released here, module docs).
    fn detach_session(&mut self, session: Session<B::Section>) -> OwnedSections<B> {
        self.count_dropped_records(session.handles.len());
        self.totals.bytes_in_use = self.totals.bytes_in_use.saturating_sub(session.bytes);
        self.totals.sessions_closed = self.totals.sessions_closed.saturating_add(1);
        self.totals.sections_released = self
            .totals
            .sections_released
            .saturating_add(session.regions.len() as u64);
        OwnedSections::new(self.backend.clone(), session.regions)
    }

    fn count_dropped_records(&mut self, dropped: usize) {
        self.totals.handle_records_dropped = self
            .totals
            .handle_records_dropped
            .saturating_add(dropped as u64);
    }
}

impl<B: SectionBackend> Drop for SectionManager<B> {
    /// Backstop for a missed `release_all`: the same release path. Runs wherever the manager
    /// is dropped, which must be PASSIVE_LEVEL (the glue frees the control state in the
    /// device's cleanup callback).
    fn drop(&mut self) {
        self.release_all();
    }
}
