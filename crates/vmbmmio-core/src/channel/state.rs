//! The channel's lifecycle as the driver tracks it, and the pure transition function.
//!
//! ```text
//!            VmbChannelEnable + Start (VmChannel::offer)
//!                        │
//!                        ▼
//!                    ┌────────┐
//!                    │Offered │
//!                    └───┬────┘
//!                        │ Opened (guest opened)
//!                        ▼
//!   ┌──────────────► ┌────────┐ ──────── Closed (guest closed before start) ───────┐
//!   │                │ Opened │                                                     │
//!   │                └───┬────┘                                                     │
//!   │                    │ Started (GetMmioSpace recorded: valid only after Opened) │
//!   │                    ▼                                                          │
//!   │                ┌────────┐   packets may arrive from here on                   │
//!   │     ┌────────► │Started │                                                     │
//!   │     │          └───┬────┘                                                     │
//!   │     │              │ PostStarted                                              │
//!   │     │              ▼                                                          │
//!   │     │          ┌────────┐                                                     │
//!   │     │ Started  │Running │                                                     │
//!   │     │          └───┬────┘                                                     │
//!   │     │              │ Suspend (guest close, Disable, Pause)                    │
//!   │     │              ▼                                                          │
//!   │     │          ┌─────────┐                                                    │
//!   │     └───────── │Suspended│                                                    │
//!   │                └───┬─────┘                                                    │
//!   │                    │ Closed                                                   │
//!   │                    ▼                                                          │
//!   │   Opened       ┌────────┐ ◄──────────────────────────────────────────────────┘
//!   └─────────────── │ Closed │   (offer stays: the guest may reopen)
//!                    └────────┘
//!   Dropping the VmChannel: Disable (Suspend + Closed run inside it), Cleanup, close handle.
//! ```
//!
//! KMCL is the authority on the channel's state: an event in an unexpected state is counted
//! (it would be a KMCL or model bug, or an undocumented path) and then followed anyway.

/// Where the channel is in its lifecycle (see the module diagram).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    /// Enabled and started; no guest has opened it (or not yet).
    Offered = 0,
    /// The guest opened it; not started yet.
    Opened = 1,
    /// Started: packets may be delivered; PostStarted not yet run.
    Started = 2,
    /// PostStarted ran: fully running.
    Running = 3,
    /// Suspended: no packets; waiting for Closed or a new Started.
    Suspended = 4,
    /// Closed by the guest (or during Disable); may be reopened.
    Closed = 5,
}

impl Phase {
    /// Decodes the atomic representation; unknown values read as `Closed` (never happens:
    /// only `Phase as u8` is ever stored).
    pub(crate) const fn from_u8(value: u8) -> Self {
        match value {
            0 => Self::Offered,
            1 => Self::Opened,
            2 => Self::Started,
            3 => Self::Running,
            4 => Self::Suspended,
            _ => Self::Closed,
        }
    }
}

/// A KMCL state callback.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// `EvtChannelOpened` (and the handler accepted it).
    Opened,
    /// `EvtChannelStarted`.
    Started,
    /// `EvtChannelPostStarted`.
    PostStarted,
    /// `EvtChannelSuspend`.
    Suspend,
    /// `EvtChannelClosed`.
    Closed,
}

/// The phase after `event` in `from`, and whether the reference's order expects that event
/// there (kmcl.md §4 steps 4–7).
pub const fn transition(from: Phase, event: Event) -> (Phase, bool) {
    match event {
        Event::Opened => (
            Phase::Opened,
            matches!(from, Phase::Offered | Phase::Closed),
        ),
        Event::Started => (
            Phase::Started,
            matches!(from, Phase::Opened | Phase::Suspended),
        ),
        Event::PostStarted => (Phase::Running, matches!(from, Phase::Started)),
        Event::Suspend => (
            Phase::Suspended,
            matches!(from, Phase::Started | Phase::Running),
        ),
        Event::Closed => (
            Phase::Closed,
            matches!(from, Phase::Opened | Phase::Suspended),
        ),
    }
}

/// One past the highest guest-physical address any x64 or ARM64 guest can have: both
/// architectures cap physical addresses at 52 bits. A report beyond it is not guest-physical
/// (for example a kernel virtual address, one of the docs' readings, kmcl.md §9 item 4).
pub const MAX_GUEST_PHYSICAL_ADDRESS: u64 = 1 << 52;

/// The guest MMIO range `VmbChannelGetMmioSpace` reported, after plausibility checks.
///
/// Its meaning on a server channel is UNCERTAIN (kmcl.md §5, §9 item 4). It is kept for
/// reporting only; nothing in the driver uses it as an address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestMmioWindow {
    /// Start, as reported.
    pub address: u64,
    /// Size in bytes, as reported.
    pub size: u64,
}

impl GuestMmioWindow {
    /// Accepts a report only if it looks like a guest-physical MMIO range: non-zero,
    /// page-aligned start and size, ending at or below [`MAX_GUEST_PHYSICAL_ADDRESS`]. Anything
    /// else (zeros from a KMCL that did not write the outputs, a kernel virtual address,
    /// garbage) is dropped.
    pub fn from_report(address: u64, size: u64) -> Option<Self> {
        let page = crate::mmio_plan::PAGE_SIZE;
        let plausible = address != 0
            && size != 0
            && address.is_multiple_of(page)
            && size.is_multiple_of(page)
            && address
                .checked_add(size)
                .is_some_and(|end| end <= MAX_GUEST_PHYSICAL_ADDRESS);
        plausible.then_some(Self { address, size })
    }
}

/// A snapshot of the channel's state for the driver and its diagnostics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelState {
    /// Offered to the guest; never opened.
    Offered,
    /// Opened by the guest; not started yet. The guest MMIO report is taken at Started
    /// (`VmbChannelGetMmioSpace` is valid only after Opened).
    Opened,
    /// Started; packets may arrive.
    Started,
    /// Running (PostStarted ran).
    Running,
    /// Suspended.
    Suspended,
    /// Closed; the guest may reopen.
    Closed,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_sequence_is_expected_everywhere() {
        let mut phase = Phase::Offered;
        for _cycle in 0..3 {
            for (event, next) in [
                (Event::Opened, Phase::Opened),
                (Event::Started, Phase::Started),
                (Event::PostStarted, Phase::Running),
                (Event::Suspend, Phase::Suspended),
                (Event::Closed, Phase::Closed),
            ] {
                let (after, expected) = transition(phase, event);
                assert!(expected, "{event:?} in {phase:?}");
                assert_eq!(after, next);
                phase = after;
            }
        }
    }

    #[test]
    fn pause_and_restart_and_close_before_start_are_expected() {
        assert_eq!(
            transition(Phase::Suspended, Event::Started),
            (Phase::Started, true)
        );
        assert_eq!(
            transition(Phase::Opened, Event::Closed),
            (Phase::Closed, true)
        );
        assert_eq!(
            transition(Phase::Started, Event::Suspend),
            (Phase::Suspended, true)
        );
    }

    #[test]
    fn out_of_order_events_are_flagged_but_followed() {
        assert_eq!(
            transition(Phase::Offered, Event::Started),
            (Phase::Started, false)
        );
        assert_eq!(
            transition(Phase::Running, Event::Opened),
            (Phase::Opened, false)
        );
        assert_eq!(
            transition(Phase::Running, Event::Closed),
            (Phase::Closed, false)
        );
        assert_eq!(
            transition(Phase::Offered, Event::PostStarted),
            (Phase::Running, false)
        );
    }

    #[test]
    fn phase_round_trips_through_u8() {
        for phase in [
            Phase::Offered,
            Phase::Opened,
            Phase::Started,
            Phase::Running,
            Phase::Suspended,
            Phase::Closed,
        ] {
            assert_eq!(Phase::from_u8(phase as u8), phase);
        }
    }

    #[test]
    fn implausible_mmio_reports_are_dropped() {
        assert_eq!(
            GuestMmioWindow::from_report(0xF800_0000, 0x40_0000),
            Some(GuestMmioWindow {
                address: 0xF800_0000,
                size: 0x40_0000
            })
        );
        assert_eq!(GuestMmioWindow::from_report(0, 0x40_0000), None);
        assert_eq!(GuestMmioWindow::from_report(0xF800_0000, 0), None);
        assert_eq!(GuestMmioWindow::from_report(0xF800_0010, 0x1000), None);
        assert_eq!(GuestMmioWindow::from_report(0xF800_0000, 0x1001), None);
        assert_eq!(GuestMmioWindow::from_report(u64::MAX - 0xFFF, 0x2000), None);
        assert_eq!(
            GuestMmioWindow::from_report(0xFFFF_9A00_0000_0000, 0x1000),
            None
        );
        assert!(
            GuestMmioWindow::from_report(MAX_GUEST_PHYSICAL_ADDRESS - 0x1000, 0x1000).is_some()
        );
    }
}
