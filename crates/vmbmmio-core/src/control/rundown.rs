//! Rundown protection: in-flight requests against removal.
//!
//! The same contract as the kernel's `EX_RUNDOWN_REF` (Microsoft Learn, "Run-Down Protection";
//! `ExAcquireRundownProtection`, `ExReleaseRundownProtection`,
//! `ExWaitForRundownProtectionRelease`): every request acquires a reference before it touches
//! the control state and releases it when done; removal first refuses new acquisitions, then
//! waits until the last reference is gone, and only then shuts the state down and frees it.
//! A request that comes after removal started fails to acquire and touches nothing.
//!
//! One word: bit 0 is "removal started", the rest counts references (two per reference). The
//! glue keeps one in a `static`, so it outlives the state it guards.

use core::sync::atomic::{AtomicUsize, Ordering};

const REMOVING: usize = 1;
const ONE: usize = 2;

/// In-flight requests and the removal flag.
#[derive(Debug, Default)]
pub struct Rundown {
    state: AtomicUsize,
}

/// One in-flight request's reference; released on drop.
#[derive(Debug)]
pub struct RundownGuard<'a> {
    rundown: &'a Rundown,
}

impl Rundown {
    /// No references, removal not started.
    pub const fn new() -> Self {
        Self {
            state: AtomicUsize::new(0),
        }
    }

    /// A reference for one request, or `None` once removal has started.
    ///
    /// IRQL: any (atomic operations only).
    pub fn acquire(&self) -> Option<RundownGuard<'_>> {
        let mut current = self.state.load(Ordering::Acquire);
        loop {
            if current & REMOVING != 0 {
                return None;
            }
            let next = current.checked_add(ONE)?;
            match self.state.compare_exchange_weak(
                current,
                next,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Some(RundownGuard { rundown: self }),
                Err(actual) => current = actual,
            }
        }
    }

    /// Starts removal: every later [`Rundown::acquire`] fails. References already held stay
    /// valid until dropped.
    ///
    /// IRQL: any.
    pub fn begin_removal(&self) {
        self.state.fetch_or(REMOVING, Ordering::AcqRel);
    }

    /// Whether removal started and no reference is held any more: only then may the state be
    /// shut down and freed.
    ///
    /// IRQL: any.
    pub fn is_drained(&self) -> bool {
        self.state.load(Ordering::Acquire) == REMOVING
    }

    /// References held right now.
    pub fn in_flight(&self) -> usize {
        self.state.load(Ordering::Acquire) >> 1
    }

    /// After a completed removal (drained), makes the rundown usable again for a new device
    /// (`ExReInitializeRundownProtection`). Returns `false`, changing nothing, if it is not
    /// drained.
    ///
    /// IRQL: any.
    pub fn reinitialize(&self) -> bool {
        self.state
            .compare_exchange(REMOVING, 0, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }
}

impl Drop for RundownGuard<'_> {
    fn drop(&mut self) {
        self.rundown.state.fetch_sub(ONE, Ordering::AcqRel);
    }
}
