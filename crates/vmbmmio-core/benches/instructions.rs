//! Instruction counts (callgrind, through gungraun) of the guest-packet handler per message
//! type, each with its baseline (copying the packet's bytes), and of the region lookup over 1,
//! 64, 1024 and 4096 regions. Deterministic: `scripts/bench-check.sh` compares them with the
//! committed figures and checks the targets as ratios.
//!
//! Needs valgrind and `gungraun-runner` 0.20.0 (`scripts/bench-check.sh` installs it):
//! `cargo bench -p vmbmmio-core --bench instructions`.

#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;

use gungraun::{library_benchmark, library_benchmark_group, main};
use vmbmmio_core::sections::{RegionId, RegionInfo, SectionManager, SessionId};

mod support;

use support::packets::{Case, Prepared, copy, handle, prepare};
use support::tables::{NullBackend, ledger, lookup};

fn checked(case: Case) -> Box<Prepared> {
    support::packets::check(case);
    Box::new(prepare(case))
}

#[library_benchmark]
#[bench::hello(checked(Case::Hello))]
#[bench::select_version(checked(Case::SelectVersion))]
#[bench::report_reservation(checked(Case::ReportReservation))]
#[bench::report_device(checked(Case::ReportDevice))]
#[bench::ready(checked(Case::Ready))]
#[bench::releasing(checked(Case::Releasing))]
#[bench::get_layout(checked(Case::GetLayout))]
#[bench::wait_event_reply(checked(Case::WaitEventReply))]
#[bench::wait_event_held(checked(Case::WaitEventHeld))]
#[bench::garbage(checked(Case::Garbage))]
fn packet_handler(mut prepared: Box<Prepared>) -> Box<Prepared> {
    black_box(handle(black_box(&mut prepared)));
    prepared
}

#[library_benchmark]
#[bench::hello(checked(Case::Hello))]
#[bench::select_version(checked(Case::SelectVersion))]
#[bench::report_reservation(checked(Case::ReportReservation))]
#[bench::report_device(checked(Case::ReportDevice))]
#[bench::ready(checked(Case::Ready))]
#[bench::releasing(checked(Case::Releasing))]
#[bench::get_layout(checked(Case::GetLayout))]
#[bench::wait_event_reply(checked(Case::WaitEventReply))]
#[bench::wait_event_held(checked(Case::WaitEventHeld))]
#[bench::garbage(checked(Case::Garbage))]
fn packet_copy_baseline(mut prepared: Box<Prepared>) -> Box<Prepared> {
    black_box(copy(black_box(&mut prepared)));
    prepared
}

type Ledger = (Box<SectionManager<NullBackend>>, SessionId, RegionId);

fn table(regions: usize) -> Ledger {
    let (manager, session, region) = ledger(regions);
    (Box::new(manager), session, region)
}

#[library_benchmark]
#[bench::regions_1(table(1))]
#[bench::regions_64(table(64))]
#[bench::regions_1024(table(1024))]
#[bench::regions_4096(table(4096))]
fn region_lookup(table: Ledger) -> (Ledger, RegionInfo) {
    let info = black_box(lookup(
        black_box(&table.0),
        black_box(table.1),
        black_box(table.2),
    ));
    (table, info)
}

library_benchmark_group!(
    name = packets,
    benchmarks = [packet_handler, packet_copy_baseline]
);
library_benchmark_group!(name = lookups, benchmarks = [region_lookup]);

main!(library_benchmark_groups = packets, lookups);
