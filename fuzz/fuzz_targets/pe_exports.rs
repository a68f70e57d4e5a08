//! The PE32+ export parser on the input as a file image, a mapped image, a loaded image read
//! through its header and export windows, and as a kernel module list (`vmbmmio_fuzz::pe`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vmbmmio_fuzz::pe::run(data));
