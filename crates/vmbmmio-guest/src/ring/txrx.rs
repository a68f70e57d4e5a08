//! The `uio_hv_generic` TXRX map: the guest-to-host ring, then the host-to-guest ring, of equal
//! sizes, in one region.
//!
//! `uio_hv_generic` (torvalds/linux `drivers/uio/uio_hv_generic.c`) exposes the channel's ring
//! pages as its first map, `txrx_rings`, of `ringbuffer_pagecount << PAGE_SHIFT` bytes, and
//! allocates both rings with the same size. `__vmbus_open` (`drivers/hv/channel.c`) puts the
//! outbound (guest-to-host) ring first and the inbound ring right after it, and DPDK maps them
//! the same way (`vmbus_uio_map_rings` in DPDK `drivers/bus/vmbus/linux/vmbus_uio.c`: the TX
//! ring at the start, the RX ring at half the map). Each half is a control page and a data area
//! of whole pages.
//!
//! The same split serves a simulated host, which writes the guest's incoming ring and reads its
//! outgoing one: [`RingPair::host`].

use super::error::{AttachError, GeometryError};
use super::geometry::Ring;
use super::incoming::IncomingRing;
use super::layout::CONTROL_PAGE_SIZE;
use super::memory::{RingMemory, Window};
use super::outgoing::OutgoingRing;

/// Where the two rings of a TXRX map are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxRxLayout {
    ring_size: usize,
}

impl TxRxLayout {
    /// The layout of a `map_size`-byte TXRX map: two equal rings, each a whole number of 4 KiB
    /// pages and at least two (a control page and one data page).
    pub fn new(map_size: usize) -> Result<Self, GeometryError> {
        let bad = GeometryError::TxRxSize { map_size };
        let ring_size = map_size.checked_div(2).ok_or(bad)?;
        let two_pages = CONTROL_PAGE_SIZE.saturating_mul(2);
        if !map_size.is_multiple_of(two_pages) || ring_size < two_pages {
            return Err(bad);
        }
        Ok(Self { ring_size })
    }

    /// Each ring's size, control page included.
    pub fn ring_size(&self) -> usize {
        self.ring_size
    }

    /// The guest-to-host ring's offset in the map (0).
    pub fn guest_to_host_offset(&self) -> usize {
        0
    }

    /// The host-to-guest ring's offset in the map (half its size).
    pub fn host_to_guest_offset(&self) -> usize {
        self.ring_size
    }
}

/// One side's two rings of a channel.
#[derive(Debug)]
pub struct RingPair<M> {
    /// The ring this side writes.
    pub outgoing: OutgoingRing<Window<M>>,
    /// The ring this side reads.
    pub incoming: IncomingRing<Window<M>>,
}

impl<M: RingMemory + Clone> RingPair<M> {
    /// The guest's rings over a whole TXRX map: it writes the first, reads the second.
    pub fn guest(map: M) -> Result<Self, AttachError> {
        let layout = TxRxLayout::new(map.size())?;
        Self::attach(
            map,
            layout,
            layout.guest_to_host_offset(),
            layout.host_to_guest_offset(),
        )
    }

    /// A simulated host's rings over the same map: it writes the second, reads the first.
    pub fn host(map: M) -> Result<Self, AttachError> {
        let layout = TxRxLayout::new(map.size())?;
        Self::attach(
            map,
            layout,
            layout.host_to_guest_offset(),
            layout.guest_to_host_offset(),
        )
    }

    fn attach(
        map: M,
        layout: TxRxLayout,
        outgoing_at: usize,
        incoming_at: usize,
    ) -> Result<Self, AttachError> {
        let size = layout.ring_size();
        let window = |at| Window::new(map.clone(), at, size).map_err(GeometryError::Memory);
        let outgoing = OutgoingRing::new(Ring::new(window(outgoing_at)?)?)?;
        let incoming = IncomingRing::new(Ring::new(window(incoming_at)?)?)?;
        Ok(Self { outgoing, incoming })
    }
}
