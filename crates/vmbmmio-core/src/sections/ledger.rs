//! The ledger: what exists, who owns it, and the counters that prove nothing leaked.
//!
//! Every section has one owner: its session while it is in the ledger, an `OwnedSections`
//! bundle before it enters (creation) and after it leaves (`close_session`), and one release
//! path (`owned`). Every handed-out user handle has one record,
//! in the session whose region it opens, naming the process that received it; the record is
//! dropped (never closed, see `backend`) when that process's file is cleaned up, when the
//! session closes, or on unload.

use alloc::vec::Vec;

use super::backend::{ProcessKey, RegionAccess, UserHandle};
use crate::mmio_plan::PAGE_SIZE;

/// A session (one VM's set of regions). Ids are never reused, so a stale id cannot reach a
/// later session's regions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SessionId(u64);

impl SessionId {
    /// The id as a number (for a file context or an IOCTL field).
    pub const fn raw(self) -> u64 {
        self.0
    }

    /// An id from a number; refers to nothing unless the manager issued it.
    pub const fn from_raw(raw: u64) -> Self {
        Self(raw)
    }
}

/// One region of one session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RegionId {
    /// The session the region belongs to.
    pub session: SessionId,
    /// Its index in the session's region list.
    pub index: u32,
}

impl RegionId {
    /// Region `index` of `session`.
    pub const fn new(session: SessionId, index: u32) -> Self {
        Self { session, index }
    }
}

/// What the ledger knows about one region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegionInfo {
    /// Section size in bytes (whole pages).
    pub size: u64,
    /// Guest access, and therefore the rights of the handles handed out for it.
    pub access: RegionAccess,
    /// Whether host consumers may map it for writing.
    pub consumer_writable: bool,
}

impl RegionInfo {
    /// Size in pages, the unit of `HdvCreateSectionBackedMmioRange` (hdv.md §3.3).
    pub const fn pages(&self) -> u64 {
        self.size / PAGE_SIZE
    }
}

/// A section the driver holds a kernel reference to.
pub(super) struct Region<S> {
    pub(super) info: RegionInfo,
    pub(super) section: S,
}

/// The record of one user handle handed out to a device host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HandedOutHandle {
    /// Index of the region it opens, in its session.
    pub region: u32,
    /// The process whose handle table holds it.
    pub process: ProcessKey,
    /// Its value in that process.
    pub handle: UserHandle,
    /// The access it grants.
    pub access: RegionAccess,
}

/// One session's sections and handed-out handles.
pub(super) struct Session<S> {
    pub(super) id: SessionId,
    pub(super) bytes: u64,
    pub(super) regions: Vec<Region<S>>,
    pub(super) handles: Vec<HandedOutHandle>,
}

/// Running totals since the manager was created, plus what is live now. For tests and the
/// QUERY_STATUS IOCTL. Totals saturate instead of wrapping.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SectionCounters {
    /// Sessions created.
    pub sessions_created: u64,
    /// Sessions closed (by `close_session` or `release_all`).
    pub sessions_closed: u64,
    /// Sections created (kernel references taken).
    pub sections_created: u64,
    /// Sections released (kernel references released).
    pub sections_released: u64,
    /// User handles handed out to device hosts.
    pub handles_handed_out: u64,
    /// Handle records dropped (device-host exit, session close or unload). The handles
    /// themselves are closed by their process or by the OS at its exit.
    pub handle_records_dropped: u64,
    /// User handles handed out to host consumers (ATTACH_REGION). Not recorded per session:
    /// the consumer's attachment is their record (`control`'s attachment counters), so a
    /// consumer never uses up the device host's handle quota.
    pub consumer_handles_handed_out: u64,
    /// Page-rounded bytes held by live sessions now.
    pub bytes_in_use: u64,
    /// Live sessions now.
    pub live_sessions: u64,
    /// Live sections now.
    pub live_sections: u64,
    /// Handle records held now.
    pub live_handle_records: u64,
    /// Sessions reserved now and not yet committed or cancelled (their sections are being
    /// created without the driver's lock, module `reservation`).
    pub pending_sessions: u64,
    /// Page-rounded bytes of those reservations, counted against the quota.
    pub pending_bytes: u64,
}

impl SectionCounters {
    /// Whether everything ever created has been released: no section, handle record, session,
    /// reservation or byte is held.
    pub const fn all_released(&self) -> bool {
        self.sections_created == self.sections_released
            && self.handles_handed_out == self.handle_records_dropped
            && self.sessions_created == self.sessions_closed
            && self.bytes_in_use == 0
            && self.live_sessions == 0
            && self.live_sections == 0
            && self.live_handle_records == 0
            && self.pending_sessions == 0
            && self.pending_bytes == 0
    }
}
