//! Every IOCTL parser on the input, then the input as a sequence of IOCTLs and file, guest and
//! VM events on one simulated control device (`vmbmmio_fuzz::ioctl`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vmbmmio_fuzz::ioctl::run(data));
