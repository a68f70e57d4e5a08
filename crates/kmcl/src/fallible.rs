//! Fallible heap allocation for kernel code: [`try_box`] and [`TryArc`].
//!
//! # Why
//! In the kernel, Rust's infallible allocations (`Box::new`, `Arc::new`, a growing `Vec::push`,
//! `format!`, ...) call `handle_alloc_error` when the pool allocator returns NULL, which is a
//! bugcheck. The driver's kernel crates therefore allocate only fallibly: collections through
//! `try_reserve*` before they grow, single values through this module. `Box::try_new` and
//! `Arc::try_new` exist only on nightly (`allocator_api`), so on stable Rust the value is
//! placed with the raw global allocator and a NULL check, the pattern of the channel context
//! (`server::context::ContextBox`). The unsafe code lives here, in the binding crate, so the
//! driver's logic (`vmbmmio-core`) stays free of it.
//!
//! # What is here
//! - [`try_box`]: `Box::new`, with [`AllocError`] instead of a bugcheck. The result is an
//!   ordinary `Box` (it can be unsized to `Box<dyn Trait>`).
//! - [`TryArc`]: a minimal atomically reference-counted pointer (what the driver needs of
//!   `Arc`: shared ownership across threads, `Clone`, `Deref`), made by [`TryArc::try_new`].
//!   Its count saturates instead of overflowing: a saturated object is never freed (a leak, as
//!   the Linux kernel's `refcount_t` does), since neither an abort nor a panic is acceptable in
//!   a driver. No real user comes near it: the count is the number of live clones.
//!
//! IRQL: whatever the global allocator allows (the driver's `wdk-alloc` allocator uses
//! `ExAllocatePool2` with non-paged pool: <= DISPATCH_LEVEL).

use alloc::alloc::{Layout, alloc};
use alloc::boxed::Box;
use core::fmt;
use core::marker::PhantomData;
use core::ops::Deref;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicUsize, Ordering, fence};

/// The allocator returned NULL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AllocError;

impl fmt::Display for AllocError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("out of memory")
    }
}

/// Moves `value` to the heap, or returns [`AllocError`] when the allocator has no memory.
pub fn try_box<T>(value: T) -> Result<Box<T>, AllocError> {
    let layout = Layout::new::<T>();
    if layout.size() == 0 {
        // A zero-sized value never touches the allocator (`Box`'s "Memory layout" section).
        #[allow(clippy::disallowed_methods)]
        return Ok(Box::new(value));
    }
    // SAFETY: `layout` has a non-zero size (checked above), as `alloc` requires.
    let raw = unsafe { alloc(layout) };
    let pointer = NonNull::new(raw.cast::<T>()).ok_or(AllocError)?;
    // SAFETY: `pointer` is a fresh allocation of `Layout::new::<T>()`: valid for a write of one
    // `T` and suitably aligned.
    unsafe { pointer.as_ptr().write(value) };
    // SAFETY: the memory came from the global allocator with `Layout::new::<T>()` and holds an
    // initialised `T`, which is what `Box::from_raw` requires (`Box`, "Memory layout"); the
    // box becomes its only owner.
    Ok(unsafe { Box::from_raw(pointer.as_ptr()) })
}

/// Counts at or above this are saturated: the object is never freed.
const SATURATED: usize = usize::MAX / 2;

/// What a [`TryArc`] points to.
struct Shared<T> {
    count: AtomicUsize,
    value: T,
}

/// A shared, atomically reference-counted `T`, allocated fallibly ([`TryArc::try_new`]).
/// Cloning shares the value; the last owner's drop frees it.
pub struct TryArc<T> {
    shared: NonNull<Shared<T>>,
    /// Owns a `Shared<T>` (for the drop check and variance).
    _owns: PhantomData<Shared<T>>,
}

// SAFETY: as for `Arc<T>`: a `TryArc` hands out `&T` on any thread and may drop the `T` on
// any thread, so `T` must be `Send + Sync`; the count is atomic.
unsafe impl<T: Send + Sync> Send for TryArc<T> {}
// SAFETY: as above.
unsafe impl<T: Send + Sync> Sync for TryArc<T> {}

impl<T> TryArc<T> {
    /// Moves `value` to the heap with a count of one, or returns [`AllocError`].
    pub fn try_new(value: T) -> Result<Self, AllocError> {
        let shared = try_box(Shared {
            count: AtomicUsize::new(1),
            value,
        })?;
        Ok(Self {
            shared: NonNull::from(Box::leak(shared)),
            _owns: PhantomData,
        })
    }

    fn inner(&self) -> &Shared<T> {
        // SAFETY: `shared` stays allocated and initialised while any `TryArc` to it exists
        // (this one does); it is only ever accessed through shared references.
        unsafe { self.shared.as_ref() }
    }

    /// Whether `a` and `b` share one value.
    pub fn ptr_eq(a: &Self, b: &Self) -> bool {
        a.shared == b.shared
    }
}

impl<T> Clone for TryArc<T> {
    fn clone(&self) -> Self {
        // Relaxed, as `Arc`: a new reference is made from an existing one, so the object is
        // alive; nothing else is published by the increment. A saturated count stays.
        let _ = self
            .inner()
            .count
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |count| {
                count.checked_add(1).filter(|&next| next <= SATURATED)
            });
        Self {
            shared: self.shared,
            _owns: PhantomData,
        }
    }
}

impl<T> Deref for TryArc<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.inner().value
    }
}

impl<T: fmt::Debug> fmt::Debug for TryArc<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<T> Drop for TryArc<T> {
    fn drop(&mut self) {
        // Release, as `Arc`: this owner's uses of the value happen before the free below.
        let previous =
            self.inner()
                .count
                .fetch_update(Ordering::Release, Ordering::Relaxed, |count| {
                    if count >= SATURATED {
                        None
                    } else {
                        count.checked_sub(1)
                    }
                });
        if previous != Ok(1) {
            // Other owners remain (or the count saturated: the object is kept forever).
            return;
        }
        // Acquire, as `Arc`: every other owner's uses happened before this free.
        fence(Ordering::Acquire);
        // SAFETY: the count went from one to zero, so this is the last owner and nobody can
        // reach the allocation any more. It came from `try_box` (a `Box<Shared<T>>` leaked in
        // `try_new`), so `Box::from_raw` takes it back and frees it once.
        drop(unsafe { Box::from_raw(self.shared.as_ptr()) });
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use alloc::sync::Arc;
    use core::sync::atomic::AtomicUsize;

    struct CountsDrops(Arc<AtomicUsize>);

    impl Drop for CountsDrops {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn try_box_holds_the_value_and_unsizes() {
        let boxed = try_box(41_u64).unwrap();
        assert_eq!(*boxed + 1, 42);
        let shown: Box<dyn fmt::Debug> = try_box("text").unwrap();
        assert_eq!(std::format!("{shown:?}"), "\"text\"");
        let unit = try_box(()).unwrap();
        assert_eq!(*unit, ());
    }

    #[test]
    fn the_last_owner_frees_the_value_once() {
        let drops = Arc::new(AtomicUsize::new(0));
        let first = TryArc::try_new(CountsDrops(drops.clone())).unwrap();
        let second = first.clone();
        assert!(TryArc::ptr_eq(&first, &second));
        drop(first);
        assert_eq!(drops.load(Ordering::SeqCst), 0);
        drop(second);
        assert_eq!(drops.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn clones_on_other_threads_share_one_value() {
        let drops = Arc::new(AtomicUsize::new(0));
        let shared = TryArc::try_new((AtomicUsize::new(0), CountsDrops(drops.clone()))).unwrap();
        let threads: alloc::vec::Vec<_> = (0..4)
            .map(|_| {
                let mine = shared.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        let again = mine.clone();
                        again.0.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(shared.0.load(Ordering::Relaxed), 4000);
        drop(shared);
        assert_eq!(drops.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_saturated_count_is_never_freed() {
        let drops = Arc::new(AtomicUsize::new(0));
        let shared = TryArc::try_new(CountsDrops(drops.clone())).unwrap();
        shared.inner().count.store(SATURATED, Ordering::Relaxed);
        let clone = shared.clone();
        assert_eq!(shared.inner().count.load(Ordering::Relaxed), SATURATED);
        drop(clone);
        let leaked = core::mem::ManuallyDrop::new(shared);
        assert_eq!(leaked.inner().count.load(Ordering::Relaxed), SATURATED);
        assert_eq!(drops.load(Ordering::SeqCst), 0);
        // Free it by hand, so the test itself leaks nothing.
        leaked.inner().count.store(1, Ordering::Relaxed);
        drop(core::mem::ManuallyDrop::into_inner(leaked));
        assert_eq!(drops.load(Ordering::SeqCst), 1);
    }
}
