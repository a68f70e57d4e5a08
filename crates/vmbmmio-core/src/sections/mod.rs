//! Kernel sections that back the guest MMIO: one per shared region, per session (VM).
//!
//! # Why this module exists
//! The guest's MMIO window is backed by pagefile-backed `SEC_COMMIT` sections that the driver
//! creates and the device host maps into an emulated BAR through a user-mode handle
//! (hdv.md §3.3). Three parties can end a section's use at any moment: the channel (VM) going
//! away, the device host crashing, the driver unloading. This module is where the rules that
//! keep that safe live, portable and tested on Linux against `hvsim`:
//! - [`quota`]: page rounding with checked arithmetic, per-session and global byte quotas,
//!   checked before anything is created;
//! - [`manager`]: all-or-nothing creation of a session's sections, user handles for the
//!   requesting device host only, and one release path per resource;
//! - [`ledger`]: ids, records and counters;
//! - [`backend`]: the three kernel calls, implemented by `glue::sections` on Windows and by
//!   `hvsim::sections` in tests.
//!
//! # Ownership rule
//! - **Sections**: the driver owns exactly one kernel reference per section (an object
//!   pointer, not a handle), held by the session, or by an [`OwnedSections`] while the section
//!   is being created or released outside the lock. It is released once: after channel
//!   teardown ([`SectionManager::close_session`] detaches, the caller releases), when an open
//!   fails, or on unload ([`SectionManager::release_all`]).
//! - **User handles**: handed over. A handle opened for a device host belongs to that device
//!   host; the driver records it (to bound how many it hands out, and for status) but never
//!   closes it. The device host closes it, or the OS does when the process exits. When the
//!   session closes (CLOSE_SESSION, or the device host's file cleanup) the driver drops its
//!   records of the session's handles; [`SectionManager::release_process`] drops a process's
//!   records across sessions.
//! - **Memory**: the section object lives while the driver's reference, any handle or any
//!   mapped view exists, so no party can pull memory from under another.
//!
//! See `docs/sections.md` for the quotas, the release paths, the NTSTATUS table and the IRQLs.

pub mod backend;
pub mod error;
pub mod ledger;
pub mod manager;
pub mod owned;
pub mod quota;
pub mod reservation;

#[cfg(test)]
mod tests;

pub use backend::{
    ProcessKey, READ_CONTROL, RegionAccess, SECTION_MAP_READ, SECTION_MAP_WRITE,
    SECTION_OWNER_RIGHTS, SECTION_QUERY, SectionBackend, UserHandle,
};
pub use error::SectionError;
pub use ledger::{HandedOutHandle, RegionId, RegionInfo, SectionCounters, SessionId};
pub use manager::SectionManager;
pub use owned::OwnedSections;
pub use quota::{RegionSpec, SectionQuotas};
pub use reservation::Reservation;
