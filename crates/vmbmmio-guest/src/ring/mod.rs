//! The VMBus ring buffer and packet format, as a guest sees it through `uio_hv_generic`.
//!
//! # Why this shape
//! The agent talks to the host over one VMBus channel whose two rings `uio_hv_generic` maps into
//! the process ([`txrx`]). This module is the whole packet layer, and it is **sans-IO**: it
//! reads and writes a [`RingMemory`] and returns decisions. It knows nothing of uio, files or
//! waiting. The caller (the session) signals the host when a send or a receive says so (a
//! write to the uio file), and waits for the host by re-enabling the interrupt (also a write to
//! the uio file), checking [`IncomingRing::is_empty`] once more, then `poll`ing the file. That
//! keeps every rule here testable on any host, against a `Vec`, a recording memory, or a
//! simulated host using the same code with the rings swapped ([`RingPair::host`]).
//!
//! # Trusting nothing
//! The host can write any byte of both rings at any time. So: indices the host owns are
//! validated (inside the data area, 8-aligned) before use; our own index is kept privately and
//! only stored; a descriptor is copied out once and checked on the copy; payloads are copied
//! into fresh buffers, never lent as views of shared memory; all arithmetic is checked; and a
//! check that fails returns a typed error ([`Corruption`], [`RecvError`], [`SendError`]) before
//! anything is stored, leaving the ring as it was. The caller then treats the channel as
//! broken. Property tests (`tests/ring_props.rs`) run a hostile host against a memory that
//! records and bounds-checks every access.
//!
//! # Sources
//! Each file cites the public source of its rules; in short:
//! - Layouts ([`layout`]): torvalds/linux `include/linux/hyperv.h` (`struct hv_ring_buffer`,
//!   `struct vmpacket_descriptor`, `enum vmbus_packet_type`,
//!   `VMBUS_DATA_PACKET_FLAG_COMPLETION_REQUESTED`).
//! - Writing, reading, wrap-around, the free byte, the trailer and the signalling rules
//!   ([`outgoing`], [`incoming`]): torvalds/linux `drivers/hv/ring_buffer.c`; DPDK
//!   `drivers/bus/vmbus/vmbus_bufring.c` and `vmbus_channel.c` (the same in user space).
//! - The TXRX map ([`txrx`]): torvalds/linux `drivers/uio/uio_hv_generic.c` and
//!   `drivers/hv/channel.c`; DPDK `drivers/bus/vmbus/linux/vmbus_uio.c`.
//! - Descriptor checks ([`packet`]): stricter than Linux, which clamps; like OpenVMM's
//!   `parse_packet` (microsoft/openvmm `vm/devices/vmbus/vmbus_ring/src/lib.rs`), read to learn.
//!
//! Where the sources are silent this code is strict and says so at the rule (e.g. a published
//! range shorter than a descriptor is an error, not "empty").

#![deny(
    clippy::arithmetic_side_effects,
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_possible_wrap
)]

pub mod error;
pub mod geometry;
pub mod incoming;
pub mod layout;
pub mod memory;
pub mod outgoing;
pub mod packet;
pub mod txrx;

pub use error::{AttachError, Corruption, GeometryError, RecvError, SendError};
pub use geometry::{ControlField, MAX_DATA_SIZE, MIN_DATA_SIZE, Ring};
pub use incoming::{IncomingRing, Received};
pub use layout::{ControlHeader, PacketDescriptor};
pub use memory::{MemoryError, RingMemory, VecRingMemory, Window};
pub use outgoing::{OnFull, OutgoingRing, Sent};
pub use packet::{IncomingPacket, OutgoingPacket};
pub use txrx::{RingPair, TxRxLayout};
