//! The simulated platforms the driver's control device runs on in tests and the demo.
//!
//! [`SimPlatform`] has the KMCL model's full table. [`SimPlatformWithoutMmioSpace`] is the same
//! host whose table lacks the optional `VmbChannelGetMmioSpace` (as when the host's
//! `vmbkmclr.sys` does not export it): the driver must still work there, and say so
//! (QUERY_DRIVER, issue 8).

use std::sync::Mutex;

use vmbmmio_core::control::Platform;
use vmbmmio_core::guest::GuestShared;
use vmbmmio_core::guest_events::{EventLock, Wake};

use crate::clock::SimClock;
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
    type Clock = SimClock;
    type Events = SimKernel;
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
    type Clock = SimClock;
    type Events = SimKernel;
}

/// The session's guest-state lock in the simulator: a `std` mutex (the driver's is a WDF spin
/// lock, module `vmbmmio_core::guest_events`). A poisoned mutex (a test panicked while holding
/// it) is taken over: the state's methods never leave it half-updated.
///
/// The glue retrieves and delivers a woken WAIT_GUEST_EVENT at once; the simulator has no
/// request objects, so it records the wakes the channel's callbacks hand it
/// ([`SimEventLock::take_wakes`]) for the test that plays the glue's manual queue.
#[derive(Debug)]
pub struct SimEventLock {
    shared: Mutex<GuestShared>,
    wakes: Mutex<Vec<Wake>>,
}

impl SimEventLock {
    /// The wakes handed over since the last call, oldest first.
    pub fn take_wakes(&self) -> Vec<Wake> {
        let _model = crate::alloc_faults::ModelScope::enter();
        std::mem::take(
            &mut *self
                .wakes
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }
}

impl EventLock for SimEventLock {
    fn new(shared: GuestShared) -> Option<Self> {
        Some(Self {
            shared: Mutex::new(shared),
            wakes: Mutex::new(Vec::new()),
        })
    }

    /// Runs `f` as the spin lock's holder: the simulator's locking rules flag anything that
    /// blocks under it ([`crate::lock_rules`]), and any driver allocation made under it (the
    /// driver's rule: nothing under a spin lock allocates).
    fn with<R>(&self, f: impl FnOnce(&mut GuestShared) -> R) -> R {
        let mut shared = self
            .shared
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let allocations = crate::alloc_faults::driver_allocations();
        let result = crate::lock_rules::event_locked(|| f(&mut shared));
        if crate::alloc_faults::driver_allocations() != allocations {
            crate::lock_rules::record(
                "the driver allocated under an event lock (a spin lock)".into(),
            );
        }
        result
    }

    /// Records the wake (the model's bookkeeping: in the allocation model scope).
    fn wake(&self, wake: Wake) {
        let _model = crate::alloc_faults::ModelScope::enter();
        self.wakes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(wake);
    }
}
