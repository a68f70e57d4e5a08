//! A session's quota and id held between the checks (under the driver's table lock) and the
//! creation of its sections (without it).
//!
//! # Why creation runs outside the lock
//! `ZwCreateSection` of a pagefile-backed `SEC_COMMIT` section builds the section's prototype
//! PTEs and charges its commit: for a region of up to 32 GiB that takes real time. Issue 8: the
//! table lock protects only the session table; a session being opened or closed is marked and
//! taken out, and section work happens outside the lock. So creating a session is three steps:
//!
//! 1. **under the lock**, [`super::SectionManager::reserve`]: every check (unloading, region
//!    list, live **plus reserved** sessions against `max_sessions`, in-use **plus reserved**
//!    bytes against the byte quotas), the session id, and the ledger's capacity for the
//!    session, so the last step cannot fail;
//! 2. **without the lock**, [`Reservation::create_sections`]: one section per region, all or
//!    nothing (on a failure part-way the ones already created are released, newest first);
//! 3. **under the lock**, [`super::SectionManager::commit`] (infallible: the sections enter
//!    the ledger) or [`super::SectionManager::cancel`] (the reserved quota is freed).
//!
//! Two reservations in flight together can therefore never exceed a quota: each one counts
//! against it from step 1 to step 3.
//!
//! # A reservation must be committed or cancelled
//! The reserved quota lives in the manager, which a dropped [`Reservation`] cannot reach
//! without the lock; so dropping one without [`super::SectionManager::commit`] or
//! [`super::SectionManager::cancel`] keeps its quota reserved until the manager goes away.
//! The control code carries the reservation from `begin_open` through the unlocked work
//! (`OpenWork`, `OpenDone`) to `finish_open`, which always does one of the two. The kernel
//! references never leak either way: they are in an [`OwnedSections`], released on drop.

use super::backend::{RegionAccess, SectionBackend};
use super::error::SectionError;
use super::ledger::{Region, RegionInfo, SessionId};
use super::owned::OwnedSections;
use crate::mmio_plan::MAX_REGIONS;

use alloc::vec::Vec;

/// A session's id and quota, held from [`super::SectionManager::reserve`] until
/// [`super::SectionManager::commit`] or [`super::SectionManager::cancel`] (see the module docs:
/// one of the two must be called).
#[must_use = "a reservation holds quota until SectionManager::commit or SectionManager::cancel"]
pub struct Reservation<B: SectionBackend> {
    pub(super) id: SessionId,
    pub(super) bytes: u64,
    regions: [RegionInfo; MAX_REGIONS],
    count: usize,
    backend: B,
    /// Kernel references [`Reservation::create_sections`] took, not yet counted by the manager
    /// (after a failure part-way they are released already, and `cancel` counts them so).
    pub(super) created: u64,
}

impl<B: SectionBackend> Reservation<B> {
    /// Made by the manager once every check passed.
    pub(super) fn new(id: SessionId, bytes: u64, specs: &[RegionInfo], backend: B) -> Self {
        let mut regions = [RegionInfo {
            size: 0,
            access: RegionAccess::ReadOnly,
            consumer_writable: false,
        }; MAX_REGIONS];
        let mut count = 0usize;
        for (slot, spec) in regions.iter_mut().zip(specs) {
            *slot = *spec;
            count = count.saturating_add(1);
        }
        Self {
            id,
            bytes,
            regions,
            count,
            backend,
            created: 0,
        }
    }

    /// The id the session will have once committed (for the OPEN_SESSION reply).
    pub const fn session(&self) -> SessionId {
        self.id
    }

    /// The page-rounded bytes reserved.
    pub const fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The page-rounded regions the sections will have.
    pub fn regions(&self) -> &[RegionInfo] {
        self.regions.get(..self.count).unwrap_or(&[])
    }

    /// Creates one section per region, **without the table lock**, all or nothing: on a
    /// failure part-way the sections already created are released (newest first) before
    /// this returns, and the error names the region that failed. Call it once per
    /// reservation; the result goes to [`super::SectionManager::commit`], or is released by
    /// its owner after [`super::SectionManager::cancel`].
    ///
    /// The kernel calls are tallied in the reservation and counted by the manager at commit
    /// or cancel (module `manager`).
    ///
    /// IRQL: PASSIVE_LEVEL (ZwCreateSection); blocks for as long as the kernel takes.
    pub fn create_sections(&mut self) -> Result<OwnedSections<B>, SectionError> {
        let mut regions = Vec::new();
        regions
            .try_reserve_exact(self.count)
            .map_err(|_| SectionError::OutOfMemory)?;
        let mut created = OwnedSections::new(self.backend.clone(), regions);
        let specs = self.regions;
        for (index, info) in specs.get(..self.count).unwrap_or(&[]).iter().enumerate() {
            match self.backend.create_section(info.size) {
                Ok(section) => {
                    self.created = self.created.saturating_add(1);
                    created.push(Region {
                        info: *info,
                        section,
                    });
                }
                Err(status) => {
                    created.release();
                    return Err(SectionError::Platform { index, status });
                }
            }
        }
        Ok(created)
    }
}

impl<B: SectionBackend> core::fmt::Debug for Reservation<B> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Reservation")
            .field("session", &self.id)
            .field("bytes", &self.bytes)
            .field("regions", &self.regions())
            .field("created", &self.created)
            .finish_non_exhaustive()
    }
}
