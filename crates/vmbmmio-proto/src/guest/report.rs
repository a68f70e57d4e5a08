//! The guest's reports: where its VMBus driver placed the channel's MMIO reservation
//! (`REPORT_RESERVATION`), the paired PCI function and its BAR (`REPORT_DEVICE`), "back it now"
//! (`READY`) and "about to stop using it" (`RELEASING`).
//!
//! VMBus tells the host none of this; every Hyper-V device that shares MMIO has such a message
//! (synthetic video's `VRAM_LOCATION`, dxgkrnl's `SETIOSPACEREGION`). Everything here is what a
//! hostile guest says: the parser checks it against [`placement`](super::placement) before the
//! host acts on it, and the conversation's rules (pairing, the session's BAR size, order) are
//! checked by the host's engine after that.

use core::mem::offset_of;

use zerocopy::byteorder::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::header::{GuestMessage, Header, Kind, kind_size};
use super::placement::{BarPlacement, BarState, GuestRange};
use crate::ioctl::WireGuid;

/// `REPORT_RESERVATION.flags` bit 0: the guest made a reservation; `base` and `size` say where.
pub const RESERVATION_PRESENT: u32 = 1;

/// `REPORT_DEVICE.flags` bit 0: memory decode is enabled in the function's command register.
pub const DEVICE_DECODE_ON: u8 = 1;

/// `REPORT_RESERVATION`, 40 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
pub struct ReportReservationRequest {
    /// Kind [`Kind::ReportReservation`].
    pub header: Header,
    /// [`RESERVATION_PRESENT`] or 0.
    pub flags: U32,
    /// Must be 0.
    pub reserved: U32,
    /// Guest physical base of the reservation (0 without [`RESERVATION_PRESENT`]).
    pub base: U64,
    /// Its size in bytes (0 without [`RESERVATION_PRESENT`]).
    pub size: U64,
}

impl GuestMessage for ReportReservationRequest {
    const KIND: Kind = Kind::ReportReservation;
}
kind_size!(ReportReservationRequest);
const _: () = assert!(offset_of!(ReportReservationRequest, flags) == 16);
const _: () = assert!(offset_of!(ReportReservationRequest, reserved) == 20);
const _: () = assert!(offset_of!(ReportReservationRequest, base) == 24);
const _: () = assert!(offset_of!(ReportReservationRequest, size) == 32);

/// `REPORT_DEVICE`, 56 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
pub struct ReportDeviceRequest {
    /// Kind [`Kind::ReportDevice`].
    pub header: Header,
    /// The channel's interface instance GUID, as the pairing capability carries it.
    pub instance: WireGuid,
    /// PCI segment (domain) the guest sees; informational.
    pub segment: U16,
    /// PCI bus; informational.
    pub bus: u8,
    /// `device << 3 | function`; informational.
    pub devfn: u8,
    /// The BAR's index, 0 to 5.
    pub bar_index: u8,
    /// [`DEVICE_DECODE_ON`] or 0.
    pub flags: u8,
    /// Must be 0.
    pub reserved: U16,
    /// The BAR's guest physical base.
    pub bar_base: U64,
    /// The BAR's size.
    pub bar_size: U64,
}

impl GuestMessage for ReportDeviceRequest {
    const KIND: Kind = Kind::ReportDevice;
}
kind_size!(ReportDeviceRequest);
const _: () = assert!(offset_of!(ReportDeviceRequest, instance) == 16);
const _: () = assert!(offset_of!(ReportDeviceRequest, segment) == 32);
const _: () = assert!(offset_of!(ReportDeviceRequest, bus) == 34);
const _: () = assert!(offset_of!(ReportDeviceRequest, devfn) == 35);
const _: () = assert!(offset_of!(ReportDeviceRequest, bar_index) == 36);
const _: () = assert!(offset_of!(ReportDeviceRequest, flags) == 37);
const _: () = assert!(offset_of!(ReportDeviceRequest, reserved) == 38);
const _: () = assert!(offset_of!(ReportDeviceRequest, bar_base) == 40);
const _: () = assert!(offset_of!(ReportDeviceRequest, bar_size) == 48);

/// `READY`, 16 bytes: the header alone.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
pub struct ReadyRequest {
    /// Kind [`Kind::Ready`].
    pub header: Header,
}

impl GuestMessage for ReadyRequest {
    const KIND: Kind = Kind::Ready;
}
kind_size!(ReadyRequest);

/// `RELEASING`, 16 bytes: the header alone.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
pub struct ReleasingRequest {
    /// Kind [`Kind::Releasing`].
    pub header: Header,
}

impl GuestMessage for ReleasingRequest {
    const KIND: Kind = Kind::Releasing;
}
kind_size!(ReleasingRequest);

/// The content of `REPORT_DEVICE`.
///
/// From [`parse_request`](super::parse_request) it is checked: `bar_index` ≤ 5, the BAR's size a
/// power of two of at least a page, and with decode on a non-zero base aligned to the size whose
/// end stays below 2^52. Whether `instance` is this channel's and whether the size is the
/// session's are the host engine's checks (`NOT_PAIRED`, `BAD_PLACEMENT`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DeviceReport {
    /// The instance GUID the function's pairing capability carries.
    pub instance: WireGuid,
    /// PCI segment; informational.
    pub segment: u16,
    /// PCI bus; informational.
    pub bus: u8,
    /// `device << 3 | function`; informational.
    pub devfn: u8,
    /// The BAR's index.
    pub bar_index: u8,
    /// Where the BAR is and whether decode is on.
    pub bar: BarPlacement,
}

impl DeviceReport {
    /// What the report means for mapping: decode off, or decoding at the BAR's base.
    pub const fn bar_state(&self) -> BarState {
        if self.bar.memory_decode {
            BarState::Decoding {
                base: self.bar.base,
            }
        } else {
            BarState::DecodeOff
        }
    }

    /// The BAR's address range (meaningful with decode on).
    pub const fn bar_range(&self) -> GuestRange {
        GuestRange {
            base: self.bar.base,
            size: self.bar.size,
        }
    }

    /// The wire message carrying `request_id`.
    pub const fn to_wire(&self, request_id: u64) -> ReportDeviceRequest {
        ReportDeviceRequest {
            header: Header::new(Kind::ReportDevice, request_id),
            instance: self.instance,
            segment: U16::new(self.segment),
            bus: self.bus,
            devfn: self.devfn,
            bar_index: self.bar_index,
            flags: if self.bar.memory_decode {
                DEVICE_DECODE_ON
            } else {
                0
            },
            reserved: U16::new(0),
            bar_base: U64::new(self.bar.base),
            bar_size: U64::new(self.bar.size),
        }
    }
}

/// The wire `REPORT_RESERVATION` for `reservation` (`None`: the guest made none).
pub const fn reservation_to_wire(
    reservation: Option<GuestRange>,
    request_id: u64,
) -> ReportReservationRequest {
    let (flags, base, size) = match reservation {
        Some(range) => (RESERVATION_PRESENT, range.base, range.size),
        None => (0, 0, 0),
    };
    ReportReservationRequest {
        header: Header::new(Kind::ReportReservation, request_id),
        flags: U32::new(flags),
        reserved: U32::new(0),
        base: U64::new(base),
        size: U64::new(size),
    }
}
