//! Time, waiting and stopping, injected so that tests never sleep or time anything.
//!
//! The device host waits in three places: for the VM to start, between mapping attempts that
//! HDV refuses with `ERROR_INVALID_STATE` (hdv.md §3.3, observed), and while serving. All three
//! go through [`Clock`]; tests use a clock whose `sleep` only advances a counter.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// A monotonic clock that can also wait.
pub trait Clock {
    /// Time since an arbitrary fixed origin.
    fn now(&self) -> Duration;
    /// Waits for `duration` (a fake clock just advances `now`).
    fn sleep(&self, duration: Duration);
}

/// The real clock.
#[derive(Debug)]
pub struct SystemClock {
    origin: Instant,
}

impl SystemClock {
    /// A clock whose origin is now.
    pub fn new() -> Self {
        Self {
            origin: Instant::now(),
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    fn sleep(&self, duration: Duration) {
        std::thread::sleep(duration);
    }
}

/// Asks a waiting device host to stop (Ctrl-C on Windows, a flag in tests).
pub trait StopSignal {
    /// Whether a stop was requested.
    fn stop_requested(&self) -> bool;
}

impl StopSignal for AtomicBool {
    fn stop_requested(&self) -> bool {
        self.load(Ordering::SeqCst)
    }
}

impl<T: StopSignal + ?Sized> StopSignal for Arc<T> {
    fn stop_requested(&self) -> bool {
        (**self).stop_requested()
    }
}

impl<T: StopSignal + ?Sized> StopSignal for &T {
    fn stop_requested(&self) -> bool {
        (**self).stop_requested()
    }
}

/// How often and how long to retry a call that reports "not yet".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total (at least 1).
    pub max_attempts: u32,
    /// Wait between attempts.
    pub interval: Duration,
}
