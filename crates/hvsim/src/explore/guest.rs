//! The guest program the explorer plays: a well-behaved user of the shared memory, built on
//! the reference guest library (`vmbmmio_proto::guest::GuestClient`) as a guest agent embeds
//! it.
//!
//! It follows `docs/protocol.md`: it pairs the PCI function with the channel, opens the
//! channel, negotiates, reports its reservation and its BAR with decode on, says READY, keeps
//! one `WAIT_EVENT` outstanding, reads the layout when the regions are mapped, and touches the
//! memory only while the client says `Mapped` with a current layout on an open channel. It
//! sends RELEASING before it turns decode off or moves the BAR, and starts over from nothing
//! when its channel goes away or its VM resets. A hostile guest is played separately
//! ([`GuestAgent::sends_garbage`]); the explorer checks the well-behaved one never touches
//! memory the host released.

use vmbmmio_proto::guest::{GuestRange, LARGEST_MESSAGE};

use super::rng::Rng;
use super::world::Env;
use crate::demo::guest_side::{PairedFunction, find_paired_function};
use crate::demo::protocol::SimPackets;
use crate::demo::world::{BAR_INDEX, VM_ID};
use crate::guest_memory::GuestPhysicalMemory;
use crate::kmcl::{ChannelId, SimGuest};
use crate::vm::{ClaimOwner, ClaimRequest, GpaRange};
use crate::vpci::{GuestBar, GuestPci};
use vmbmmio_guest::session::{DeviceFacts, ProtocolSession};

/// What the guest program knows. Everything but the notes is lost when its VM resets.
#[derive(Default)]
pub(super) struct GuestAgent {
    pci: Option<GuestPci>,
    paired: Option<PairedFunction>,
    memory: Option<GuestPhysicalMemory>,
    /// The channel it opened, and the conversation on it.
    channel: Option<(ChannelId, ProtocolSession<SimPackets>)>,
    /// A range it claimed to move the BAR into.
    moved_to: Option<GpaRange>,
    /// Channels it opened so far (the explorer's statistics).
    pub(super) opens: u64,
}

/// One page a guest use touched: the region's index, its first BAR page.
#[derive(Clone, Copy, Debug)]
pub(super) struct Touch {
    pub(super) region: u32,
    pub(super) page: u64,
}

impl GuestAgent {
    /// The guest's state is gone (its VM reset or stopped): it starts from nothing.
    pub(super) fn forget(&mut self) {
        let opens = self.opens;
        *self = Self {
            opens,
            ..Self::default()
        };
    }

    /// Its VM was restored from a save: its memory (its program state, its PCI shadow) is as it
    /// was; its PCI view is rebound to the restored compute system; its VMBus finds the old
    /// channel gone, which its next look at the channel sees.
    pub(super) fn restored(&mut self, env: &Env, notes: &mut Vec<String>) {
        if let Some(pci) = self.pci.take() {
            match pci.restored_into(&env.hdv, VM_ID) {
                Ok(restored) => self.pci = Some(restored),
                Err(error) => {
                    notes.push(format!("guest: restored PCI view: {error}"));
                    self.forget();
                    return;
                }
            }
            self.memory = Some(GuestPhysicalMemory::new(&env.hdv, VM_ID));
        }
    }

    /// Whether it currently may touch the regions: the client says `Mapped`, its layout is
    /// current, its channel is open.
    pub(super) fn may_use(&self) -> bool {
        self.channel
            .as_ref()
            .is_some_and(|(_, session)| session.may_use())
    }

    /// The channel it has open, if any.
    pub(super) fn open_channel(&self) -> Option<ChannelId> {
        self.channel.as_ref().map(|(channel, _)| *channel)
    }

    /// The BAR as the guest sees it now.
    pub(super) fn bar(&self) -> Option<GuestBar> {
        let pci = self.pci.as_ref()?;
        let paired = self.paired.as_ref()?;
        pci.bar(paired.instance, BAR_INDEX)
            .filter(|bar| bar.base != 0)
    }

    fn vmbus(env: &Env) -> SimGuest {
        env.sim.guest(env.vm().id)
    }

    /// Brings up what the guest does not have yet, as a guest agent's `serve` does: its PCI
    /// view (the vPCI bus driver places the BAR), the pairing, memory decode, then the channel
    /// if one is offered. Returns notes of what it could not do (nothing is wrong with that:
    /// the device host may not run yet).
    pub(super) fn bring_up(&mut self, env: &Env, notes: &mut Vec<String>) {
        if !env.guest_vm().power().guest_exists()
            || env.guest_vm().power() != crate::vm::Power::Running
        {
            return;
        }
        if self.pci.is_none() {
            match GuestPci::new(&env.hdv, VM_ID) {
                Ok(pci) => self.pci = Some(pci),
                Err(error) => {
                    notes.push(format!("guest: no PCI view: {error}"));
                    return;
                }
            }
            self.memory = Some(GuestPhysicalMemory::new(&env.hdv, VM_ID));
        }
        let Some(pci) = self.pci.as_ref() else {
            return;
        };
        if let Err(error) = pci.probe() {
            notes.push(format!("guest: vPCI probe: {error}"));
        }
        let vmbus = Self::vmbus(env);
        let offer = vmbus.offers().into_iter().find(|offer| {
            offer.interface_instance.to_u128() == crate::demo::world::INTERFACE_INSTANCE.to_u128()
        });
        if self.paired.is_none()
            && let Some(offer) = &offer
        {
            match find_paired_function(pci, offer) {
                Ok(paired) => self.paired = Some(paired),
                Err(error) => notes.push(format!("guest: {}", error.0)),
            }
        }
        let Some(paired) = self.paired else {
            return;
        };
        if pci
            .bar(paired.instance, BAR_INDEX)
            .is_none_or(|bar| bar.base == 0)
        {
            notes.push("guest: the BAR is not placed".into());
            return;
        }
        if let Err(error) = pci.set_memory_decode(paired.instance, true) {
            notes.push(format!("guest: decode on: {error}"));
            return;
        }
        if self.channel.is_none()
            && let Some(offer) = offer
        {
            self.connect(env, offer.channel, notes);
        }
    }

    /// Opens `channel` and starts the agent's session on it: negotiation, reports, READY and
    /// a held `WAIT_EVENT`. A session that cannot start closes the channel again.
    fn connect(&mut self, env: &Env, channel: ChannelId, notes: &mut Vec<String>) {
        let Some(facts) = self.facts(env, Some(channel)) else {
            return;
        };
        let vmbus = Self::vmbus(env);
        if let Err(error) = vmbus.open(channel) {
            notes.push(format!("guest: opening the channel: {error:?}"));
            return;
        }
        self.opens += 1;
        notes.push(format!("guest: opened channel {channel:?}"));
        match ProtocolSession::start(SimPackets::new(vmbus, channel), facts) {
            Ok(session) => self.channel = Some((channel, session)),
            Err(error) => {
                notes.push(format!("guest: {error}; closing the channel"));
                let _ = vmbus.close(channel);
            }
        }
    }

    /// What the guest reports about its device now: the pairing's instance, the BAR where it
    /// is, the channel's reservation.
    fn facts(&self, env: &Env, channel: Option<ChannelId>) -> Option<DeviceFacts> {
        let paired = self.paired.as_ref()?;
        let bar = self.bar()?;
        let reservation = channel
            .or_else(|| self.open_channel())
            .and_then(|channel| Self::vmbus(env).reservation(channel))
            .map(|range| GuestRange {
                base: range.base,
                size: range.size,
            });
        Some(DeviceFacts {
            instance: paired.found.pairing.interface_instance,
            segment: 0,
            bus: 0,
            devfn: 0,
            bar_index: BAR_INDEX,
            bar_base: bar.base,
            bar_size: bar.size,
            reservation,
        })
    }

    /// Takes what the driver completed meanwhile (the session reads the layout when the
    /// regions are backed and waits again); drops the session when the channel is gone or the
    /// host said it is closing.
    pub(super) fn follow(&mut self, env: &Env, notes: &mut Vec<String>) {
        let vmbus = Self::vmbus(env);
        let Some((channel, session)) = self.channel.as_mut() else {
            return;
        };
        match session.follow() {
            Ok(changes) => notes.extend(
                changes
                    .into_iter()
                    .map(|change| format!("guest: heard {change:?}")),
            ),
            Err(error) => notes.push(format!("guest: {error}")),
        }
        let gone = vmbus.offer(*channel).is_none();
        if gone || session.closed() {
            notes.push(format!(
                "guest: conversation over ({}); starting over",
                if gone {
                    "channel rescinded"
                } else {
                    "host said closing"
                }
            ));
            if !gone {
                let _ = vmbus.close(*channel);
            }
            self.channel = None;
        }
    }

    /// Writes a pattern at the start of each region's first page through the BAR and reads it
    /// back, returning the pages touched (the explorer checks them against the driver's
    /// sections). Nothing if the guest may not use the memory now.
    pub(super) fn uses(
        &self,
        rng: &mut Rng,
        notes: &mut Vec<String>,
    ) -> Vec<(Touch, [u8; 16], [u8; 16])> {
        let mut touched = Vec::new();
        if !self.may_use() {
            notes.push(format!(
                "guest: may not use the memory ({})",
                self.channel.as_ref().map_or_else(
                    || "no channel".to_string(),
                    |(_, session)| format!("{:?}", session.state())
                )
            ));
            return touched;
        }
        let (Some(bar), Some(memory), Some((_, session))) =
            (self.bar(), self.memory.as_ref(), self.channel.as_ref())
        else {
            return touched;
        };
        let Some(layout) = session.layout() else {
            return touched;
        };
        for (index, region) in layout.regions().iter().enumerate() {
            let page = region.offset_pages;
            let gpa = bar.base + page * 4096;
            let mut pattern = [0u8; 16];
            for chunk in pattern.chunks_mut(8) {
                chunk.copy_from_slice(&rng.next_u64().to_le_bytes()[..chunk.len()]);
            }
            memory.write(gpa, &pattern);
            let mut read = [0u8; 16];
            memory.read(gpa, &mut read);
            touched.push((
                Touch {
                    region: u32::try_from(index).unwrap_or(u32::MAX),
                    page,
                },
                pattern,
                read,
            ));
        }
        touched
    }

    /// Reads 16 bytes at the start of BAR page `page` (`None` without a placed BAR).
    pub(super) fn read_region(&self, page: u64) -> Option<[u8; 16]> {
        let bar = self.bar()?;
        let memory = self.memory.as_ref()?;
        let mut bytes = [0u8; 16];
        memory.read(bar.base + page * 4096, &mut bytes);
        Some(bytes)
    }

    /// RELEASING, decode off and its report; then decode on, report and READY.
    pub(super) fn toggles_decode(&mut self, env: &Env, notes: &mut Vec<String>) {
        self.release_bar(env, notes);
        self.decode_back_on(env, notes);
    }

    /// RELEASING, decode off, a BAR-sized range claimed elsewhere in the pool and the BAR moved
    /// there, decode on, report and READY.
    pub(super) fn moves_bar(&mut self, env: &Env, notes: &mut Vec<String>) {
        let (Some(pci), Some(paired), Some(bar)) = (self.pci.as_ref(), self.paired, self.bar())
        else {
            return;
        };
        let request = ClaimRequest::high(bar.size, bar.size);
        let claimed = match env
            .guest_vm()
            .claim(ClaimOwner::Other("explore: the BAR moved".into()), request)
        {
            Ok(range) => range,
            Err(error) => {
                notes.push(format!("guest: no room to move the BAR: {error:?}"));
                return;
            }
        };
        let _ = pci;
        self.release_bar(env, notes);
        let Some(pci) = self.pci.as_ref() else {
            return;
        };
        match pci.move_bar(paired.instance, BAR_INDEX, claimed.base) {
            Ok(_) => {
                if let Some(old) = self.moved_to.replace(claimed) {
                    env.guest_vm().release(old);
                }
            }
            Err(error) => {
                env.guest_vm().release(claimed);
                notes.push(format!("guest: moving the BAR: {error}"));
            }
        }
        self.decode_back_on(env, notes);
    }

    fn release_bar(&mut self, env: &Env, notes: &mut Vec<String>) {
        let _ = env;
        if let Some((_, session)) = self.channel.as_mut()
            && let Err(error) = session.release()
        {
            notes.push(format!("guest: {error}"));
        }
        if let (Some(pci), Some(paired)) = (self.pci.as_ref(), self.paired)
            && let Err(error) = pci.set_memory_decode(paired.instance, false)
        {
            notes.push(format!("guest: decode off: {error}"));
        }
    }

    fn decode_back_on(&mut self, env: &Env, notes: &mut Vec<String>) {
        if let (Some(pci), Some(paired)) = (self.pci.as_ref(), self.paired)
            && let Err(error) = pci.set_memory_decode(paired.instance, true)
        {
            notes.push(format!("guest: decode on: {error}"));
        }
        let facts = self.facts(env, None);
        if let (Some((_, session)), Some(facts)) = (self.channel.as_mut(), facts)
            && let Err(error) = session.report(facts)
        {
            notes.push(format!("guest: {error}"));
        }
    }

    /// Closes the channel without a word.
    pub(super) fn closes_channel(&mut self, env: &Env, notes: &mut Vec<String>) {
        if let Some((channel, _)) = self.channel.take()
            && let Err(error) = Self::vmbus(env).close(channel)
        {
            notes.push(format!("guest: closing the channel: {error:?}"));
        }
    }

    /// Sends up to `LARGEST_MESSAGE` random bytes as one packet on its channel (the reply is
    /// ignored: a hostile guest does not care).
    pub(super) fn sends_garbage(&mut self, env: &Env, seed: u64) {
        let Some(channel) = self.open_channel() else {
            return;
        };
        let mut rng = Rng::new(seed);
        let len = usize::try_from(rng.below(LARGEST_MESSAGE as u64 + 1)).unwrap_or(0);
        let mut bytes: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
        // Half of them carry a well-formed header (kind, flags 0, size), to get past the first
        // checks (docs/protocol.md, "Message header").
        if rng.chance(500) && bytes.len() >= 16 {
            let kind = u16::try_from(1 + rng.below(12)).unwrap_or(1);
            let size = u32::try_from(bytes.len()).unwrap_or(0);
            bytes[..2].copy_from_slice(&kind.to_le_bytes());
            bytes[2..4].copy_from_slice(&[0, 0]);
            bytes[4..8].copy_from_slice(&size.to_le_bytes());
        }
        let _ = Self::vmbus(env).send(channel, &bytes);
    }
}
