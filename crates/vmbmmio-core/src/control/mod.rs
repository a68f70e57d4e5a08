//! The control device's portable logic: what the device host may ask of the driver.
//!
//! The Windows glue (`glue::control`) owns the WDF objects and calls into a [`ControlDevice`]
//! for every file-create, IOCTL and file-cleanup on the control device through the sequences in
//! [`serve`], which take the one passive-level table lock (a WDF wait lock) only around table
//! work: every method takes `&mut self`. Everything that decides lives here, so it runs in
//! tests against `hvsim`.
//!
//! # Locking rule (read this before writing a KMCL callback)
//! The table lock is **never** held across a blocking KMCL call, nor across creating or
//! releasing sections: opening and closing a session run in steps (module `phases`), the KMCL
//! and section work between two lock sections, with the file's entry marked busy meanwhile
//! (other requests on it get [`ControlError::SessionBusy`]). Under the lock an open only
//! reserves its sections' quota and id, and a close only detaches them from the ledger; the
//! creation (`ZwCreateSection`) and the release (the final `ObDereferenceObject`) run without
//! it. Opening a user handle to a section (GET_REGION_SECTION) stays under the lock: a bounded
//! handle-table insert that waits for no other party (module `crate::sections::manager`). **No KMCL callback ever takes the table lock**:
//! `VmbChannelDisable` waits for the channel's callbacks, so a callback waiting for the lock
//! would deadlock the close that holds it.
//!
//! # Removal
//! Every caller holds a [`Rundown`] reference; [`serve::remove`] refuses new ones, waits for the
//! last, and only then shuts the state down; the glue frees it after that. Query-remove is
//! vetoed while sessions exist ([`ControlDevice::query_remove`]).
//!
//! # Sessions
//! One session per open file handle. `OPEN_SESSION` plans the MMIO reservation
//! ([`crate::mmio_plan`]), reserves and creates the regions' sections ([`crate::sections`])
//! and offers the VMBus channel ([`crate::channel`]); later requests on the same file handle reach only that
//! session's regions. Closing the session (`CLOSE_SESSION`, file cleanup when the device host
//! exits or crashes, or driver unload) tears the channel down first (the guest sees the offer
//! rescinded) and then releases the sections' kernel references.
//!
//! # Order of checks in [`ControlDevice::dispatch`]
//! IOCTL code, output length, the whole input message ([`vmbmmio_proto::ioctl`]), then the
//! session's own rules; only then does anything change. A rejected request changes nothing
//! (docs/ioctl.md).
//!
//! # Who may call
//! Every request is admitted first ([`Caller::admit`], [`Opener::admit`], module `caller`):
//! only user-mode requests pass, before any lock is taken. The caller's process is identified
//! by its process object, referenced from file create to file cleanup, never by its id.
//!
//! # IRQL and context
//! | Entry point | IRQL | Context |
//! |---|---|---|
//! | [`Caller::admit`], [`Opener::admit`] | any (`Opener`: that of `ObReferenceObject`, <= DISPATCH_LEVEL) | before the lock; no state touched |
//! | [`ControlDevice::file_create`] | PASSIVE_LEVEL | the opening process (`EvtDeviceFileCreate`); keeps the opener's process reference |
//! | [`ControlDevice::dispatch`] | PASSIVE_LEVEL | **the calling process** (`EvtIoInCallerContext`): VMBus handles are converted and section handles opened there |
//! | [`ControlDevice::file_cleanup`] | PASSIVE_LEVEL | `EvtFileCleanup` (last handle closed, or process exit); releases the opener's process reference |
//! | [`ControlDevice::shutdown`] | PASSIVE_LEVEL | device cleanup / driver unload, only once the [`Rundown`] is drained ([`serve::remove`]); releases sections inline (nothing else runs) |
//! | [`ControlDevice::begin`], [`ControlDevice::finish_open`], [`ControlDevice::finish_close`], [`ControlDevice::begin_file_cleanup`], [`ControlDevice::query_remove`] | PASSIVE_LEVEL | under the table lock; no blocking call, no section creation or release (an open reserves, a finish commits, cancels or detaches) |
//! | [`OpenWork::run`], [`Teardown::run`] | PASSIVE_LEVEL | **without** the table lock (OpenWork: in the calling process); create sections (OpenWork) and block in KMCL; never from a KMCL callback |
//! | [`Detached::release`] | PASSIVE_LEVEL | **without** the table lock, after [`ControlDevice::finish_close`]; the final `ObDereferenceObject` of the session's sections |
//! | [`serve`] functions | PASSIVE_LEVEL | take and release the table lock themselves |
//! | [`Rundown`] methods | any | atomics only |
//! | [`ControlDevice::handle`] | PASSIVE_LEVEL | like `dispatch`; a WAIT_GUEST_EVENT with nothing to report comes back as a [`PendingWait`] |
//! | [`PendingWait`] methods, [`crate::guest_events::GuestEvents`] methods | <= DISPATCH_LEVEL | **without** the table lock: only the session's event lock (a spin lock in the driver), never held across a call out |
//!
//! # WAIT_GUEST_EVENT
//! The one request that may stay pending (module `events`, [`crate::guest_events`]): the core
//! records which request is pending by ticket; the glue keeps the request object in a manual
//! WDF queue and completes, requeues or cancels it when the session's queue says so. Lock
//! order: table lock, then event lock; the channel's packet handler takes only the event lock.
//!
//! # Host consumers
//! A file handle is a device host or a consumer, never both (module `consumer`,
//! docs/host-consumers.md): LIST_SESSIONS, ATTACH_REGION, DETACH_REGION, SET_DOORBELL_EVENT,
//! TAKE_DOORBELLS and RING_GUEST run at PASSIVE_LEVEL in the caller's process under the table
//! lock, then the session's event lock for its doorbell table
//! ([`crate::consumers::DoorbellHub`]). A guest DOORBELL reaches the table from the channel's
//! packet callback under the event lock alone. Event references are released after the event
//! lock; a session's close signals every registered event once, then releases them
//! ([`Teardown::run`], without the table lock).
//!
//! # The guest control protocol
//! The session's event lock guards more than the queue ([`crate::guest::GuestShared`]): the
//! host engine's conversation with the guest and the guest's held `WAIT_EVENT` packet. The
//! channel gets the session's port at offer time ([`OpenWork::run`]), so its callbacks reach the
//! engine without the table lock; REPORT_MAPPING updates the engine's copy of the regions' states
//! under the table lock, then the event lock; QUERY_STATUS reads the engine's counters
//! (`guest_packets`, `protocol_errors`).

#[cfg(test)]
mod budget;
mod caller;
mod consumer;
mod dispatch;
mod error;
mod events;
mod phases;
mod query_driver;
mod rundown;
pub mod serve;
mod session;

use alloc::vec::Vec;

use kmcl::KmclProvider;
use kmcl::server::ParentDevice;

use crate::channel::KernelHandleCloser;
use crate::consumers::{Clock, UserEvents};
use crate::guest_events::EventLock;
use crate::sections::{RegionId, SectionBackend, SectionCounters, SectionManager, SectionQuotas};

pub use caller::{Caller, Opener, ProcessReference, RequestorMode};
pub use consumer::{
    AttachmentCounters, MAX_ATTACHMENTS, MAX_ATTACHMENTS_PER_FILE, MAX_ATTACHMENTS_PER_SESSION,
};
pub use error::{
    ControlError, STATUS_DEVICE_BUSY, STATUS_NO_MORE_ENTRIES, STATUS_NOT_FOUND,
    STATUS_NOT_SUPPORTED, STATUS_OBJECT_NAME_COLLISION, STATUS_OBJECT_NAME_NOT_FOUND,
    STATUS_QUOTA_EXCEEDED, STATUS_RETRY, STATUS_VIRTUAL_CIRCUIT_CLOSED, proto_error_to_ntstatus,
};
pub use events::{Delivered, Handled, PendingWait};
pub use phases::{Begun, Closed, Detached, Finished, OpenDone, OpenWork, Teardown};
pub use rundown::{Rundown, RundownGuard};

use session::FileEntry;

/// The platform pieces a control device runs on: the KMCL table, the kernel-handle closer and
/// the section backend. The Windows glue names the real ones; tests name hvsim's.
pub trait Platform: 'static {
    /// Where KMCL comes from.
    type Kmcl: KmclProvider;
    /// How the kernel VMBus handle is closed.
    type HandleCloser: KernelHandleCloser;
    /// The kernel section calls.
    type Sections: SectionBackend;
    /// A referenced process object (the opener of a file handle), released on drop.
    type Process: ProcessReference;
    /// The lock around each session's guest-event queue (a WDF spin lock in the driver: it is
    /// taken from WDF's cancellation callback at DISPATCH_LEVEL; module
    /// [`crate::guest_events`]).
    type EventLock: EventLock;
    /// The monotonic clock of the doorbell rate limits (`KeQueryInterruptTime`).
    type Clock: Clock;
    /// The host consumers' doorbell events (`ObReferenceObjectByHandle`, `KeSetEvent`,
    /// `ObDereferenceObject`).
    type Events: UserEvents;
}

/// Identifies one open file handle of the control device (the `WDFFILEOBJECT` value on
/// Windows). Never dereferenced.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FileKey(pub usize);

/// Most file handles open on the control device at once.
pub const MAX_OPEN_FILES: usize = 64;

/// The offer settings the driver uses for every session.
#[derive(Clone, Copy, Debug)]
pub struct OfferSettings {
    /// Friendly name of every channel (debugging, perf counters).
    pub friendly_name: &'static str,
    /// `VmbChannelInitSetMaximumPacketSize` of every channel.
    pub max_packet_size: u32,
}

impl Default for OfferSettings {
    fn default() -> Self {
        Self {
            friendly_name: "vmbmmio",
            max_packet_size: crate::channel::DEFAULT_PACKET_SIZE,
        }
    }
}

/// The driver's control state: every open file handle and its session.
pub struct ControlDevice<X: Platform> {
    parent: ParentDevice,
    offer: OfferSettings,
    sections: SectionManager<X::Sections>,
    /// The consumers' event backend (a clone goes to every session's guest port).
    events: X::Events,
    /// The rate limits' clock (a clone goes to every session's guest port).
    clock: X::Clock,
    files: Vec<FileEntry<X>>,
    /// The next attachment id (never reused in a driver run; 0 is never an id).
    next_attachment: u64,
    attachment_counters: AttachmentCounters,
    shut_down: bool,
}

impl<X: Platform> ControlDevice<X> {
    /// A control device with no open files. `parent` is the device object every channel is
    /// allocated under (`VmbChannelAllocate`); `events` and `clock` serve the host consumers'
    /// doorbells (module [`crate::consumers`]).
    ///
    /// IRQL: <= DISPATCH_LEVEL (allocates nothing).
    pub fn new(
        parent: ParentDevice,
        backend: X::Sections,
        events: X::Events,
        clock: X::Clock,
        quotas: SectionQuotas,
        offer: OfferSettings,
    ) -> Self {
        Self {
            parent,
            offer,
            sections: SectionManager::new(backend, quotas),
            events,
            clock,
            files: Vec::new(),
            next_attachment: 1,
            attachment_counters: AttachmentCounters {
                created: 0,
                released: 0,
            },
            shut_down: false,
        }
    }

    /// A file handle was opened (`EvtDeviceFileCreate`). The control device keeps the opener's
    /// process reference until [`ControlDevice::file_cleanup`] (or shutdown); on refusal the
    /// reference is released here (dropped).
    ///
    /// IRQL: PASSIVE_LEVEL.
    pub fn file_create(&mut self, opener: Opener<X::Process>) -> Result<(), ControlError> {
        if self.shut_down {
            return Err(ControlError::ShuttingDown);
        }
        if self.files.iter().any(|f| f.file == opener.file) {
            return Err(ControlError::FileAlreadyOpen);
        }
        if self.files.len() >= MAX_OPEN_FILES {
            return Err(ControlError::TooManyFiles);
        }
        self.files
            .try_reserve(1)
            .map_err(|_| ControlError::OutOfMemory)?;
        #[allow(
            clippy::disallowed_methods,
            reason = "into the room try_reserve(1) just made: never reallocates"
        )]
        self.files.push(FileEntry::new(opener));
        Ok(())
    }

    /// The last handle to a file was closed, or its process exited (`EvtFileCleanup`): closes
    /// that file's session, if any, forgets the file and releases the opener's process
    /// reference. Unknown files are ignored.
    ///
    /// All steps in one call, for callers that hold `&mut self` throughout (tests, the
    /// simulated transport); the glue uses [`serve::file_cleanup`].
    ///
    /// IRQL: PASSIVE_LEVEL. Blocks while the channel is disabled (kmcl.md §2.1).
    pub fn file_cleanup(&mut self, file: FileKey) {
        if let Some(teardown) = self.begin_file_cleanup(file) {
            let closed = teardown.run();
            self.finish_close(closed).release();
        }
    }

    /// Query-remove: `Err(SessionsOpen)` while any session is open, opening or closing (the
    /// removal would rescind a running VM's device), else `Ok`.
    ///
    /// IRQL: PASSIVE_LEVEL.
    pub fn query_remove(&self) -> Result<(), ControlError> {
        match self.files.iter().filter(|f| f.has_session()).count() {
            0 => Ok(()),
            sessions => Err(ControlError::SessionsOpen { sessions }),
        }
    }

    /// Driver unload or device removal: closes every session, releases every section and
    /// refuses everything from now on. Idempotent. Runs only once no request is in flight
    /// ([`serve::remove`] waits for the [`Rundown`]), so nothing is opening or closing, no
    /// reservation is pending, and blocking here (`VmbChannelDisable`, the sections' release,
    /// both inline under the lock) holds up no other caller.
    ///
    /// IRQL: PASSIVE_LEVEL.
    pub fn shutdown(&mut self) {
        self.shut_down = true;
        while let Some(mut entry) = self.files.pop() {
            let attachments = entry.take_attachments();
            self.release_attachments(attachments);
            entry.close_session(&mut self.sections);
        }
        self.sections.release_all();
    }

    /// How many file handles are open.
    pub fn open_files(&self) -> usize {
        self.files.len()
    }

    /// How many of them have a session.
    pub fn live_sessions(&self) -> usize {
        self.files.iter().filter(|f| f.session.is_some()).count()
    }

    /// The statistics of the channel of the session on `file` (tests and the simulator's
    /// explorer check `unexpected_events`: a state callback in an order the reference does not
    /// describe).
    ///
    /// IRQL: <= DISPATCH_LEVEL (atomics only); callers hold the control lock.
    pub fn channel_stats(&self, file: FileKey) -> Option<crate::channel::ChannelStats> {
        Some(self.session_of(file)?.channel.stats())
    }

    /// The live session on `file`, if any.
    fn session_of(&self, file: FileKey) -> Option<&session::Session<X>> {
        self.files.iter().find(|f| f.file == file)?.session.as_ref()
    }

    /// Every file with a session.
    pub fn session_files(&self) -> impl Iterator<Item = FileKey> + '_ {
        self.files
            .iter()
            .filter(|f| f.session.is_some())
            .map(|f| f.file)
    }

    /// The driver's own kernel reference to region `region` of the session on `file`: the
    /// host side of the shared bytes (for the guest control protocol and tests).
    ///
    /// IRQL: <= DISPATCH_LEVEL (no kernel call); callers hold the control lock.
    pub fn region_section(
        &self,
        file: FileKey,
        region: u32,
    ) -> Option<&<X::Sections as SectionBackend>::Section> {
        let session = self.session_of(file)?;
        self.sections
            .kernel_section(session.sections, RegionId::new(session.sections, region))
            .ok()
    }

    /// The section manager's counters (creations against releases).
    pub fn section_counters(&self) -> SectionCounters {
        self.sections.counters()
    }
}

impl<X: Platform> Drop for ControlDevice<X> {
    fn drop(&mut self) {
        // The glue calls `shutdown` explicitly at PASSIVE_LEVEL; this only catches a path that
        // forgot, so nothing is ever leaked.
        self.shutdown();
    }
}
