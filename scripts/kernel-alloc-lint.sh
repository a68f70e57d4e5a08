#!/usr/bin/env bash
# The kernel crates' allocation guard: clippy's `disallowed_methods` with the list of
# infallible allocating calls in scripts/clippy-kernel/clippy.toml, over the library code of
# kmcl, vmbmmio-proto and vmbmmio-core (tests may allocate freely). In the kernel a failed
# infallible allocation is a bugcheck (docs/architecture.md, "Allocation failure").
set -euo pipefail
cd "$(dirname "$0")/.."
# A separate target directory: clippy's results for one configuration are cached per target
# directory, and the workspace's ordinary run uses the workspace's clippy.toml.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR_KERNEL_LINT:-target/kernel-alloc-lint}"
CLIPPY_CONF_DIR="$PWD/scripts/clippy-kernel" cargo clippy -q \
  -p kmcl -p vmbmmio-proto -p vmbmmio-core --lib -- -D warnings -D clippy::disallowed_methods
echo "kernel-alloc-lint: no infallible allocation in the kernel crates"
