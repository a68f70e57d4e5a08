//! Guest-physical MMIO as the KMCL model sees it: the same types as the shared VM's pool
//! (`crate::vm`), so a channel's reservation and the vPCI model's bridge windows are claims
//! from one pool and can be compared directly.
//!
//! There is no allocator here any more: every range a simulated guest takes for a channel is an
//! exclusive claim on its [`crate::vm::GuestVm`] (owner `ClaimOwner::ChannelReservation`).

pub use crate::vm::{ClaimError, ClaimRequest, GpaRange};
