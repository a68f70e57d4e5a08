//! The simulated guest's VMBus driver, one per VM (and one for loopback offers).
//!
//! Every guest belongs to one shared [`GuestVm`] (`crate::vm`): its power state decides when
//! the guest exists, and every MMIO range the guest takes is an exclusive claim from that VM's
//! pool, next to the vPCI model's claims.
//!
//! What it does, and where that comes from:
//! - **Receives an offer only while its VM runs.** Enable makes the offer visible to the guest
//!   (kmcl.md §4 step 2; Microsoft's `VmbChannelEnable` page in
//!   MicrosoftDocs/windows-driver-docs-ddi); a guest whose virtual processors do not run has no
//!   VMBus driver to receive it, so the offer is delivered when the VM starts running
//!   (`super::vm_link`). The offer carries the interface GUIDs, server flags and both MMIO values
//!   exactly as the driver set them (anchors.md §1; Linux `struct vmbus_channel_offer`
//!   `mmio_megabytes`, torvalds/linux `include/linux/hyperv.h`).
//! - **MMIO, by guest kind** ([`GuestKind`]):
//!   - *Windows*: the VMBus driver reserves the child device's MMIO through PnP when the offer
//!     arrives, before the client opens (platform-paths.md G6: `vmbus.pdb`
//!     `InstanceDeviceResourceRequirementsQuery`, trace string
//!     `pdoContext->OfferParameters.MmioMegabytes`; the client learns it with
//!     `VmbChannelGetMmioSpace` after Opened, kmcl.md §5). What it does with
//!     `MmioMegabytesOptional` is undocumented, so the model reserves `MmioMegabytes` only
//!     (strict); its alignment is undocumented too, so the model guarantees only page alignment
//!     (the weakest useful one), anywhere in the pool. A failure is recorded
//!     ([`GuestEvent::ReservationFailed`]) and the child device never starts: opening fails.
//!   - *Linux*: `hv_vmbus` reserves nothing for an offer and never reads the optional field
//!     (anchors.md §2.1; torvalds/linux `drivers/hv/vmbus_drv.c`). The channel's range exists
//!     only if the channel's own driver claims it with `vmbus_allocate_mmio`, with its own size
//!     and alignment (dxgkrnl: `mmio_megabytes << 20`, 64 KiB, anchors.md §2.2;
//!     microsoft/WSL2-Linux-Kernel `drivers/hv/dxgkrnl/dxgmodule.c`):
//!     [`SimGuest::claim_mmio`], [`SimGuest::claim_offered_mmio`], released by
//!     [`SimGuest::release_mmio`], on rescind and when the VM stops.
//! - **Opens** the channel (Opened, then Started and PostStarted once the host has called
//!   `VmbChannelStart`), **sends packets**, **closes** (Suspend, Closed) and **reopens**
//!   (kmcl.md §4 steps 4–7; the offer stays after a guest close). Every guest action fails with
//!   [`GuestError::VmNotRunning`] unless the VM runs.
//! - **Loses the offer** on Disable (rescind) and when the VM stops or crashes; its MMIO goes
//!   with it.

use std::collections::{BTreeMap, VecDeque};

use kmcl::raw::{GUID, NTSTATUS};

use super::flows::{accepted, close_if_open, deliver_packet, run_state_callback, start_if_ready};
use super::host::{Lifecycle, with_host};
use super::log::CallbackKind;
use super::outgoing::complete_received;
use super::{ChannelId, VmId};
use crate::vm::{ClaimError, ClaimOwner, ClaimRequest, GpaRange, GuestKind, GuestVm, Power};

/// One MiB, the unit of the offer's MMIO fields.
pub const MIB: u64 = 1 << 20;

/// The alignment the Windows-like guest guarantees for its PnP reservation: one page (the
/// real alignment is undocumented; the model promises nothing stronger).
pub const WINDOWS_RESERVATION_ALIGNMENT: u64 = 4096;

/// The alignment Linux dxgkrnl passes to `vmbus_allocate_mmio` for its channel's range
/// (anchors.md §2.2), a sensible default for [`SimGuest::claim_offered_mmio`].
pub const DXGKRNL_MMIO_ALIGNMENT: u64 = 0x1_0000;

/// A channel offer as the guest received it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Offer {
    /// The host channel (the model's id; a real guest sees a child relid).
    pub channel: ChannelId,
    /// The guest-side channel id of this delivery (a relid): a new one for every offer the
    /// guest receives, so a channel offered again (after a reset, or as a new channel after a
    /// restore) is a new channel to the guest.
    pub relid: u32,
    /// Interface type GUID.
    pub interface_type: GUID,
    /// Interface instance GUID.
    pub interface_instance: GUID,
    /// `VmbServerChannelInitSetFlags` value.
    pub server_flags: u32,
    /// `MmioMegabytes`.
    pub mmio_megabytes: u16,
    /// `MmioMegabytesOptional`.
    pub mmio_megabytes_optional: u16,
    /// `VmbChannelInitSetMaximumPacketSize` value.
    pub max_packet_size: Option<u32>,
    /// Friendly name.
    pub friendly_name: Option<String>,
}

/// Something the guest did or saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GuestEvent {
    /// An offer arrived.
    OfferReceived(ChannelId),
    /// The Windows VMBus driver reserved MMIO for an offer's child device.
    Reserved {
        /// The offer.
        channel: ChannelId,
        /// The reserved range.
        range: GpaRange,
    },
    /// The offer asked for no MMIO (Windows: nothing to reserve).
    NoMmioRequested(ChannelId),
    /// The Windows VMBus driver could not reserve the offer's MMIO.
    ReservationFailed {
        /// The offer.
        channel: ChannelId,
        /// Why.
        reason: ClaimError,
    },
    /// A Linux channel driver claimed MMIO for its channel (`vmbus_allocate_mmio`).
    DriverClaimed {
        /// The offer.
        channel: ChannelId,
        /// The claimed range.
        range: GpaRange,
    },
    /// A Linux channel driver released its range (`vmbus_free_mmio`).
    DriverReleased {
        /// The offer.
        channel: ChannelId,
        /// The released range.
        range: GpaRange,
    },
    /// The host accepted the open.
    Opened(ChannelId),
    /// The host's Opened callback failed with this status.
    OpenRefused {
        /// The offer.
        channel: ChannelId,
        /// The status.
        status: NTSTATUS,
    },
    /// The guest closed the channel.
    Closed(ChannelId),
    /// The host rescinded the offer (Disable); its MMIO was released.
    Rescinded(ChannelId),
    /// The VM stopped existing (stopped or crashed), or its guest was reset
    /// ([`Power::Resetting`]): every open channel was closed, every offer and every MMIO range
    /// of this guest is gone.
    VmGone(Power),
    /// A restored guest's VMBus driver learned that a channel it had before the save is gone
    /// (the KMCL model saved no channel state for it): the guest-side channel is rescinded.
    RestoredChannelGone(ChannelId),
}

/// Why a guest operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuestError {
    /// The VM is not running (created, paused, stopped or crashed): its guest can do nothing.
    VmNotRunning(Power),
    /// No such offer (never made, not yet delivered, rescinded, or lost with the VM).
    NoSuchOffer,
    /// The Windows VMBus driver could not reserve the offer's MMIO, so the child device never
    /// started and no client can open the channel.
    Reservation(ClaimError),
    /// A Linux channel driver's `vmbus_allocate_mmio` failed.
    Claim(ClaimError),
    /// Only a Linux guest's channel driver claims its own MMIO; a Windows guest's VMBus driver
    /// reserves it through PnP.
    NotALinuxGuest,
    /// The channel's driver already holds a claim (one per channel in this model).
    AlreadyClaimed,
    /// The channel's driver holds no claim.
    NotClaimed,
    /// The offer asks for no MMIO, so a driver that sizes its claim from it (dxgkrnl) fails.
    NoMmioOffered,
    /// The channel is already open.
    AlreadyOpen,
    /// The channel is not open.
    NotOpen,
    /// Open but not started (packets are deliverable only after Started).
    NotRunning,
    /// The host stopped the incoming queue (`VmbChannelPacketFail`).
    QueueStopped,
    /// The packet is larger than the channel's maximum packet size.
    PacketTooLarge,
    /// The host's Opened callback refused the open with this status.
    OpenRefused(NTSTATUS),
}

/// What became of a packet the guest sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PacketOutcome {
    /// Completed during delivery, with this completion payload.
    Completed(Vec<u8>),
    /// Not completed yet (token for [`SimGuest::completion`]).
    Pending(u64),
    /// The host failed it (`VmbChannelPacketFail`).
    Failed,
}

#[derive(Clone, Debug)]
pub(crate) struct GuestOffer {
    pub(crate) offer: Offer,
    /// Windows: the PnP reservation; Linux: the channel driver's own claim.
    pub(crate) reservation: Option<GpaRange>,
    /// Windows: why the PnP reservation failed, if it did.
    pub(crate) reservation_error: Option<ClaimError>,
}

/// One guest's state.
#[derive(Debug)]
pub(crate) struct GuestState {
    pub(crate) vm: GuestVm,
    pub(crate) offers: BTreeMap<ChannelId, GuestOffer>,
    pub(crate) events: Vec<GuestEvent>,
    /// Packets the host sent, in order: (channel, outgoing token, bytes).
    pub(crate) inbox: VecDeque<(ChannelId, u64, Vec<u8>)>,
}

fn owner(channel: ChannelId) -> ClaimOwner {
    ClaimOwner::ChannelReservation(channel.0)
}

impl GuestState {
    pub(crate) fn new(vm: GuestVm) -> Self {
        Self {
            vm,
            offers: BTreeMap::new(),
            events: Vec::new(),
            inbox: VecDeque::new(),
        }
    }

    /// The offer arrives (the VM runs and the channel is Enabled).
    pub(crate) fn receive_offer(&mut self, offer: Offer) {
        let channel = offer.channel;
        self.events.push(GuestEvent::OfferReceived(channel));
        let required = u64::from(offer.mmio_megabytes) * MIB;
        let mut entry = GuestOffer {
            offer,
            reservation: None,
            reservation_error: None,
        };
        if self.vm.kind() == GuestKind::Windows {
            // Required only (optional: undocumented, strict); page-aligned, anywhere.
            if required == 0 {
                self.events.push(GuestEvent::NoMmioRequested(channel));
            } else {
                let request = ClaimRequest::anywhere(required, WINDOWS_RESERVATION_ALIGNMENT);
                match self.vm.claim(owner(channel), request) {
                    Ok(range) => {
                        entry.reservation = Some(range);
                        self.events.push(GuestEvent::Reserved { channel, range });
                    }
                    Err(reason) => {
                        entry.reservation_error = Some(reason);
                        self.events
                            .push(GuestEvent::ReservationFailed { channel, reason });
                    }
                }
            }
        }
        // Linux: hv_vmbus keeps the offer and reserves nothing.
        self.offers.insert(channel, entry);
        self.sync_vm();
    }

    /// Mirrors the offers into the shared VM (guest memory, which a save keeps).
    pub(crate) fn sync_vm(&self) {
        self.vm
            .set_vmbus_offers(self.offers.keys().map(|channel| channel.0).collect());
    }

    /// The offer is rescinded (Disable): forget it and release its MMIO (Windows: the child
    /// device is removed with its resources; Linux: the driver's remove frees its claim).
    pub(crate) fn rescind(&mut self, channel: ChannelId) {
        if let Some(entry) = self.offers.remove(&channel) {
            if let Some(range) = entry.reservation {
                self.vm.release(range);
            }
            self.inbox.retain(|(c, _, _)| *c != channel);
            self.events.push(GuestEvent::Rescinded(channel));
            self.sync_vm();
        }
    }

    /// The VM stopped existing: the guest forgets every offer; its claims went with the pool.
    pub(crate) fn forget_all(&mut self, power: Power) {
        self.offers.clear();
        self.inbox.clear();
        self.events.push(GuestEvent::VmGone(power));
        self.sync_vm();
    }

    fn require_running(&self) -> Result<(), GuestError> {
        match self.vm.power() {
            Power::Running => Ok(()),
            other => Err(GuestError::VmNotRunning(other)),
        }
    }
}

/// A handle on one simulated guest's VMBus driver (thread-local, like the host).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SimGuest {
    pub(crate) vm: VmId,
}

impl SimGuest {
    /// The VM.
    pub fn vm(&self) -> VmId {
        self.vm
    }

    fn with<R>(&self, f: impl FnOnce(&mut GuestState) -> R) -> Option<R> {
        with_host(|h| h.guests.get_mut(&self.vm).map(f))
    }

    /// Runs `f` on this guest if its VM runs.
    fn with_running<R>(
        &self,
        f: impl FnOnce(&mut GuestState) -> Result<R, GuestError>,
    ) -> Result<R, GuestError> {
        self.with(|g| g.require_running().and_then(|()| f(g)))
            .unwrap_or(Err(GuestError::NoSuchOffer))
    }

    /// The shared VM this guest lives in.
    pub fn guest_vm(&self) -> Option<GuestVm> {
        self.with(|g| g.vm.clone())
    }

    /// The guest's kind.
    pub fn kind(&self) -> Option<GuestKind> {
        self.with(|g| g.vm.kind())
    }

    /// The offers currently visible to this guest.
    pub fn offers(&self) -> Vec<Offer> {
        self.with(|g| g.offers.values().map(|o| o.offer.clone()).collect())
            .unwrap_or_default()
    }

    /// The offer of `channel`, if visible.
    pub fn offer(&self, channel: ChannelId) -> Option<Offer> {
        self.with(|g| g.offers.get(&channel).map(|o| o.offer.clone()))
            .flatten()
    }

    /// The only offer, if exactly one is visible.
    pub fn only_offer(&self) -> Option<Offer> {
        let offers = self.offers();
        match offers.as_slice() {
            [offer] => Some(offer.clone()),
            _ => None,
        }
    }

    /// The guest-physical range held for `channel`'s MMIO, if any: a Windows guest's PnP
    /// reservation, or a Linux channel driver's own claim. It is never where the paired
    /// device's BAR lives: that is a separate claim (the vPCI bridge window).
    pub fn reservation(&self, channel: ChannelId) -> Option<GpaRange> {
        self.with(|g| g.offers.get(&channel).and_then(|o| o.reservation))
            .flatten()
    }

    /// The windows of this guest's MMIO pool.
    pub fn pool_windows(&self) -> Vec<GpaRange> {
        self.with(|g| g.vm.pool_windows()).unwrap_or_default()
    }

    /// Everything this guest did or saw, in order.
    pub fn events(&self) -> Vec<GuestEvent> {
        self.with(|g| g.events.clone()).unwrap_or_default()
    }

    /// A Linux channel driver claims MMIO for its channel: `vmbus_allocate_mmio(min, max,
    /// size, align)` from the VM's pool, exclusive (anchors.md §2.1). Its size and alignment
    /// are the driver's own choice; hv_vmbus never reads `MmioMegabytesOptional`.
    pub fn claim_mmio(
        &self,
        channel: ChannelId,
        request: ClaimRequest,
    ) -> Result<GpaRange, GuestError> {
        self.with_running(|g| {
            if g.vm.kind() != GuestKind::Linux {
                return Err(GuestError::NotALinuxGuest);
            }
            let entry = g.offers.get(&channel).ok_or(GuestError::NoSuchOffer)?;
            if entry.reservation.is_some() {
                return Err(GuestError::AlreadyClaimed);
            }
            let range =
                g.vm.claim(owner(channel), request)
                    .map_err(GuestError::Claim)?;
            if let Some(entry) = g.offers.get_mut(&channel) {
                entry.reservation = Some(range);
            }
            g.events.push(GuestEvent::DriverClaimed { channel, range });
            Ok(range)
        })
    }

    /// A Linux channel driver claims what the offer asks for, as dxgkrnl does:
    /// `mmio_megabytes << 20` bytes anywhere in the pool, aligned to `align` (dxgkrnl passes
    /// [`DXGKRNL_MMIO_ALIGNMENT`]); fails with [`GuestError::NoMmioOffered`] if the offer asks
    /// for none (dxgkrnl's `-ENOMEM`). The optional amount is never read.
    pub fn claim_offered_mmio(
        &self,
        channel: ChannelId,
        align: u64,
    ) -> Result<GpaRange, GuestError> {
        let megabytes = self
            .with(|g| g.offers.get(&channel).map(|o| o.offer.mmio_megabytes))
            .flatten();
        match megabytes {
            Some(0) => Err(GuestError::NoMmioOffered),
            Some(megabytes) => self.claim_mmio(
                channel,
                ClaimRequest::anywhere(u64::from(megabytes) * MIB, align),
            ),
            // Let `claim_mmio` report the VM state or the missing offer.
            None => self.claim_mmio(channel, ClaimRequest::anywhere(MIB, align)),
        }
    }

    /// A Linux channel driver releases its claim (`vmbus_free_mmio`).
    pub fn release_mmio(&self, channel: ChannelId) -> Result<GpaRange, GuestError> {
        self.with_running(|g| {
            if g.vm.kind() != GuestKind::Linux {
                return Err(GuestError::NotALinuxGuest);
            }
            let entry = g.offers.get_mut(&channel).ok_or(GuestError::NoSuchOffer)?;
            let range = entry.reservation.take().ok_or(GuestError::NotClaimed)?;
            g.vm.release(range);
            g.events.push(GuestEvent::DriverReleased { channel, range });
            Ok(range)
        })
    }

    /// Opens the offered channel: Opened, then (once the host has started the channel)
    /// Started and PostStarted.
    pub fn open(&self, channel: ChannelId) -> Result<(), GuestError> {
        let vm = self.vm;
        with_host(|h| {
            let guest = h.guests.get_mut(&vm).ok_or(GuestError::NoSuchOffer)?;
            guest.require_running()?;
            let kind = guest.vm.kind();
            let entry = guest.offers.get(&channel).ok_or(GuestError::NoSuchOffer)?;
            if let Some(reason) = entry.reservation_error {
                return Err(GuestError::Reservation(reason));
            }
            // What the VMBus layer knows of the channel's MMIO: a Windows guest's PnP
            // reservation. A Linux driver's own claim never reaches VMBus (no guest-to-host
            // message carries it, anchors.md §2.1).
            let reservation = match kind {
                GuestKind::Windows => entry.reservation,
                GuestKind::Linux => None,
            };
            let c = h.channel_mut(channel);
            if c.lifecycle != Lifecycle::Enabled || c.target != Some(vm) {
                return Err(GuestError::NoSuchOffer);
            }
            if c.open {
                return Err(GuestError::AlreadyOpen);
            }
            c.open = true;
            c.mmio_space = reservation;
            Ok(())
        })?;
        let status = run_state_callback(channel, CallbackKind::Opened);
        if !accepted(status) {
            let status = status.unwrap_or_default();
            with_host(|h| {
                let c = h.channel_mut(channel);
                c.open = false;
                c.mmio_space = None;
            });
            self.with(|g| g.events.push(GuestEvent::OpenRefused { channel, status }));
            return Err(GuestError::OpenRefused(status));
        }
        self.with(|g| g.events.push(GuestEvent::Opened(channel)));
        // Queued host sends are transmitted now that the channel is open (kmcl.md §4).
        with_host(|h| {
            let queued = std::mem::take(&mut h.channel_mut(channel).queued_sends);
            if let Some(guest) = h.guests.get_mut(&vm) {
                guest.inbox.extend(
                    queued
                        .into_iter()
                        .map(|(token, bytes)| (channel, token, bytes)),
                );
            }
        });
        start_if_ready(channel);
        Ok(())
    }

    /// Closes the channel: Suspend (if running), then Closed. The offer stays.
    pub fn close(&self, channel: ChannelId) -> Result<(), GuestError> {
        let vm = self.vm;
        with_host(|h| {
            h.guests
                .get(&vm)
                .ok_or(GuestError::NoSuchOffer)?
                .require_running()?;
            let c = h.channel(channel);
            if c.target != Some(vm) || c.lifecycle != Lifecycle::Enabled {
                return Err(GuestError::NoSuchOffer);
            }
            if !c.open {
                return Err(GuestError::NotOpen);
            }
            Ok(())
        })?;
        close_if_open(channel);
        self.with(|g| g.events.push(GuestEvent::Closed(channel)));
        Ok(())
    }

    /// Sends `bytes` to the host; returns how the host completed it.
    pub fn send(&self, channel: ChannelId, bytes: &[u8]) -> Result<PacketOutcome, GuestError> {
        let vm = self.vm;
        with_host(|h| {
            h.guests
                .get(&vm)
                .ok_or(GuestError::NoSuchOffer)?
                .require_running()?;
            if h.channel_id(super::host::channel_raw(channel)).is_none()
                || h.channel(channel).target != Some(vm)
            {
                return Err(GuestError::NoSuchOffer);
            }
            Ok(())
        })?;
        deliver_packet(channel, bytes)
    }

    /// The completion of a packet that was pending when `send` returned.
    pub fn completion(&self, token: u64) -> Option<Vec<u8>> {
        with_host(|h| h.packets.get(&token).and_then(|p| p.completion.clone()))
    }

    /// Takes the oldest packet the host sent on `channel`, completing it on the host side.
    /// Nothing while the VM does not run.
    pub fn receive(&self, channel: ChannelId) -> Option<Vec<u8>> {
        let (token, bytes) = self
            .with(|g| {
                g.require_running().ok()?;
                let index = g.inbox.iter().position(|(c, _, _)| *c == channel)?;
                g.inbox
                    .remove(index)
                    .map(|(_, token, bytes)| (token, bytes))
            })
            .flatten()?;
        complete_received(channel, token);
        Some(bytes)
    }
}
