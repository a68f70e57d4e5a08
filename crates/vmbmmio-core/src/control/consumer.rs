//! Host consumers on the control device (docs/host-consumers.md): LIST_SESSIONS,
//! ATTACH_REGION, DETACH_REGION, SET_DOORBELL_EVENT, TAKE_DOORBELLS, RING_GUEST.
//!
//! # Roles
//! A file handle is a **device host** (it has, opens or closes a session) or a **consumer** (it
//! holds attachments), never both: ATTACH_REGION through a device host's handle and
//! OPEN_SESSION through a consumer's are refused (`STATUS_INVALID_DEVICE_STATE`).
//!
//! # Attachments
//! An attachment is one record in its consumer file's entry, under the table lock, and one
//! owner on the ledger ([`AttachmentCounters`]: created against released). It names its
//! session by the section manager's id (never reused), so once that session closed no request
//! can reach another session's regions through it; every request but DETACH_REGION then gets
//! `STATUS_VIRTUAL_CIRCUIT_CLOSED`. The section handle it opened (in the consumer's process,
//! through [`crate::sections::SectionManager::open_consumer_handle`], with at most the region's
//! consumer access) is the consumer's: the driver never closes it, and the section lives while
//! it (or a view) exists, holding what was last written.
//!
//! # Doorbells
//! Each attachment also has a slot in its session's [`crate::consumers::DoorbellHub`], under the
//! session's event lock (lock order: table lock, then event lock). Event references leave the
//! hub by value and are released after the event lock (still under the table lock here:
//! `ObDereferenceObject` at PASSIVE_LEVEL does not wait for anyone).
//!
//! # Quotas
//! [`MAX_ATTACHMENTS_PER_FILE`], [`MAX_ATTACHMENTS_PER_SESSION`], [`MAX_ATTACHMENTS`]
//! (`STATUS_QUOTA_EXCEEDED`).
//!
//! # IRQL
//! Every method here: PASSIVE_LEVEL, under the table lock, in the caller's process context
//! (ATTACH_REGION opens a handle there, SET_DOORBELL_EVENT references one from there).

use alloc::vec::Vec;
use core::num::NonZeroU64;

use vmbmmio_proto::ioctl::{
    AttachRegionParams, AttachmentId, DetachRegionReply, DoorbellTally, ListedRegion, MAX_REGIONS,
    RegionAttached, RingGuestReply, SectionAccess, SessionListing, SetDoorbellEventReply, WireGuid,
    WireMessage,
};

use super::session::{FileEntry, Session};
use super::{Caller, ControlDevice, ControlError, MAX_OPEN_FILES, Platform};
use crate::consumers::{Clock, HubError, HubTable, MAX_SUBSCRIBERS, UserEvents};
use crate::guest::shared::RingRefused;
use crate::guest_events::{EventLock, GuestEvents};
use crate::sections::{RegionAccess, RegionId, SectionError, SessionId};

/// Most attachments one consumer file handle holds.
pub const MAX_ATTACHMENTS_PER_FILE: usize = 64;
/// Most attachments to one session (the size of its doorbell table).
pub const MAX_ATTACHMENTS_PER_SESSION: usize = MAX_SUBSCRIBERS;
/// Most attachments in the driver.
pub const MAX_ATTACHMENTS: usize = 1024;

/// Attachments made and released since the control device was created (tests prove
/// `created == released` after every cleanup order).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AttachmentCounters {
    /// Attachments made (ATTACH_REGION succeeded).
    pub created: u64,
    /// Attachments released (DETACH_REGION, the consumer's file cleanup, unload).
    pub released: u64,
}

impl AttachmentCounters {
    /// Attachments alive now.
    pub const fn live(&self) -> u64 {
        self.created.saturating_sub(self.released)
    }
}

/// What a version-2 session tells consumers beyond its regions: its VM id. The regions'
/// names live once, in the guest engine's copy of the layout (under the event lock, where the
/// guest's `GET_LAYOUT` reads them too); their sizes and access in the section ledger.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Identity {
    pub(super) vm_id: WireGuid,
}

/// One attachment, in its consumer file's entry.
pub(super) struct Attachment<X: Platform> {
    pub(super) id: AttachmentId,
    /// The session, by the section manager's id (never reused).
    pub(super) session: SessionId,
    /// The session's shared state (its doorbell table), reachable after the session closed.
    pub(super) events: GuestEvents<X::EventLock>,
}

impl<X: Platform> ControlDevice<X> {
    /// The live session whose sections have id `id` (`None` once it closed or is closing).
    fn live_session(&self, id: SessionId) -> Option<&Session<X>> {
        self.files
            .iter()
            .filter_map(|f| f.session.as_ref())
            .find(|s| s.sections == id)
    }

    /// The live version-2 session of VM `vm_id`.
    fn session_of_vm(&self, vm_id: WireGuid) -> Option<&Session<X>> {
        self.files
            .iter()
            .filter_map(|f| f.session.as_ref())
            .find(|s| s.identity.is_some_and(|i| i.vm_id == vm_id))
    }

    /// Whether a live or opening session already has VM id `vm_id` (OPEN_SESSION version 2).
    pub(super) fn vm_id_in_use(&self, vm_id: WireGuid) -> bool {
        self.session_of_vm(vm_id).is_some()
            || self.files.iter().any(|f| f.opening_vm == Some(vm_id))
    }

    /// The attachment `id` of the file at `index`, and whether its session is still live.
    fn attachment(
        &self,
        index: usize,
        id: AttachmentId,
    ) -> Result<(&Attachment<X>, bool), ControlError> {
        let attachment = self
            .files
            .get(index)
            .ok_or(ControlError::UnknownFile)?
            .attachments
            .iter()
            .find(|a| a.id == id)
            .ok_or(ControlError::UnknownAttachment)?;
        let live = self.live_session(attachment.session).is_some();
        Ok((attachment, live))
    }

    /// The attachment `id` of the file at `index`, if its session is live (else
    /// [`ControlError::SessionClosed`]).
    fn live_attachment(
        &self,
        index: usize,
        id: AttachmentId,
    ) -> Result<&Attachment<X>, ControlError> {
        match self.attachment(index, id)? {
            (attachment, true) => Ok(attachment),
            (_, false) => Err(ControlError::SessionClosed),
        }
    }

    /// LIST_SESSIONS: the `cursor`-th attachable (version-2) session, by session id.
    pub(super) fn list_sessions(
        &self,
        cursor: u32,
        output: &mut [u8],
    ) -> Result<usize, ControlError> {
        let mut ids = [(0u64, 0usize); MAX_OPEN_FILES];
        let mut total = 0usize;
        for (at, file) in self.files.iter().enumerate() {
            if let Some(session) = file.session.as_ref().filter(|s| s.identity.is_some())
                && let Some(slot) = ids.get_mut(total)
            {
                *slot = (session.sections.raw(), at);
                total = total.saturating_add(1);
            }
        }
        let listed = ids.get_mut(..total).unwrap_or(&mut []);
        listed.sort_unstable();
        let cursor_at = usize::try_from(cursor).unwrap_or(usize::MAX);
        let &(session_id, at) = listed.get(cursor_at).ok_or(ControlError::NoMoreEntries)?;
        let session = self
            .files
            .get(at)
            .and_then(|f| f.session.as_ref())
            .ok_or(ControlError::NoMoreEntries)?;
        let identity = session.identity.ok_or(ControlError::NoMoreEntries)?;
        let mut regions = [ListedRegion::default(); MAX_REGIONS];
        let mut count = 0usize;
        session.events.shared().with(|shared| {
            for (slot, region) in regions.iter_mut().zip(shared.engine.context().regions()) {
                slot.name = region.name;
                slot.state = region.state;
                count = count.saturating_add(1);
            }
        });
        for (index, slot) in (0u32..).zip(regions.iter_mut().take(count)) {
            let info = self
                .sections
                .region(session.sections, RegionId::new(session.sections, index))?;
            slot.size = info.size;
            slot.guest_writable = info.access == RegionAccess::ReadWrite;
            slot.consumer_writable = info.consumer_writable;
        }
        let listing = SessionListing::new(
            u32::try_from(total).unwrap_or(u32::MAX),
            cursor,
            identity.vm_id,
            session_id,
            regions.get(..count).unwrap_or(&[]),
        )?;
        Ok(listing.encode(output)?)
    }

    /// ATTACH_REGION: checks, quotas, the doorbell slot, then the handle in the caller's
    /// process; nothing stays behind on failure.
    pub(super) fn attach(
        &mut self,
        index: usize,
        caller: Caller,
        params: &AttachRegionParams,
        output: &mut [u8],
    ) -> Result<usize, ControlError> {
        let entry = self.files.get(index).ok_or(ControlError::UnknownFile)?;
        if entry.has_session() {
            return Err(ControlError::DeviceHostCannotAttach);
        }
        if entry.attachments.len() >= MAX_ATTACHMENTS_PER_FILE {
            return Err(ControlError::AttachmentQuota {
                limit: MAX_ATTACHMENTS_PER_FILE,
            });
        }
        if self.attachment_counters.live() >= MAX_ATTACHMENTS as u64 {
            return Err(ControlError::AttachmentQuota {
                limit: MAX_ATTACHMENTS,
            });
        }
        let session = self
            .session_of_vm(params.vm_id)
            .ok_or(ControlError::NoSuchVm)?;
        let session_id = session.sections;
        let region = session
            .events
            .shared()
            .with(|shared| {
                shared
                    .engine
                    .context()
                    .regions()
                    .iter()
                    .position(|r| r.name == params.name)
            })
            .and_then(|at| u32::try_from(at).ok())
            .ok_or(ControlError::NoSuchRegion)?;
        let info = self
            .sections
            .region(session_id, RegionId::new(session_id, region))?;
        let write = params.access.writes();
        if write && !info.consumer_writable {
            return Err(ControlError::ConsumerWriteDenied);
        }
        let attached = self
            .files
            .iter()
            .flat_map(|f| f.attachments.iter())
            .filter(|a| a.session == session_id)
            .count();
        if attached >= MAX_ATTACHMENTS_PER_SESSION {
            return Err(ControlError::AttachmentQuota {
                limit: MAX_ATTACHMENTS_PER_SESSION,
            });
        }
        let events = session.events.clone();
        let size = info.size;
        let id = AttachmentId::new(self.next_attachment).ok_or(ControlError::OutOfMemory)?;
        let next = self
            .next_attachment
            .checked_add(1)
            .ok_or(ControlError::OutOfMemory)?;
        // Memory first (the file's record, the session's doorbell table), outside the event
        // lock: nothing under it allocates.
        self.files
            .get_mut(index)
            .ok_or(ControlError::UnknownFile)?
            .attachments
            .try_reserve(1)
            .map_err(|_| ControlError::OutOfMemory)?;
        if !events.shared().with(|shared| shared.doorbells.installed()) {
            let table = HubTable::new().map_err(|_| ControlError::OutOfMemory)?;
            // Freed here, after the lock, if one was installed meanwhile (never: the table
            // lock serializes attachments).
            drop(
                events
                    .shared()
                    .with(|shared| shared.doorbells.install(table)),
            );
        }
        let now = self.clock.now();
        events
            .shared()
            .with(|shared| shared.doorbells.subscribe(id.get(), region, now))
            .map_err(|error| match error {
                HubError::Closed => ControlError::SessionClosed,
                HubError::Full | HubError::Unknown | HubError::RateLimited => {
                    ControlError::AttachmentQuota {
                        limit: MAX_ATTACHMENTS_PER_SESSION,
                    }
                }
            })?;
        let opened = self.open_and_reply(
            session_id,
            region,
            write,
            caller,
            (id, size, params.access),
            output,
        );
        let written = match opened {
            Ok(written) => written,
            Err(error) => {
                // The slot goes again; it has no event yet.
                let event = events
                    .shared()
                    .with(|shared| shared.doorbells.unsubscribe(id.get()));
                if let Some(event) = event {
                    self.events.release(event);
                }
                return Err(error);
            }
        };
        self.next_attachment = next;
        let entry = self.files.get_mut(index).ok_or(ControlError::UnknownFile)?;
        #[allow(
            clippy::disallowed_methods,
            reason = "into the room try_reserve(1) made above: never reallocates"
        )]
        entry.attachments.push(Attachment {
            id,
            session: session_id,
            events,
        });
        self.attachment_counters.created = self.attachment_counters.created.saturating_add(1);
        Ok(written)
    }

    /// The reply's checks first (it cannot fail after the handle exists: the handle would be
    /// the consumer's with no way to learn its value), then the handle.
    fn open_and_reply(
        &mut self,
        session: SessionId,
        region: u32,
        write: bool,
        caller: Caller,
        (id, size, access): (AttachmentId, u64, SectionAccess),
        output: &mut [u8],
    ) -> Result<usize, ControlError> {
        // A stand-in handle value proves the reply encodes before a real one exists.
        RegionAttached::new(id, u64::MAX, size, access, region)?.encode(output)?;
        let handle = self
            .sections
            .open_consumer_handle(session, region, write, caller.process())
            .map_err(|error| match error {
                SectionError::WriteNotAllowed { .. } => ControlError::ConsumerWriteDenied,
                other => ControlError::Section(other),
            })?;
        Ok(RegionAttached::new(id, handle.0, size, access, region)?.encode(output)?)
    }

    /// DETACH_REGION: the attachment leaves the file and its session's doorbell table (its
    /// event released); works after the session closed. The section handle stays the
    /// consumer's.
    pub(super) fn detach(
        &mut self,
        index: usize,
        id: AttachmentId,
        output: &mut [u8],
    ) -> Result<usize, ControlError> {
        let written = DetachRegionReply::new(id).encode(output)?;
        let entry = self.files.get_mut(index).ok_or(ControlError::UnknownFile)?;
        let position = entry
            .attachments
            .iter()
            .position(|a| a.id == id)
            .ok_or(ControlError::UnknownAttachment)?;
        let attachment = entry.attachments.swap_remove(position);
        self.release_attachment(attachment);
        Ok(written)
    }

    /// Releases one attachment that left its file: its doorbell slot (and event) if its
    /// session still has its table; counted released.
    pub(super) fn release_attachment(&mut self, attachment: Attachment<X>) {
        let event = attachment
            .events
            .shared()
            .with(|shared| shared.doorbells.unsubscribe(attachment.id.get()));
        // After the event lock.
        if let Some(event) = event {
            self.events.release(event);
        }
        self.attachment_counters.released = self.attachment_counters.released.saturating_add(1);
    }

    /// Releases every attachment of a file that left the table (file cleanup, unload).
    pub(super) fn release_attachments(&mut self, attachments: Vec<Attachment<X>>) {
        for attachment in attachments {
            self.release_attachment(attachment);
        }
    }

    /// SET_DOORBELL_EVENT: references the caller's event (or unregisters with `None`); the
    /// previous one is released.
    pub(super) fn set_doorbell_event(
        &mut self,
        index: usize,
        id: AttachmentId,
        handle: Option<NonZeroU64>,
        output: &mut [u8],
    ) -> Result<usize, ControlError> {
        let written = SetDoorbellEventReply::new(id).encode(output)?;
        let events = self.live_attachment(index, id)?.events.clone();
        let event = match handle {
            Some(handle) => Some(
                self.events
                    .reference(handle.get())
                    .map_err(ControlError::EventRefused)?,
            ),
            None => None,
        };
        let swapped = events
            .shared()
            .with(|shared| shared.doorbells.set_event(id.get(), event));
        // Released after the event lock, whichever one comes back.
        match swapped {
            Ok(old) => {
                if let Some(old) = old {
                    self.events.release(old);
                }
                Ok(written)
            }
            Err((error, event)) => {
                if let Some(event) = event {
                    self.events.release(event);
                }
                Err(hub_error(error))
            }
        }
    }

    /// TAKE_DOORBELLS: the guest's doorbells for the attachment's region since the last take.
    pub(super) fn take_doorbells(
        &mut self,
        index: usize,
        id: AttachmentId,
        output: &mut [u8],
    ) -> Result<usize, ControlError> {
        // Checked before the take resets the count: a reply that cannot be written loses
        // nothing.
        DoorbellTally {
            attachment: id,
            count: 0,
            last_value: 0,
            refused_from_guest: 0,
            refused_to_guest: 0,
        }
        .encode(output)?;
        let attachment = self.live_attachment(index, id)?;
        let taken = attachment
            .events
            .shared()
            .with(|shared| shared.doorbells.take(id.get()))
            .map_err(hub_error)?;
        Ok(DoorbellTally {
            attachment: id,
            count: taken.count,
            last_value: taken.last_value,
            refused_from_guest: taken.refused_from_guest,
            refused_to_guest: taken.refused_to_guest,
        }
        .encode(output)?)
    }

    /// RING_GUEST: the guest hears a DOORBELL event for the attachment's region (table lock,
    /// then event lock; the engine adds or coalesces the event and completes a held
    /// WAIT_EVENT).
    pub(super) fn ring_guest(
        &mut self,
        index: usize,
        id: AttachmentId,
        value: u64,
        output: &mut [u8],
    ) -> Result<usize, ControlError> {
        let written = RingGuestReply::new(id).encode(output)?;
        let now = self.clock.now();
        let attachment = self.live_attachment(index, id)?;
        attachment
            .events
            .shared()
            .with(|shared| shared.ring_guest(id.get(), value, now))
            .map_err(|refused| match refused {
                RingRefused::NotSupported => ControlError::GuestLacksDoorbells,
                RingRefused::Hub(error) => hub_error(error),
            })?;
        Ok(written)
    }

    /// Attachments made and released so far.
    ///
    /// IRQL: <= DISPATCH_LEVEL (no kernel call); callers hold the table lock.
    pub fn attachment_counters(&self) -> AttachmentCounters {
        self.attachment_counters
    }
}

/// The error a doorbell-table refusal completes with.
const fn hub_error(error: HubError) -> ControlError {
    match error {
        HubError::Closed => ControlError::SessionClosed,
        HubError::RateLimited => ControlError::RateLimited,
        HubError::Unknown | HubError::Full => ControlError::UnknownAttachment,
    }
}

impl<X: Platform> FileEntry<X> {
    /// Takes the entry's attachments out (file cleanup, unload), to release them.
    pub(super) fn take_attachments(&mut self) -> Vec<Attachment<X>> {
        core::mem::take(&mut self.attachments)
    }
}

/// The identity of a version-2 session from its validated OPEN_SESSION (`None` for version 1:
/// invisible to consumers).
pub(super) fn identity(params: &vmbmmio_proto::ioctl::OpenSessionParams) -> Option<Identity> {
    params.vm_id().map(|vm_id| Identity { vm_id })
}
