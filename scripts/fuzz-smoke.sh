#!/usr/bin/env bash
# Fuzz smoke: runs every cargo-fuzz target under fuzz/ for a bounded time and fails on a crash.
#
#   scripts/fuzz-smoke.sh                  # every target, FUZZ_SECONDS (default 30) s each
#   FUZZ_SECONDS=600 scripts/fuzz-smoke.sh ioctl_parsers
#
# On a fresh Debian machine it installs what it needs: a nightly toolchain (cargo-fuzz builds
# with -Z flags), cargo-fuzz (crates.io, --locked) and a C++ toolchain (libfuzzer-sys compiles
# libFuzzer). First the committed corpora run as plain tests (stable), then each target starts
# from its committed seeds (fuzz/corpus/<target>/, never modified: new inputs go to a scratch
# directory). A crash leaves its input in fuzz/artifacts/<target>/ and fails the script.
set -euo pipefail
cd "$(dirname "$0")/.."

# The targets, one per line (fuzz/fuzz_targets/<name>.rs). Adding a target: add its name here.
TARGETS=(
  ioctl_parsers
  guest_packets
  pe_exports
)

SECONDS_PER_TARGET="${FUZZ_SECONDS:-30}"
if [ "$#" -gt 0 ]; then TARGETS=("$@"); fi

export DEBIAN_FRONTEND=noninteractive
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi

if ! command -v c++ >/dev/null 2>&1; then
  echo "== installing a C++ toolchain (libFuzzer)"
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq build-essential >/dev/null
fi
if ! rustup toolchain list | grep -q '^nightly'; then
  echo "== installing the nightly toolchain"
  rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

# The fuzz crate is outside the workspace, so the workspace's fmt check does not see it.
echo "== fuzz crate: cargo fmt --check, then the corpora as tests"
cargo fmt --manifest-path fuzz/Cargo.toml -- --check
cargo test --quiet --manifest-path fuzz/Cargo.toml

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
for target in "${TARGETS[@]}"; do
  echo "== fuzz $target for ${SECONDS_PER_TARGET}s"
  mkdir -p "$scratch/$target"
  log="$scratch/$target.log"
  # New inputs go to the scratch corpus (the first directory); the seeds are only read.
  if ! cargo +nightly fuzz run "$target" "$scratch/$target" "fuzz/corpus/$target" -- \
      -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=2048 \
      -print_final_stats=1 >"$log" 2>&1; then
    tail -n 60 "$log"
    echo "fuzz-smoke: $target failed (input saved under fuzz/artifacts/$target/)" >&2
    exit 1
  fi
  grep -E '^(Done [0-9]+ runs|stat::number_of_executed_units)' "$log" || tail -n 3 "$log"
done
echo "fuzz-smoke: ${#TARGETS[@]} target(s) ran ${SECONDS_PER_TARGET}s each without a crash"
