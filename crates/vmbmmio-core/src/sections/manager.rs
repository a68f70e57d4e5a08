//! The section manager: creates each session's sections all-or-nothing, hands out user handles
//! to the requesting device host, and releases everything on exactly one path per resource.
//!
//! # Locking and IRQL
//! Every method takes `&mut self`; the driver keeps the manager behind one passive-level lock
//! (a WDF wait lock), never a spin lock: section creation, handle opening and the final
//! dereference of a section run at PASSIVE_LEVEL, and nothing here may run at DISPATCH_LEVEL.

use alloc::vec::Vec;

use super::backend::{ProcessKey, RegionAccess, SectionBackend, UserHandle};
use super::error::SectionError;
use super::ledger::{
    HandedOutHandle, Region, RegionId, RegionInfo, SectionCounters, Session, SessionId,
};
use super::quota::{RegionSpec, SectionQuotas, section_size, total_bytes};

/// Owns every session's sections and the record of every handle handed out.
///
/// Dropping the manager releases everything ([`SectionManager::release_all`]); the driver
/// still calls `release_all` explicitly on unload, at PASSIVE_LEVEL, so the drop finds nothing
/// left.
pub struct SectionManager<B: SectionBackend> {
    backend: B,
    quotas: SectionQuotas,
    sessions: Vec<Session<B::Section>>,
    next_session: u64,
    unloading: bool,
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
            totals: SectionCounters {
                sessions_created: 0,
                sessions_closed: 0,
                sections_created: 0,
                sections_released: 0,
                handles_handed_out: 0,
                handle_records_dropped: 0,
                bytes_in_use: 0,
                live_sessions: 0,
                live_sections: 0,
                live_handle_records: 0,
            },
        }
    }

    /// Creates one section per region, sized to whole pages, or nothing at all.
    ///
    /// Quotas are checked on the page-rounded total before any section exists; if a kernel
    /// call fails part-way, the sections already created are released before returning.
    ///
    /// IRQL: PASSIVE_LEVEL.
    pub fn create_session(&mut self, regions: &[RegionSpec]) -> Result<SessionId, SectionError> {
        if self.unloading {
            return Err(SectionError::Unloading);
        }
        let requested = total_bytes(regions)?;
        if self.sessions.len() >= self.quotas.max_sessions {
            return Err(SectionError::TooManySessions {
                limit: self.quotas.max_sessions,
            });
        }
        self.quotas
            .check_bytes(requested, self.totals.bytes_in_use)?;
        let id = SessionId::from_raw(self.next_session);
        let next = self
            .next_session
            .checked_add(1)
            .ok_or(SectionError::OutOfMemory)?;

        // Every allocation happens before the first section, so bookkeeping can't fail after.
        self.sessions
            .try_reserve(1)
            .map_err(|_| SectionError::OutOfMemory)?;
        let mut created: Vec<Region<B::Section>> = Vec::new();
        created
            .try_reserve_exact(regions.len())
            .map_err(|_| SectionError::OutOfMemory)?;

        for (index, spec) in regions.iter().enumerate() {
            // Validated by total_bytes above; re-derived rather than stored to avoid a buffer.
            let size = section_size(spec.size).ok_or(SectionError::RegionTooLarge { index })?;
            match self.backend.create_section(size) {
                Ok(section) => {
                    self.totals.sections_created = self.totals.sections_created.saturating_add(1);
                    created.push(Region {
                        info: RegionInfo {
                            size,
                            access: spec.access,
                        },
                        section,
                    });
                }
                Err(status) => {
                    self.release_regions(created);
                    return Err(SectionError::Platform { index, status });
                }
            }
        }

        self.next_session = next;
        self.totals.sessions_created = self.totals.sessions_created.saturating_add(1);
        self.totals.bytes_in_use = self.totals.bytes_in_use.saturating_add(requested);
        self.sessions.push(Session {
            id,
            bytes: requested,
            regions: created,
            handles: Vec::new(),
        });
        Ok(id)
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
            .iter_mut()
            .find(|s| s.id == caller)
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
        session.handles.push(HandedOutHandle {
            region: region.index,
            process: requester,
            handle,
            access: requested,
        });
        self.totals.handles_handed_out = self.totals.handles_handed_out.saturating_add(1);
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

    /// Channel teardown: releases the session's kernel references and drops its handle
    /// records. Device hosts that still hold handles keep the section objects alive until
    /// they close them or exit.
    ///
    /// IRQL: PASSIVE_LEVEL.
    pub fn close_session(&mut self, session: SessionId) -> Result<(), SectionError> {
        let position = self
            .sessions
            .iter()
            .position(|s| s.id == session)
            .ok_or(SectionError::UnknownSession { session })?;
        let closed = self.sessions.swap_remove(position);
        self.release_session(closed);
        Ok(())
    }

    /// Driver unload: releases every session and refuses new sessions and handles from now on.
    /// Idempotent.
    ///
    /// IRQL: PASSIVE_LEVEL.
    pub fn release_all(&mut self) {
        self.unloading = true;
        while let Some(session) = self.sessions.pop() {
            self.release_session(session);
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
            .iter()
            .find(|s| s.id == session)
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

    /// The one release path of a session's resources.
    fn release_session(&mut self, session: Session<B::Section>) {
        self.count_dropped_records(session.handles.len());
        self.totals.bytes_in_use = self.totals.bytes_in_use.saturating_sub(session.bytes);
        self.totals.sessions_closed = self.totals.sessions_closed.saturating_add(1);
        self.release_regions(session.regions);
    }

    /// The one release path of kernel references: newest first.
    fn release_regions(&mut self, mut regions: Vec<Region<B::Section>>) {
        while let Some(region) = regions.pop() {
            self.backend.close_section(region.section);
            self.totals.sections_released = self.totals.sections_released.saturating_add(1);
        }
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
