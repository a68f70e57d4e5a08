#!/usr/bin/env python3
"""Generates the figures in docs/performance.md (issue 13) from the committed measurements.

The doc's tables sit between marker comments, `<!-- bench-report:NAME -->` and
`<!-- /bench-report:NAME -->`; everything between a pair is rewritten, the prose outside is not.
Sources (committed, so the doc can be regenerated without measuring again):
  scripts/bench-figures.json    instruction counts and targets (scripts/bench-check.sh --update)
                                and the machine they were measured on (--stamp-figures)
  scripts/bench-wallclock.json  criterion medians and the machine (--from-criterion)

Usage:
  scripts/bench-report.py                  rewrite docs/performance.md from the two JSON files
  scripts/bench-report.py --check          fail if docs/performance.md differs from that (CI)
  scripts/bench-report.py --stamp-figures  record this machine in bench-figures.json, rewrite
                                           (bench-check.sh --update runs it)
  scripts/bench-report.py --from-criterion read target/criterion/**/new/{benchmark,estimates}.json
                                           (after `cargo bench --workspace`) into
                                           bench-wallclock.json with this machine, rewrite

Python 3 standard library only.
"""

import datetime
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "performance.md"
FIGURES = ROOT / "scripts" / "bench-figures.json"
WALLCLOCK = ROOT / "scripts" / "bench-wallclock.json"
CRITERION = ROOT / "target" / "criterion"

PACKETS = [
    "hello", "select_version", "report_reservation", "report_device", "ready", "releasing",
    "get_layout", "wait_event_reply", "wait_event_held", "garbage",
]
IOCTLS = [
    "open_session_16_regions", "open_session_v2_16_named_regions", "get_region_section",
    "report_mapping_v2", "wait_guest_event", "query_status", "close_session", "list_sessions",
    "attach_region", "take_doorbells", "ring_guest",
]
REGIONS = [1, 64, 1024, 4096]
# Regions come 16 to a session (one session for the 1-region table).
SESSIONS = {1: 1, 64: 4, 1024: 64, 4096: 256}
PLANNED = [1, 4, 16]
SIZES = [1, 2, 4, 8]


def command(*argv):
    try:
        return subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def machine():
    """This machine, as the doc states it."""
    model, hypervisor = "unknown", None
    for line in command("lscpu").splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "Model name":
            model = value.strip()
        elif key.strip() == "Hypervisor vendor":
            hypervisor = value.strip()
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).date().isoformat(),
        "cpu": model,
        "hypervisor": hypervisor,
        "cores": os.cpu_count(),
        "rustc": command("rustc", "--version"),
        "valgrind": command("valgrind", "--version"),
    }


def load(path):
    with open(path) as f:
        return json.load(f)


def save(path, data):
    with open(path, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")


def describe(m, tool):
    vm = f", a {m['hypervisor']} guest" if m.get("hypervisor") else ""
    text = (f"on {m['date']}, `lscpu` model name **{m['cpu']}**{vm}, **{m['cores']} cores**, "
            f"{m['rustc']}")
    if tool:
        text += f", {m['valgrind']}"
    return text


def ratio(a, b):
    return f"{a / b:.2f}×" if b else "n/a"


def status(met):
    return "met" if met else "**missed**"


def table(header, align, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def instruction_sections(fig):
    ir = fig["instructions"]
    targets = fig["targets"]
    out = {}
    out["instructions-machine"] = (
        f"Instruction counts measured {describe(fig['machine'], True)}; "
        f"margin {fig['margin_percent']:g}% (`scripts/bench-figures.json`).")
    rows = []
    for case in PACKETS:
        handler = ir[f"packet_handler/{case}"]
        memcpy = ir[f"packet_copy_baseline/{case}"]
        inline = ir[f"packet_copy_inline/{case}"]
        met = targets[f"packet/{case} <= 3x copy"]["met"]
        rows.append([f"`{case}`", handler, memcpy, ratio(handler, memcpy), status(met), inline,
                     ratio(handler, inline)])
    out["packets"] = table(
        ["Packet", "handler", "`memcpy` baseline", "ratio", "target ≤ 3×",
         "inline copy", "ratio to inline"],
        ["---", "---:", "---:", "---:", "---", "---:", "---:"], rows)
    rows = []
    for n in REGIONS:
        rows.append([n, SESSIONS[n], ir[f"region_lookup/regions_{n}"]])
    out["lookup"] = table(["Regions", "sessions in the table", "instructions"],
                          ["---:", "---:", "---:"], rows)
    rows = []
    for op, base, label in (("intercept_read", "plain_load_baseline", "read"),
                            ("intercept_write", "plain_store_baseline", "write")):
        for size in SIZES:
            a, b = ir[f"{op}/bytes_{size}"], ir[f"{base}/bytes_{size}"]
            met = targets[f"{op}/{size} <= 10x plain"]["met"]
            rows.append([f"{label} {size} B", a, b, ratio(a, b), status(met)])
    out["intercept"] = table(["Access", "intercepted", "plain volatile", "ratio", "target ≤ 10×"],
                             ["---", "---:", "---:", "---:", "---"], rows)
    out["targets"] = target_table(fig)
    return out


def span(values):
    lo, hi = min(values), max(values)
    return f"{lo:.2f}×" if lo == hi else f"{lo:.2f}× to {hi:.2f}×"


def target_table(fig):
    targets = fig["targets"]
    ir = fig["instructions"]
    packet = {k: v for k, v in targets.items() if k.startswith("packet/")}
    intercept = {k: v for k, v in targets.items() if k.startswith("intercept_")}
    lookup = {k: v for k, v in targets.items() if k.startswith("lookup ")}
    rows = []

    def summary(group):
        missed = [v for v in group.values() if not v["met"]]
        ratios = [v["ratio"] for v in group.values()]
        word = "met" if not missed else (
            "**missed**" if len(missed) == len(group) else
            f"**missed** by {len(missed)} of {len(group)}")
        return word, span(ratios)

    word, spread = summary(packet)
    rows.append(["Packet handling ≤ 3× the instructions of copying the packet's bytes, "
                 "every message type", f"{word}: {spread}"])
    word, _ = summary(lookup)
    counts = ", ".join(str(ir[f"region_lookup/regions_{n}"]) for n in REGIONS)
    growth = "; ".join(
        f"{v['ratio']:.2f} at {k.split('->')[1].split()[0]} (allowed "
        f"{2 * math.log2(int(k.split('->')[1].split()[0])) / 6:.2f})"
        for k, v in sorted(lookup.items(), key=lambda kv: int(kv[0].split('->')[1].split()[0])))
    rows.append(["Lookup cost growing no faster than logarithmically up to 4096 regions",
                 f"{word}: {counts} instructions at 1, 64, 1024, 4096 regions; growth from 1 "
                 f"region relative to the growth up to 64: {growth}"])
    word, spread = summary(intercept)
    rows.append(["Intercept handler ≤ 10× a plain load/store of the same size",
                 f"{word}: {spread}"])
    return table(["Target (checked by `scripts/bench-check.sh`)", "Status"], ["---", "---"], rows)


def wallclock_sections(wall):
    ns = wall["median_ns"]

    def cell(key):
        return f"{ns[key]:.1f}"

    def r(a, b):
        return f"{ns[a] / ns[b]:.1f}×"

    out = {}
    out["wallclock-machine"] = (
        f"Wall clock measured {describe(wall['machine'], False)} "
        f"(`scripts/bench-wallclock.json`; criterion medians).")
    rows = []
    for case in PACKETS:
        a, b = f"packet/{case}/handler", f"packet/{case}/copy_baseline"
        rows.append([f"`{case}`", cell(a), cell(b), r(a, b)])
    out["wall-packets"] = table(["Packet", "handler (ns)", "copy baseline (ns)", "ratio"],
                                ["---", "---:", "---:", "---:"], rows)
    rows = []
    for name in IOCTLS:
        a, b = f"ioctl_validation/{name}", f"ioctl_validation/{name}/copy_baseline"
        rows.append([f"`{name}`", cell(a), cell(b), r(a, b)])
    out["wall-ioctl"] = table(["IOCTL", "validation (ns)", "copying its input (ns)", "ratio"],
                              ["---", "---:", "---:", "---:"], rows)
    out["wall-lookup"] = table(["Regions", "lookup (ns)"], ["---:", "---:"],
                               [[n, cell(f"region_lookup/{n}")] for n in REGIONS])
    out["wall-mmio"] = table(["Regions planned", "`MmioPlan::new` (ns)"], ["---:", "---:"],
                             [[n, cell(f"mmio_plan/{n}")] for n in PLANNED])
    rows = []
    for size in SIZES:
        for op, base in (("read", "plain_load"), ("write", "plain_store")):
            a, b = f"intercept/{size}/{op}", f"intercept/{size}/{base}"
            rows.append([f"{op} {size} B", cell(a), cell(b), r(a, b)])
    out["wall-intercept"] = table(["Access", "intercepted (ns)", "plain volatile (ns)", "ratio"],
                                  ["---", "---:", "---:", "---:"], rows)
    return out


def expected_wallclock_ids():
    ids = []
    for case in PACKETS:
        ids += [f"packet/{case}/handler", f"packet/{case}/copy_baseline"]
    for name in IOCTLS:
        ids += [f"ioctl_validation/{name}", f"ioctl_validation/{name}/copy_baseline"]
    ids += [f"region_lookup/{n}" for n in REGIONS]
    ids += [f"mmio_plan/{n}" for n in PLANNED]
    for size in SIZES:
        ids += [f"intercept/{size}/{op}" for op in ("read", "plain_load", "write", "plain_store")]
    return ids


def from_criterion():
    found = {}
    for bench in CRITERION.glob("**/new/benchmark.json"):
        estimates = bench.with_name("estimates.json")
        if estimates.exists():
            found[load(bench)["full_id"]] = load(estimates)["median"]["point_estimate"]
    missing = [i for i in expected_wallclock_ids() if i not in found]
    if missing:
        sys.exit(f"bench-report: no criterion result under {CRITERION} for: "
                 f"{', '.join(missing)} (run `cargo bench --workspace` first)")
    save(WALLCLOCK, {
        "machine": machine(),
        "median_ns": {i: round(found[i], 2) for i in expected_wallclock_ids()},
    })
    print(f"bench-report: wrote {WALLCLOCK.relative_to(ROOT)}")


def render(doc):
    sections = {}
    sections.update(instruction_sections(load(FIGURES)))
    sections.update(wallclock_sections(load(WALLCLOCK)))
    seen = set()

    def replace(match):
        name = match.group(1)
        if name not in sections:
            sys.exit(f"bench-report: unknown section {name} in {DOC.relative_to(ROOT)}")
        seen.add(name)
        return f"<!-- bench-report:{name} -->\n{sections[name]}\n<!-- /bench-report:{name} -->"

    text = re.sub(r"<!-- bench-report:([\w-]+) -->\n.*?<!-- /bench-report:\1 -->", replace, doc,
                  flags=re.S)
    absent = sorted(set(sections) - seen)
    if absent:
        sys.exit(f"bench-report: {DOC.relative_to(ROOT)} lacks the markers of: "
                 f"{', '.join(absent)}")
    return text


def main(argv):
    mode = argv[1] if len(argv) > 1 else ""
    if mode not in ("", "--check", "--stamp-figures", "--from-criterion"):
        sys.exit(__doc__)
    if mode == "--stamp-figures":
        figures = load(FIGURES)
        figures["machine"] = machine()
        save(FIGURES, figures)
    elif mode == "--from-criterion":
        from_criterion()
    doc = DOC.read_text()
    text = render(doc)
    if mode == "--check":
        if text != doc:
            sys.exit("bench-report: docs/performance.md's tables differ from "
                     "scripts/bench-figures.json / bench-wallclock.json: run "
                     "`python3 scripts/bench-report.py` and commit the result")
        print("bench-report: docs/performance.md matches the committed figures")
        return
    if text != doc:
        DOC.write_text(text)
        print(f"bench-report: rewrote {DOC.relative_to(ROOT)}")
    else:
        print(f"bench-report: {DOC.relative_to(ROOT)} already up to date")


if __name__ == "__main__":
    main(sys.argv)
