//! Instruction counts (callgrind) of the intercepted BAR read and write of 1, 2, 4 and 8 bytes,
//! each with its baseline (a plain volatile load/store of the same size).
//! `scripts/bench-check.sh` checks the 10x target on these as ratios.
//!
//! Each case is one call of an `#[inline(never)]` function, counted inclusively by
//! `valgrind --tool=callgrind --toggle-collect` in a child process (the harness is
//! `vmbmmio-core`'s `benches/support/callgrind.rs`). Needs valgrind:
//! `cargo bench -p vmbmmio-devhost --bench intercept_instructions`.

#![allow(missing_docs, clippy::unwrap_used, clippy::panic)]

use std::hint::black_box;

mod support;

#[path = "../../vmbmmio-core/benches/support/callgrind.rs"]
mod callgrind;

use callgrind::Case;
use support::{OFFSET, device, intercepted_read, intercepted_write, plain_load, plain_store};
use vmbmmio_devhost::views::SectionView;

/// Each group, and the function it measures.
const GROUPS: [(&str, &str); 4] = [
    ("intercept_read", "support::intercepted_read"),
    ("plain_load_baseline", "support::plain_load"),
    ("intercept_write", "support::intercepted_write"),
    ("plain_store_baseline", "support::plain_store"),
];

fn main() {
    let mut cases = Vec::new();
    for (group, function) in GROUPS {
        for len in [1, 2, 4, 8] {
            cases.push(Case::new(format!("{group}/bytes_{len}"), function));
        }
    }
    callgrind::main(&cases, run);
}

/// The child: prepares the device, makes the one measured call, checks its result.
fn run(name: &str) {
    let (group, id) = name.split_once('/').unwrap();
    let len: usize = id.strip_prefix("bytes_").unwrap().parse().unwrap();
    let (emulator, view) = device();
    let at = view.at(OFFSET);
    // Seeded through the view itself: a measured function must be called once only.
    view.write(OFFSET, &SEED).unwrap();
    match group {
        "intercept_read" => {
            let mut buffer = [0u8; 8];
            intercepted_read(black_box(&emulator), black_box(&mut buffer[..len]));
            assert_eq!(buffer[..len], SEED[..len]);
        }
        "plain_load_baseline" => {
            let value = plain_load(black_box(at), black_box(len));
            assert_eq!(value.to_le_bytes()[..len], SEED[..len]);
        }
        "intercept_write" => {
            let data = [0xA5u8; 8];
            intercepted_write(black_box(&emulator), black_box(&data[..len]));
            let mut back = [0u8; 8];
            view.read(OFFSET, &mut back).unwrap();
            assert_eq!(back[..len], data[..len]);
        }
        "plain_store_baseline" => {
            plain_store(
                black_box(at),
                black_box(len),
                black_box(0xA5A5_A5A5_A5A5_A5A5),
            );
            let mut back = [0u8; 8];
            view.read(OFFSET, &mut back).unwrap();
            assert_eq!(back[..len], [0xA5u8; 8][..len]);
        }
        _ => panic!("unknown case {name}"),
    }
}

/// What the view holds at OFFSET before the measured call.
const SEED: [u8; 8] = [1, 2, 3, 4, 5, 6, 7, 8];
