//! Wall-clock benchmarks of the control path: IOCTL validation, the region lookup over 1, 64,
//! 1024 and 4096 regions, and the MMIO planner. Instruction counts of the lookup:
//! `benches/instructions.rs`.
//!
//! `cargo bench -p vmbmmio-core --bench control` (add `-- --quick` for a short run).

#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use vmbmmio_core::mmio_plan::MmioPlan;

mod support;

use support::tables::{SIZES, ioctls, ledger, lookup, validate};

fn ioctl_validation(c: &mut Criterion) {
    let mut group = c.benchmark_group("ioctl_validation");
    for ioctl in ioctls() {
        let code = ioctl.code.code();
        let output = ioctl.code.reply_size();
        assert!(
            validate(code, &ioctl.input, output),
            "{} refused",
            ioctl.name
        );
        group.bench_function(ioctl.name, |b| {
            b.iter(|| validate(black_box(code), black_box(&ioctl.input), black_box(output)));
        });
        // The baseline: copying the same input (what the glue does before it validates).
        group.bench_function(format!("{}/copy_baseline", ioctl.name), |b| {
            let mut buffer = [0u8; vmbmmio_proto::ioctl::MAX_REQUEST_SIZE];
            b.iter(|| {
                let input = black_box(&ioctl.input);
                buffer[..input.len()].copy_from_slice(input);
                black_box(&buffer);
            });
        });
    }
    group.finish();
}

fn region_lookup(c: &mut Criterion) {
    let mut group = c.benchmark_group("region_lookup");
    for regions in SIZES {
        let (manager, session, region) = ledger(regions);
        group.bench_with_input(BenchmarkId::from_parameter(regions), &regions, |b, _| {
            b.iter(|| lookup(&manager, black_box(session), black_box(region)));
        });
    }
    group.finish();
}

fn mmio_planner(c: &mut Criterion) {
    let mut group = c.benchmark_group("mmio_plan");
    for count in [1usize, 4, 16] {
        let sizes: Vec<u64> = (0..count as u64).map(|i| (i + 1) * 5000).collect();
        group.bench_with_input(BenchmarkId::from_parameter(count), &sizes, |b, sizes| {
            b.iter(|| MmioPlan::new(black_box(sizes)).unwrap());
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = ioctl_validation, region_lookup, mmio_planner
}
criterion_main!(benches);
