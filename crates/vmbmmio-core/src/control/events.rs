//! WAIT_GUEST_EVENT on the control device: the session's guest-event queue
//! ([`crate::guest_events`]) meets the IOCTL path.
//!
//! Under the table lock, [`ControlDevice::begin`] checks the request (framing, a session) and
//! asks the session's queue: complete at once, or keep the request pending
//! ([`Begun::Pending`] with a [`PendingWait`]). The glue owns the request object; the
//! [`PendingWait`] it keeps with it (the queue and the request's ticket) is everything it needs
//! later, **without** the table lock: at DISPATCH_LEVEL from WDF's cancellation callback, and
//! from the channel's packet callback, which never takes the table lock.
//!
//! Lock order: table lock, then the event lock (taken inside the queue's methods and released
//! before they return). No event-lock holder calls out, so the glue may complete, requeue or
//! cancel a request right after any of them returns.

use vmbmmio_proto::ioctl::{GuestEvent, parse_wait_guest_event};

use super::phases::Begun;
use super::{ControlDevice, ControlError, FileKey, Platform};
use crate::guest_events::{Delivery, GuestEvents, Ticket, WaitError, WaitStart, Wake};

/// What [`ControlDevice::handle`] (and [`super::serve::handle`]) did with a request.
pub enum Handled<X: Platform> {
    /// Complete the request with this many bytes of output.
    Done(usize),
    /// Keep the request pending: put it in the manual queue, then
    /// [`PendingWait::parked`]; complete it when a delivery says so.
    Pending(PendingWait<X>),
}

/// One pending WAIT_GUEST_EVENT request, as the glue keeps it next to the request object.
pub struct PendingWait<X: Platform> {
    events: GuestEvents<X::EventLock>,
    ticket: Ticket,
}

impl<X: Platform> Clone for PendingWait<X> {
    /// Another handle to the same pending request (the glue keeps one while WDF owns the
    /// request object, which may be completed and freed on another thread at any moment).
    fn clone(&self) -> Self {
        Self {
            events: self.events.clone(),
            ticket: self.ticket,
        }
    }
}

/// What the glue does with a retrieved pending request ([`PendingWait::deliver`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivered {
    /// Complete it successfully with this many bytes of output.
    Completed(usize),
    /// Put it back in the manual queue, then [`PendingWait::parked`] again.
    Requeue,
    /// Complete it with this error (`STATUS_CANCELLED` when the session closed; a too-small
    /// output buffer cannot happen, it was checked before the request pended).
    Failed(ControlError),
}

impl<X: Platform> PendingWait<X> {
    /// The request's ticket.
    pub fn ticket(&self) -> Ticket {
        self.ticket
    }

    /// The request is in the glue's manual queue now. A [`Wake`] means: take it out again at
    /// once (an event came while the glue held it, or it was cancelled meanwhile).
    ///
    /// IRQL: <= DISPATCH_LEVEL.
    pub fn parked(&self) -> Option<Wake> {
        self.events.parked(self.ticket)
    }

    /// The glue retrieved this request from its manual queue (on a [`Wake`]): writes the event
    /// to `output` when there is one for it.
    ///
    /// IRQL: <= DISPATCH_LEVEL (`output` is the nonpaged system buffer).
    pub fn deliver(&self, output: &mut [u8]) -> Delivered {
        match self.events.deliver(self.ticket) {
            Delivery::Complete(event) => match event.encode(output) {
                Ok(written) => Delivered::Completed(written),
                Err(error) => {
                    // Not delivered after all: the event stays for the next request.
                    Delivered::Failed(ControlError::Proto(error))
                }
            },
            Delivery::Requeue => Delivered::Requeue,
            Delivery::Cancel => Delivered::Failed(ControlError::Cancelled),
        }
    }

    /// The request was cancelled or completed without a delivery (WDF's cancellation, the
    /// request's cleanup, a failed forward): nothing is consumed. Harmless when the request was
    /// already delivered or is no longer registered.
    ///
    /// IRQL: <= DISPATCH_LEVEL.
    pub fn cancel(&self) {
        let _ = self.events.cancel(self.ticket);
    }
}

impl<X: Platform> ControlDevice<X> {
    /// WAIT_GUEST_EVENT, under the table lock: framing, a session, then the queue's answer.
    /// Output length was checked by `begin_checked`.
    pub(super) fn wait_guest_event(
        &mut self,
        index: usize,
        input: &[u8],
        output: &mut [u8],
    ) -> Result<Begun<X>, ControlError> {
        let last_seen = parse_wait_guest_event(input)?;
        let events = self
            .files
            .get(index)
            .ok_or(ControlError::UnknownFile)?
            .session
            .as_ref()
            .ok_or(ControlError::NoSession)?
            .events
            .clone();
        match events.begin_wait(last_seen) {
            Ok(WaitStart::Complete(event)) => Ok(Begun::Done(encode(&event, output)?)),
            Ok(WaitStart::Pend(ticket)) => Ok(Begun::Pending(PendingWait { events, ticket })),
            Err(WaitError::AlreadyPending) => Err(ControlError::WaitPending),
            Err(WaitError::BeyondNewest { last_seen, newest }) => {
                Err(ControlError::EventNotYetSent { last_seen, newest })
            }
            Err(WaitError::Closed) => Err(ControlError::NoSession),
        }
    }

    /// The guest-event queue of the session on `file`: the host engine's producer side (and
    /// the tests', until the engine exists). `None` without a session.
    ///
    /// IRQL: <= DISPATCH_LEVEL (no kernel call); callers hold the table lock.
    pub fn guest_events(&self, file: FileKey) -> Option<GuestEvents<X::EventLock>> {
        self.files
            .iter()
            .find(|f| f.file == file)?
            .session
            .as_ref()
            .map(|session| session.events.clone())
    }

    /// Handles one IOCTL from `caller` like [`ControlDevice::dispatch`], except that a
    /// WAIT_GUEST_EVENT with nothing to report comes back as [`Handled::Pending`] for the
    /// caller to keep (the simulated transport; the glue uses [`super::serve::handle`]).
    ///
    /// IRQL: PASSIVE_LEVEL, in the calling process's context.
    pub fn handle(
        &mut self,
        caller: super::Caller,
        code: u32,
        input: &[u8],
        output: &mut [u8],
    ) -> Result<Handled<X>, ControlError> {
        let begun = self.begin(caller, code, input, output)?;
        self.run_inline(begun, output)
    }
}

fn encode(event: &GuestEvent, output: &mut [u8]) -> Result<usize, ControlError> {
    Ok(event.encode(output)?)
}
