//! Progress of the sequence, for the operator (main prints them) and for tests.

use std::fmt;
use std::time::Duration;

use crate::driver::{DriverFacts, MappingState, SessionStatus};
use crate::guid::Guid;
use crate::hresult::HResult;
use crate::placement::{
    AcceptedPlacement, BarState, PlacementError, PlacementRejection, ReservationRelation,
};
use vmbmmio_proto::ioctl::{GuestDevice, GuestEventKind};

/// Why the regions were unmapped while the VM runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnmapReason {
    /// The guest turned memory decode off.
    DecodeOff,
    /// The guest moved the BAR.
    BarMoved {
        /// Where it was.
        from: u64,
        /// Where it is now.
        to: u64,
    },
}

/// What one guest event asks of the mapping, as the device host logs it (the mapping itself
/// follows on the device host's thread: `MappingAt`, `RegionsUnmapped`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuestAction {
    /// Map the regions into the BAR at `base`.
    Map {
        /// The BAR's guest physical base.
        base: u64,
    },
    /// The BAR moved: unmap, then map at the new base.
    Remap {
        /// Where it was mapped.
        from: u64,
        /// Where it is now.
        to: u64,
    },
    /// Already mapped at that base: nothing changes.
    AlreadyMapped {
        /// The BAR's guest physical base.
        base: u64,
    },
    /// Unmap every region.
    Unmap,
    /// The guest reported another BAR than the device's: refused, nothing changes.
    WrongBar {
        /// The BAR index the guest reported.
        reported: u8,
        /// The device's BAR.
        expected: u8,
    },
    /// Decode off (or not ready) while nothing is mapped: nothing to do.
    NothingMapped,
    /// The placement failed its checks and changed nothing.
    Refused(PlacementError),
    /// The event changes nothing the mapping follows (a reservation report alone).
    Nothing,
}

/// Something the device host did or noticed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The VM was opened.
    ComputeSystemOpened,
    /// The device host exists; `com_security` says whether HDV initialized COM security
    /// (false after the observed `RPC_E_TOO_LATE` retry, hdv.md §3.1).
    DeviceHostInitialized {
        /// Whether the InitializeComSecurity flag was accepted.
        com_security: bool,
    },
    /// The pairing capability is in the emulated configuration space.
    PairingExposed {
        /// The channel's interface type GUID.
        interface_type: Guid,
        /// The channel's interface instance GUID.
        interface_instance: Guid,
        /// The protocol version stated.
        protocol_version: u32,
    },
    /// The PCI device instance exists.
    DeviceCreated,
    /// What the driver runs without (QUERY_DRIVER), before the session is opened: the optional
    /// KMCL entries it lacks, and its open file handles and sessions.
    DriverFacts(DriverFacts),
    /// QUERY_DRIVER failed (an older driver does not know it); not fatal.
    DriverFactsUnavailable(String),
    /// The driver session is open.
    SessionOpened {
        /// BAR size in bytes.
        bar_size: u64,
        /// Number of regions.
        regions: usize,
    },
    /// The driver took only OPEN_SESSION version 1 (an older driver): the session serves the
    /// guest, but host consumers cannot attach to its regions (no VM id, no names).
    ConsumersCannotAttach,
    /// Every region has a section handle and a view: the VM may start now.
    Ready,
    /// The emulator received `Start`.
    VmStarted,
    /// The VM runs; nothing is mapped until the guest has placed the BAR and enabled decode.
    WaitingForPlacement,
    /// A placement report passed its checks and is now the current placement.
    PlacementAccepted(AcceptedPlacement),
    /// A placement report was refused (nothing changed).
    PlacementRejected(PlacementRejection),
    /// Mapping every region into the BAR at `base`.
    MappingAt {
        /// The BAR's guest physical base.
        base: u64,
    },
    /// Every range was destroyed and every region reported unmapped.
    RegionsUnmapped(UnmapReason),
    /// Guest events were applied that changed nothing mapped (a report of the placement already
    /// mapped, a reservation alone): the mapped regions were reported again with the newer
    /// `acted_on`, so that the driver may tell the guest they are backed (docs/devhost.md,
    /// "Following the guest").
    MappingReReported {
        /// The newest guest event applied.
        acted_on: u64,
        /// Regions reported again.
        regions: usize,
    },
    /// HDV refused a mapping because the VM is not ready; retrying (hdv.md §3.3).
    MappingDeferred {
        /// Region index.
        region: u32,
        /// Attempts so far.
        attempts: u32,
    },
    /// A region's mapping state was decided and reported to the driver.
    RegionMapped {
        /// Region index.
        region: u32,
        /// The state reported.
        state: MappingState,
        /// Mapping attempts made.
        attempts: u32,
    },
    /// Guest accesses to a section-backed region reached the emulator: the mapping is not in
    /// effect (hdv.md §3.3, observed), the region is served by intercepts.
    FastPathNotInEffect {
        /// Region index.
        region: u32,
        /// Intercepted accesses counted for the region since it was mapped.
        intercepts: u64,
    },
    /// The driver's view of the session (QUERY_STATUS: state and counters).
    DriverStatus(SessionStatus),
    /// The driver's status could not be read (not fatal).
    DriverStatusUnavailable(String),
    /// Pausing the VM for the unmapping failed; the ranges are destroyed without it.
    UnmapWithoutPause(HResult),
    /// Serving ended because a stop was requested.
    StopRequested,
    /// Serving ended because the VM was cleaned up (the emulator's `Teardown`).
    VmTornDown,
    /// Shutting down while the VM runs: waiting at most `timeout` for it to stop before the
    /// device host's teardown (hdv.md §3.1, §5).
    WaitingForVmStop {
        /// The bound.
        timeout: Duration,
    },
    /// The VM still runs: `HdvTeardownDeviceHost` is deferred.
    TeardownDeferred,
    /// Everything was released.
    TornDown,
    /// The guest-event loop runs: WAIT_GUEST_EVENT stays pending on a thread of its own.
    GuestEventsFollowing,
    /// One guest event (WAIT_GUEST_EVENT), logged on the device host's thread.
    GuestEvent {
        /// The event's sequence number.
        sequence: u64,
        /// What happened.
        kind: GuestEventKind,
        /// The guest's device report at the time, if it made one.
        device: Option<GuestDevice>,
        /// What it asks of the mapping.
        action: GuestAction,
    },
    /// This many guest events were handled but not logged (the log queue was full).
    GuestEventsSkipped(u64),
    /// The loop ended by itself: the driver refused a wait (an older driver without
    /// WAIT_GUEST_EVENT answers `ERROR_INVALID_FUNCTION`). Not fatal: the placement comes from
    /// the configuration space only.
    GuestEventsUnavailable(String),
    /// The driver stopped answering the guest (GUEST_STOPPED): the device host ends its run and
    /// closes the session, which closes the guest's channel.
    GuestStoppedClosing,
    /// The loop was stopped at shutdown: its pending wait cancelled, its thread joined.
    GuestEventsStopped {
        /// Events handled.
        events: usize,
        /// Waits that came back cancelled.
        cancelled_waits: u64,
    },
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ComputeSystemOpened => f.write_str("opened the VM"),
            Self::DeviceHostInitialized { com_security: true } => {
                f.write_str("device host initialized (COM security initialized by HDV)")
            }
            Self::DeviceHostInitialized {
                com_security: false,
            } => f.write_str(
                "device host initialized (COM security was already set in this process)",
            ),
            Self::PairingExposed {
                interface_type,
                interface_instance,
                protocol_version,
            } => write!(
                f,
                "pairing capability in config space: channel type {interface_type}, instance \
                 {interface_instance}, protocol {protocol_version:#x}"
            ),
            Self::DeviceCreated => f.write_str("PCI device instance created"),
            Self::DriverFacts(facts) => write_driver_facts(f, facts),
            Self::DriverFactsUnavailable(why) => {
                write!(f, "driver: could not ask what it runs without: {why}")
            }
            Self::SessionOpened { bar_size, regions } => {
                write!(
                    f,
                    "driver session open: {regions} region(s) in a {bar_size:#x}-byte BAR"
                )
            }
            Self::ConsumersCannotAttach => f.write_str(
                "driver: OPEN_SESSION version 2 refused (an older driver), the session was \
                 opened with version 1: the guest is served, but host consumers cannot attach \
                 to these regions (no VM id, no region names)",
            ),
            Self::Ready => f.write_str("ready: start the VM now"),
            Self::VmStarted => f.write_str("the VM started"),
            Self::WaitingForPlacement => f.write_str(
                "waiting for the guest to place the BAR and enable memory decode before mapping",
            ),
            Self::PlacementAccepted(accepted) => {
                write!(
                    f,
                    "placement {} (from {:?}, report {})",
                    accepted.state, accepted.source, accepted.generation
                )?;
                match (accepted.state, accepted.relation) {
                    (BarState::Decoding { .. }, ReservationRelation::Inside) => f.write_str(
                        "; the guest chose to place the BAR inside the channel's MMIO reservation",
                    ),
                    (BarState::Decoding { .. }, ReservationRelation::Disjoint) => {
                        f.write_str("; BAR and channel reservation are disjoint")
                    }
                    _ => Ok(()),
                }
            }
            Self::PlacementRejected(rejection) => write!(
                f,
                "placement report from {:?} refused: {} ({} refused so far)",
                rejection.source, rejection.error, rejection.total
            ),
            Self::MappingAt { base } => write!(f, "mapping the regions into the BAR at {base:#x}"),
            Self::RegionsUnmapped(UnmapReason::DecodeOff) => {
                f.write_str("memory decode off: every range destroyed, regions reported unmapped")
            }
            Self::RegionsUnmapped(UnmapReason::BarMoved { from, to }) => write!(
                f,
                "BAR moved from {from:#x} to {to:#x}: every range destroyed, regions reported \
                 unmapped"
            ),
            Self::MappingReReported { acted_on, regions } => write!(
                f,
                "guest events up to {acted_on} change nothing mapped: {regions} region(s) \
                 reported again as of event {acted_on}"
            ),
            Self::MappingDeferred { region, attempts } => write!(
                f,
                "region {region}: HDV says the VM is not ready yet (attempt {attempts}), retrying"
            ),
            Self::RegionMapped {
                region,
                state,
                attempts,
            } => {
                write!(f, "region {region}: {state:?} after {attempts} attempt(s)")
            }
            Self::FastPathNotInEffect { region, intercepts } => write!(
                f,
                "region {region}: {intercepts} guest access(es) reached the emulator although \
                 the section is mapped; serving it through intercepts"
            ),
            Self::DriverStatus(status) => {
                let c = &status.counters;
                write!(
                    f,
                    "driver status: session {:?}, {} section(s), {} section handle(s) issued, \
                     {} region(s) mapped section-backed, {} guest packet(s), {} protocol \
                     error(s)",
                    status.state,
                    c.sections_created,
                    c.section_handles_issued,
                    c.regions_mapped,
                    c.guest_packets,
                    c.protocol_errors
                )
            }
            Self::DriverStatusUnavailable(why) => write!(f, "driver status unavailable: {why}"),
            Self::UnmapWithoutPause(hr) => {
                write!(
                    f,
                    "could not pause the VM to unmap ({hr}); unmapping anyway"
                )
            }
            Self::StopRequested => f.write_str("stop requested"),
            Self::VmTornDown => f.write_str("the VM was cleaned up"),
            Self::WaitingForVmStop { timeout } => write!(
                f,
                "the VM still runs: waiting up to {:.1}s for it to stop before tearing the \
                 device host down",
                timeout.as_secs_f64()
            ),
            Self::TeardownDeferred => f.write_str(
                "the VM still runs: device host teardown deferred until it stops or this process \
                 exits",
            ),
            Self::TornDown => f.write_str("released everything"),
            Self::GuestEventsFollowing => f.write_str(
                "following the guest's events (WAIT_GUEST_EVENT pending on its own thread)",
            ),
            Self::GuestEvent {
                sequence,
                kind,
                device,
                action,
            } => write_guest_event(f, *sequence, *kind, device.as_ref(), action),
            Self::GuestEventsSkipped(count) => write!(
                f,
                "guest: {count} event(s) handled but not logged (too many at once)"
            ),
            Self::GuestEventsUnavailable(why) => write!(
                f,
                "guest: no longer following the guest's events ({why}); the placement now comes \
                 from the configuration space only"
            ),
            Self::GuestStoppedClosing => f.write_str(
                "guest: the driver stopped answering it (it misbehaved past the protocol's \
                 threshold); ending the run and closing the session, which closes its channel",
            ),
            Self::GuestEventsStopped {
                events,
                cancelled_waits,
            } => write!(
                f,
                "guest: stopped following the guest's events ({events} handled, pending wait \
                 cancelled, {cancelled_waits} cancelled wait(s))"
            ),
        }
    }
}

/// `guest: ready (event 2), BAR at 0x… decode on → mapping at 0x…`: one line per event.
fn write_guest_event(
    f: &mut fmt::Formatter<'_>,
    sequence: u64,
    kind: GuestEventKind,
    device: Option<&GuestDevice>,
    action: &GuestAction,
) -> fmt::Result {
    let name = match kind {
        GuestEventKind::GuestReport => "report",
        GuestEventKind::GuestReady => "ready",
        GuestEventKind::GuestReleasing => "releasing",
        GuestEventKind::GuestReset => "reset (started over)",
        GuestEventKind::GuestStopped => "stopped (the host stopped answering it)",
        GuestEventKind::ChannelClosed => "channel closed",
        GuestEventKind::Resync => "resync",
    };
    write!(f, "guest: {name} (event {sequence}), ")?;
    match device {
        None => f.write_str("no device reported")?,
        Some(device) => {
            let decode = if device.decode_on { "on" } else { "off" };
            write!(f, "BAR at {:#x} decode {decode}", device.bar_base)?;
            if matches!(kind, GuestEventKind::GuestReport | GuestEventKind::Resync) {
                f.write_str(match (device.ready, device.releasing) {
                    (true, _) => ", ready",
                    (false, true) => ", releasing",
                    (false, false) => ", not ready",
                })?;
            }
        }
    }
    f.write_str(" → ")?;
    match action {
        GuestAction::Map { base } => write!(f, "mapping at {base:#x}"),
        GuestAction::Remap { from, to } => {
            write!(f, "remapping (BAR moved from {from:#x} to {to:#x})")
        }
        GuestAction::AlreadyMapped { base } => write!(f, "already mapped at {base:#x}"),
        GuestAction::Unmap => f.write_str("unmapping"),
        GuestAction::NothingMapped => f.write_str("nothing mapped, nothing to do"),
        GuestAction::Refused(error) => write!(f, "refused: {error}"),
        GuestAction::WrongBar { reported, expected } => write!(
            f,
            "refused: the guest reported BAR{reported}, the device's BAR is BAR{expected}"
        ),
        GuestAction::Nothing => f.write_str("nothing to do"),
    }
}

/// `driver: every KMCL entry available (…)` or `driver: KMCL entries unavailable: A, B (…)`.
///
/// Names come from this device host's copy of the driver's table order (`kmcl::EntrySet`); a bit
/// the driver sets beyond that table (a newer driver that appended entries) is shown as its
/// index, never dropped.
fn write_driver_facts(f: &mut fmt::Formatter<'_>, facts: &DriverFacts) -> fmt::Result {
    let bits = facts.kmcl_missing_optional();
    let known = kmcl::EntrySet::from_bits(bits);
    if bits == 0 {
        f.write_str("driver: every KMCL entry available")?;
    } else {
        write!(f, "driver: KMCL entries unavailable: {known}")?;
        let mut separator = if known.is_empty() { "" } else { ", " };
        for index in (0..32u32).filter(|&i| (bits & !known.bits()) & (1 << i) != 0) {
            write!(f, "{separator}entry {index} (unknown to this device host)")?;
            separator = ", ";
        }
    }
    write!(
        f,
        " ({} file handle(s) open, {} session(s))",
        facts.open_files(),
        facts.live_sessions()
    )
}
