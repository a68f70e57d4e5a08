//! One open file handle of the control device and the session it may hold.

use vmbmmio_proto::ioctl::{
    MAX_REGIONS, MappingState, SessionState, SessionStatus, StatusCounters,
};

use alloc::vec::Vec;

use vmbmmio_proto::ioctl::WireGuid;

use super::consumer::{Attachment, Identity};
use super::{FileKey, Opener, Platform, ProcessReference};
use crate::channel::{ChannelState, VmChannel};
use crate::consumers::UserEvents;
use crate::guest_events::{EventLock, GuestEvents};
use crate::sections::{ProcessKey, SectionManager, SessionId};

/// One open file handle.
pub(super) struct FileEntry<X: Platform> {
    pub(super) file: FileKey,
    /// The process object that opened the file (the device host), referenced until the entry
    /// is dropped (file cleanup or shutdown), so its identity cannot be reused meanwhile.
    opener: X::Process,
    pub(super) session: Option<Session<X>>,
    /// Requests on this file rejected by the wire-format or session rules.
    pub(super) rejected_requests: u64,
    /// Whether a request is opening or closing this file's session outside the table lock.
    pub(super) busy: Busy,
    /// The VM id a version-2 OPEN_SESSION in progress claims (no second session may take it
    /// meanwhile).
    pub(super) opening_vm: Option<WireGuid>,
    /// A consumer's attachments (module `consumer`); empty for a device host.
    pub(super) attachments: Vec<Attachment<X>>,
}

/// What a request is doing to a file's session while the table lock is released.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Busy {
    /// Nothing: requests may use the entry.
    Idle,
    /// OPEN_SESSION is creating the sections, converting the VMBus handle and offering the
    /// channel; `session` is still `None` and the sections' quota and id are reserved (the
    /// reservation is in the request's work item).
    Opening,
    /// CLOSE_SESSION is disabling the channel; `session` was taken out into the request's
    /// work item (its sections leave the ledger at `finish_close` and are released after it).
    Closing,
}

/// A live session: one VM's channel and its regions' sections.
pub(super) struct Session<X: Platform> {
    pub(super) sections: SessionId,
    /// Dropped (Disable, Cleanup, close the VMBus handle) before the sections are released.
    pub(super) channel: VmChannel<X::Kmcl, X::HandleCloser>,
    /// What the device host last reported for each region.
    pub(super) mapping: [MappingState; MAX_REGIONS],
    /// Section handles opened for the device host.
    pub(super) handles_issued: u64,
    /// What the guest reported, for WAIT_GUEST_EVENT; shared with the channel's packet
    /// handler (module [`crate::guest_events`]).
    pub(super) events: GuestEvents<X::EventLock>,
    /// The consumers' event backend (signal and release at close).
    pub(super) doorbell_events: X::Events,
    /// What consumers see of it (version 2: VM id, region names); `None` for version 1.
    pub(super) identity: Option<Identity>,
}

impl<X: Platform> Session<X> {
    /// The session closes for its consumers: every registered event is signalled once under
    /// the event lock, then released after it (module [`crate::consumers::hub`]). Later
    /// consumer requests find the session gone (`STATUS_VIRTUAL_CIRCUIT_CLOSED`).
    ///
    /// IRQL: PASSIVE_LEVEL, without the table lock or with it (never under the event lock).
    pub(super) fn close_doorbells(&self) {
        let backend = &self.doorbell_events;
        let closed = self
            .events
            .shared()
            .with(|shared| shared.doorbells.close(|event| backend.signal(event)));
        let _released = closed.release(|event| backend.release(event));
    }
}

impl<X: Platform> FileEntry<X> {
    pub(super) fn new(opener: Opener<X::Process>) -> Self {
        Self {
            file: opener.file,
            opener: opener.process,
            session: None,
            rejected_requests: 0,
            busy: Busy::Idle,
            opening_vm: None,
            attachments: Vec::new(),
        }
    }

    /// The entry's parts once it left the table (file cleanup): the session to tear down and
    /// the opener's process reference (released when dropped).
    pub(super) fn into_parts(self) -> (Option<Session<X>>, X::Process) {
        (self.session, self.opener)
    }

    /// Whether the entry holds a session or has one being opened or closed.
    pub(super) fn has_session(&self) -> bool {
        self.session.is_some() || self.busy != Busy::Idle
    }

    /// The opening process's identity.
    pub(super) fn opener(&self) -> ProcessKey {
        self.opener.key()
    }

    /// Tears the session down inline (shutdown only: nothing else runs then), channel first:
    /// the guest sees the offer rescinded before the driver lets go of the sections (a device
    /// host still mapping them keeps them alive).
    ///
    /// IRQL: PASSIVE_LEVEL; blocks in `VmbChannelDisable` and the sections' release.
    pub(super) fn close_session(&mut self, sections: &mut SectionManager<X::Sections>) {
        if let Some(session) = self.session.take() {
            // Shutdown runs once every request is drained; a request still parked in the
            // glue's manual queue is cancelled by WDF when the device goes.
            let _ = session.events.close();
            // Consumers first: told (and their events released) before the channel's close,
            // which may wait for the guest.
            session.close_doorbells();
            session.channel.close();
            // The id came from this manager and only this path closes it, so it is known;
            // an error here would mean the ledger was already released by `release_all`.
            if let Ok(detached) = sections.close_session(session.sections) {
                detached.release();
            }
        }
    }

    /// QUERY_STATUS content for this file.
    pub(super) fn status(&self, sections: &SectionManager<X::Sections>) -> SessionStatus {
        let Some(session) = &self.session else {
            return SessionStatus {
                state: SessionState::NoSession,
                counters: StatusCounters {
                    protocol_errors: self.rejected_requests,
                    ..StatusCounters::default()
                },
            };
        };
        let guest = session.events.counters();
        let regions = sections.region_count(session.sections).unwrap_or(0);
        let mapped = session
            .mapping
            .iter()
            .filter(|state| **state == MappingState::SectionBacked)
            .count();
        SessionStatus {
            state: match session.channel.state() {
                ChannelState::Offered | ChannelState::Closed => SessionState::Offered,
                ChannelState::Opened
                | ChannelState::Started
                | ChannelState::Running
                | ChannelState::Suspended => SessionState::Open,
            },
            counters: StatusCounters {
                sections_created: regions as u64,
                section_handles_issued: session.handles_issued,
                regions_mapped: mapped as u64,
                guest_packets: guest.guest_packets,
                protocol_errors: self.rejected_requests.saturating_add(guest.protocol_errors),
            },
        }
    }
}
