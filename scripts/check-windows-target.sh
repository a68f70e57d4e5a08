#!/usr/bin/env bash
# Type-check every crate that does not depend on wdk-sys for x86_64-pc-windows-msvc, on Linux.
#
# Recipe: shared/reference/windows-target-check.md. rustup cannot fetch Windows targets or
# rust-src here, so Debian's rustc-web (1.96) and its standard-library source rust-web-src are
# used with -Zbuild-std. Type-check only: nothing is linked (no MSVC linker, no SDK libraries).
#
# Checked:
#   kmcl, vmbmmio-proto        no_std kernel crates            -Zbuild-std=core,alloc
#   vmbmmio-core               the driver's portable logic    -Zbuild-std=core,alloc
#   vmbmmio-devhost            user-mode std crate             -Zbuild-std=std,panic_abort
#   vmbmmio-guest (library)    the Linux guest agent's portable core (it must build anywhere)
#   vmbmmio-host               the host consumer library, CLI and C ABI (std,panic_abort)
# Then clippy (-D warnings) over the same crates for the Windows target.
# Not checkable here: the driver's `glue` module (needs wdk-sys, which needs the WDK) and hvsim
# (a Linux test tool). Any failing check fails the script.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x /usr/bin/rustc ] || [ ! -d /usr/lib/rustlib/src/rust/library ] || [ ! -x /usr/bin/clippy-driver ]; then
  echo "check-windows-target: installing Debian's rustc-web, rust-web-src and rust-web-clippy"
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq rustc-web rust-web-src rust-web-clippy >/dev/null
fi

export RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc RUSTC_BOOTSTRAP=1
# A separate target directory: the Debian compiler's artifacts must not mix with rustup's.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR_WINDOWS_CHECK:-target/windows-check}"
TARGET=x86_64-pc-windows-msvc

# Kernel crates are cdylib/no_std: `cargo check` would demand a panic handler and allocator that
# only the real driver build provides, so they are checked as rlibs (same type-checking).
check_kernel() {
  local pkg=$1; shift
  echo "check-windows-target: $pkg (core,alloc) $*"
  cargo rustc -q -Zbuild-std=core,alloc --target "$TARGET" -p "$pkg" --lib --crate-type rlib \
    --profile check "$@"
}

check_kernel kmcl
check_kernel vmbmmio-proto
check_kernel vmbmmio-core

echo "check-windows-target: vmbmmio-devhost (std,panic_abort)"
cargo check -q -Zbuild-std=std,panic_abort --target "$TARGET" -p vmbmmio-devhost --lib --bins
echo "check-windows-target: vmbmmio-guest library (std,panic_abort)"
cargo check -q -Zbuild-std=std,panic_abort --target "$TARGET" -p vmbmmio-guest --lib
echo "check-windows-target: vmbmmio-host (std,panic_abort)"
cargo check -q -Zbuild-std=std,panic_abort --target "$TARGET" -p vmbmmio-host --lib --bins

# Clippy for the Windows target too: the cfg(windows) code (kmcl's vmbkmclr.sys imports, the
# device host's windows-sys backend) is never linted by the Linux clippy run. Debian's
# clippy-driver matches its rustc; /usr/bin goes first so cargo-clippy finds it.
echo "check-windows-target: clippy (kernel crates, core,alloc)"
PATH=/usr/bin:$PATH cargo clippy -q -Zbuild-std=core,alloc --target "$TARGET" \
  -p kmcl -p vmbmmio-proto -p vmbmmio-core --lib -- -D warnings
echo "check-windows-target: clippy (vmbmmio-devhost, std,panic_abort)"
PATH=/usr/bin:$PATH cargo clippy -q -Zbuild-std=std,panic_abort --target "$TARGET" \
  -p vmbmmio-devhost --lib --bins -- -D warnings
echo "check-windows-target: clippy (vmbmmio-guest library, std,panic_abort)"
PATH=/usr/bin:$PATH cargo clippy -q -Zbuild-std=std,panic_abort --target "$TARGET" \
  -p vmbmmio-guest --lib -- -D warnings
echo "check-windows-target: clippy (vmbmmio-host, std,panic_abort)"
PATH=/usr/bin:$PATH cargo clippy -q -Zbuild-std=std,panic_abort --target "$TARGET" \
  -p vmbmmio-host --lib --bins -- -D warnings

echo "check-windows-target: all checks passed"
