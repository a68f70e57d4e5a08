#!/usr/bin/env bash
# The host library's C ABI (crates/vmbmmio-host): the committed headers are what cbindgen
# generates from the Rust definitions, and the C example builds and runs against them.
#
#   scripts/check-c-abi.sh            check (CI: `bash scripts/check-c-abi.sh` from .ci/run)
#   scripts/check-c-abi.sh --update   regenerate the committed headers
#
# Steps:
# 1. cbindgen (Debian's package, 0.24) generates include/vmbmmio_host.h from src/ffi.rs and
#    include/vmbmmio_host_test_double.h from src/ffi_test_double.rs; each must equal the
#    committed file byte for byte. cbindgen 0.24's parser predates Rust 2024's
#    `#[unsafe(no_mangle)]`, so it reads a copy of each file with that attribute spelled
#    `#[no_mangle]` (nothing else changes; the attribute means the same).
# 2. The headers compile as C11 and C++ with every warning an error.
#    include/vmbmmio_host_sim.h comes from crates/hvsim/src/host_sim/c_abi.rs (the simulated
#    platform's setup functions).
# 3. The example examples/c/frames.c is built against the library's staticlib with the test
#    double (feature `test-double`: a scripted fake driver whose guest answers rings) and run:
#    it attaches to `frames`, writes and reads back a frame, rings and waits for the doorbell,
#    and releases everything; it must exit 0.
# 4. The same example is built against the simulated platform (-DVMBMMIO_EXAMPLE_SIM, linked
#    with hvsim's staticlib: the driver's real core, the device host, a guest whose program
#    reads the frame through its BAR, writes an answer and rings back) and run: it must exit 0,
#    which it does only if the guest's answer is right and vmbmmio_sim_stop reports that every
#    object of every model was released.
set -euo pipefail
cd "$(dirname "$0")/.."

CRATE=crates/vmbmmio-host
UPDATE=0
if [ "${1:-}" = "--update" ]; then UPDATE=1; fi

CC=${CC:-cc}
CXX=${CXX:-c++}
missing=()
command -v cbindgen >/dev/null 2>&1 || missing+=(cbindgen)
command -v "$CC" >/dev/null 2>&1 || missing+=(gcc)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "check-c-abi: installing ${missing[*]} from apt"
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# generate <source.rs, from the repository root> <config.toml> <output.h>
generate() {
  local source=$1 config=$2 output=$3
  sed 's/#\[unsafe(no_mangle)\]/#[no_mangle]/' "$source" >"$WORK/$(basename "$source")"
  (cd "$CRATE" && cbindgen --quiet --config "$config" --output "$output" "$WORK/$(basename "$source")")
}

status=0
for pair in "$CRATE/src/ffi.rs cbindgen.toml include/vmbmmio_host.h" \
            "$CRATE/src/ffi_test_double.rs cbindgen-test-double.toml include/vmbmmio_host_test_double.h" \
            "crates/hvsim/src/host_sim/c_abi.rs cbindgen-sim.toml include/vmbmmio_host_sim.h"; do
  read -r source config header <<<"$pair"
  generate "$source" "$config" "$WORK/generated.h"
  if [ "$UPDATE" = 1 ]; then
    cp "$WORK/generated.h" "$CRATE/$header"
    echo "check-c-abi: wrote $CRATE/$header"
  elif ! diff -u "$CRATE/$header" "$WORK/generated.h"; then
    echo "check-c-abi: $CRATE/$header is not what cbindgen generates from $source;" \
         "run scripts/check-c-abi.sh --update and commit it" >&2
    status=1
  else
    echo "check-c-abi: $header matches $source"
  fi
done
[ "$status" = 0 ] || exit 1

echo "check-c-abi: the headers compile as C11 and C++"
printf '#include "vmbmmio_host.h"\n#include "vmbmmio_host_test_double.h"\n#include "vmbmmio_host_sim.h"\nint main(void) { return 0; }\n' \
  >"$WORK/headers.c"
"$CC" -std=c11 -Wall -Wextra -Wpedantic -Werror -I "$CRATE/include" -fsyntax-only "$WORK/headers.c"
if command -v "$CXX" >/dev/null 2>&1; then
  "$CXX" -x c++ -std=c++17 -Wall -Wextra -Werror -I "$CRATE/include" -fsyntax-only "$WORK/headers.c"
fi

echo "check-c-abi: building the staticlib with the test double"
cargo build -q -p vmbmmio-host --features test-double --lib
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
LIB="$TARGET_DIR/debug/libvmbmmio_host.a"

# build_and_run <output name> <-D macro> <static library>: builds frames.c, runs it (its exit
# status fails the script through pipefail), keeps its output in $WORK/<output name>.out.
build_and_run() {
  local name=$1 define=$2 lib=$3
  "$CC" -std=c11 -Wall -Wextra -Wpedantic -Werror "$define" \
    -I "$CRATE/include" "$CRATE/examples/c/frames.c" "$lib" -lpthread -ldl -lm -o "$WORK/$name"
  "$WORK/$name" | tee "$WORK/$name.out"
  grep -q '^frames: done$' "$WORK/$name.out"
}

echo "check-c-abi: building and running examples/c/frames.c"
build_and_run frames -DVMBMMIO_EXAMPLE_TEST_DOUBLE "$LIB"
# An unknown region is a setup failure (exit 2) with a message, not a crash.
set +e
"$WORK/frames" no-such-region >/dev/null 2>"$WORK/missing.err"
missing=$?
set -e
if [ "$missing" != 2 ] || ! grep -q "no VM has a region named" "$WORK/missing.err"; then
  echo "check-c-abi: frames with an unknown region exited $missing: $(cat "$WORK/missing.err")" >&2
  exit 1
fi

echo "check-c-abi: building hvsim's staticlib (the simulated platform with the host library)"
cargo rustc -q -p hvsim --lib --crate-type staticlib
SIM_LIB="$TARGET_DIR/debug/libhvsim.a"

echo "check-c-abi: building and running examples/c/frames.c against the simulated platform"
build_and_run frames-sim -DVMBMMIO_EXAMPLE_SIM "$SIM_LIB"
grep -q '^guest answer of 1024 bytes verified$' "$WORK/frames-sim.out"
grep -q '^simulator: 0 leaked objects$' "$WORK/frames-sim.out"

echo "check-c-abi: all checks passed"
