//! The simulated monotonic clock (`KeQueryInterruptTime`, 100 ns units) behind
//! `vmbmmio_core::consumers::Clock`: manual, so a test decides exactly how much time passes
//! between two doorbells. Every clone is the same clock.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use vmbmmio_core::consumers::Clock;

/// A manual clock starting at 0.
#[derive(Clone, Debug, Default)]
pub struct SimClock {
    now: Arc<AtomicU64>,
}

impl SimClock {
    /// A clock at 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// Lets `ticks` (100 ns units) pass.
    pub fn advance(&self, ticks: u64) {
        self.now.fetch_add(ticks, Ordering::SeqCst);
    }

    /// Lets `seconds` pass.
    pub fn advance_seconds(&self, seconds: u64) {
        self.advance(seconds.saturating_mul(vmbmmio_core::consumers::TICKS_PER_SECOND));
    }
}

impl Clock for SimClock {
    fn now(&self) -> u64 {
        self.now.load(Ordering::SeqCst)
    }
}
