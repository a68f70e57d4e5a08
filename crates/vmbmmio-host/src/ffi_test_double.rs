//! The C ABI's test double (`include/vmbmmio_host_test_double.h`, feature `test-double`): a
//! host handle over the scripted fake driver's demo VM, so C programs (the example
//! `examples/c/frames.c`) are built and run in CI on Linux. The simulator's setup functions
//! (`vmbmmio_sim_*`, feature `sim`, hvsim running the driver's core) are meant to follow the
//! same pattern: a separate header, a function returning a `vmbmmio_host` every other
//! function of `vmbmmio_host.h` works with.

use crate::ffi::{VMBMMIO_E_INVALID_ARGUMENT, host_into_c, vmbmmio_host};

/// Opens a host handle over the test double's demo VM (`6ba7b810-9dad-11d1-80b4-00c04fd430c8`
/// with regions `frames`, 64 KiB, consumers read-write, and `log`, 4 KiB, consumers read-only;
/// its guest answers every ring with a doorbell of the value plus one). Close it with
/// `vmbmmio_host_close`.
#[unsafe(no_mangle)]
pub extern "C" fn vmbmmio_test_double_host_open(out: Option<&mut *mut vmbmmio_host>) -> i32 {
    match out {
        Some(out) => host_into_c(crate::fake::demo_host(), out),
        None => VMBMMIO_E_INVALID_ARGUMENT,
    }
}
