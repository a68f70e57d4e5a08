//! The request sequences the glue runs, with the table lock taken and released at exactly the
//! points the portable code decides: the glue only supplies the lock ([`TableLock`]) and the
//! rundown reference.
//!
//! # Locking rule
//! The table lock protects the [`ControlDevice`] (the file table, the sessions and the section
//! ledger) and nothing else. It is never held across a KMCL call that can block
//! (`VmbChannelEnable`, `VmbChannelDisable`, the VMBus handle conversion) nor across creating
//! or releasing sections (`ZwCreateSection`, the final `ObDereferenceObject`) — those run
//! between lock sections, see module `phases`:
//!
//! | sequence | under the lock | without it |
//! |---|---|---|
//! | OPEN_SESSION | checks, reserve quota + id, mark opening | create sections, offer channel (release sections on failure) |
//! | | commit (or cancel), install session | (file gone meanwhile: close channel; detach under the lock; release) |
//! | CLOSE_SESSION, file cleanup | take session out, mark closing | close channel |
//! | | detach sections, mark idle | release sections ([`Detached::release`]) | **No KMCL callback ever takes the table lock**:
//! `VmbChannelDisable` waits for the channel's callbacks to return, so a callback waiting for
//! the lock while a request holds it and disables a channel would deadlock (kmcl.md §4).

use super::events::Handled;
use super::phases::{Begun, Detached};
use super::rundown::{Rundown, RundownGuard};
use super::{Caller, ControlDevice, ControlError, FileKey, Opener, Platform};
use crate::guest_events::Wake;

/// The table lock around the one [`ControlDevice`] (a WDF wait lock in the glue).
pub trait TableLock<X: Platform> {
    /// Runs `f` with the lock held; `None` when there is no control state (not created yet,
    /// or already freed).
    ///
    /// IRQL: PASSIVE_LEVEL.
    fn locked<R>(&self, f: impl FnOnce(&mut ControlDevice<X>) -> R) -> Option<R>;

    /// A pending WAIT_GUEST_EVENT of `wake.file` must be taken out of the manual queue and
    /// handed to [`super::PendingWait::deliver`] (here: its session closed, so the delivery
    /// cancels it). Called **without** the table lock. The default does nothing, for callers
    /// that keep no request pending (tests).
    ///
    /// IRQL: PASSIVE_LEVEL.
    fn wake(&self, wake: Wake) {
        let _ = wake;
    }
}

/// The whole of an IOCTL for a request holding `_in_flight`, like [`handle`], for callers that
/// cannot keep a request pending: a WAIT_GUEST_EVENT that would pend is cancelled at once
/// ([`ControlError::Cancelled`]; nothing consumed).
///
/// IRQL: PASSIVE_LEVEL, in the calling process's context.
pub fn dispatch<X: Platform, L: TableLock<X>>(
    in_flight: &RundownGuard<'_>,
    table: &L,
    caller: Caller,
    code: u32,
    input: &[u8],
    output: &mut [u8],
) -> Result<usize, ControlError> {
    match handle(in_flight, table, caller, code, input, output)? {
        Handled::Done(written) => Ok(written),
        Handled::Pending(pending) => {
            pending.cancel();
            Err(ControlError::Cancelled)
        }
    }
}

/// The whole of an IOCTL for a request holding `_in_flight`: [`ControlDevice::begin`] under
/// the lock, the blocking work (section creation, KMCL) without it, the finish under it again,
/// then the release of detached sections without it. A WAIT_GUEST_EVENT with nothing to report
/// comes back [`Handled::Pending`]: the glue keeps the request (module `events`).
///
/// IRQL: PASSIVE_LEVEL, in the calling process's context.
pub fn handle<X: Platform, L: TableLock<X>>(
    _in_flight: &RundownGuard<'_>,
    table: &L,
    caller: Caller,
    code: u32,
    input: &[u8],
    output: &mut [u8],
) -> Result<Handled<X>, ControlError> {
    let begun = table
        .locked(|control| control.begin(caller, code, input, output))
        .ok_or(ControlError::NotReady)??;
    match begun {
        Begun::Done(written) => Ok(Handled::Done(written)),
        Begun::Pending(pending) => Ok(Handled::Pending(pending)),
        Begun::Open(work) => {
            let done = work.run(output);
            let finished = table
                .locked(|control| control.finish_open(done))
                .ok_or(ControlError::NotReady)?;
            if let Some(teardown) = finished.teardown {
                let closed = teardown.run();
                // Released after `locked` returned: without the lock.
                if let Some(detached) = table.locked(|control| control.finish_close(closed)) {
                    release(table, detached);
                }
            }
            finished.result.map(Handled::Done)
        }
        Begun::Close(teardown) => {
            let closed = teardown.run();
            table
                .locked(|control| control.finish_close(closed))
                .map(|detached| Handled::Done(release(table, detached)))
                .ok_or(ControlError::NotReady)
        }
    }
}

/// Releases detached sections and hands the closed session's pending wait, if any, to the
/// glue; both without the table lock.
fn release<X: Platform, L: TableLock<X>>(table: &L, detached: Detached<X>) -> usize {
    let wake = detached.wake();
    let written = detached.release();
    if let Some(wake) = wake {
        table.wake(wake);
    }
    written
}

/// File create for a request holding `_in_flight`.
///
/// IRQL: PASSIVE_LEVEL.
pub fn file_create<X: Platform, L: TableLock<X>>(
    _in_flight: &RundownGuard<'_>,
    table: &L,
    opener: Opener<X::Process>,
) -> Result<(), ControlError> {
    table
        .locked(|control| control.file_create(opener))
        .ok_or(ControlError::NotReady)?
}

/// File cleanup for a callback holding `_in_flight`: the entry leaves the table under the
/// lock, its session's channel is closed without it, its sections are detached under it and
/// released without it.
///
/// IRQL: PASSIVE_LEVEL; blocks in `VmbChannelDisable` and the sections' release, without the
/// lock.
pub fn file_cleanup<X: Platform, L: TableLock<X>>(
    _in_flight: &RundownGuard<'_>,
    table: &L,
    file: FileKey,
) {
    if let Some(Some(teardown)) = table.locked(|control| control.begin_file_cleanup(file)) {
        let closed = teardown.run();
        if let Some(detached) = table.locked(|control| control.finish_close(closed)) {
            release(table, detached);
        }
    }
}

/// Query-remove: vetoed while any session is open, opening or closing.
///
/// IRQL: PASSIVE_LEVEL.
pub fn query_remove<X: Platform, L: TableLock<X>>(table: &L) -> Result<(), ControlError> {
    table
        .locked(|control| control.query_remove())
        .unwrap_or(Ok(()))
}

/// Removal: refuses new requests, waits (calling `wait` between checks) until the last
/// in-flight one has left, then shuts the state down under the lock. Only after this returns
/// may the caller free the state.
///
/// IRQL: PASSIVE_LEVEL; blocks until drained.
pub fn remove<X: Platform, L: TableLock<X>>(rundown: &Rundown, table: &L, mut wait: impl FnMut()) {
    rundown.begin_removal();
    while !rundown.is_drained() {
        wait();
    }
    let _ = table.locked(|control| control.shutdown());
}
