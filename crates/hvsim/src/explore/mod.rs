//! `hvsim explore`: randomized, reproducible schedules of lifecycle events and injected
//! failures, run through the driver's real control device, the real device host and the
//! reference guest library against the simulated host, with the rules checked after every step.
//!
//! # What a schedule is
//! A seed gives one [`Schedule`] ([`Schedule::generate`]): the guest (Linux-like or
//! Windows-like, alternating), failures armed before the start, then up to
//! [`schedule::MAX_STEPS`] steps drawn from the guest's events (use the memory, toggle decode,
//! move the BAR, close and reopen the channel, send garbage), the VM's (pause, resume, reset,
//! save and restore), the device host's (crash, orderly quit, a new one attaches), the
//! driver's (surprise removal, query-remove) and failures armed in KMCL, the object manager,
//! HCS/HDV or the driver's allocator. After every step the device host and the guest react
//! (a few rounds of the device host's loops and the guest's event handling), then the rules
//! are checked; at the end the VM stops, the device host stops, the driver unloads and every
//! model counts what it still holds.
//!
//! # What is checked
//! - After every step: no KMCL rule broken (the KMCL model's `Violation`s: the driver made
//!   only legal calls in legal states), no channel state callback out of the order the driver
//!   expects, no session whose device host is gone, no section-backed range mapping a section
//!   the driver released; and whenever the guest program uses the memory (only when its
//!   protocol client says the regions are mapped), what it writes is in the driver's section
//!   and what the host writes there is what it reads.
//! - At the end: nothing left in any model (channels, contexts, kernel handles, packets,
//!   sections, handles, references, views, ledger records, HCS/HDV objects, ranges, the
//!   worker's duplicates, guest offers) — each channel allocated was cleaned up exactly once.
//!
//! # Reproducing
//! Schedule `i` of a run with seed `S` has seed `S + i`; a failing schedule is printed with its
//! seed, so `hvsim explore --schedules 1 --seed <that seed>` runs it again, step by step
//! (`--verbose` prints what happened).

mod device_host;
mod guest;
mod platform_ops;
pub mod rng;
pub mod schedule;
mod world;

use std::fmt;
use std::io::Write;

pub use schedule::{Fault, Schedule, Step};
pub use world::Outcome;

/// Runs one schedule and returns what it found.
pub fn run_schedule(schedule: &Schedule) -> Outcome {
    let early: Vec<Step> = schedule
        .steps
        .iter()
        .take_while(|step| matches!(step, Step::Arm(_)))
        .copied()
        .collect();
    let mut world = world::World::new(schedule.guest, schedule.seed, &early);
    for step in schedule.steps.iter().skip(early.len()) {
        world.step(*step);
    }
    world.finish()
}

/// A run's options.
#[derive(Clone, Copy, Debug)]
pub struct ExploreOptions {
    /// How many schedules.
    pub schedules: u64,
    /// The first schedule's seed.
    pub seed: u64,
    /// Print every schedule's notes, not only failing ones.
    pub verbose: bool,
}

/// What a run found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExploreReport {
    /// Schedules run.
    pub schedules: u64,
    /// Armed failures that fired.
    pub failures_injected: u64,
    /// Objects left behind, all schedules together.
    pub leaks: u64,
    /// Rules broken, all schedules together.
    pub violations: u64,
    /// Guest uses checked both ways.
    pub pages_checked: u64,
    /// Seeds of the schedules that leaked or broke a rule.
    pub failing_seeds: Vec<u64>,
}

impl ExploreReport {
    /// Whether nothing leaked and no rule was broken.
    pub fn passed(&self) -> bool {
        self.leaks == 0 && self.violations == 0
    }
}

impl fmt::Display for ExploreReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "explore: {} schedules, {} failures injected, {} leaks, {} violations",
            self.schedules, self.failures_injected, self.leaks, self.violations
        )
    }
}

/// What the explored schedules rest on without a public source (`docs/simulator.md`,
/// "Lifecycle events the model supports"); printed before the results.
pub const ASSUMPTIONS: [&str; 4] = [
    "each device host is handed a VMBus handle to its VM and converts it in its own context \
     (no documented way exists for a third party to obtain one)",
    "when a device-host process exits, HDV drops its device host and destroys the \
     section-backed ranges it created",
    "a new device-host process can attach the declared device to a VM that already runs once \
     the old device host is gone",
    "KMCL runs Suspend and Closed on a server channel whose VM stops or resets, and offers the \
     still-enabled channel again to the reset guest",
];

/// How many failing schedules are printed in full.
const PRINTED_FAILURES: usize = 5;

/// Runs `options.schedules` schedules; prints each failing one (its seed, steps, violations and
/// notes, the first few in full) and the summary line to `out`.
pub fn run(options: &ExploreOptions, out: &mut dyn Write) -> ExploreReport {
    let _ = writeln!(
        out,
        "explore: assumptions these schedules rest on (not verified on a real host):"
    );
    for assumption in ASSUMPTIONS {
        let _ = writeln!(out, "  - {assumption}");
    }
    let mut report = ExploreReport::default();
    for index in 0..options.schedules {
        let seed = options.seed.wrapping_add(index);
        let schedule = Schedule::generate(seed);
        let outcome = run_schedule(&schedule);
        report.schedules += 1;
        report.failures_injected += outcome.failures_injected;
        report.leaks += outcome.leaks;
        report.violations += outcome.violations.len() as u64;
        report.pages_checked += outcome.pages_checked;
        let failed = outcome.leaks > 0 || !outcome.violations.is_empty();
        if failed {
            report.failing_seeds.push(seed);
        }
        if options.verbose || (failed && report.failing_seeds.len() <= PRINTED_FAILURES) {
            print_schedule(out, &schedule, &outcome, failed);
        }
    }
    let _ = writeln!(out, "{report}");
    if !report.failing_seeds.is_empty() {
        let _ = writeln!(
            out,
            "failing seeds (rerun one with --schedules 1 --seed <seed> --verbose): {:?}",
            report.failing_seeds
        );
    }
    report
}

fn print_schedule(out: &mut dyn Write, schedule: &Schedule, outcome: &Outcome, failed: bool) {
    let _ = writeln!(
        out,
        "schedule seed {} ({:?} guest){}: {} leaks, {} violations",
        schedule.seed,
        schedule.guest,
        if failed { " FAILED" } else { "" },
        outcome.leaks,
        outcome.violations.len()
    );
    let steps: Vec<String> = schedule.steps.iter().map(Step::to_string).collect();
    let _ = writeln!(out, "  steps: {}", steps.join(", "));
    for violation in &outcome.violations {
        let _ = writeln!(out, "  violation: {violation}");
    }
    for note in &outcome.notes {
        let _ = writeln!(out, "    {note}");
    }
}
