//! The pairing capability: how a guest driver tells which VMBus channel belongs to the vmbmmio
//! PCI function it found.
//!
//! # Why it exists
//! The guest sees the device host's emulated PCI function and the driver's VMBus channel as two
//! unrelated devices: a vPCI function (through Hyper-V's virtual PCI bus) and a VMBus child, each
//! with its own resources. Nothing on the PCI side names the channel. Microsoft solves the same
//! problem for GPU paravirtualization by putting the per-vGPU channel's instance GUID (and the
//! interface version) in the render/compute vPCI functions' configuration space, where the guest
//! driver reads it (microsoft/WSL2-Linux-Kernel `drivers/hv/dxgkrnl/dxgmodule.c`, the
//! `DXGK_VMBUS_CHANNEL_ID_OFFSET` read at probe). vmbmmio does the same, inside a standard PCI
//! vendor-specific capability so any PCI-aware tool can skip it.
//!
//! # The layout (version 1, 48 bytes, little-endian, dword-aligned)
//! | offset | size | field | value |
//! |---|---|---|---|
//! | 0 | 1 | capability ID | `0x09` (vendor-specific, PCI Local Bus Specification 3.0 §6.7 / appendix H) |
//! | 1 | 1 | next pointer | next capability, `0` = end of list |
//! | 2 | 1 | length | `48`: the whole capability, these three bytes included (PCI spec: vendor-specific capabilities carry their length in byte 2) |
//! | 3 | 1 | layout version | `1` ([`PAIRING_LAYOUT_VERSION`]) |
//! | 4 | 4 | signature | `b"VMBP"` ([`PAIRING_SIGNATURE`]) |
//! | 8 | 16 | interface instance | the channel offer's instance GUID (Windows `GUID` layout) |
//! | 24 | 16 | interface type | the channel offer's type GUID (Windows `GUID` layout) |
//! | 40 | 4 | protocol version | highest guest-control protocol version the host speaks; non-zero |
//! | 44 | 4 | reserved | must be zero |
//!
//! The instance GUID alone identifies the channel (VMBus offers are unique by instance); the type
//! GUID is carried too so a guest can check it found a vmbmmio channel before it opens one, and so
//! several vmbmmio devices of different interface types in one VM stay distinguishable.
//!
//! # Validation
//! [`parse_pairing`] accepts a buffer only if it is exactly one version-1 capability: ID,
//! signature, version, length byte, buffer length, reserved dword, non-zero protocol version and
//! non-nil GUIDs, checked in that order; the first failure is returned as a [`PairingError`].
//! The version is checked before the lengths so a newer, longer layout reads as "unsupported
//! version" rather than "wrong length". [`find_pairing`] walks a configuration space that the
//! guest reads one dword at a time and validates the capability list itself (status bit,
//! pointers, bounds, loops, duplicates).

mod error;
mod layout;
mod walk;

pub use error::{PairingError, PairingGuidField};
pub use layout::{
    CHANNEL_PROTOCOL_VERSION, PAIRING_CAP_DWORDS, PAIRING_CAP_LENGTH, PAIRING_CAP_SIZE,
    PAIRING_LAYOUT_VERSION, PAIRING_SIGNATURE, PCI_CAP_ID_VENDOR, Pairing, PairingCapability,
    parse_pairing,
};
pub use walk::{
    FoundPairing, MAX_CAPABILITIES, PCI_CAPABILITY_LIST, PCI_CONFIG_SPACE_SIZE,
    PCI_STATUS_CAP_LIST, PCI_STD_HEADER_SIZE, find_pairing,
};
