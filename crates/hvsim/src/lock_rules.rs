//! The driver's locking rules, checked by the simulator on every call a test or the explorer
//! makes (`docs/architecture.md`, "Locks at a glance").
//!
//! - Nothing that blocks or takes real time runs under the **table lock** (a WDF wait lock):
//!   the KMCL calls that wait (`VmbChannelEnable`, `VmbChannelDisable`, `VmbChannelPause`, the
//!   VMBus handle conversion) and section creation and final release. Unload is the one
//!   documented exception (nothing else runs then): [`unload`].
//! - Nothing of that kind runs under a session's **event lock** (a spin lock: DISPATCH_LEVEL,
//!   where waiting is a bugcheck), nor does the driver take the table lock under it (the lock
//!   order is table, then event).
//!
//! The simulated locks ([`crate::table_lock::SimTableLock`], [`crate::platform::SimEventLock`])
//! mark the current thread while held; the models call [`blocking_call`] at each blocking
//! entry point. A broken rule is recorded (never a panic: a test or the explorer collects them
//! with [`take_broken`]).

use std::cell::{Cell, RefCell};

thread_local! {
    static TABLE: Cell<u32> = const { Cell::new(0) };
    static EVENT: Cell<u32> = const { Cell::new(0) };
    static EXEMPT: Cell<u32> = const { Cell::new(0) };
    static BROKEN: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

/// Records a broken rule (for the simulated locks themselves).
pub fn record(rule: String) {
    BROKEN.with(|broken| broken.borrow_mut().push(rule));
}

/// Runs `f` as the holder of the table lock.
pub fn table_locked<R>(f: impl FnOnce() -> R) -> R {
    if EVENT.with(Cell::get) > 0 {
        record(
            "the table lock was taken under an event lock (lock order is table, then event)".into(),
        );
    }
    TABLE.with(|held| held.set(held.get() + 1));
    let result = f();
    TABLE.with(|held| held.set(held.get().saturating_sub(1)));
    result
}

/// Runs `f` as the holder of an event lock (a spin lock).
pub fn event_locked<R>(f: impl FnOnce() -> R) -> R {
    EVENT.with(|held| held.set(held.get() + 1));
    let result = f();
    EVENT.with(|held| held.set(held.get().saturating_sub(1)));
    result
}

/// Runs `f` as the driver's unload: it releases everything under the table lock, which is
/// allowed because nothing else runs then (`docs/architecture.md`, "Removal").
pub fn unload<R>(f: impl FnOnce() -> R) -> R {
    EXEMPT.with(|exempt| exempt.set(exempt.get() + 1));
    let result = f();
    EXEMPT.with(|exempt| exempt.set(exempt.get().saturating_sub(1)));
    result
}

/// A model's entry point that blocks or takes real time was called: a broken rule if the
/// calling thread holds the table lock (outside unload) or an event lock.
pub fn blocking_call(what: &str) {
    if EVENT.with(Cell::get) > 0 {
        record(format!("{what} ran under an event lock (a spin lock)"));
    } else if TABLE.with(Cell::get) > 0 && EXEMPT.with(Cell::get) == 0 {
        record(format!("{what} ran under the table lock"));
    }
}

/// A call the driver must not make under a spin lock (PASSIVE_LEVEL only, or one whose last
/// reference may free an object: a consumer event's reference and release) was made: a broken
/// rule if the calling thread holds an event lock. The table lock is allowed.
pub fn not_under_event_lock(what: &str) {
    if EVENT.with(Cell::get) > 0 {
        record(format!("{what} ran under an event lock (a spin lock)"));
    }
}

/// The rules broken on this thread since the last call.
pub fn take_broken() -> Vec<String> {
    BROKEN.with(|broken| std::mem::take(&mut *broken.borrow_mut()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocking_calls_are_flagged_only_under_a_lock() {
        take_broken();
        blocking_call("outside");
        assert!(take_broken().is_empty());
        table_locked(|| blocking_call("VmbChannelDisable"));
        event_locked(|| blocking_call("ZwCreateSection"));
        table_locked(|| unload(|| blocking_call("unload's release")));
        event_locked(|| table_locked(|| {}));
        let broken = take_broken();
        assert_eq!(broken.len(), 3, "{broken:?}");
        assert!(broken[0].contains("under the table lock"));
        assert!(broken[1].contains("under an event lock"));
        assert!(broken[2].contains("lock order"));
    }
}
