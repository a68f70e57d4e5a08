//! The platform's monotonic clock, for the doorbell rate limits (module [`super::rate`]).
//!
//! 100-nanosecond units since an arbitrary start (boot on Windows), never going backwards:
//! `KeQueryInterruptTime` in the driver (Microsoft, "KeQueryInterruptTime function (wdm.h)":
//! the interrupt-time count in 100-nanosecond units, callable at any IRQL), a manual clock in
//! the simulator and the tests (`hvsim::clock::SimClock`).

/// One second in the clock's units.
pub const TICKS_PER_SECOND: u64 = 10_000_000;

/// The platform's monotonic clock.
///
/// `Clone`: the channel's guest port keeps a copy (it reads the time from a KMCL callback,
/// which never takes the table lock); every clone is the same clock.
pub trait Clock: Clone + Send + Sync + 'static {
    /// Now, in 100-nanosecond units since an arbitrary start; monotonic.
    ///
    /// IRQL: any (`KeQueryInterruptTime`).
    fn now(&self) -> u64;
}
