//! The device host's waiting loop: WAIT_GUEST_EVENT (docs/ioctl.md) turned into placements.
//!
//! # Why a loop of its own
//! The guest reports over the channel where its BAR is and when it is ready (docs/protocol.md);
//! the driver tells the device host through the one request it keeps pending. This loop keeps
//! that request outstanding on its own thread and hands every event to the placement inbox
//! ([`PlacementSignal`], source [`PlacementSource::GuestReport`]), which the mapping sequence
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

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use vmbmmio_proto::ioctl::{GuestEvent, GuestEventKind, GuestSnapshot};

use crate::driver::DriverError;
use crate::driver_ioctl::{IoctlFailure, IoctlTransport, ProtoDriverClient};
use crate::placement::{
    AcceptedPlacement, BarPlacement, GuestRange, GuestReport, PlacementError, PlacementSignal,
    PlacementSource,
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

/// What the loop did with one event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// A placement went to the inbox and was accepted.
    Placed(AcceptedPlacement),
    /// A placement went to the inbox and was refused (counted there too).
    Refused(PlacementError),
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

/// Turns events into placements (the table of the module docs). Pure apart from the inbox.
#[derive(Debug, Clone)]
pub struct GuestEventFollower {
    signal: PlacementSignal,
    bar_size: u64,
}

impl GuestEventFollower {
    /// A follower writing to `signal`; `bar_size` is the session's BAR size (the driver's
    /// layout), used for a decode-off placement when the guest reported no device.
    pub fn new(signal: PlacementSignal, bar_size: u64) -> Self {
        Self { signal, bar_size }
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

    /// Hands `event`'s placement to the inbox.
    pub fn apply(&self, event: &GuestEvent) -> Applied {
        match self.placement(event) {
            Some(report) => match self.signal.report(PlacementSource::GuestReport, report) {
                Ok(accepted) => Applied::Placed(accepted),
                Err(error) => Applied::Refused(error),
            },
            None => Applied::Nothing,
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
                summary.error = Some(error.to_string());
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
    cancel: Box<dyn Fn() + Send + Sync>,
    thread: Option<JoinHandle<FollowSummary>>,
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
            cancel,
            thread: Some(thread),
        })
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
