//! Allocation-failure injection: the global allocator of every binary that links hvsim.
//!
//! # Why
//! In the kernel, Rust's infallible allocations (`Box::new`, `Arc::new`, a growing `Vec::push`,
//! `format!`, ...) call `handle_alloc_error` when the pool allocator returns NULL, and that is a
//! bugcheck. The driver's kernel crates must therefore allocate only fallibly and turn a NULL
//! into `STATUS_INSUFFICIENT_RESOURCES` (docs/architecture.md, "Allocation failure"). This
//! allocator proves it: it can make the n-th allocation *the driver* makes return NULL, so a
//! test (or `hvsim explore`) can fail every allocation site in turn and check that the run goes
//! on, reports a clean error and leaks nothing. An infallible site aborts the process
//! ("memory allocation of N bytes failed"): that is how such a site is found.
//!
//! # Whose allocation is it
//! The simulator, the tests and the driver share one heap, so the allocator needs to know who
//! is allocating. Each thread keeps two scope depths:
//! - **driver scope** ([`driver_scope`], [`DriverScope`]): entered wherever simulated platform
//!   code calls driver code — the KMCL model's calls of the driver's state callbacks,
//!   ProcessPacket and completion routines (`kmcl::flows`, `kmcl::outgoing`), and the test
//!   harness's calls of the control device (file create, precheck/dispatch/handle, pending-wait
//!   delivery, file cleanup, shutdown). Those harness calls are wrapped by whoever makes them
//!   (the tests, the demo's transport, the explorer).
//! - **model scope** ([`model_scope`], [`ModelScope`]): entered around the simulator's own
//!   bookkeeping that driver code reaches — the KMCL model's host state (`with_host`), the
//!   sections/object-manager model's state and hooks, the event lock's wake list.
//!
//! An allocation is a **driver allocation** when the driver scope is entered (depth > 0) and
//! the model scope is not (depth 0). Only driver allocations are counted and only they can be
//! failed. Model code inside a model scope never counts, even if it called back into the
//! driver; it should not do that, and [`driver_entries_in_model_scope`] counts the times it
//! did, for a test to assert zero.
//!
//! # Cost
//! Unarmed and outside every scope, an allocation costs one thread-local read on top of
//! `std::alloc::System`. Nothing here allocates on the allocation path except when site
//! recording is on (see [`record_sites`]).
//!
//! # Failing the n-th allocation
//! [`arm_nth`]`(n)` makes the n-th driver allocation of this thread after the call return NULL,
//! once; then the allocator is disarmed again. [`driver_allocations`] counts every driver
//! allocation of this thread (armed or not), [`injected`] the NULLs returned. `realloc` counts
//! as an allocation (a growing `Vec`); on an injected failure the old block is left untouched,
//! as `GlobalAlloc::realloc` documents for a NULL return.
//!
//! ```
//! use hvsim::alloc_faults::{arm_nth, driver_allocations, driver_scope, injected};
//! let before = driver_allocations();
//! arm_nth(2);
//! let (a, b) = driver_scope(|| {
//!     let mut first: Vec<u8> = Vec::new();
//!     let mut second: Vec<u8> = Vec::new();
//!     (first.try_reserve(8).is_ok(), second.try_reserve(8).is_ok())
//! });
//! assert_eq!((a, b), (true, false));
//! assert_eq!(driver_allocations() - before, 2);
//! assert_eq!(injected(), 1);
//! ```

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::{Cell, RefCell};
use std::marker::PhantomData;

/// The allocator: `System`, with a NULL for the armed driver allocation.
pub struct FaultInjecting;

#[global_allocator]
static GLOBAL: FaultInjecting = FaultInjecting;

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, or returns
// NULL for an allocation request, which `GlobalAlloc` allows ("returning a null pointer
// indicates that either memory is exhausted or layout does not meet this allocator's size or
// alignment constraints"). A NULL from `realloc` leaves the old block allocated and untouched.
unsafe impl GlobalAlloc for FaultInjecting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if inject() {
            return std::ptr::null_mut();
        }
        // SAFETY: forwarded with the caller's layout, under the caller's contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if inject() {
            return std::ptr::null_mut();
        }
        // SAFETY: as in `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` (every non-NULL pointer this allocator returns
        // does), with `layout`, under the caller's contract.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if inject() {
            return std::ptr::null_mut();
        }
        // SAFETY: as in `dealloc`; `new_size` is forwarded under the caller's contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// This thread's scopes and counters. `const`-initialised and without `Drop`, so reading it
/// never allocates and never fails.
struct State {
    driver: Cell<u32>,
    model: Cell<u32>,
    /// Driver allocations so far.
    count: Cell<u64>,
    /// The value of `count` at which to fail (0: disarmed).
    target: Cell<u64>,
    injected: Cell<u64>,
    driver_in_model: Cell<u64>,
    /// Inside this module's own bookkeeping (site recording): nothing counts.
    busy: Cell<bool>,
    record_sites: Cell<bool>,
}

thread_local! {
    static STATE: State = const {
        State {
            driver: Cell::new(0),
            model: Cell::new(0),
            count: Cell::new(0),
            target: Cell::new(0),
            injected: Cell::new(0),
            driver_in_model: Cell::new(0),
            busy: Cell::new(false),
            record_sites: Cell::new(false),
        }
    };
    /// Where the injected failures happened (only with [`record_sites`] on).
    static SITES: RefCell<Vec<InjectedSite>> = const { RefCell::new(Vec::new()) };
}

/// Whether this allocation is the driver allocation to fail (and counts it if it is a driver
/// allocation at all).
fn inject() -> bool {
    STATE
        .try_with(|s| {
            if s.driver.get() == 0 || s.model.get() != 0 || s.busy.get() {
                return false;
            }
            let count = s.count.get().saturating_add(1);
            s.count.set(count);
            if s.target.get() != count {
                return false;
            }
            s.target.set(0);
            s.injected.set(s.injected.get().saturating_add(1));
            if s.record_sites.get() {
                s.busy.set(true);
                record_site(count);
                s.busy.set(false);
            }
            true
        })
        .unwrap_or(false)
}

/// Runs `f` in the driver scope: allocations it makes (outside any model scope) are driver
/// allocations. Wrap every call from simulated platform or harness code into driver code.
pub fn driver_scope<R>(f: impl FnOnce() -> R) -> R {
    let _scope = DriverScope::enter();
    f()
}

/// Runs `f` in the model scope: nothing it allocates is a driver allocation. Wrap the
/// simulator's own bookkeeping that driver code reaches.
pub fn model_scope<R>(f: impl FnOnce() -> R) -> R {
    let _scope = ModelScope::enter();
    f()
}

/// The driver scope, as a guard: entered by [`DriverScope::enter`], left on drop (also when
/// unwinding). Not `Send`: the scope belongs to the thread.
#[must_use = "the scope ends when the guard is dropped"]
pub struct DriverScope {
    _thread: PhantomData<*const ()>,
}

impl DriverScope {
    /// Enters the driver scope on this thread.
    pub fn enter() -> Self {
        let _ = STATE.try_with(|s| {
            if s.model.get() != 0 {
                s.driver_in_model
                    .set(s.driver_in_model.get().saturating_add(1));
            }
            s.driver.set(s.driver.get().saturating_add(1));
        });
        Self {
            _thread: PhantomData,
        }
    }
}

impl Drop for DriverScope {
    fn drop(&mut self) {
        let _ = STATE.try_with(|s| s.driver.set(s.driver.get().saturating_sub(1)));
    }
}

/// The model scope, as a guard: entered by [`ModelScope::enter`], left on drop. Not `Send`.
#[must_use = "the scope ends when the guard is dropped"]
pub struct ModelScope {
    _thread: PhantomData<*const ()>,
}

impl ModelScope {
    /// Enters the model scope on this thread.
    pub fn enter() -> Self {
        let _ = STATE.try_with(|s| s.model.set(s.model.get().saturating_add(1)));
        Self {
            _thread: PhantomData,
        }
    }
}

impl Drop for ModelScope {
    fn drop(&mut self) {
        let _ = STATE.try_with(|s| s.model.set(s.model.get().saturating_sub(1)));
    }
}

/// Makes the `n`-th driver allocation of this thread from now on return NULL, once (`n` 0
/// disarms). Replaces an earlier arming.
pub fn arm_nth(n: u64) {
    let _ = STATE.try_with(|s| {
        let target = if n == 0 {
            0
        } else {
            s.count.get().saturating_add(n)
        };
        s.target.set(target);
    });
}

/// Cancels [`arm_nth`] if its allocation has not come yet.
pub fn disarm() {
    arm_nth(0);
}

/// Whether an [`arm_nth`] failure is still to come on this thread.
pub fn is_armed() -> bool {
    STATE.try_with(|s| s.target.get() != 0).unwrap_or(false)
}

/// Driver allocations this thread has made so far (every one, armed or not).
pub fn driver_allocations() -> u64 {
    STATE.try_with(|s| s.count.get()).unwrap_or(0)
}

/// Allocations this thread has failed on purpose so far.
pub fn injected() -> u64 {
    STATE.try_with(|s| s.injected.get()).unwrap_or(0)
}

/// How many times a driver scope was entered while a model scope was open on this thread:
/// model code calling the driver back from inside its bookkeeping, whose allocations are then
/// not counted. Tests assert it stays 0.
pub fn driver_entries_in_model_scope() -> u64 {
    STATE.try_with(|s| s.driver_in_model.get()).unwrap_or(0)
}

/// Whether an allocation made here and now would be a driver allocation.
pub fn in_driver_context() -> bool {
    STATE
        .try_with(|s| s.driver.get() != 0 && s.model.get() == 0)
        .unwrap_or(false)
}

/// One injected failure: which driver allocation it was and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InjectedSite {
    /// The value of [`driver_allocations`] at the failure.
    pub nth: u64,
    /// The innermost frame in this workspace's code (`crates/...` or `src/...`, this module
    /// excepted): `path:line function`, or `?` without debug info. A driver site is in
    /// `crates/kmcl`, `crates/vmbmmio-core` or `crates/vmbmmio-proto`; an hvsim site is model
    /// code that lacks a model scope.
    pub site: String,
    /// The whole backtrace, as `std::backtrace::Backtrace` prints it.
    pub backtrace: String,
}

/// Turns recording of injected sites on or off for this thread. Recording captures and
/// resolves a backtrace at each injected failure (slow: milliseconds), outside the count.
pub fn record_sites(on: bool) {
    let _ = STATE.try_with(|s| s.record_sites.set(on));
}

/// Takes the sites recorded on this thread since the last call, oldest first.
pub fn take_sites() -> Vec<InjectedSite> {
    let _scope = ModelScope::enter();
    SITES
        .try_with(|sites| std::mem::take(&mut *sites.borrow_mut()))
        .unwrap_or_default()
}

/// Captures the current backtrace and stores the driver frame it leads to. Runs with
/// `busy` set, so its own allocations are plain `System` ones.
fn record_site(nth: u64) {
    let backtrace = std::backtrace::Backtrace::force_capture().to_string();
    let site = workspace_frame(&backtrace).unwrap_or_else(|| "?".to_string());
    if std::env::var_os("HVSIM_ALLOC_FAULTS_TRACE").is_some() {
        eprintln!("alloc_faults: failing driver allocation {nth} at {site}\n{backtrace}");
    }
    let _ = SITES.try_with(|sites| {
        sites.borrow_mut().push(InjectedSite {
            nth,
            site,
            backtrace,
        });
    });
}

/// The innermost frame of `backtrace` (std's text form: `N: function` lines, each followed by
/// an `at path:line:column` line) in this workspace's code, this module excepted: a driver
/// crate's frame for a driver site, an hvsim frame for model code that lacks a model scope.
fn workspace_frame(backtrace: &str) -> Option<String> {
    let mut function = "";
    for line in backtrace.lines() {
        let line = line.trim();
        if let Some(path) = line.strip_prefix("at ") {
            let foreign = path.contains("/rustc/")
                || path.contains("/.cargo/")
                || path.contains("/.rustup/")
                || path.contains("alloc_faults.rs:")
                // The kernel crates' fallible `Box`/`Arc`: the site is its caller.
                || path.contains("kmcl/src/fallible.rs:");
            let at = path.find("crates/").or_else(|| path.find("src/"));
            if let (false, Some(at)) = (foreign, at) {
                let short = &path[at..];
                // `path:line:column` → `path:line`.
                let short = short.rsplit_once(':').map_or(short, |(rest, _)| rest);
                return Some(format!("{short} {function}"));
            }
        } else if let Some((_, name)) = line.split_once(": ") {
            function = name;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_driver_allocations_outside_the_model_count_and_fail() {
        let start = driver_allocations();
        let _ = Vec::<u8>::with_capacity(16);
        assert_eq!(driver_allocations(), start, "outside every scope");
        driver_scope(|| {
            let _ = Vec::<u8>::with_capacity(16);
            model_scope(|| {
                let _ = Vec::<u8>::with_capacity(16);
            });
        });
        assert_eq!(driver_allocations(), start + 1);

        let before = injected();
        arm_nth(1);
        let failed = driver_scope(|| Vec::<u8>::new().try_reserve(16).is_err());
        assert!(failed);
        assert_eq!(injected(), before + 1);
        assert!(!is_armed(), "once");
        assert!(driver_scope(|| Vec::<u8>::new().try_reserve(16).is_ok()));
    }

    #[test]
    fn a_growing_vec_fails_through_realloc_and_keeps_its_contents() {
        let mut v: Vec<u32> = Vec::new();
        v.try_reserve_exact(1).unwrap();
        v.push(7);
        arm_nth(1);
        let grown = driver_scope(|| v.try_reserve_exact(64));
        assert!(grown.is_err());
        assert_eq!(v, [7]);
    }

    #[test]
    fn sites_are_recorded_and_driver_entries_from_the_model_are_counted() {
        record_sites(true);
        arm_nth(1);
        let _ = driver_scope(|| Vec::<u8>::new().try_reserve(1).is_err());
        record_sites(false);
        let sites = take_sites();
        assert_eq!(sites.len(), 1);
        assert!(sites[0].backtrace.contains("alloc_faults"));

        let before = driver_entries_in_model_scope();
        model_scope(|| driver_scope(|| ()));
        assert_eq!(driver_entries_in_model_scope(), before + 1);
    }

    #[test]
    fn the_site_is_the_innermost_workspace_frame() {
        let text = "   0: std::backtrace::Backtrace::force_capture\n             at /rustc/x/library/std/src/backtrace.rs:331:13\n   1: vmbmmio_core::control::dispatch::begin\n             at ./crates/vmbmmio-core/src/control/dispatch.rs:170:21\n";
        assert_eq!(
            workspace_frame(text).as_deref(),
            Some(
                "crates/vmbmmio-core/src/control/dispatch.rs:170 vmbmmio_core::control::dispatch::begin"
            )
        );
    }
}
