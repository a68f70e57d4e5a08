#!/usr/bin/env bash
# Instruction-count check of the benchmarks (issue 13, docs/performance.md); run by .ci/run.
#
# Runs the callgrind benchmarks of the guest-packet handler, the region lookup and the device
# host's intercept path (`instructions`, `intercept_instructions`: a self-contained harness,
# crates/vmbmmio-core/benches/support/callgrind.rs, that needs only valgrind), then:
#   - fails if any count grew by more than MARGIN_PERCENT (default 10) over the committed
#     figures in scripts/bench-figures.json, or if a committed figure is missing;
#   - checks the targets as ratios to the in-run baselines (packet <= 3x copying its bytes,
#     intercept <= 10x a plain load/store, lookup growing no faster than log2 of the regions)
#     and fails if a target recorded as met is now missed (a missed one is printed, as the
#     figures file and docs/performance.md record it).
# `scripts/bench-check.sh --update` rewrites the figures file from this run instead, then
# regenerates docs/performance.md's tables (scripts/bench-report.py).
#
# Needs valgrind (apt), installed here when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

MARGIN_PERCENT="${MARGIN_PERCENT:-10}"
FIGURES=scripts/bench-figures.json
MODE="${1:-}"
case "$MODE" in
  "" | --update) ;;
  *) echo "usage: $0 [--update]" >&2; exit 2 ;;
esac

if ! command -v valgrind >/dev/null 2>&1; then
  echo "== installing valgrind"
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq valgrind >/dev/null
fi

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
echo "== instruction counts (cargo bench --bench instructions --bench intercept_instructions)"
cargo bench -p vmbmmio-core -p vmbmmio-devhost --bench instructions \
  --bench intercept_instructions -- --json-dir "$out"

python3 - "$out/instructions.json" "$out/intercept_instructions.json" "$FIGURES" "$MARGIN_PERCENT" "$MODE" <<'PY'
import json, math, sys

core, devhost, figures_path, margin, mode = sys.argv[1:6]
margin = float(margin)
counts = {}
for path in (core, devhost):
    counts.update(json.load(open(path)))

def ratio(a, b):
    return counts[a] / counts[b]

targets = {}
for key in sorted(k for k in counts if k.startswith("packet_handler/")):
    case = key.split("/", 1)[1]
    r = ratio(key, f"packet_copy_baseline/{case}")
    targets[f"packet/{case} <= 3x copy"] = (r, r <= 3.0)
for op, base in (("intercept_read", "plain_load_baseline"), ("intercept_write", "plain_store_baseline")):
    for size in (1, 2, 4, 8):
        r = ratio(f"{op}/bytes_{size}", f"{base}/bytes_{size}")
        targets[f"{op}/{size} <= 10x plain"] = (r, r <= 10.0)
# Logarithmic growth: the cost added from 1 to N regions, over the cost added from 1 to 64,
# may be at most twice log2(N) / log2(64) (what a logarithm gives), for N = 1024 and 4096.
# Cumulative rather than per step, because regions come 16 to a session: from 1 to 64 regions
# the session table only grows from 1 to 4 entries, so the first step's slope understates it.
lookup = {n: counts[f"region_lookup/regions_{n}"] for n in (1, 64, 1024, 4096)}
first = max(lookup[64] - lookup[1], 1)
for n in (1024, 4096):
    growth = (lookup[n] - lookup[1]) / first
    allowed = 2.0 * math.log2(n) / 6.0
    targets[f"lookup 1->{n} grows <= 2x log2 ({allowed:.2f})"] = (growth, growth <= allowed)

print(f"{'benchmark':45} {'instructions':>12}")
for key in sorted(counts):
    print(f"{key:45} {counts[key]:>12}")
print()
print(f"{'target':45} {'ratio':>8}  status")
for name, (value, met) in targets.items():
    print(f"{name:45} {value:8.2f}  {'met' if met else 'MISSED'}")

if mode == "--update":
    json.dump({
        "margin_percent": margin,
        "instructions": counts,
        "targets": {name: {"ratio": round(value, 2), "met": met} for name, (value, met) in targets.items()},
    }, open(figures_path, "w"), indent=2, sort_keys=True)
    open(figures_path, "a").write("\n")
    print(f"bench-check: wrote {figures_path}")
    sys.exit(0)

committed = json.load(open(figures_path))
failures = []
for key, old in committed["instructions"].items():
    new = counts.get(key)
    if new is None:
        failures.append(f"{key}: missing from this run")
    elif new > old * (1 + margin / 100):
        failures.append(f"{key}: {old} -> {new} instructions (+{(new / old - 1) * 100:.1f}% > {margin}%)")
for name, record in committed["targets"].items():
    value, met = targets.get(name, (None, False))
    if record["met"] and not met:
        failures.append(f"target {name} was met and is now missed ({value})")
if failures:
    print("bench-check: FAILED")
    for failure in failures:
        print("  " + failure)
    sys.exit(1)
missed = sum(1 for _, met in targets.values() if not met)
print(f"bench-check: {len(counts)} figures within {margin}% of {figures_path}; "
      f"{len(targets) - missed} targets met, {missed} missed as documented in docs/performance.md")
PY

if [ "$MODE" = --update ]; then
  python3 scripts/bench-report.py --stamp-figures
fi
