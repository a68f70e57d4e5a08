//! A stateful sequence of guest packets, interleaved with device-host IOCTLs and channel closes
//! and reopens, against one simulated session's real packet handler (`vmbmmio_fuzz::guest`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    vmbmmio_fuzz::guest::run(data);
});
