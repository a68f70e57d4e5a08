//! The parts of a request that run **without** the table lock, and the items that carry them.
//!
//! Opening and closing a session block: `VmbChannelEnable`, the VMBus handle conversion and
//! above all `VmbChannelDisable`, which waits until the guest closed the channel (kmcl.md §4;
//! Microsoft's vmbuskernelmodeclientlibapi.h documentation of `VmbChannelDisable`). Holding the
//! one table lock across them would let one stuck guest freeze every session, every device-host
//! exit and PnP removal. So a request runs in three steps:
//!
//! 1. **under the lock** ([`ControlDevice::begin`], [`ControlDevice::begin_file_cleanup`]):
//!    all checks; the file's entry is marked busy (opening or closing) or taken out of the
//!    table; the blocking work is handed back as an [`OpenWork`] or a [`Teardown`];
//! 2. **without the lock** ([`OpenWork::run`], [`Teardown::run`]): the KMCL calls;
//! 3. **under the lock** ([`ControlDevice::finish_open`], [`ControlDevice::finish_close`]):
//!    the result is put back (or the sections released) and the entry is idle again.
//!
//! Between 1 and 3 other requests on other files proceed; requests on the busy file get
//! [`ControlError::SessionBusy`] and change nothing.

use alloc::boxed::Box;

use kmcl::raw::GUID;
use kmcl::server::ParentDevice;
use vmbmmio_proto::ioctl::{OpenSessionParams, SessionOpened, Target, WireGuid};

use super::session::{Busy, Session};
use super::{Caller, ControlDevice, ControlError, FileKey, OfferSettings, Platform};
use crate::channel::{
    ChannelConfig, ChannelError, ChannelTarget, UserVmbusHandle, VmChannel, convert_vmbus_handle,
};
use crate::mmio_plan::MmioPlan;
use crate::sections::SessionId;

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
    /// [`ControlDevice::finish_close`].
    Close(Teardown<X>),
}

/// An OPEN_SESSION whose sections exist and whose channel is still to be offered.
pub struct OpenWork<X: Platform> {
    pub(super) file: FileKey,
    pub(super) caller: Caller,
    pub(super) params: OpenSessionParams,
    pub(super) plan: MmioPlan,
    pub(super) reply: SessionOpened,
    pub(super) sections: SessionId,
    pub(super) parent: ParentDevice,
    pub(super) offer: OfferSettings,
    #[allow(dead_code, reason = "ties the work item to its platform")]
    pub(super) platform: core::marker::PhantomData<fn() -> X>,
}

/// The outcome of [`OpenWork::run`], for [`ControlDevice::finish_open`].
pub struct OpenDone<X: Platform> {
    pub(super) file: FileKey,
    pub(super) caller: Caller,
    pub(super) sections: SessionId,
    pub(super) outcome: Result<(Channel<X>, usize), ControlError>,
}

impl<X: Platform> OpenWork<X> {
    /// Converts the caller's VMBus handle, offers the channel (`VmbChannelEnable`) and writes
    /// the reply. **Without the table lock**, in the calling process's context.
    ///
    /// IRQL: PASSIVE_LEVEL.
    pub fn run(self, output: &mut [u8]) -> OpenDone<X> {
        let outcome = offer_channel::<X>(self.parent, self.offer, &self.params, self.plan)
            .and_then(|channel| {
                let written = SessionOpened::new(
                    self.sections.raw(),
                    self.reply.mmio_megabytes(),
                    self.reply.mmio_megabytes_optional(),
                    self.reply.bar_size(),
                    self.reply.regions(),
                )
                .and_then(|opened| opened.encode(output));
                match written {
                    Ok(written) => Ok((channel, written)),
                    Err(error) => {
                        channel.close();
                        Err(error.into())
                    }
                }
            });
        OpenDone {
            file: self.file,
            caller: self.caller,
            sections: self.sections,
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

/// A [`Teardown`] whose channel is closed; its sections are released by
/// [`ControlDevice::finish_close`].
pub struct Closed<X: Platform> {
    file: Option<FileKey>,
    sections: Option<SessionId>,
    opener: Option<X::Process>,
    written: usize,
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
        let sections = self.session.map(|session| {
            session.channel.close();
            session.sections
        });
        Closed {
            file: self.file,
            sections,
            opener: self.opener,
            written: self.written,
        }
    }
}

/// What the last step of an OPEN_SESSION returns.
pub struct Finished<X: Platform> {
    /// What the request completes with.
    pub result: Result<usize, ControlError>,
    /// A channel that was offered for a file cleaned up meanwhile: run it, then
    /// [`ControlDevice::finish_close`], both before completing the request.
    pub teardown: Option<Teardown<X>>,
}

impl<X: Platform> ControlDevice<X> {
    /// The last step of a close, **under the table lock**: releases the sections' kernel
    /// references and marks the entry idle again (if it is still in the table). The opener's
    /// process reference of a cleaned-up file is released here. Returns the bytes written to
    /// the request's output.
    ///
    /// IRQL: PASSIVE_LEVEL.
    pub fn finish_close(&mut self, closed: Closed<X>) -> usize {
        if let Some(sections) = closed.sections {
            // The id came from this manager and only a teardown closes it; an error means the
            // ledger was already released by `shutdown`.
            let _ = self.sections.close_session(sections);
        }
        if let Some(file) = closed.file
            && let Some(entry) = self
                .files
                .iter_mut()
                .find(|f| f.file == file && f.busy == Busy::Closing)
        {
            entry.busy = Busy::Idle;
        }
        drop(closed.opener);
        closed.written
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
        let entry = self.files.swap_remove(position);
        let (session, opener) = entry.into_parts();
        Some(Teardown::new(None, session, Some(opener), 0))
    }
}

/// Converts the caller's VMBus handle (in its context) and offers the channel.
fn offer_channel<X: Platform>(
    parent: ParentDevice,
    offer: OfferSettings,
    params: &OpenSessionParams,
    plan: MmioPlan,
) -> Result<VmChannel<X::Kmcl, X::HandleCloser>, ControlError> {
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
    Ok(VmChannel::offer(parent, config, plan)?)
}

/// A wire GUID as KMCL takes it.
fn guid(wire: WireGuid) -> GUID {
    GUID::from_u128(wire.to_u128())
}
