#!/usr/bin/env bash
# Model-checks the critical interleavings of a session's guest state with loom
# (crates/vmbmmio-core/tests/loom_guest_events.rs): every interleaving of the scenarios' threads
# up to LOOM_MAX_PREEMPTIONS preemptions (default 5 here). Needs only cargo (loom is a
# dev-dependency). Built in its own target directory: `--cfg loom` changes every crate's flags.
set -euo pipefail
cd "$(dirname "$0")/.."

export LOOM_MAX_PREEMPTIONS="${LOOM_MAX_PREEMPTIONS:-5}"
export RUSTFLAGS="${RUSTFLAGS:-} --cfg loom"
export CARGO_TARGET_DIR="${LOOM_TARGET_DIR:-target/loom}"

echo "loom: LOOM_MAX_PREEMPTIONS=$LOOM_MAX_PREEMPTIONS"
timeout 600 cargo test --release -p vmbmmio-core --test loom_guest_events -- --nocapture --test-threads=1
