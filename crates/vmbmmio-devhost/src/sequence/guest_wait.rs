//! The device host's waiting loop: WAIT_GUEST_EVENT (docs/ioctl.md) turned into placements.
//!
//! # Why a loop of its own
//! The guest reports over the channel where its BAR is and when it is ready (docs/protocol.md);
//! the driver tells the device host through the one request it keeps pending. This loop keeps
//! that request outstanding on its own thread and hands every event to the placement inbox
//! ([`PlacementSignal`], source [`crate::placement::PlacementSource::GuestReport`]), which the mapping sequence
//! already follows (map on "decode on", unmap on "decode off", remap when the BAR moves).
//!
//! | event | placement |
//! |---|---|
//! | `GUEST_READY`, and a `GUEST_REPORT` or `RESYNC` whose device is ready with decode on | the BAR at its reported base, decode on (map; remap if it moved) |
//! | `GUEST_RELEASING`, `GUEST_RESET`, `GUEST_STOPPED`, `CHANNEL_CLOSED`, and a report or `RESYNC` whose device decodes nothing | decode off (unmap) |
//! | anything else (a reservation report alone, READY without decode) | nothing |
//!
//! # Exactly once
//! The loop sends the highest sequence it has handled as `last_seen`, so the driver gives it
//! the next event and drops the ones before. A wait cancelled at shutdown (`CancelIoEx` on
//! Windows) consumes nothing; the next device host (or the next wait) gets the same event.
//! Sequences must increase by one; anything else is counted ([`FollowSummary::out_of_order`])
//! and, apart from a `RESYNC` (which carries the current state), ignored.
//!
//! # Who starts and stops it
//! The device host (`DeviceHost`, module `sequence`) starts the loop right after OPEN_SESSION
//! if its driver client offers a [`GuestEventTap`] (a second transport on the same file object,
//! so the sequence's own requests never wait behind the pending one, and a canceller), and
//! stops it first thing in every release (normal exit, Ctrl-C, a failed step, drop): flag,
//! cancel, join, and only then CLOSE_SESSION and the handle's close. The loop's thread has no
//! access to the device host's log (it is not `Send`): it leaves one [`GuestNote`] per event in
//! a bounded [`GuestNotes`] queue, which the device host's thread turns into log lines.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::thread::JoinHandle;

use vmbmmio_proto::ioctl::{GuestEvent, GuestEventKind, GuestSnapshot};

use crate::driver::DriverError;
use crate::driver_ioctl::{IoctlFailure, IoctlTransport, ProtoDriverClient};
use crate::placement::{
    AcceptedPlacement, BarPlacement, GuestRange, GuestReport, PlacementError, PlacementSignal,
};

/// `ERROR_OPERATION_ABORTED`: what `DeviceIoControl` reports for a request cancelled with
/// `CancelIoEx` (the driver completed it with `STATUS_CANCELLED`).
pub const ERROR_OPERATION_ABORTED: u32 = 995;
/// `STATUS_CANCELLED`, as an in-process transport sees it.
pub const STATUS_CANCELLED: i32 = 0xC000_0120_u32 as i32;

/// Why a wait returned without an event.
#[derive(Debug)]
pub enum WaitFailure {
    /// The request was cancelled (shutdown, or the session closed): nothing was consumed.
    Cancelled,
    /// The driver refused the request or its reply did not parse.
    Failed(DriverError),
}

/// Where the loop's events come from: a blocking WAIT_GUEST_EVENT.
pub trait GuestEventSource: Send {
    /// The first event after `last_seen`; blocks until there is one or the wait is cancelled.
    fn wait(&mut self, last_seen: u64) -> Result<GuestEvent, WaitFailure>;
}

impl<T: IoctlTransport + Send> GuestEventSource for ProtoDriverClient<T> {
    fn wait(&mut self, last_seen: u64) -> Result<GuestEvent, WaitFailure> {
        self.wait_guest_event(last_seen)
            .map_err(|error| match error {
                DriverError::Ioctl {
                    failure:
                        IoctlFailure::Win32(ERROR_OPERATION_ABORTED)
                        | IoctlFailure::NtStatus(STATUS_CANCELLED),
                    ..
                } => WaitFailure::Cancelled,
                other => WaitFailure::Failed(other),
            })
    }
}

/// What a driver client hands the device host for the loop: a blocking source that shares the
/// client's session (on Windows: another transport on the same handle, so the same file object)
/// and how to cancel its pending wait from another thread (`CancelIoEx`).
pub struct GuestEventTap {
    /// The blocking WAIT_GUEST_EVENT.
    pub source: Box<dyn GuestEventSource>,
    /// Cancels the source's pending wait; callable from any thread, a no-op if nothing pends.
    pub cancel: Box<dyn Fn() + Send + Sync>,
}

/// What the loop did with one event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// A placement went to the inbox and was accepted.
    Placed(AcceptedPlacement),
    /// A placement went to the inbox and was refused (counted there too).
    Refused(PlacementError),
    /// The guest reported a BAR other than the paired device's: nothing went to the inbox and
    /// nothing changes (the guest is wrong or hostile; whatever was mapped stays its own).
    WrongBar {
        /// The BAR index the guest reported.
        reported: u8,
        /// The device's BAR (the device host's `bar_index`).
        expected: u8,
    },
    /// The event changes nothing the mapping follows.
    Nothing,
}

/// What the loop saw, for the device host's log and tests.
#[derive(Debug, Default)]
pub struct FollowSummary {
    /// Events handled, in order, with what became of each.
    pub events: Vec<(GuestEvent, Applied)>,
    /// Events whose sequence was not the one after `last_seen` (RESYNC excepted).
    pub out_of_order: u64,
    /// Waits that came back cancelled.
    pub cancelled_waits: u64,
    /// The highest sequence handled (sent as `last_seen`).
    pub last_seen: u64,
    /// Why the loop ended, if not by the stop flag.
    pub error: Option<String>,
}

/// What the loop leaves for the device host's log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuestNote {
    /// An event was handled.
    Event(GuestEvent, Applied),
    /// Notes dropped because the queue was full (a guest flooding reports): how many.
    Skipped(u64),
}

/// Most notes kept between two looks of the device host's thread; older ones are dropped and
/// counted, so a guest that floods reports cannot grow the queue.
pub const GUEST_NOTES_KEPT: usize = 64;

#[derive(Debug, Default)]
struct NotesInner {
    notes: VecDeque<GuestNote>,
    skipped: u64,
    /// Why the loop ended by itself (a refused wait), until taken.
    ended: Option<String>,
}

/// The bounded queue between the loop's thread and the device host's; clones share it.
#[derive(Clone, Debug, Default)]
pub struct GuestNotes(Arc<Mutex<NotesInner>>);

impl GuestNotes {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, NotesInner> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn push(&self, note: GuestNote) {
        let mut inner = self.lock();
        if inner.notes.len() >= GUEST_NOTES_KEPT {
            inner.notes.pop_front();
            inner.skipped = inner.skipped.saturating_add(1);
        }
        inner.notes.push_back(note);
    }

    fn end(&self, why: String) {
        self.lock().ended = Some(why);
    }

    /// Everything noted since the last call, oldest first (a [`GuestNote::Skipped`] first if
    /// notes were dropped).
    pub fn take(&self) -> Vec<GuestNote> {
        let mut inner = self.lock();
        let mut notes = Vec::with_capacity(inner.notes.len().saturating_add(1));
        if inner.skipped > 0 {
            notes.push(GuestNote::Skipped(std::mem::take(&mut inner.skipped)));
        }
        notes.extend(inner.notes.drain(..));
        notes
    }

    /// Why the loop ended by itself, once (later calls return `None`).
    pub fn take_end(&self) -> Option<String> {
        self.lock().ended.take()
    }
}

/// Turns events into placements (the table of the module docs). Pure apart from the inbox and
/// the optional notes queue.
#[derive(Debug, Clone)]
pub struct GuestEventFollower {
    signal: PlacementSignal,
    bar_size: u64,
    bar_index: u8,
    notes: Option<GuestNotes>,
}

impl GuestEventFollower {
    /// A follower writing to `signal`; `bar_size` is the session's BAR size (the driver's
    /// layout), used for a decode-off placement when the guest reported no device;
    /// `bar_index` is the device's BAR (the configuration's `bar_index`): a report naming
    /// another BAR is refused. From now on the signal counts the events applied
    /// ([`PlacementSignal::look`]), which the device host's REPORT_MAPPINGs name.
    pub fn new(signal: PlacementSignal, bar_size: u64, bar_index: u8) -> Self {
        signal.mark_followed();
        Self {
            signal,
            bar_size,
            bar_index,
            notes: None,
        }
    }

    /// The same follower, also leaving a [`GuestNote`] per event (and the loop's end) in
    /// `notes`.
    pub fn with_notes(mut self, notes: GuestNotes) -> Self {
        self.notes = Some(notes);
        self
    }

    /// The placement `event` stands for, if any.
    pub fn placement(&self, event: &GuestEvent) -> Option<GuestReport> {
        let snapshot = event.snapshot();
        match event.kind() {
            GuestEventKind::GuestReady => self.backing(snapshot),
            GuestEventKind::GuestReport | GuestEventKind::Resync => self
                .backing(snapshot)
                .or_else(|| snapshot.device.map(|_| self.decode_off(snapshot))),
            GuestEventKind::GuestReleasing
            | GuestEventKind::GuestReset
            | GuestEventKind::GuestStopped
            | GuestEventKind::ChannelClosed => Some(self.decode_off(snapshot)),
        }
    }

    /// Hands `event`'s placement to the inbox, and leaves a note of it if the follower has a
    /// notes queue ([`Self::with_notes`]).
    pub fn apply(&self, event: &GuestEvent) -> Applied {
        let applied = self.apply_placement(event);
        if let Some(notes) = &self.notes {
            notes.push(GuestNote::Event(*event, applied));
        }
        applied
    }

    /// Whatever the event leads to, it counts as applied in the inbox (its sequence is what
    /// the device host's next REPORT_MAPPING names as `acted_on`), in the same lock section as
    /// its placement.
    fn apply_placement(&self, event: &GuestEvent) -> Applied {
        let sequence = event.sequence();
        if let Some(device) = event.snapshot().device
            && device.bar_index != self.bar_index
        {
            self.signal.event_applied(sequence);
            return Applied::WrongBar {
                reported: device.bar_index,
                expected: self.bar_index,
            };
        }
        match self.placement(event) {
            Some(report) => match self.signal.report_event(report, sequence) {
                Ok(accepted) => Applied::Placed(accepted),
                Err(error) => Applied::Refused(error),
            },
            None => {
                self.signal.event_applied(sequence);
                Applied::Nothing
            }
        }
    }

    fn reservation(snapshot: &GuestSnapshot) -> Option<GuestRange> {
        snapshot.reservation.map(|r| GuestRange {
            base: r.base,
            size: r.size,
        })
    }

    /// The BAR decoded, if the guest is ready for backing.
    fn backing(&self, snapshot: &GuestSnapshot) -> Option<GuestReport> {
        let device = snapshot.device.filter(|device| device.wants_backing())?;
        Some(GuestReport {
            bar: BarPlacement {
                base: device.bar_base,
                size: device.bar_size,
                memory_decode: true,
            },
            channel_reservation: Self::reservation(snapshot),
        })
    }

    /// Nothing decoded: unmap.
    fn decode_off(&self, snapshot: &GuestSnapshot) -> GuestReport {
        let (base, size) = snapshot
            .device
            .map_or((0, self.bar_size), |d| (d.bar_base, d.bar_size));
        GuestReport {
            bar: BarPlacement {
                base,
                size,
                memory_decode: false,
            },
            channel_reservation: None,
        }
    }
}

/// Runs the loop on this thread until `stop` is set (and the pending wait cancelled) or the
/// driver refuses a wait. `last_seen` starts at `resume_from` (0 for a new device host).
pub fn follow_guest_events(
    source: &mut dyn GuestEventSource,
    follower: &GuestEventFollower,
    stop: &AtomicBool,
    resume_from: u64,
) -> FollowSummary {
    let mut summary = FollowSummary {
        last_seen: resume_from,
        ..FollowSummary::default()
    };
    while !stop.load(Ordering::Acquire) {
        match source.wait(summary.last_seen) {
            Ok(event) => {
                let expected = summary.last_seen.checked_add(1);
                let is_resync = event.kind() == GuestEventKind::Resync;
                if Some(event.sequence()) != expected && !is_resync {
                    summary.out_of_order = summary.out_of_order.saturating_add(1);
                    if event.sequence() <= summary.last_seen {
                        // Already handled: never apply an event twice.
                        continue;
                    }
                }
                let applied = follower.apply(&event);
                summary.last_seen = event.sequence();
                summary.events.push((event, applied));
            }
            Err(WaitFailure::Cancelled) => {
                summary.cancelled_waits = summary.cancelled_waits.saturating_add(1);
            }
            Err(WaitFailure::Failed(error)) => {
                let why = error.to_string();
                if let Some(notes) = &follower.notes {
                    notes.end(why.clone());
                }
                summary.error = Some(why);
                break;
            }
        }
    }
    summary
}

/// The loop on a thread of its own. Stop it with [`GuestEventLoop::stop`], which sets the flag
/// and calls `cancel` (on Windows: `CancelIoEx` on the control device's handle) so the pending
/// wait returns at once.
pub struct GuestEventLoop {
    stop: Arc<AtomicBool>,
    cancel: Arc<dyn Fn() + Send + Sync>,
    thread: Option<JoinHandle<FollowSummary>>,
}

/// Asks a running loop to stop from another thread (on Windows the console's Ctrl-C handler)
/// without joining it: sets the loop's flag and cancels its pending wait once. The owner still
/// calls [`GuestEventLoop::stop`], which cancels again until the thread ended (a wait issued
/// just before the flag was seen) and joins. Holds the canceller weakly: once the loop is
/// stopped and dropped, this does nothing and keeps nothing open (on Windows the control
/// device's handle closes with the last transport).
#[derive(Clone)]
pub struct LoopStopHandle {
    stop: Arc<AtomicBool>,
    cancel: Weak<dyn Fn() + Send + Sync>,
}

impl LoopStopHandle {
    /// Sets the loop's flag and cancels its pending wait, if the loop still exists.
    pub fn request_stop(&self) {
        self.stop.store(true, Ordering::Release);
        if let Some(cancel) = self.cancel.upgrade() {
            cancel();
        }
    }
}

impl std::fmt::Debug for LoopStopHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoopStopHandle")
            .field("stop", &self.stop.load(Ordering::Acquire))
            .finish_non_exhaustive()
    }
}

impl GuestEventLoop {
    /// Starts the loop over `source`.
    pub fn spawn(
        mut source: Box<dyn GuestEventSource>,
        follower: GuestEventFollower,
        cancel: Box<dyn Fn() + Send + Sync>,
    ) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("guest-events".into())
            .spawn(move || follow_guest_events(source.as_mut(), &follower, &flag, 0))?;
        Ok(Self {
            stop,
            cancel: Arc::from(cancel),
            thread: Some(thread),
        })
    }

    /// A handle that stops the loop from another thread ([`LoopStopHandle`]).
    pub fn stop_handle(&self) -> LoopStopHandle {
        LoopStopHandle {
            stop: Arc::clone(&self.stop),
            cancel: Arc::downgrade(&self.cancel),
        }
    }

    /// Whether the loop's thread has ended (by itself: a refused wait; or after a stop).
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Stops the loop: sets the flag, cancels the pending wait (repeatedly, until the thread
    /// ends, so a wait issued just after the flag was read is cancelled too) and returns what
    /// it saw.
    pub fn stop(mut self) -> FollowSummary {
        self.stop.store(true, Ordering::Release);
        let Some(thread) = self.thread.take() else {
            return FollowSummary::default();
        };
        while !thread.is_finished() {
            (self.cancel)();
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        thread.join().unwrap_or_else(|_| FollowSummary {
            error: Some("the guest-event thread panicked".into()),
            ..FollowSummary::default()
        })
    }
}

impl Drop for GuestEventLoop {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            self.stop.store(true, Ordering::Release);
            while !thread.is_finished() {
                (self.cancel)();
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests;
