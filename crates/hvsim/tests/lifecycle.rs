//! Issue 10's lifecycle scenarios, one named test each: a scripted schedule run by the explorer
//! (`hvsim::explore`) through the driver's real control device, the real device host and the
//! reference guest library, with every rule checked after each step and every model asked
//! at the end what it still holds (see the module docs of `hvsim::explore`).
//!
//! Each test states what the scenario must end in: the guest told (it may not use the memory
//! until the host backs it again) or its channel gone, and nothing left behind.

use hvsim::explore::{Outcome, Schedule, Step, run_schedule};
use hvsim::vm::GuestKind;

use Step::*;

/// Both guests run every scenario.
const GUESTS: [GuestKind; 2] = [GuestKind::Linux, GuestKind::Windows];

fn run(guest: GuestKind, steps: &[Step]) -> Outcome {
    let outcome = run_schedule(&Schedule::scripted(guest, steps));
    assert!(
        outcome.violations.is_empty() && outcome.leaks == 0,
        "{guest:?} guest, steps {steps:?}: violations {:#?}, {} leaked; notes:\n{}",
        outcome.violations,
        outcome.leaks,
        outcome.notes.join("\n")
    );
    outcome
}

/// How many regions each `GuestUses` step used.
fn used(outcome: &Outcome) -> Vec<u32> {
    outcome.uses.iter().map(|(regions, _)| *regions).collect()
}

#[test]
fn guest_closes_and_reopens_the_channel() {
    for guest in GUESTS {
        let outcome = run(guest, &[GuestUses, GuestClosesChannel, GuestUses]);
        assert_eq!(used(&outcome), [2, 2], "{guest:?}");
        assert_eq!(
            outcome.guest_opens, 2,
            "{guest:?}: the guest opened the channel again"
        );
    }
}

#[test]
fn guest_toggles_decode_and_is_backed_again() {
    for guest in GUESTS {
        let outcome = run(guest, &[GuestUses, GuestTogglesDecode, GuestUses]);
        assert_eq!(used(&outcome), [2, 2], "{guest:?}");
    }
}

#[test]
fn guest_disappears_without_closing_with_its_wait_outstanding() {
    for guest in GUESTS {
        // The VM is turned off under the guest: Suspend and Closed arrive while the driver
        // holds the guest's WAIT_EVENT; the driver completes it, the device host is told and
        // ends its run, and nothing is left.
        let outcome = run(guest, &[GuestUses, VmStops, GuestUses, DeviceHostStarts]);
        assert_eq!(used(&outcome), [2, 0], "{guest:?}");
    }
}

#[test]
fn guest_places_the_bar_somewhere_else_and_is_backed_there() {
    for guest in GUESTS {
        let outcome = run(guest, &[GuestUses, GuestMovesBar, GuestUses]);
        assert_eq!(used(&outcome), [2, 2], "{guest:?}");
        let bars: Vec<u64> = outcome.uses.iter().map(|(_, bar)| *bar).collect();
        assert_ne!(bars[0], bars[1], "{guest:?}: the BAR moved");
    }
}

#[test]
fn guest_reboots_and_places_the_bar_elsewhere() {
    for guest in GUESTS {
        let outcome = run(guest, &[GuestUses, VmResets, GuestMovesBar, GuestUses]);
        assert_eq!(used(&outcome), [2, 2], "{guest:?}");
        assert_eq!(
            outcome.guest_opens, 2,
            "{guest:?}: the rebooted guest opened again"
        );
    }
}

#[test]
fn vm_reset_ends_the_conversation_and_the_guest_starts_over() {
    for guest in GUESTS {
        let outcome = run(guest, &[GuestUses, VmResets, GuestUses]);
        assert_eq!(used(&outcome), [2, 2], "{guest:?}");
        assert_eq!(outcome.guest_opens, 2, "{guest:?}");
    }
}

#[test]
fn vm_pause_and_resume_keep_the_mapping() {
    for guest in GUESTS {
        let outcome = run(
            guest,
            &[GuestUses, VmPauses, GuestUses, VmResumes, GuestUses],
        );
        assert_eq!(
            used(&outcome),
            [2, 0, 2],
            "{guest:?}: a paused guest does nothing"
        );
        assert_eq!(outcome.guest_opens, 1, "{guest:?}: the channel stayed open");
    }
}

#[test]
fn vm_save_and_restore_reoffers_and_a_new_device_host_maps_again() {
    for guest in GUESTS {
        let outcome = run(guest, &[GuestUses, VmSavedAndRestored, GuestUses]);
        assert_eq!(used(&outcome), [2, 2], "{guest:?}");
        assert_eq!(outcome.device_hosts_attached, 2, "{guest:?}");
        assert_eq!(
            outcome.guest_opens, 2,
            "{guest:?}: a new offer after the restore"
        );
    }
}

#[test]
fn device_host_crashes_and_a_new_one_reattaches_and_maps_again() {
    for guest in GUESTS {
        let outcome = run(
            guest,
            &[
                GuestUses,
                DeviceHostCrashes,
                GuestUses,
                DeviceHostStarts,
                GuestUses,
            ],
        );
        assert_eq!(
            used(&outcome),
            [2, 0, 2],
            "{guest:?}: told at once, backed again later"
        );
        assert_eq!(outcome.device_hosts_attached, 2, "{guest:?}");
    }
}

#[test]
fn device_host_quits_and_a_new_one_reattaches_and_maps_again() {
    for guest in GUESTS {
        let outcome = run(
            guest,
            &[
                GuestUses,
                DeviceHostQuits,
                GuestUses,
                DeviceHostStarts,
                GuestUses,
            ],
        );
        assert_eq!(used(&outcome), [2, 0, 2], "{guest:?}");
        assert_eq!(outcome.device_hosts_attached, 2, "{guest:?}");
    }
}

#[test]
fn surprise_removal_with_a_session_open_releases_everything_once_the_handle_closes() {
    for guest in GUESTS {
        let outcome = run(
            guest,
            &[
                GuestUses,
                SurpriseRemoval,
                GuestUses,
                DeviceHostQuits,
                GuestUses,
                DeviceHostStarts,
            ],
        );
        // Still backed until the device host quits (its session lives until its handle
        // closes); after that no device host can attach to a removed device.
        assert_eq!(used(&outcome), [2, 2, 0], "{guest:?}");
        assert_eq!(outcome.device_hosts_attached, 1, "{guest:?}");
    }
}

#[test]
fn unload_is_vetoed_while_a_session_is_open_and_releases_everything_after() {
    for guest in GUESTS {
        let outcome = run(
            guest,
            &[
                GuestUses,
                QueryRemove,
                GuestUses,
                DeviceHostQuits,
                QueryRemove,
            ],
        );
        assert_eq!(
            used(&outcome),
            [2, 2],
            "{guest:?}: the veto changed nothing"
        );
        assert!(
            outcome
                .notes
                .iter()
                .any(|note| note.starts_with("query-remove vetoed")),
            "{guest:?}"
        );
        assert!(
            outcome
                .notes
                .iter()
                .any(|note| note.starts_with("query-remove accepted")),
            "{guest:?}"
        );
    }
}

#[test]
fn a_hostile_guest_is_stopped_and_nothing_is_left() {
    for guest in GUESTS {
        let garbage: Vec<Step> = (0..40).map(GuestSendsGarbage).collect();
        let mut steps = vec![GuestUses];
        steps.extend(garbage);
        steps.push(GuestUses);
        let outcome = run(guest, &steps);
        assert_eq!(used(&outcome)[0], 2, "{guest:?}");
        assert!(
            outcome
                .notes
                .iter()
                .any(|note| note.contains("GuestStopped")),
            "{guest:?}: the driver stopped answering and the device host ended the session:\n{}",
            outcome.notes.join("\n")
        );
    }
}

#[test]
fn a_late_device_host_never_has_the_guest_use_memory_it_has_not_mapped() {
    for guest in GUESTS {
        // The device host takes the guest's RELEASING/READY but acts on them only after the
        // guest closed, reopened and said READY again: every use the guest makes on hearing
        // it is backed is checked against where the device host has the memory mapped.
        let outcome = run(
            guest,
            &[
                GuestUses,
                DeviceHostStalls,
                GuestTogglesDecode,
                GuestClosesChannel,
                GuestUses,
                DeviceHostStalls,
                GuestMovesBar,
                GuestClosesChannel,
                GuestUses,
            ],
        );
        assert_eq!(used(&outcome), [2, 2, 2], "{guest:?}");
    }
}
