//! Instruction counts (callgrind) of the guest-packet handler per message type, each with its
//! baseline (copying the packet's bytes: `memcpy` of its length, and for reference a copy whose
//! size is fixed at compile time), and of the region lookup over 1, 64, 1024 and 4096 regions. Deterministic: `scripts/bench-check.sh` compares them with
//! the committed figures and checks the targets as ratios.
//!
//! Each case is one call of an `#[inline(never)]` function, counted inclusively by
//! `valgrind --tool=callgrind --toggle-collect` in a child process (`support/callgrind.rs`).
//! Needs valgrind: `cargo bench -p vmbmmio-core --bench instructions [-- <filter>] [-- --json
//! <file>]`.

#![allow(missing_docs, clippy::unwrap_used, clippy::panic)]

use std::hint::black_box;

mod support;

use support::callgrind::{self, Case as Measured};
use support::packets::{Case, copy, copy_inline, handle, prepare, verify};
use support::tables::{SIZES, ledger, lookup};

const HANDLER: &str = "packet_handler";
const COPY: &str = "packet_copy_baseline";
const COPY_INLINE: &str = "packet_copy_inline";
const LOOKUP: &str = "region_lookup";

fn main() {
    let mut cases = Vec::new();
    for case in Case::ALL {
        let id = case.name();
        cases.push(Measured::new(
            format!("{HANDLER}/{id}"),
            "support::packets::handle",
        ));
        cases.push(Measured::new(
            format!("{COPY}/{id}"),
            "support::packets::copy",
        ));
        cases.push(Measured::new(
            format!("{COPY_INLINE}/{id}"),
            "support::packets::copy_fixed",
        ));
    }
    for regions in SIZES {
        cases.push(Measured::new(
            format!("{LOOKUP}/regions_{regions}"),
            "support::tables::lookup",
        ));
    }
    callgrind::main(&cases, run);
}

/// The child: prepares the case, makes the one measured call, checks its result.
fn run(name: &str) {
    let (group, id) = name.split_once('/').unwrap();
    if group == LOOKUP {
        let regions: usize = id.strip_prefix("regions_").unwrap().parse().unwrap();
        let (manager, session, region) = ledger(regions);
        let info = lookup(black_box(&manager), black_box(session), black_box(region));
        black_box(info);
        return;
    }
    let case = *Case::ALL
        .iter()
        .find(|case| case.name() == id)
        .unwrap_or_else(|| panic!("unknown case {name}"));
    let mut prepared = prepare(case);
    match group {
        HANDLER => {
            let len = black_box(handle(black_box(&mut prepared)));
            verify(case, &prepared, len);
        }
        COPY => {
            let len = black_box(copy(black_box(&mut prepared)));
            assert_eq!(prepared.reply[..len], prepared.packet[..]);
        }
        COPY_INLINE => {
            let len = black_box(copy_inline(black_box(&mut prepared)));
            assert_eq!(prepared.reply[..len], prepared.packet[..]);
        }
        _ => panic!("unknown case {name}"),
    }
}
