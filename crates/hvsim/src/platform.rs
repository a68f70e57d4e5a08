//! The simulated platforms the driver's control device runs on in tests and the demo.
//!
//! [`SimPlatform`] has the KMCL model's full table. [`SimPlatformWithoutMmioSpace`] is the same
//! host whose table lacks the optional `VmbChannelGetMmioSpace` (as when the host's
//! `vmbkmclr.sys` does not export it): the driver must still work there, and say so
//! (QUERY_DRIVER, issue 8).

use std::sync::Mutex;

use vmbmmio_core::control::Platform;
use vmbmmio_core::guest_events::{EventLock, GuestEventQueue};

use crate::kmcl::{HvsimKmcl, HvsimKmclWithoutMmioSpace, SimHandleCloser};
use crate::sections::{SimKernel, SimProcessRef};

/// KMCL from the KMCL model, kernel handles closed by the model, sections from the
/// object-manager model: the simulated counterpart of the glue's `WindowsPlatform`.
pub struct SimPlatform;

impl Platform for SimPlatform {
    type Kmcl = HvsimKmcl;
    type HandleCloser = SimHandleCloser;
    type Sections = SimKernel;
    type Process = SimProcessRef;
    type EventLock = SimEventLock;
}

/// [`SimPlatform`] with a KMCL table that lacks the optional `VmbChannelGetMmioSpace`
/// ([`HvsimKmclWithoutMmioSpace`]).
pub struct SimPlatformWithoutMmioSpace;

impl Platform for SimPlatformWithoutMmioSpace {
    type Kmcl = HvsimKmclWithoutMmioSpace;
    type HandleCloser = SimHandleCloser;
    type Sections = SimKernel;
    type Process = SimProcessRef;
    type EventLock = SimEventLock;
}

/// The session event queue's lock in the simulator: a `std` mutex (the driver's is a WDF spin
/// lock, module `vmbmmio_core::guest_events`). A poisoned mutex (a test panicked while holding
/// it) is taken over: the queue's methods never leave it half-updated.
#[derive(Debug)]
pub struct SimEventLock(Mutex<GuestEventQueue>);

impl EventLock for SimEventLock {
    fn new(queue: GuestEventQueue) -> Option<Self> {
        Some(Self(Mutex::new(queue)))
    }

    fn with<R>(&self, f: impl FnOnce(&mut GuestEventQueue) -> R) -> R {
        let mut queue = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut queue)
    }
}
