//! Wall-clock benchmark of the device host's intercepted BAR read and write of 1, 2, 4 and 8
//! bytes served from a section view, each against a plain volatile load/store of the same size
//! measured in the same run. Instruction counts: `benches/intercept_instructions.rs`.
//!
//! `cargo bench -p vmbmmio-devhost --bench intercept` (add `-- --quick` for a short run).

#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};

mod support;

use support::{OFFSET, device, intercepted_read, intercepted_write, plain_load, plain_store};

fn intercept(c: &mut Criterion) {
    let (emulator, view) = device();
    let at = view.at(OFFSET);
    for len in [1usize, 2, 4, 8] {
        let mut group = c.benchmark_group(format!("intercept/{len}"));
        let mut buffer = [0u8; 8];
        group.bench_function("read", |b| {
            b.iter(|| intercepted_read(&emulator, black_box(&mut buffer[..len])));
        });
        group.bench_function("plain_load", |b| {
            b.iter(|| plain_load(black_box(at), black_box(len)));
        });
        let data = [0xA5u8; 8];
        group.bench_function("write", |b| {
            b.iter(|| intercepted_write(&emulator, black_box(&data[..len])));
        });
        group.bench_function("plain_store", |b| {
            b.iter(|| plain_store(black_box(at), black_box(len), black_box(0xA5A5)));
        });
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = intercept
}
criterion_main!(benches);
