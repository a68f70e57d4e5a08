//! The part of a channel the KMCL callbacks reach: its state, as atomics, and the session's
//! [`GuestPort`].
//!
//! This is the driver's `kmcl::server::ChannelHandler`. It holds atomics and, for a session's
//! channel, a `Box` of the session's guest port (given at offer time), so it is `Send + Sync`,
//! never blocks and never allocates. State callbacks run at PASSIVE_LEVEL and KMCL runs them one
//! at a time; `process_packet` runs at PASSIVE_LEVEL too, because the channel is created with
//! incoming processing at passive. A session's packets go to its port (the guest control
//! protocol, module [`crate::guest`]); a channel offered without one (channel-level tests)
//! completes every packet with [`UNSUPPORTED_PACKET_COMPLETION`].
//!
//! Readers outside the callbacks (IOCTLs, diagnostics) get consistent-enough snapshots: the
//! guest MMIO report is written before the phase that publishes it (release/acquire).

use core::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use alloc::boxed::Box;

use kmcl::ErrorStatus;
use kmcl::raw::STATUS_NOT_SUPPORTED;
use kmcl::server::{ChannelHandler, ChannelRef, IncomingPacket};

use super::state::{ChannelState, Event, GuestMmioWindow, Phase, transition};

/// The completion payload of every guest packet of a channel offered without a [`GuestPort`]:
/// `STATUS_NOT_SUPPORTED` as a little-endian NTSTATUS (4 bytes).
pub const UNSUPPORTED_PACKET_COMPLETION: [u8; 4] = STATUS_NOT_SUPPORTED.to_le_bytes();

/// Counters of one channel, for diagnostics and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChannelStats {
    /// Opened callbacks accepted (first open and every reopen).
    pub opens: u64,
    /// Guest packets delivered to `process_packet`.
    pub packets_received: u64,
    /// Of those, completed with [`UNSUPPORTED_PACKET_COMPLETION`] (a channel without a guest
    /// port; a session's refusals are counted by its engine).
    pub packets_rejected: u64,
    /// State callbacks that came in an order the reference does not describe.
    pub unexpected_events: u64,
    /// `VmbChannelGetMmioSpace` reports (one per Started) that were implausible and ignored.
    pub mmio_reports_ignored: u64,
}

/// Where a session's channel sends its guest's packets and its state changes: the session's
/// guest-protocol engine ([`crate::guest::shared`]). Every method is called from a KMCL
/// callback and must never take the table lock.
pub trait GuestPort: Send + Sync + 'static {
    /// One guest packet: complete it or keep its completion ([`IncomingPacket::hold`]).
    /// IRQL: PASSIVE_LEVEL (incoming processing at passive).
    fn packet(&self, packet: IncomingPacket<'_>);
    /// The guest opened the channel. IRQL: PASSIVE_LEVEL.
    fn opened(&self);
    /// The channel started (packets flow). IRQL: PASSIVE_LEVEL.
    fn started(&self);
    /// The channel is suspending: every held packet must be completed before this returns.
    /// IRQL: PASSIVE_LEVEL.
    fn suspend(&self);
    /// The channel closed. IRQL: PASSIVE_LEVEL.
    fn closed(&self);
}

/// Channel state shared between the driver and the KMCL callbacks.
pub struct ChannelShared {
    phase: AtomicU8,
    /// Guest MMIO report; `size == 0` means none.
    mmio_address: AtomicU64,
    mmio_size: AtomicU64,
    opens: AtomicU64,
    packets_received: AtomicU64,
    packets_rejected: AtomicU64,
    unexpected_events: AtomicU64,
    mmio_reports_ignored: AtomicU64,
    /// The session's guest port; `None` for a channel offered on its own.
    guest: Option<Box<dyn GuestPort>>,
}

impl core::fmt::Debug for ChannelShared {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ChannelShared")
            .field("phase", &self.phase())
            .field("stats", &self.stats())
            .field("guest", &self.guest.is_some())
            .finish()
    }
}

impl ChannelShared {
    /// A freshly offered channel's state, whose packets go to `guest` (or are refused with
    /// [`UNSUPPORTED_PACKET_COMPLETION`] without one).
    pub fn with_guest(guest: Option<Box<dyn GuestPort>>) -> Self {
        Self {
            guest,
            ..Self::new()
        }
    }

    /// A freshly offered channel's state, without a guest port.
    pub const fn new() -> Self {
        Self {
            guest: None,
            phase: AtomicU8::new(Phase::Offered as u8),
            mmio_address: AtomicU64::new(0),
            mmio_size: AtomicU64::new(0),
            opens: AtomicU64::new(0),
            packets_received: AtomicU64::new(0),
            packets_rejected: AtomicU64::new(0),
            unexpected_events: AtomicU64::new(0),
            mmio_reports_ignored: AtomicU64::new(0),
        }
    }

    /// The current phase. IRQL: any.
    pub fn phase(&self) -> Phase {
        Phase::from_u8(self.phase.load(Ordering::Acquire))
    }

    /// The reported guest MMIO window, from Started until Closed. IRQL: any.
    pub fn guest_mmio_window(&self) -> Option<GuestMmioWindow> {
        match self.phase() {
            Phase::Started | Phase::Running | Phase::Suspended => {
                let size = self.mmio_size.load(Ordering::Relaxed);
                let address = self.mmio_address.load(Ordering::Relaxed);
                (size != 0).then_some(GuestMmioWindow { address, size })
            }
            Phase::Offered | Phase::Opened | Phase::Closed => None,
        }
    }

    /// A snapshot of the state. IRQL: any.
    pub fn state(&self) -> ChannelState {
        match self.phase() {
            Phase::Offered => ChannelState::Offered,
            Phase::Opened => ChannelState::Opened,
            Phase::Started => ChannelState::Started,
            Phase::Running => ChannelState::Running,
            Phase::Suspended => ChannelState::Suspended,
            Phase::Closed => ChannelState::Closed,
        }
    }

    /// The counters. IRQL: any.
    pub fn stats(&self) -> ChannelStats {
        ChannelStats {
            opens: self.opens.load(Ordering::Relaxed),
            packets_received: self.packets_received.load(Ordering::Relaxed),
            packets_rejected: self.packets_rejected.load(Ordering::Relaxed),
            unexpected_events: self.unexpected_events.load(Ordering::Relaxed),
            mmio_reports_ignored: self.mmio_reports_ignored.load(Ordering::Relaxed),
        }
    }

    /// Applies one state callback.
    fn apply(&self, event: Event) {
        let (next, expected) = transition(self.phase(), event);
        if !expected {
            self.unexpected_events.fetch_add(1, Ordering::Relaxed);
        }
        self.phase.store(next as u8, Ordering::Release);
    }

    /// Records the guest MMIO report, if any and plausible (called from Started, after Opened).
    fn record_mmio(&self, channel: &ChannelRef<'_>) {
        // Not in the table (the Windows import path never has it): nothing is known.
        let window = channel.get_mmio_space().and_then(|space| {
            let window = GuestMmioWindow::from_report(space.address, space.size);
            if window.is_none() {
                self.mmio_reports_ignored.fetch_add(1, Ordering::Relaxed);
            }
            window
        });
        let (address, size) = window.map_or((0, 0), |w| (w.address, w.size));
        self.mmio_address.store(address, Ordering::Relaxed);
        self.mmio_size.store(size, Ordering::Relaxed);
    }
}

impl Default for ChannelShared {
    fn default() -> Self {
        Self::new()
    }
}

impl ChannelHandler for ChannelShared {
    /// Accepts the open. `VmbChannelGetMmioSpace` is not called here: it is valid only *after*
    /// Opened (Microsoft's `VmbChannelGetMmioSpace` page; kmcl.md §4 "Validity windows", §5).
    /// IRQL: PASSIVE_LEVEL.
    fn opened(&self, _channel: &ChannelRef<'_>) -> Result<(), ErrorStatus> {
        self.opens.fetch_add(1, Ordering::Relaxed);
        self.apply(Event::Opened);
        if let Some(guest) = &self.guest {
            guest.opened();
        }
        Ok(())
    }

    /// Records the guest MMIO report (Started always follows a successful Opened, so the
    /// query is valid here; it does not wait on packets, which Started must not do), then
    /// publishes it with the Release store in `apply`. IRQL: PASSIVE_LEVEL.
    fn started(&self, channel: &ChannelRef<'_>) {
        self.record_mmio(channel);
        if let Some(guest) = &self.guest {
            guest.started();
        }
        self.apply(Event::Started);
    }

    /// IRQL: PASSIVE_LEVEL.
    fn post_started(&self, _channel: &ChannelRef<'_>) {
        self.apply(Event::PostStarted);
    }

    /// The guest port completes its held packet (a `WAIT_EVENT`) before this returns: KMCL
    /// waits for every delivered packet. IRQL: PASSIVE_LEVEL.
    fn suspend(&self, _channel: &ChannelRef<'_>) {
        if let Some(guest) = &self.guest {
            guest.suspend();
        }
        self.apply(Event::Suspend);
    }

    /// No GPADLs exist to tear down. IRQL: PASSIVE_LEVEL.
    fn closed(&self, _channel: &ChannelRef<'_>) {
        if let Some(guest) = &self.guest {
            guest.closed();
        }
        self.apply(Event::Closed);
        self.mmio_size.store(0, Ordering::Relaxed);
        self.mmio_address.store(0, Ordering::Relaxed);
    }

    /// A session's packets go to its guest port (the guest control protocol); without one,
    /// every packet is completed at once with [`UNSUPPORTED_PACKET_COMPLETION`]. IRQL:
    /// PASSIVE_LEVEL (incoming processing at passive is always requested by `VmChannel::offer`).
    fn process_packet(&self, _channel: &ChannelRef<'_>, packet: IncomingPacket<'_>) {
        self.packets_received.fetch_add(1, Ordering::Relaxed);
        if let Some(guest) = &self.guest {
            guest.packet(packet);
            return;
        }
        // A 4-byte payload always fits the u32 length; on the impossible error the packet is
        // still completed (empty), so exactly-once holds either way.
        if packet.complete(&UNSUPPORTED_PACKET_COMPLETION).is_ok() {
            self.packets_rejected.fetch_add(1, Ordering::Relaxed);
        }
    }
}
