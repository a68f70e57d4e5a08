//! A self-contained instruction-count harness: each case runs in a child process of this same
//! bench binary under `valgrind --tool=callgrind --toggle-collect=<measured function>`, so the
//! count is the measured function's inclusive instructions for exactly one call, and nothing
//! else (the case's preparation, the process's start and exit are not collected). It needs only
//! valgrind (Debian: `apt-get install valgrind`), no runner binary: this is why CI can run it.
//!
//! Shared by `vmbmmio-core`'s `instructions` bench and (through `#[path]`)
//! `vmbmmio-devhost`'s `intercept_instructions` bench.
//!
//! # Protocol
//! - Parent (`cargo bench`): for each [`Case`] (optionally filtered by a substring argument),
//!   starts `valgrind ... <this binary>` with `VMBMMIO_CALLGRIND_CASE=<case name>` and reads
//!   the `summary:` line of the callgrind output file. Prints one `name count` line per case;
//!   `--json-dir <dir>` also writes `<dir>/<bench>.json`, `{"name": count, ...}` (what
//!   `scripts/bench-check.sh` reads; one directory serves both benches of one `cargo bench`).
//! - Child (under valgrind): [`main`] sees the variable and calls the bench's `run(name)`, which
//!   prepares the case, calls the measured `#[inline(never)]` function once and checks what it
//!   returned.
//!
//! # Determinism across CPUs
//! Instruction counts of the same binary do not depend on load, but glibc picks its `memcpy` /
//! `memset` variant by CPU feature (ifunc: SSE2, AVX2, EVEX, ERMS...), and the measured code
//! calls them (a reply zeroed, a snapshot copied, a view's bytes copied). The child therefore
//! runs with `GLIBC_TUNABLES` masking every feature those selectors test ([`GLIBC_TUNABLES`]),
//! so every x86-64 CPU runs the same baseline SSE2 variants. The copy baselines themselves do
//! not call glibc: their size is fixed at compile time and the compiler inlines the moves.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The environment variable that makes the bench binary run one case (the child).
pub const CASE_VARIABLE: &str = "VMBMMIO_CALLGRIND_CASE";

/// glibc's x86-64 string-function selectors test these features; masking them leaves the SSE2
/// variants, which every x86-64 CPU has (glibc 2.26 and later read `glibc.cpu.hwcaps`; unknown
/// names are ignored, so older or newer glibc and other architectures are unaffected).
pub const GLIBC_TUNABLES: &str = "glibc.cpu.hwcaps=-AVX2_Usable,-AVX_Usable,-AVX512F_Usable,\
-AVX512VL_Usable,-AVX512BW_Usable,-AVX2,-AVX,-AVX512F,-AVX512VL,-AVX512BW,-AVX512DQ,-EVEX,\
-ERMS,-FSRM,-AVX_Fast_Unaligned_Load,-Fast_Unaligned_Copy,-Fast_Copy_Backward,-SSSE3,-SSE4_1,\
-SSE4_2,-RTM,-BMI2,-LZCNT,-MOVBE,-Prefer_ERMS,-Prefer_FSRM";

/// One measured case.
#[derive(Clone, Debug)]
pub struct Case {
    /// `group/id`, the key in `scripts/bench-figures.json`.
    pub name: String,
    /// The measured function as valgrind names it (a `--toggle-collect` pattern, `*` allowed).
    pub function: String,
}

impl Case {
    /// A case measuring `function` (a path suffix such as `support::packets::handle`).
    pub fn new(name: impl Into<String>, function: &str) -> Self {
        Self {
            name: name.into(),
            function: format!("*{function}"),
        }
    }
}

/// The bench's `main`: the child runs `run(case name)`; the parent measures every case.
pub fn main(cases: &[Case], run: impl Fn(&str)) {
    if let Ok(name) = std::env::var(CASE_VARIABLE) {
        run(&name);
        return;
    }
    let mut json = None;
    let mut filter = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--json-dir" => {
                json = Some(PathBuf::from(
                    args.next().expect("--json-dir needs a directory"),
                ));
            }
            // `cargo bench` passes `--bench`; criterion's options (`--quick`, `--noplot`...)
            // may reach every bench of `cargo bench --workspace -- ...`: none applies here.
            flag if flag.starts_with('-') => {}
            name => filter = Some(name.to_owned()),
        }
    }
    if let Err(error) = Command::new("valgrind").arg("--version").output() {
        eprintln!("instruction counts need valgrind (Debian: apt-get install valgrind): {error}");
        std::process::exit(1);
    }
    let selected: Vec<&Case> = cases
        .iter()
        .filter(|case| {
            filter
                .as_ref()
                .is_none_or(|f| case.name.contains(f.as_str()))
        })
        .collect();
    let dir = std::env::temp_dir().join(format!("vmbmmio-callgrind-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let exe = std::env::current_exe().unwrap();
    let counts = measure_all(&selected, &exe, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    let mut failed = false;
    for (case, count) in selected.iter().zip(&counts) {
        match count {
            Ok(count) => println!("{:45} {count:>10} instructions", case.name),
            Err(error) => {
                failed = true;
                eprintln!("{}: {error}", case.name);
            }
        }
    }
    if failed {
        std::process::exit(1);
    }
    if let Some(dir) = json {
        // The bench's name: the binary is `target/release/deps/<bench>-<hash>`.
        let stem = exe.file_stem().unwrap().to_string_lossy();
        let bench = stem.rsplit_once('-').map_or(&*stem, |(bench, _)| bench);
        let path = dir.join(format!("{bench}.json"));
        let figures: BTreeMap<&str, u64> = selected
            .iter()
            .zip(&counts)
            .map(|(case, count)| (case.name.as_str(), *count.as_ref().unwrap()))
            .collect();
        let mut text = String::from("{");
        for (i, (name, count)) in figures.iter().enumerate() {
            let comma = if i == 0 { "" } else { "," };
            write!(text, "{comma}\n  \"{name}\": {count}").unwrap();
        }
        text.push_str("\n}\n");
        std::fs::write(&path, text).unwrap();
    }
}

/// Measures the cases two at a time (callgrind is single-threaded; CI machines have 2 cores).
fn measure_all(cases: &[&Case], exe: &Path, dir: &Path) -> Vec<Result<u64, String>> {
    let workers = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .clamp(1, 2);
    let mut results: Vec<Option<Result<u64, String>>> = vec![None; cases.len()];
    std::thread::scope(|scope| {
        let chunks: Vec<_> = results
            .chunks_mut(cases.len().div_ceil(workers).max(1))
            .zip(cases.chunks(cases.len().div_ceil(workers).max(1)))
            .enumerate()
            .map(|(worker, (slots, chunk))| {
                scope.spawn(move || {
                    for (i, (slot, case)) in slots.iter_mut().zip(chunk).enumerate() {
                        let out = dir.join(format!("{worker}-{i}.out"));
                        *slot = Some(measure(case, exe, &out));
                    }
                })
            })
            .collect();
        for handle in chunks {
            handle.join().unwrap();
        }
    });
    results.into_iter().map(Option::unwrap).collect()
}

/// One case: the measured function's inclusive instruction count for its one call.
fn measure(case: &Case, exe: &Path, out: &Path) -> Result<u64, String> {
    let output = Command::new("valgrind")
        .arg("--tool=callgrind")
        .arg("--quiet")
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(format!("--toggle-collect={}", case.function))
        .arg(exe)
        .env(CASE_VARIABLE, &case.name)
        .env("GLIBC_TUNABLES", GLIBC_TUNABLES)
        .output()
        .map_err(|error| format!("cannot start valgrind: {error}"))?;
    if !output.status.success() {
        return Err(format!(
            "the case failed under valgrind ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let text = std::fs::read_to_string(out)
        .map_err(|error| format!("no callgrind output {}: {error}", out.display()))?;
    let count = text
        .lines()
        .find_map(|line| {
            line.strip_prefix("summary:")
                .or(line.strip_prefix("totals:"))
        })
        .and_then(|value| value.split_whitespace().next()?.parse::<u64>().ok())
        .ok_or_else(|| format!("no summary line in {}", out.display()))?;
    if count == 0 {
        return Err(format!(
            "0 instructions: `{}` was never called (inlined or renamed?)",
            case.function
        ));
    }
    Ok(count)
}
