//! vmbmmio's Linux guest agent, as a library.
//!
//! A Linux guest reaches vmbmmio's shared memory from user space with what its kernel already
//! has: `uio_hv_generic` gives a process the VMBus channel's ring buffers, and sysfs gives it the
//! paired PCI function's configuration space and BAR. This crate holds the agent's portable core
//! (the VMBus ring-buffer packet format, discovery over a sysfs tree given by its root, the
//! session that drives the guest protocol) and, on Linux, the backend that maps the real files.
//! Everything portable is tested on any host against a fake sysfs tree and a fake uio device.
//!
//! # Modules
//! - [`channel`]: what the agent needs from a VMBus channel (request packets, completions).
//! - [`conversation`]: the guest protocol's reference client over such a channel.
//! - [`discover`]: the channel, its `uio_hv_generic` binding and the paired PCI function and
//!   BAR, found over a sysfs tree without trusting its contents.
//! - [`ring`]: the VMBus ring buffer and packet format, trusting nothing the host writes.
//! - [`ring_channel`]: the [`channel::PacketChannel`] over a channel's two rings.
//! - [`session`]: the guest program's whole conversation with the host on one channel.
//! - [`Session`] (Linux): the shared memory in-process: open, wait until backed, regions by
//!   name as volatile views with their generation, the host's changes, doorbells both ways.

pub mod channel;
pub mod conversation;
pub mod discover;
#[cfg(target_os = "linux")]
pub mod linux;
pub mod ring;
pub mod ring_channel;
pub mod session;

#[cfg(target_os = "linux")]
pub use linux::{Doorbell, Options, RegionView, Session};
