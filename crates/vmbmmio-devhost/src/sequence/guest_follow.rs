//! The device host's side of the guest-event loop (`guest_wait`): started right after
//! OPEN_SESSION, its notes turned into log lines on the device host's thread, stopped first
//! thing in every release.
//!
//! # Why the order matters
//! The loop keeps one WAIT_GUEST_EVENT pending in the driver (docs/ioctl.md). Stopping it means
//! setting its flag, cancelling that request (`CancelIoEx` on Windows; Microsoft Learn,
//! "CancelIoEx function") and joining its thread, and that happens before CLOSE_SESSION and
//! before the last transport closes the control device's handle, so the device host never
//! leaves a request of its own pending in the driver. If the process dies anyway, the I/O
//! manager cancels the request and the driver's file cleanup closes the session.
//!
//! # What a stop of the loop does not do
//! A loop that ended by itself (the driver refused a wait: an older driver answers
//! `ERROR_INVALID_FUNCTION`) is logged once and never stops the device host: the placement then
//! comes from the emulator's configuration space alone, as before the channel protocol.

use super::guest_wait::{GuestEventFollower, GuestEventLoop, GuestNote, LoopStopHandle};
use super::{DeviceHost, Event, GuestAction};
use vmbmmio_proto::ioctl::GuestEventKind;

use crate::driver::DriverClient;
use crate::placement::BarState;
use crate::platform::{HcsApi, HdvApi};
use crate::sequence::guest_wait::Applied;
use crate::views::SectionMapper;

impl<H: HcsApi, D: HdvApi, C: DriverClient, M: SectionMapper> DeviceHost<H, D, C, M> {
    /// Starts the loop if the driver client offers the guest's events; a client without them,
    /// or a thread that cannot be created, leaves the configuration-space source alone.
    pub(super) fn start_guest_loop(&mut self, bar_size: u64) {
        let Some(tap) = self.backends.driver.guest_events() else {
            return;
        };
        let follower =
            GuestEventFollower::new(self.placement.clone(), bar_size, self.config.bar_index)
                .with_notes(self.guest_notes.clone());
        match GuestEventLoop::spawn(tap.source, follower, tap.cancel) {
            Ok(guest_loop) => {
                self.guest_loop = Some(guest_loop);
                self.emit(Event::GuestEventsFollowing);
            }
            Err(error) => self.emit(Event::GuestEventsUnavailable(format!(
                "cannot start the waiting thread: {error}"
            ))),
        }
    }

    /// Whether the driver reported that it stopped answering the guest (GUEST_STOPPED): the
    /// sequence then ends its run and closes the session.
    pub fn guest_stopped(&self) -> bool {
        self.guest_stopped
    }

    /// Whether the guest-event loop's thread is running.
    pub fn following_guest(&self) -> bool {
        self.guest_loop
            .as_ref()
            .is_some_and(|guest_loop| !guest_loop.is_finished())
    }

    /// A handle that stops the guest-event loop from another thread (the Ctrl-C handler) without
    /// joining it; `None` without a loop. The release still stops and joins it.
    pub fn guest_loop_stop_handle(&self) -> Option<LoopStopHandle> {
        self.guest_loop.as_ref().map(GuestEventLoop::stop_handle)
    }

    /// Logs what the loop noted since the last look, one line per event, and once, why it
    /// ended by itself. The action is what the event asks given what is mapped (events noted
    /// together are replayed in order); the mapping follows in `poll_placement`'s caller.
    pub(super) fn log_guest_notes(&mut self) {
        let mut mapped = self.mapped_for;
        for note in self.guest_notes.take() {
            match note {
                GuestNote::Skipped(count) => self.emit(Event::GuestEventsSkipped(count)),
                GuestNote::Event(event, applied) => {
                    if event.kind() == GuestEventKind::GuestStopped {
                        self.guest_stopped = true;
                    }
                    let action = match applied {
                        Applied::Placed(accepted) => match (accepted.state, mapped) {
                            (BarState::Decoding { base }, None) => {
                                mapped = Some(base);
                                GuestAction::Map { base }
                            }
                            (BarState::Decoding { base }, Some(from)) if from == base => {
                                GuestAction::AlreadyMapped { base }
                            }
                            (BarState::Decoding { base }, Some(from)) => {
                                mapped = Some(base);
                                GuestAction::Remap { from, to: base }
                            }
                            (BarState::DecodeOff, Some(_)) => {
                                mapped = None;
                                GuestAction::Unmap
                            }
                            (BarState::DecodeOff, None) => GuestAction::NothingMapped,
                        },
                        Applied::Refused(error) => GuestAction::Refused(error),
                        Applied::WrongBar { reported, expected } => {
                            GuestAction::WrongBar { reported, expected }
                        }
                        Applied::Nothing => GuestAction::Nothing,
                    };
                    self.emit(Event::GuestEvent {
                        sequence: event.sequence(),
                        kind: event.kind(),
                        device: event.snapshot().device,
                        action,
                    });
                }
            }
        }
        if let Some(why) = self.guest_notes.take_end() {
            self.emit(Event::GuestEventsUnavailable(why));
        }
    }

    /// Stops the loop: flag, cancel the pending wait (until the thread ended), join; then logs
    /// what it left. A no-op without a loop. Runs before anything else is released.
    pub(super) fn stop_guest_loop(&mut self) {
        let Some(guest_loop) = self.guest_loop.take() else {
            return;
        };
        let summary = guest_loop.stop();
        self.log_guest_notes();
        if summary.error.is_none() {
            self.emit(Event::GuestEventsStopped {
                events: summary.events.len(),
                cancelled_waits: summary.cancelled_waits,
            });
        }
    }
}
