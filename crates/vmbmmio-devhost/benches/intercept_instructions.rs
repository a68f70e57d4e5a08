//! Instruction counts (callgrind, through gungraun) of the intercepted BAR read and write of 1,
//! 2, 4 and 8 bytes, each with its baseline (a plain volatile load/store of the same size).
//! `scripts/bench-check.sh` checks the 10x target on these as ratios.
//!
//! Needs valgrind and `gungraun-runner` 0.20.0: `cargo bench -p vmbmmio-devhost --bench
//! intercept_instructions`.

#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;
use std::sync::Arc;

use gungraun::{library_benchmark, library_benchmark_group, main};
use vmbmmio_devhost::emulator::Emulator;

mod support;

use support::{
    MemoryView, OFFSET, device, intercepted_read, intercepted_write, plain_load, plain_store,
};

type Device = (Emulator, Arc<MemoryView>, usize);

fn sized(len: usize) -> Box<Device> {
    let (emulator, view) = device();
    Box::new((emulator, view, len))
}

#[library_benchmark]
#[bench::bytes_1(sized(1))]
#[bench::bytes_2(sized(2))]
#[bench::bytes_4(sized(4))]
#[bench::bytes_8(sized(8))]
fn intercept_read(device: Box<Device>) -> Box<Device> {
    let mut buffer = [0u8; 8];
    intercepted_read(&device.0, black_box(&mut buffer[..device.2]));
    black_box(buffer);
    device
}

#[library_benchmark]
#[bench::bytes_1(sized(1))]
#[bench::bytes_2(sized(2))]
#[bench::bytes_4(sized(4))]
#[bench::bytes_8(sized(8))]
fn plain_load_baseline(device: Box<Device>) -> Box<Device> {
    black_box(plain_load(
        black_box(device.1.at(OFFSET)),
        black_box(device.2),
    ));
    device
}

#[library_benchmark]
#[bench::bytes_1(sized(1))]
#[bench::bytes_2(sized(2))]
#[bench::bytes_4(sized(4))]
#[bench::bytes_8(sized(8))]
fn intercept_write(device: Box<Device>) -> Box<Device> {
    let data = [0xA5u8; 8];
    intercepted_write(&device.0, black_box(&data[..device.2]));
    device
}

#[library_benchmark]
#[bench::bytes_1(sized(1))]
#[bench::bytes_2(sized(2))]
#[bench::bytes_4(sized(4))]
#[bench::bytes_8(sized(8))]
fn plain_store_baseline(device: Box<Device>) -> Box<Device> {
    plain_store(
        black_box(device.1.at(OFFSET)),
        black_box(device.2),
        black_box(0xA5A5),
    );
    device
}

library_benchmark_group!(
    name = intercept,
    benchmarks = [
        intercept_read,
        plain_load_baseline,
        intercept_write,
        plain_store_baseline
    ]
);

main!(library_benchmark_groups = intercept);
