//! Zero heap allocations per steady-state guest packet, for every message type (issue 13): the
//! host kernel must not allocate while it answers a guest. A counting global allocator counts
//! this thread's allocations around exactly one call of the ProcessPacket lock section
//! (`GuestShared::packet`) per case, after the case was prepared (preparing allocates freely).

#![allow(missing_docs, clippy::unwrap_used)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

#[path = "../benches/support/packets.rs"]
mod packets;

use packets::{Case, handle, prepare};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn count() {
    // `try_with`: the counter may be gone while the thread exits.
    let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
}

// SAFETY: forwards every call to the system allocator unchanged; counting touches only a
// const-initialized thread-local (no allocation, no reentrancy).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: the caller's contract is forwarded as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

#[test]
fn no_message_type_allocates_per_packet() {
    let mut allocating = Vec::new();
    for case in Case::ALL {
        packets::check(case);
        for _ in 0..100 {
            let mut prepared = prepare(case);
            let before = allocations();
            std::hint::black_box(handle(&mut prepared));
            let after = allocations();
            if after != before {
                allocating.push((case, after - before));
                break;
            }
        }
    }
    assert!(
        allocating.is_empty(),
        "allocations per packet: {allocating:?}"
    );
}

#[test]
fn the_counter_sees_an_allocation() {
    let before = allocations();
    std::hint::black_box(Box::new(1u64));
    assert!(allocations() > before);
}
