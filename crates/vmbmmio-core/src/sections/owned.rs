//! Kernel references to one session's sections **outside the ledger**, with exactly one owner,
//! and the one function that releases kernel references.
//!
//! # Why this type exists
//! Creating a large pagefile-backed section (its prototype PTEs) and the final
//! `ObDereferenceObject` that deletes one both take real time, so the driver runs them without
//! its table lock (module `reservation`, `control::phases`). Between the ledger and the kernel
//! the references then travel in an [`OwnedSections`]: made by
//! [`super::Reservation::create_sections`] (not yet in the ledger), or handed back by
//! [`super::SectionManager::close_session`] (no longer in it). Whoever holds it releases it,
//! once: [`OwnedSections::release`], or its `Drop` when a path forgets (a freed control state,
//! an unwinding test). Nothing can leak a kernel reference by dropping the value.
//!
//! # The one release path
//! [`OwnedSections::release_now`] is the only place in the driver that calls
//! [`SectionBackend::close_section`]: the manager releases inline through it too
//! (`release_all`), by wrapping the regions it detaches.
//!
//! # Counting
//! The bundle counts nothing itself (it cannot reach the manager's counters without the lock).
//! The manager counts a reference as released when it gives it up to a bundle that will release
//! it ([`super::SectionManager::close_session`], [`super::SectionManager::cancel`]); see
//! `manager` for the exact rule.

use alloc::vec::Vec;
use core::fmt;

use super::backend::SectionBackend;
use super::ledger::Region;

/// Kernel references to a session's sections, outside the ledger. Released once, newest
/// first, by [`OwnedSections::release`] or on drop.
pub struct OwnedSections<B: SectionBackend> {
    regions: Vec<Region<B::Section>>,
    backend: B,
}

impl<B: SectionBackend> OwnedSections<B> {
    pub(super) const fn new(backend: B, regions: Vec<Region<B::Section>>) -> Self {
        Self { regions, backend }
    }

    /// Adds a freshly created reference (the creation step).
    pub(super) fn push(&mut self, region: Region<B::Section>) {
        // Capacity for every region was reserved before the first section was created.
        #[allow(
            clippy::disallowed_methods,
            reason = "`create_sections` reserved every region's slot first: never reallocates"
        )]
        self.regions.push(region);
    }

    /// The references, for the ledger ([`super::SectionManager::commit`]); the bundle is left
    /// empty, so its drop releases nothing.
    pub(super) fn take_regions(mut self) -> Vec<Region<B::Section>> {
        core::mem::take(&mut self.regions)
    }

    /// How many kernel references it holds.
    pub fn len(&self) -> usize {
        self.regions.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.regions.is_empty()
    }

    /// Releases every kernel reference, newest first. A device host that still holds a
    /// handle or maps a view keeps its section object alive (module `backend`).
    ///
    /// IRQL: PASSIVE_LEVEL (`ObDereferenceObject` may delete the section). The control code
    /// calls it **without** the table lock.
    pub fn release(mut self) {
        self.release_now();
    }

    /// The one release path of kernel references in the driver.
    fn release_now(&mut self) {
        while let Some(region) = self.regions.pop() {
            self.backend.close_section(region.section);
        }
    }
}

impl<B: SectionBackend> Drop for OwnedSections<B> {
    /// Backstop: a bundle dropped without [`OwnedSections::release`] (or not handed to the
    /// ledger) is released here, on the same path. Runs wherever it is dropped, which must be
    /// PASSIVE_LEVEL.
    fn drop(&mut self) {
        self.release_now();
    }
}

impl<B: SectionBackend> fmt::Debug for OwnedSections<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnedSections")
            .field("sections", &self.regions.len())
            .finish_non_exhaustive()
    }
}
