//! Wall-clock benchmark of the host's guest-packet handler, one group per message type, each
//! with its baseline (copying the packet's bytes) measured in the same run. Criterion prints
//! both; `docs/performance.md` gives the ratios. Instruction counts of the same cases:
//! `benches/instructions.rs` (`scripts/bench-check.sh`).
//!
//! `cargo bench -p vmbmmio-core --bench packets` (add `-- --quick` for a short run).

#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};

mod support;

use support::packets::{Case, copy, handle, prepare};

fn packets(c: &mut Criterion) {
    for case in Case::ALL {
        support::packets::check(case);
        let mut group = c.benchmark_group(format!("packet/{}", case.name()));
        group.bench_function("handler", |b| {
            b.iter_batched_ref(
                || prepare(case),
                |prepared| black_box(handle(prepared)),
                BatchSize::SmallInput,
            );
        });
        group.bench_function("copy_baseline", |b| {
            b.iter_batched_ref(
                || prepare(case),
                |prepared| black_box(copy(prepared)),
                BatchSize::SmallInput,
            );
        });
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = packets
}
criterion_main!(benches);
