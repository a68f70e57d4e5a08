//! The simulated guest's VMBus driver, one per VM (and one for loopback offers).
//!
//! What it does, and where that comes from:
//! - **Receives the offer at Enable** (kmcl.md §4 step 2: "the offer is visible to the guest")
//!   with the interface GUIDs, server flags and both MMIO values exactly as the driver set them
//!   (anchors.md §1: `mmio_megabytes` and the `mmio_megabytes_optional` slot of the offer).
//! - **Reserves guest MMIO for it** from its window as soon as the offer arrives: the Windows
//!   guest VMBus driver reserves the space for its child device (anchors.md §2.5). Size: by
//!   default `MmioMegabytes + MmioMegabytesOptional` MiB, the whole offered amount; what
//!   "optional" changes on a real guest is not documented, so [`OptionalMmio::RequiredOnly`]
//!   models a guest that ignores it. Alignment and placement are undocumented (anchors.md §2.5;
//!   Linux dxgkrnl uses 64 KiB, anchors.md §2.2), so they are parameters. A full window fails
//!   cleanly with a recorded reason ([`GuestEvent::ReservationFailed`]).
//! - **Opens** the channel (Opened, then Started and PostStarted once the host has called
//!   `VmbChannelStart`), **sends packets**, **closes** (Suspend, Closed) and **reopens**
//!   (kmcl.md §4 steps 4–7; the offer stays after a guest close).
//! - **Loses the offer on Disable** (rescind): the reservation is released.

use std::collections::{BTreeMap, VecDeque};

use kmcl::raw::{GUID, NTSTATUS};

use super::flows::{accepted, close_if_open, deliver_packet, run_state_callback, start_if_ready};
use super::host::{Lifecycle, with_host};
use super::log::CallbackKind;
use super::mmio::{GpaRange, MmioAllocator, ReserveError};
use super::outgoing::complete_received;
use super::{ChannelId, VmId};

/// One MiB, the unit of the offer's MMIO fields.
pub const MIB: u64 = 1 << 20;

/// How a guest treats `MmioMegabytesOptional`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OptionalMmio {
    /// Reserve `MmioMegabytes + MmioMegabytesOptional` MiB (the whole offered amount).
    Grant,
    /// Reserve only `MmioMegabytes` MiB.
    RequiredOnly,
}

/// A guest's MMIO configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestConfig {
    /// The guest-physical window VMBus MMIO is reserved from.
    pub mmio_window: GpaRange,
    /// Alignment of every reservation (a power of two).
    pub alignment: u64,
    /// Treatment of `MmioMegabytesOptional`.
    pub optional_mmio: OptionalMmio,
}

impl Default for GuestConfig {
    /// 128 GiB of high MMIO at 64 GiB, page alignment, the whole offered amount.
    fn default() -> Self {
        Self {
            mmio_window: GpaRange {
                base: 64 << 30,
                size: 128 << 30,
            },
            alignment: 4096,
            optional_mmio: OptionalMmio::Grant,
        }
    }
}

/// A channel offer as the guest received it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Offer {
    /// The host channel (the model's id; a real guest sees a child relid).
    pub channel: ChannelId,
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
    /// MMIO was reserved for an offer.
    Reserved {
        /// The offer.
        channel: ChannelId,
        /// The reserved range.
        range: GpaRange,
    },
    /// The offer asked for no MMIO.
    NoMmioRequested(ChannelId),
    /// No MMIO could be reserved.
    ReservationFailed {
        /// The offer.
        channel: ChannelId,
        /// Why.
        reason: ReserveError,
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
}

/// Why a guest operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuestError {
    /// No such offer (never made, or rescinded).
    NoSuchOffer,
    /// The offer's MMIO could not be reserved.
    Reservation(ReserveError),
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
    pub(crate) reservation: Option<GpaRange>,
}

/// One guest's state.
#[derive(Clone, Debug)]
pub(crate) struct GuestState {
    pub(crate) config: GuestConfig,
    pub(crate) allocator: MmioAllocator,
    pub(crate) offers: BTreeMap<ChannelId, GuestOffer>,
    pub(crate) events: Vec<GuestEvent>,
    /// Packets the host sent, in order: (channel, outgoing token, bytes).
    pub(crate) inbox: VecDeque<(ChannelId, u64, Vec<u8>)>,
}

impl GuestState {
    pub(crate) fn new(config: GuestConfig) -> Self {
        Self {
            config,
            allocator: MmioAllocator::new(config.mmio_window),
            offers: BTreeMap::new(),
            events: Vec::new(),
            inbox: VecDeque::new(),
        }
    }

    /// Bytes this guest reserves for `offer`.
    fn reservation_size(&self, offer: &Offer) -> u64 {
        let required = u64::from(offer.mmio_megabytes);
        let optional = match self.config.optional_mmio {
            OptionalMmio::Grant => u64::from(offer.mmio_megabytes_optional),
            OptionalMmio::RequiredOnly => 0,
        };
        (required + optional) * MIB
    }

    /// Tries to reserve MMIO for an offer that has none; records the outcome.
    pub(crate) fn try_reserve(
        &mut self,
        channel: ChannelId,
    ) -> Result<Option<GpaRange>, ReserveError> {
        let Some(entry) = self.offers.get(&channel) else {
            return Ok(None);
        };
        if let Some(range) = entry.reservation {
            return Ok(Some(range));
        }
        let size = self.reservation_size(&entry.offer);
        if size == 0 {
            self.events.push(GuestEvent::NoMmioRequested(channel));
            return Ok(None);
        }
        match self.allocator.reserve(size, self.config.alignment) {
            Ok(range) => {
                if let Some(entry) = self.offers.get_mut(&channel) {
                    entry.reservation = Some(range);
                }
                self.events.push(GuestEvent::Reserved { channel, range });
                Ok(Some(range))
            }
            Err(reason) => {
                self.events
                    .push(GuestEvent::ReservationFailed { channel, reason });
                Err(reason)
            }
        }
    }

    /// The offer arrives (Enable).
    pub(crate) fn receive_offer(&mut self, offer: Offer) {
        let channel = offer.channel;
        self.events.push(GuestEvent::OfferReceived(channel));
        self.offers.insert(
            channel,
            GuestOffer {
                offer,
                reservation: None,
            },
        );
        // A failure is recorded; `open` retries.
        let _ = self.try_reserve(channel);
    }

    /// The offer is rescinded (Disable): forget it and release its MMIO.
    pub(crate) fn rescind(&mut self, channel: ChannelId) {
        if let Some(entry) = self.offers.remove(&channel) {
            if let Some(range) = entry.reservation {
                self.allocator.release(range);
            }
            self.inbox.retain(|(c, _, _)| *c != channel);
            self.events.push(GuestEvent::Rescinded(channel));
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

    /// The guest-physical range reserved for `channel`'s MMIO, if any. A BAR for this channel
    /// must lie inside it.
    pub fn reservation(&self, channel: ChannelId) -> Option<GpaRange> {
        self.with(|g| g.offers.get(&channel).and_then(|o| o.reservation))
            .flatten()
    }

    /// This guest's MMIO window.
    pub fn mmio_window(&self) -> Option<GpaRange> {
        self.with(|g| g.allocator.window())
    }

    /// Everything this guest did or saw, in order.
    pub fn events(&self) -> Vec<GuestEvent> {
        self.with(|g| g.events.clone()).unwrap_or_default()
    }

    /// Opens the offered channel: reserve MMIO if not yet done, Opened, then (once the host
    /// has started the channel) Started and PostStarted.
    pub fn open(&self, channel: ChannelId) -> Result<(), GuestError> {
        let vm = self.vm;
        with_host(|h| {
            let guest = h.guests.get_mut(&vm).ok_or(GuestError::NoSuchOffer)?;
            if !guest.offers.contains_key(&channel) {
                return Err(GuestError::NoSuchOffer);
            }
            let reservation = guest
                .try_reserve(channel)
                .map_err(GuestError::Reservation)?;
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
    pub fn receive(&self, channel: ChannelId) -> Option<Vec<u8>> {
        let (token, bytes) = self
            .with(|g| {
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
