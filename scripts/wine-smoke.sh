#!/usr/bin/env bash
# Wine smoke of the device host's Windows binary: it must start on a Windows without Hyper-V.
#
# Builds vmbmmio-devhost.exe for x86_64-pc-windows-gnu (Debian's rustc-web + rust-web-src with
# -Zbuild-std, linked by mingw-w64), checks that its import table names neither
# computecore.dll nor vmdevicehost.dll (both are loaded at run time, docs/devhost.md "Run-time
# loading"), then runs it under Debian's Wine 8, which has neither DLL, like a Windows without
# the Hyper-V feature:
#   --help                     exits 0 and prints the usage;
#   a valid serve command line exits 2 naming computecore.dll and the Hyper-V feature, with no
#                              panic, backtrace or unhandled exception;
#   probe --help               exits 0 and documents the checks;
#   probe --json --out DIR     exits 0 (it ran), writes the report and the summary, and reports
#                              the missing Hyper-V libraries, vmbkmclr.sys and vmms as findings.
# Wine 8 lacks bcryptprimitives.dll (ProcessPrng), which Rust's standard library imports: a
# stand-in built from scripts/wine/bcryptprimitives.c goes into a private Wine prefix under
# the target directory. Nothing outside the repository's target/ is written, apart from apt.
# What this cannot show: the MSVC build, and any real HCS/HDV call (Windows with Hyper-V only).
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS

say() { echo "wine-smoke: $*"; }
fail() { echo "wine-smoke: FAILED: $*" >&2; exit 1; }

# The Wine loader and server: Debian's wine64 package puts them in /usr/lib/wine; `wine64` on the
# PATH (other distributions) is used when present.
WINE64=$(command -v wine64 || echo /usr/lib/wine/wine64)
WINESERVER=$(command -v wineserver || echo /usr/lib/wine/wineserver64)

if [ ! -x /usr/bin/rustc ] || [ ! -d /usr/lib/rustlib/src/rust/library ] \
  || ! command -v x86_64-w64-mingw32-gcc >/dev/null 2>&1 || [ ! -x "$WINE64" ]; then
  say "installing Debian's rustc-web, rust-web-src, gcc-mingw-w64-x86-64 and wine64"
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq \
    rustc-web rust-web-src gcc-mingw-w64-x86-64 wine64 >/dev/null
  WINE64=$(command -v wine64 || echo /usr/lib/wine/wine64)
  WINESERVER=$(command -v wineserver || echo /usr/lib/wine/wineserver64)
fi

TARGET=x86_64-pc-windows-gnu
# A separate target directory: the Debian compiler's artifacts must not mix with rustup's.
TARGET_DIR="${CARGO_TARGET_DIR_WINE_SMOKE:-target/wine-smoke}"
mkdir -p "$TARGET_DIR"
TARGET_DIR=$(cd "$TARGET_DIR" && pwd)
EXE="$TARGET_DIR/$TARGET/debug/vmbmmio-devhost.exe"
OUT="$TARGET_DIR/smoke"
rm -rf "$OUT"
mkdir -p "$OUT"

say "building vmbmmio-devhost.exe for $TARGET (std,panic_abort)"
RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc RUSTC_BOOTSTRAP=1 \
  CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER=x86_64-w64-mingw32-gcc \
  cargo build -q -Zbuild-std=std,panic_abort --target "$TARGET" --target-dir "$TARGET_DIR" \
  -p vmbmmio-devhost --bin vmbmmio-devhost

say "import table of $(basename "$EXE")"
x86_64-w64-mingw32-objdump -p "$EXE" | sed -n 's/^\s*DLL Name: //p' >"$OUT/imports.txt"
sed 's/^/  /' "$OUT/imports.txt"
[ -s "$OUT/imports.txt" ] || fail "no import table read from $EXE"
if grep -qiE '^(computecore|vmdevicehost)\.dll$' "$OUT/imports.txt"; then
  fail "the binary imports a Hyper-V DLL at load time (it must load it at run time)"
fi

say "building the bcryptprimitives.dll stand-in (scripts/wine/bcryptprimitives.c)"
x86_64-w64-mingw32-gcc -O2 -shared -s -o "$TARGET_DIR/bcryptprimitives.dll" \
  scripts/wine/bcryptprimitives.c scripts/wine/bcryptprimitives.def -ladvapi32

# Wine, quiet and non-interactive: no display, no debug channels, no Mono/Gecko installers, a
# prefix of our own.
unset DISPLAY WAYLAND_DISPLAY
export WINEPREFIX="$TARGET_DIR/wineprefix" WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml="
export WINEARCH=win64
if [ ! -f "$WINEPREFIX/system.reg" ]; then
  say "creating the Wine prefix $WINEPREFIX"
  # A wine64-only install cannot run the 32-bit rundll32 of a new prefix and says so; harmless.
  if ! timeout 300 "$WINE64" wineboot -i >"$OUT/wineboot.log" 2>&1; then
    cat "$OUT/wineboot.log" >&2
    fail "wineboot -i failed"
  fi
  "$WINESERVER" -w
fi
cp "$TARGET_DIR/bcryptprimitives.dll" "$WINEPREFIX/drive_c/windows/system32/bcryptprimitives.dll"

# run NAME ARGS...: runs the binary under Wine; stdout, stderr and the exit code go to
# $OUT/NAME.{out,err,rc}.
run() {
  local name=$1; shift
  local rc=0
  timeout 120 "$WINE64" "$EXE" "$@" >"$OUT/$name.out" 2>"$OUT/$name.err" || rc=$?
  echo "$rc" >"$OUT/$name.rc"
  say "  vmbmmio-devhost.exe $* -> exit $rc"
}
show() {
  local name=$1
  echo "--- $name: exit $(cat "$OUT/$name.rc")"
  echo "--- stdout"; cat "$OUT/$name.out"
  echo "--- stderr"; cat "$OUT/$name.err"
}
# A crash under Wine: an unhandled exception, a Rust panic or abort, a missing import.
no_crash() {
  local name=$1
  if grep -qiE 'panicked|backtrace|unhandled|page fault|wine: |err:|c0000135|c0000139' \
    "$OUT/$name.out" "$OUT/$name.err"; then
    show "$name" >&2
    fail "$name: crash markers in the output"
  fi
}
expect_rc() {
  local name=$1 want=$2
  if [ "$(cat "$OUT/$name.rc")" != "$want" ]; then
    show "$name" >&2
    fail "$name: exit code $(cat "$OUT/$name.rc"), expected $want"
  fi
}
expect_in() {
  local name=$1 stream=$2 text=$3
  if ! grep -qF -- "$text" "$OUT/$name.$stream"; then
    show "$name" >&2
    fail "$name: '$text' not in $stream"
  fi
}

say "running under $("$WINE64" --version) (prefix $WINEPREFIX)"
run help --help
no_crash help
expect_rc help 0
expect_in help out "Usage: vmbmmio-devhost.exe"
expect_in help out "--vm-id <GUID>"

# A minimal valid command line (loopback: no driver needed); it must get past the
# configuration, print the FlexibleIov entry, then stop at the missing HCS DLL with exit 2.
run serve --vm-id 62cdfa57-7648-44f3-b164-98e2da991ec5 --region-size 4096 \
  --vendor-id 0x1af4 --device-id 0x1110 --loopback
no_crash serve
expect_rc serve 2
expect_in serve out '"FlexibleIov": {'
expect_in serve err "cannot load computecore.dll (Host Compute Service (HCS) API) from System32: OS error 126 (ERROR_MOD_NOT_FOUND)"
expect_in serve err "Hyper-V feature is not enabled"
sed 's/^/  serve: /' "$OUT/serve.err"

# The probe: documented in --help, runs read-only on a Windows without Hyper-V and says so in
# its report (exit 0: it ran), with the missing Hyper-V pieces as findings, not crashes.
sed -n '/^Commands:/,/^$/p' "$OUT/help.out" | grep -qE '^\s+probe(\s|$)' \
  || fail "--help lists no 'probe' command"
run probe-help probe --help
no_crash probe-help
expect_rc probe-help 0
expect_in probe-help out "hyperv_components"
expect_in probe-help out "kmcl_exports"
mkdir -p "$OUT/probe-report"
run probe probe --json --out "Z:$OUT/probe-report"
no_crash probe
expect_rc probe 0
[ -s "$OUT/probe-report/probe-report.json" ] || fail "probe wrote no probe-report.json"
[ -s "$OUT/probe-report/probe-summary.txt" ] || fail "probe wrote no probe-summary.txt"
# The report on stdout is the one in the file; the findings Wine must produce: no Hyper-V
# libraries (named, with the fix), no vmbkmclr.sys, no vmms service.
python3 - "$OUT/probe.out" "$OUT/probe-report/probe-report.json" <<'PY' || fail "probe report"
import json, sys
stdout, written = (json.load(open(path)) for path in sys.argv[1:3])
assert stdout == written, "stdout and probe-report.json differ"
findings = {f["id"]: f for f in written["findings"]}
def want(check, verdict, *texts):
    finding = findings[check]
    assert finding["verdict"] == verdict, (check, finding["verdict"], finding["summary"])
    for text in texts:
        assert text in finding["summary"], (check, text, finding["summary"])
want("hyperv_components", "answered_no", "computecore.dll", "Hyper-V")
want("kmcl_exports", "answered_no", "vmbkmclr.sys")
want("hyperv_role", "answered_no")
want("kmdf_version", "answered_no", "no KMDF runtime")
for finding in written["findings"]:
    print(f"  probe: {finding['id']}: {finding['verdict']}: {finding['summary']}")
PY

# Let this prefix's wineserver exit (it lingers a few seconds after the last program).
"$WINESERVER" -w
say "all checks passed in $((SECONDS - start)) s (outputs in $OUT)"
