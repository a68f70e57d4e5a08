//! The shared inbox both placement sources write to and the sequence reads from.
//!
//! The emulator writes from HDV's callback threads, a channel-protocol reader from its own, and
//! the sequence polls from the device host's thread, so the inbox is one mutex. It holds only
//! the newest accepted placement and a count of rejected ones (with the newest rejection), so a
//! guest that floods reports cannot grow it.
//!
//! It also holds the sequence of the newest guest event (WAIT_GUEST_EVENT, docs/ioctl.md)
//! applied to it, updated in the same lock section as the placement that event stands for, so
//! the sequence can read both at once ([`PlacementSignal::look`]) and tell the driver which
//! event its mapping answers (REPORT_MAPPING's `acted_on`).

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::check::{check_placement, classify_reservation};
use super::{
    BarState, GuestRange, GuestReport, PlacementError, PlacementSource, ReservationRelation,
};

/// A report that passed every check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AcceptedPlacement {
    /// What the sequence acts on.
    pub state: BarState,
    /// How the BAR lies relative to the channel's reservation (only meaningful with decode on;
    /// `NoReservation` otherwise).
    pub relation: ReservationRelation,
    /// Who reported it.
    pub source: PlacementSource,
    /// Increases with every accepted report (starting at 1).
    pub generation: u64,
}

/// The newest rejected report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlacementRejection {
    /// Who reported it.
    pub source: PlacementSource,
    /// Why it was refused.
    pub error: PlacementError,
    /// Rejections so far, this one included.
    pub total: u64,
}

#[derive(Debug, Default)]
struct Inbox {
    bar_size: Option<u64>,
    latest: Option<AcceptedPlacement>,
    generation: u64,
    /// Generation of the newest accepted report with decode off.
    last_decode_off: u64,
    rejection: Option<PlacementRejection>,
    /// A guest-event follower writes here (`GuestEventFollower::new`).
    followed: bool,
    /// Sequence of the newest guest event applied (0: none).
    events_applied: u64,
}

/// What the sequence sees in one look at the inbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlacementLook {
    /// The current placement, if any report was accepted.
    pub latest: Option<AcceptedPlacement>,
    /// The newest guest event applied with it: `Some(sequence)` (0 for none yet) if a
    /// guest-event follower writes to this inbox, `None` if none does (the placement then comes
    /// from the configuration space only, and a report cannot name an event).
    pub events_applied: Option<u64>,
}

/// The placement inbox; clones share it.
#[derive(Clone, Debug, Default)]
pub struct PlacementSignal(Arc<Mutex<Inbox>>);

impl PlacementSignal {
    /// An empty inbox that refuses every report until [`Self::set_bar_size`].
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inbox> {
        // A panic elsewhere must not stop the guest's reports from being checked.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The device's BAR size (from the driver's layout); reports are checked against it.
    pub fn set_bar_size(&self, size: u64) {
        self.lock().bar_size = Some(size);
    }

    /// Checks `report` from `source`; if it passes it becomes the current placement.
    pub fn report(
        &self,
        source: PlacementSource,
        report: GuestReport,
    ) -> Result<AcceptedPlacement, PlacementError> {
        Self::report_locked(&mut self.lock(), source, report)
    }

    /// [`Self::report`] for guest event `sequence`, which counts as applied whether the
    /// report passes or not (one lock section: a [`Self::look`] sees both or neither).
    pub fn report_event(
        &self,
        report: GuestReport,
        sequence: u64,
    ) -> Result<AcceptedPlacement, PlacementError> {
        let mut inbox = self.lock();
        inbox.events_applied = inbox.events_applied.max(sequence);
        Self::report_locked(&mut inbox, PlacementSource::GuestReport, report)
    }

    /// Guest event `sequence` was applied and changes no placement (a reservation alone, a
    /// report naming another BAR).
    pub fn event_applied(&self, sequence: u64) {
        let mut inbox = self.lock();
        inbox.events_applied = inbox.events_applied.max(sequence);
    }

    /// A guest-event follower writes to this inbox from now on.
    pub fn mark_followed(&self) {
        self.lock().followed = true;
    }

    /// The current placement and the newest guest event applied with it, in one lock section.
    pub fn look(&self) -> PlacementLook {
        let inbox = self.lock();
        PlacementLook {
            latest: inbox.latest,
            events_applied: inbox.followed.then_some(inbox.events_applied),
        }
    }

    fn report_locked(
        inbox: &mut Inbox,
        source: PlacementSource,
        report: GuestReport,
    ) -> Result<AcceptedPlacement, PlacementError> {
        match checked(inbox.bar_size, &report) {
            Ok((state, relation)) => {
                inbox.generation = inbox.generation.saturating_add(1);
                let accepted = AcceptedPlacement {
                    state,
                    relation,
                    source,
                    generation: inbox.generation,
                };
                inbox.latest = Some(accepted);
                if state == BarState::DecodeOff {
                    inbox.last_decode_off = inbox.generation;
                }
                Ok(accepted)
            }
            Err(error) => {
                let total = inbox
                    .rejection
                    .map_or(0, |rejection| rejection.total)
                    .saturating_add(1);
                inbox.rejection = Some(PlacementRejection {
                    source,
                    error,
                    total,
                });
                Err(error)
            }
        }
    }

    /// The current placement, if any report was accepted.
    pub fn latest(&self) -> Option<AcceptedPlacement> {
        self.lock().latest
    }

    /// Generation of the newest accepted report with decode off (0: none). Lets a poller that
    /// only sees the newest report tell that decode went off and on again in between.
    pub fn last_decode_off(&self) -> u64 {
        self.lock().last_decode_off
    }

    /// The newest rejection, if any.
    pub fn last_rejection(&self) -> Option<PlacementRejection> {
        self.lock().rejection
    }
}

fn checked(
    bar_size: Option<u64>,
    report: &GuestReport,
) -> Result<(BarState, ReservationRelation), PlacementError> {
    let bar_size = bar_size.ok_or(PlacementError::BarSizeUnknown)?;
    let state = check_placement(&report.bar, bar_size)?;
    let relation = match state {
        BarState::Decoding { base } => classify_reservation(
            report.channel_reservation,
            GuestRange {
                base,
                size: bar_size,
            },
        )?,
        // Nothing is decoded, so nothing can overlap; a reservation is still checked for sanity.
        BarState::DecodeOff => match report.channel_reservation {
            Some(reservation)
                if reservation.size == 0
                    || reservation.base.checked_add(reservation.size).is_none() =>
            {
                return Err(PlacementError::BadReservation { reservation });
            }
            _ => ReservationRelation::NoReservation,
        },
    };
    Ok((state, relation))
}
