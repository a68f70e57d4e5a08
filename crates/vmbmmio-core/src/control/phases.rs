//! The parts of a request that run **without** the table lock, and the items that carry them.
//!
//! Opening and closing a session block: `VmbChannelEnable`, the VMBus handle conversion and
//! above all `VmbChannelDisable`, which waits until the guest closed the channel (kmcl.md §4;
//! Microsoft's vmbuskernelmodeclientlibapi.h documentation of `VmbChannelDisable`); and the
//! section work: `ZwCreateSection` of pagefile-backed sections up to 32 GiB, and the final
//! `ObDereferenceObject` that deletes one. Holding the one table lock across them would let one
//! stuck guest, or one large section, freeze every session, every device-host exit and PnP
//! removal. So a request runs in steps:
//!
//! 1. **under the lock** ([`ControlDevice::begin`], [`ControlDevice::begin_file_cleanup`]):
//!    all checks; an open reserves its sections' quota and id
//!    ([`crate::sections::SectionManager::reserve`]); the file's entry is marked busy (opening
//!    or closing) or taken out of the table; the blocking work is handed back as an
//!    [`OpenWork`] or a [`Teardown`];
//! 2. **without the lock** ([`OpenWork::run`], [`Teardown::run`]): an open creates the
//!    sections (all or nothing), then converts the handle and offers the channel (on a failure
//!    it releases the sections it created, still without the lock); a close closes the
//!    channel;
//! 3. **under the lock** ([`ControlDevice::finish_open`], [`ControlDevice::finish_close`]):
//!    an open commits its reservation (the sections enter the ledger) or cancels it; a close
//!    detaches the session's sections from the ledger; the entry is idle again;
//! 4. **without the lock**, close only ([`Detached::release`]): the detached sections' kernel
//!    references are released.
//!
//! Between 1 and 3 other requests on other files proceed; requests on the busy file get
//! [`ControlError::SessionBusy`] and change nothing. Every reservation reaches step 3 inside
//! the work item ([`OpenWork`] → [`OpenDone`] → `finish_open`), which commits or cancels it:
//! a reservation dropped on the way would keep its quota (module
//! `crate::sections::reservation`); kernel references never leak (they are released on drop).

use alloc::boxed::Box;

use kmcl::raw::GUID;
use kmcl::server::ParentDevice;
use vmbmmio_proto::ioctl::{OpenSessionParams, SessionOpened, Target, WireGuid};

use super::consumer::Identity;
use super::session::{Busy, Session};
use super::{Caller, ControlDevice, ControlError, FileKey, OfferSettings, Platform};
use crate::channel::{
    ChannelConfig, ChannelError, ChannelTarget, GuestPort, UserVmbusHandle, VmChannel,
    convert_vmbus_handle,
};
use crate::guest_events::{GuestEvents, Wake};
use crate::mmio_plan::MmioPlan;
use crate::sections::{OwnedSections, Reservation, SessionId};

/// The section backend of platform `X`.
type Sections<X> = <X as Platform>::Sections;

/// A session's channel on platform `X`.
pub(super) type Channel<X> = VmChannel<<X as Platform>::Kmcl, <X as Platform>::HandleCloser>;

/// What step one of an IOCTL left to do.
pub enum Begun<X: Platform> {
    /// The request is complete: this many bytes of the output were written.
    Done(usize),
    /// OPEN_SESSION: run [`OpenWork::run`] without the lock, then
    /// [`ControlDevice::finish_open`].
    Open(Box<OpenWork<X>>),
    /// CLOSE_SESSION: run [`Teardown::run`] without the lock, then
    /// [`ControlDevice::finish_close`] under it, then [`Detached::release`] without it.
    Close(Teardown<X>),
    /// WAIT_GUEST_EVENT with nothing to report yet: the glue keeps the request pending
    /// ([`PendingWait`](super::PendingWait)).
    Pending(super::PendingWait<X>),
}

/// An OPEN_SESSION whose quota and id are reserved, whose sections are still to be created
/// and whose channel is still to be offered.
pub struct OpenWork<X: Platform> {
    pub(super) file: FileKey,
    pub(super) caller: Caller,
    pub(super) params: OpenSessionParams,
    pub(super) plan: MmioPlan,
    pub(super) reply: SessionOpened,
    pub(super) reservation: Reservation<Sections<X>>,
    pub(super) parent: ParentDevice,
    pub(super) offer: OfferSettings,
    /// The session's guest-event queue, made before the channel is offered so the channel's
    /// packet handler can be given it.
    pub(super) events: GuestEvents<X::EventLock>,
    /// The consumers' event backend and the clock, for the channel's guest port.
    pub(super) doorbell_events: X::Events,
    pub(super) clock: X::Clock,
    /// What consumers will see of the session (version 2).
    pub(super) identity: Option<Identity>,
    #[allow(dead_code, reason = "ties the work item to its platform")]
    pub(super) platform: core::marker::PhantomData<fn() -> X>,
}

/// The outcome of [`OpenWork::run`], for [`ControlDevice::finish_open`], which commits or
/// cancels the reservation.
pub struct OpenDone<X: Platform> {
    pub(super) file: FileKey,
    pub(super) caller: Caller,
    pub(super) reservation: Reservation<Sections<X>>,
    pub(super) events: GuestEvents<X::EventLock>,
    pub(super) doorbell_events: X::Events,
    pub(super) identity: Option<Identity>,
    pub(super) outcome: Result<Opened<X>, ControlError>,
}

/// What a successful [`OpenWork::run`] made: the sections (not yet in the ledger) and the
/// offered channel.
pub(super) struct Opened<X: Platform> {
    pub(super) sections: OwnedSections<Sections<X>>,
    pub(super) channel: Channel<X>,
    pub(super) written: usize,
}

impl<X: Platform> OpenWork<X> {
    /// Creates the sections (all or nothing), then converts the caller's VMBus handle, offers
    /// the channel (`VmbChannelEnable`) and writes the reply. **Without the table lock**, in
    /// the calling process's context. If anything fails, the sections created are released
    /// here, still without the lock; [`ControlDevice::finish_open`] then cancels the
    /// reservation.
    ///
    /// IRQL: PASSIVE_LEVEL; blocks in `ZwCreateSection` and KMCL.
    pub fn run(self, output: &mut [u8]) -> OpenDone<X> {
        let Self {
            file,
            caller,
            params,
            plan,
            reply,
            mut reservation,
            parent,
            offer,
            events,
            doorbell_events,
            clock,
            identity,
            platform: _,
        } = self;
        let session = reservation.session();
        let outcome = reservation
            .create_sections()
            .map_err(ControlError::from)
            .and_then(|sections| {
                // On an error `sections` is dropped here: released without the lock.
                let port = events
                    .port(doorbell_events.clone(), clock)
                    .map_err(|_| ControlError::OutOfMemory)?;
                let channel = offer_channel::<X>(parent, offer, &params, plan, port)?;
                match write_reply(session, &reply, output) {
                    Ok(written) => Ok(Opened {
                        sections,
                        channel,
                        written,
                    }),
                    Err(error) => {
                        // Channel first, then (on return) the sections.
                        channel.close();
                        Err(error)
                    }
                }
            });
        OpenDone {
            file,
            caller,
            reservation,
            events,
            doorbell_events,
            identity,
            outcome,
        }
    }
}

/// A session taken out of the table, to be torn down without the lock: CLOSE_SESSION, file
/// cleanup, or an open whose file was cleaned up meanwhile.
pub struct Teardown<X: Platform> {
    /// The file whose entry stays in the table marked closing (CLOSE_SESSION); `None` when
    /// the entry already left the table.
    file: Option<FileKey>,
    session: Option<Session<X>>,
    /// The opener's process reference of a cleaned-up file, released at the end.
    opener: Option<X::Process>,
    /// Bytes of the request's output already written (the CLOSE_SESSION reply).
    written: usize,
}

/// A [`Teardown`] whose channel is closed; [`ControlDevice::finish_close`] detaches its
/// sections from the ledger, and [`Detached::release`] releases them.
pub struct Closed<X: Platform> {
    file: Option<FileKey>,
    sections: Option<SessionId>,
    opener: Option<X::Process>,
    written: usize,
    /// The session's pending WAIT_GUEST_EVENT to cancel, if one was pending.
    wake: Option<Wake>,
}

impl<X: Platform> Teardown<X> {
    pub(super) fn new(
        file: Option<FileKey>,
        session: Option<Session<X>>,
        opener: Option<X::Process>,
        written: usize,
    ) -> Self {
        Self {
            file,
            session,
            opener,
            written,
        }
    }

    /// Closes the channel first (`VmbChannelDisable`, which waits for the guest to close;
    /// then `VmbChannelCleanup` and the VMBus handle): the guest sees the offer rescinded before
    /// the driver lets go of the sections. **Without the table lock.**
    ///
    /// IRQL: PASSIVE_LEVEL; blocks. Never from a KMCL callback (the channel's own callbacks
    /// would deadlock with Disable, kmcl.md §4).
    pub fn run(self) -> Closed<X> {
        let mut wake = None;
        let sections = self.session.map(|session| {
            // The event queue first: the channel's packet handler may push until the channel
            // is closed, and is refused from here on; a pending WAIT_GUEST_EVENT is to be
            // cancelled (the wake, handed to the glue after the close).
            wake = session.events.close();
            // Consumers first: told (and their events released) before the channel's close,
            // which may wait for the guest.
            session.close_doorbells();
            session.channel.close();
            session.sections
        });
        Closed {
            file: self.file,
            sections,
            opener: self.opener,
            written: self.written,
            wake,
        }
    }
}

/// What the last step of an OPEN_SESSION returns.
pub struct Finished<X: Platform> {
    /// What the request completes with.
    pub result: Result<usize, ControlError>,
    /// A channel that was offered for a file cleaned up meanwhile: run it, then
    /// [`ControlDevice::finish_close`] and [`Detached::release`], all before completing the
    /// request.
    pub teardown: Option<Teardown<X>>,
}

/// What the close's step under the lock ([`ControlDevice::finish_close`]) hands back: the
/// session's sections, out of the ledger, to release **after unlocking**.
#[must_use = "Detached::release releases the sections and says how many bytes were written"]
pub struct Detached<X: Platform> {
    sections: Option<OwnedSections<Sections<X>>>,
    written: usize,
    wake: Option<Wake>,
}

impl<X: Platform> Detached<X> {
    /// The closed session's pending WAIT_GUEST_EVENT, which the glue must retrieve and cancel
    /// (its delivery says [`crate::guest_events::Delivery::Cancel`]); `None` if none was
    /// pending.
    ///
    /// IRQL: any.
    pub fn wake(&self) -> Option<Wake> {
        self.wake
    }

    /// Releases the sections' kernel references (the final `ObDereferenceObject` may delete a
    /// large section: **without the table lock**) and returns the bytes written to the
    /// request's output. Dropping a `Detached` releases too, wherever that happens.
    ///
    /// IRQL: PASSIVE_LEVEL.
    pub fn release(self) -> usize {
        if let Some(sections) = self.sections {
            sections.release();
        }
        self.written
    }
}

impl<X: Platform> ControlDevice<X> {
    /// The last step of a close under the table lock: the session's sections leave the
    /// ledger (their kernel references come back in the [`Detached`], for
    /// [`Detached::release`] after unlocking) and the entry is idle again (if it is still in
    /// the table). The opener's process reference of a cleaned-up file is released here.
    ///
    /// IRQL: PASSIVE_LEVEL (`ObDereferenceObject` of a process object at most).
    pub fn finish_close(&mut self, closed: Closed<X>) -> Detached<X> {
        // The id came from this manager and only a teardown closes it; an error means the
        // ledger was already released by `shutdown`.
        let sections = closed
            .sections
            .and_then(|sections| self.sections.close_session(sections).ok());
        if let Some(file) = closed.file
            && let Some(entry) = self
                .files
                .iter_mut()
                .find(|f| f.file == file && f.busy == Busy::Closing)
        {
            entry.busy = Busy::Idle;
        }
        drop(closed.opener);
        Detached {
            sections,
            written: closed.written,
            wake: closed.wake,
        }
    }

    /// The last handle to a file was closed, or its process exited (`EvtFileCleanup`), step one
    /// **under the table lock**: the entry leaves the table (later requests through the file
    /// get [`ControlError::UnknownFile`]); its session, if any, comes back as a [`Teardown`].
    /// An open or close in progress on the file finishes against the missing entry and
    /// cleans up after itself. `None` for unknown files.
    ///
    /// IRQL: PASSIVE_LEVEL.
    pub fn begin_file_cleanup(&mut self, file: FileKey) -> Option<Teardown<X>> {
        let position = self.files.iter().position(|f| f.file == file)?;
        let mut entry = self.files.swap_remove(position);
        // A consumer's attachments go now, under the lock (their events are released after
        // each event-lock section).
        let attachments = entry.take_attachments();
        self.release_attachments(attachments);
        let (session, opener) = entry.into_parts();
        Some(Teardown::new(None, session, Some(opener), 0))
    }
}

/// The OPEN_SESSION reply, with the reserved session id.
fn write_reply(
    session: SessionId,
    reply: &SessionOpened,
    output: &mut [u8],
) -> Result<usize, ControlError> {
    Ok(SessionOpened::new(
        session.raw(),
        reply.mmio_megabytes(),
        reply.mmio_megabytes_optional(),
        reply.bar_size(),
        reply.regions(),
    )
    .and_then(|opened| opened.encode(output))?)
}

/// Converts the caller's VMBus handle (in its context) and offers the channel.
/// The channel's handler gets the session's guest port: the guest control protocol runs in the
/// channel's callbacks from the first packet on.
fn offer_channel<X: Platform>(
    parent: ParentDevice,
    offer: OfferSettings,
    params: &OpenSessionParams,
    plan: MmioPlan,
    port: Box<dyn GuestPort>,
) -> Result<VmChannel<X::Kmcl, X::HandleCloser>, ControlError> {
    // The port was allocated first: a failure then leaves nothing to undo.
    let target = match params.target() {
        Target::VmbusHandle(handle) => {
            let user = UserVmbusHandle::new(handle.get()).map_err(ChannelError::from)?;
            ChannelTarget::VmbusHandle(convert_vmbus_handle::<X::Kmcl, X::HandleCloser>(user)?)
        }
        Target::Loopback => ChannelTarget::Loopback,
    };
    let config = ChannelConfig {
        interface_type: guid(params.interface_type()),
        interface_instance: guid(params.interface_instance()),
        friendly_name: offer.friendly_name,
        max_packet_size: offer.max_packet_size,
        target,
    };
    Ok(VmChannel::offer_with_guest(
        parent,
        config,
        plan,
        Some(port),
    )?)
}

/// A wire GUID as KMCL takes it.
fn guid(wire: WireGuid) -> GUID {
    GUID::from_u128(wire.to_u128())
}
