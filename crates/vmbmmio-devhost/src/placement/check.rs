//! Pure checks of a reported placement: what a hostile guest could send is refused here, with a
//! typed error, before anything is mapped.
//!
//! The checks themselves live in the wire crate (`vmbmmio_proto::guest::placement`), so the
//! driver's channel-protocol engine, which checks the guest's `REPORT_DEVICE` and
//! `REPORT_RESERVATION` when they arrive, and the device host, which checks again before it
//! maps, refuse the same lies in the same way. This module keeps their old paths.

pub use vmbmmio_proto::guest::placement::{
    MAX_GUEST_PHYSICAL_ADDRESS, PlacementError, ReservationRelation, check_bar_size,
    check_placement, check_reservation, classify_reservation,
};
