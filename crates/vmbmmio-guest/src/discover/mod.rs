//! Discovery: finding vmbmmio's VMBus channel and its paired PCI function from user space, over
//! a sysfs tree given by its root directory (`/sys` on Linux, a temporary directory in tests).
//!
//! # Why from sysfs
//! A Linux guest needs no kernel module of ours: `uio_hv_generic` hands a VMBus channel's rings to
//! a process, and sysfs lets a process read a PCI function's configuration space, learn where its
//! BAR sits, turn decode on and map the BAR. This module does the finding and the binding with
//! `std` file operations only, so it is portable and tested against fake trees on any host; the
//! Linux backend only maps the files it names.
//!
//! # What it reads and writes (public sources)
//! - **VMBus devices** ([`vmbus`]): `/sys/bus/vmbus/devices/<device>/class_id` and `device_id`
//!   (`{%pUl}`: interface type and instance; `Documentation/ABI/stable/sysfs-bus-vmbus`, Linux
//!   `drivers/hv/vmbus_drv.c`), and the `driver` link.
//! - **Binding** ([`bind`]): `/sys/bus/vmbus/drivers/uio_hv_generic/new_id`, `<driver>/unbind`,
//!   `uio_hv_generic/bind` (`Documentation/driver-api/uio-howto.rst`, "Generic Hyper-V UIO
//!   driver"; `new_id_store` in `drivers/hv/vmbus_drv.c`).
//! - **The uio node** ([`uio`]): `<device>/uio/uioN`, `/dev/uioN`, `maps/map0..4/{name,size,offset}`
//!   (Linux `drivers/uio/uio.c`, `drivers/uio/uio_hv_generic.c`).
//! - **The steps in order** ([`locate`]): channel, binding, paired function.
//! - **PCI functions** ([`pci`], [`resource`]): `/sys/bus/pci/devices/<bdf>/vendor`, `device`,
//!   `config`, `resource`, `resourceN`, `resourceN_wc`, `enable` (`Documentation/PCI/sysfs-pci.rst`,
//!   `Documentation/ABI/testing/sysfs-bus-pci`, Linux `drivers/pci/pci-sysfs.c`,
//!   `include/linux/ioport.h`); the pairing capability is `vmbmmio_proto::pci_cap`'s.
//!
//! # Trust
//! Nothing read is trusted: reads are bounded ([`fsread`]), values must have exactly the form the
//! kernel prints ([`text`]), and every failure is a [`DiscoverError`] that names the file and says
//! what to do. No input can make this module panic or index out of bounds.

#![deny(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation
)]

pub mod bind;
pub mod error;
pub mod fsread;
pub mod locate;
pub mod pci;
pub mod resource;
pub mod text;
pub mod uio;
pub mod vmbus;

pub use bind::{BindOptions, StdSysfsWrite, SysfsWrite, bind_uio, bind_uio_with};
pub use error::{BarProblem, DiscoverError, IoOp};
pub use locate::{Located, Target};
pub use pci::{
    BarFile, Bdf, DecodeState, PairedFunction, enable_decode, enable_decode_with,
    find_paired_function,
};
pub use resource::BarResource;
pub use text::{GuidText, parse_guid};
pub use uio::{UioDevice, UioMap};
pub use vmbus::{
    ChannelEntry, UIO_HV_GENERIC, VmbusChannel, find_channel, find_only_channel, list_channels,
};
