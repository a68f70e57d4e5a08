//! `hvsim explore` itself: schedules are reproducible, the run reaches every kind of event with
//! both guests and with failures that fire, the command line prints the summary line
//! and exits non-zero on a bad argument.

use std::process::Command;

use hvsim::explore::{ExploreOptions, Schedule, Step, run, run_schedule};
use hvsim::vm::GuestKind;

#[test]
fn a_seed_reproduces_its_schedule_and_its_outcome() {
    for seed in [1, 2, 77, 1234] {
        let schedule = Schedule::generate(seed);
        assert_eq!(schedule, Schedule::generate(seed));
        let first = run_schedule(&schedule);
        let again = run_schedule(&schedule);
        assert_eq!(first, again, "seed {seed}");
    }
}

#[test]
fn a_run_covers_both_guests_every_step_and_fires_failures_without_leaks() {
    let options = ExploreOptions {
        schedules: 300,
        seed: 1,
        verbose: false,
    };
    let mut out = Vec::new();
    let report = run(&options, &mut out);
    let text = String::from_utf8(out).unwrap();
    assert!(report.passed(), "{text}");
    assert!(report.failures_injected > 50, "{report}");
    assert!(report.pages_checked > 100, "{report:?}");
    assert!(
        text.trim_end().ends_with(&format!(
            "explore: 300 schedules, {} failures injected, 0 leaks, 0 violations",
            report.failures_injected
        )),
        "{text}"
    );
    let schedules: Vec<Schedule> = (1..=300).map(Schedule::generate).collect();
    assert!(schedules.iter().any(|s| s.guest == GuestKind::Linux));
    assert!(schedules.iter().any(|s| s.guest == GuestKind::Windows));
    let steps: Vec<&Step> = schedules.iter().flat_map(|s| &s.steps).collect();
    let kinds = [
        "GuestUses",
        "GuestTogglesDecode",
        "GuestMovesBar",
        "GuestClosesChannel",
        "GuestOpensChannel",
        "GuestSendsGarbage",
        "VmPauses",
        "VmResumes",
        "VmResets",
        "VmSavedAndRestored",
        "VmStops",
        "DeviceHostCrashes",
        "DeviceHostQuits",
        "DeviceHostStarts",
        "SurpriseRemoval",
        "QueryRemove",
        "Arm(Kmcl",
        "Arm(Section",
        "Arm(Hdv",
        "Arm(Allocation",
    ];
    for kind in kinds {
        assert!(
            steps
                .iter()
                .any(|step| format!("{step:?}").starts_with(kind)),
            "no {kind} step in 300 schedules"
        );
    }
}

#[test]
fn the_command_prints_the_summary_and_rejects_bad_arguments() {
    let ok = Command::new(env!("CARGO_BIN_EXE_hvsim"))
        .args(["explore", "--schedules", "20", "--seed", "9"])
        .output()
        .unwrap();
    let stdout = String::from_utf8(ok.stdout).unwrap();
    assert!(ok.status.success(), "{stdout}");
    assert!(stdout.contains("explore: assumptions these schedules rest on"));
    assert!(
        stdout
            .lines()
            .last()
            .unwrap()
            .starts_with("explore: 20 schedules, "),
        "{stdout}"
    );
    for bad in [
        vec!["explore", "--schedules", "0"],
        vec!["explore", "--schedules", "many"],
        vec!["explore", "--seed", "-1"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_hvsim"))
            .args(&bad)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{bad:?}");
        assert!(!out.stderr.is_empty(), "{bad:?}: a clear error on stderr");
    }
}
