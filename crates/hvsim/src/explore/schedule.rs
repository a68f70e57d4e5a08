//! What a schedule is made of, and how a seed becomes one.
//!
//! A schedule is a list of [`Step`]s: events of the guest, the VM, the device host and the
//! driver, and [`Fault`]s armed at some point. The explorer draws it from one seed with
//! [`Schedule::generate`]; the same seed gives the same schedule, which is how a failing one is
//! reproduced (`hvsim explore --schedules 1 --seed <S>`).

use std::fmt;

use kmcl::KmclFunction;

use super::platform_ops::{failing_hdv_calls, failing_kmcl_functions};
use super::rng::Rng;
use crate::hdv::HdvCall;
use crate::sections::FaultPoint;
use crate::vm::GuestKind;

/// A failure armed in one of the simulated platform's calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The `nth` call of a KMCL entry point (counted since the host was created) fails.
    Kmcl(KmclFunction, u32),
    /// The `nth` call of a kernel section step from now fails.
    Section(FaultPoint, u64),
    /// The `nth` call of an HCS/HDV entry point from now fails.
    Hdv(HdvCall, u64),
    /// The `nth` driver allocation from now fails (the pool returns NULL).
    Allocation(u64),
}

/// One event of a schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// The guest program writes and reads a page of each region, if the protocol says it may.
    GuestUses,
    /// The guest sends RELEASING, turns memory decode off, reports; then on, reports, READY.
    GuestTogglesDecode,
    /// The guest releases the BAR, moves it elsewhere in its pool and reports again (what a
    /// guest's PCI rescan or a kexec into a kernel that places BARs differently does).
    GuestMovesBar,
    /// The guest closes its channel without a word (its driver unloads, or the program dies).
    GuestClosesChannel,
    /// The guest opens the channel again (if it is offered and closed) and starts over.
    GuestOpensChannel,
    /// The guest sends a packet of random bytes (a hostile or broken guest).
    GuestSendsGarbage(u64),
    /// The VM is paused (`HcsPauseComputeSystem`).
    VmPauses,
    /// The VM resumes.
    VmResumes,
    /// The guest reboots: the VM resets and the guest starts from nothing.
    VmResets,
    /// The VM is paused, saved, terminated, and restored from the saved state.
    VmSavedAndRestored,
    /// The VM is turned off: its guest disappears without closing anything, with its
    /// `WAIT_EVENT` outstanding (the VM stays off).
    VmStops,
    /// The device-host process dies without releasing anything (crash, kill).
    DeviceHostCrashes,
    /// The device host is stopped in order (Ctrl-C): it releases, then exits.
    DeviceHostQuits,
    /// A new device-host process attaches to the VM (if none runs).
    DeviceHostStarts,
    /// The device host's event loop takes the driver's events, but its serve loop acts on
    /// them only after the next step (its two threads out of step).
    DeviceHostStalls,
    /// The driver's device is surprise-removed: requests fail from now on; the state is freed
    /// once the last handle closed.
    SurpriseRemoval,
    /// An administrator asks to remove the device (vetoed while a session is open).
    QueryRemove,
    /// Arms a failure.
    Arm(Fault),
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Arm(fault) => write!(f, "arm {fault:?}"),
            Self::GuestSendsGarbage(seed) => write!(f, "GuestSendsGarbage({seed:#x})"),
            other => write!(f, "{other:?}"),
        }
    }
}

/// A whole schedule: the guest it runs with and its steps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    /// The seed it came from.
    pub seed: u64,
    /// The guest the VM runs.
    pub guest: GuestKind,
    /// Steps, in order.
    pub steps: Vec<Step>,
}

/// Longest schedule drawn.
pub const MAX_STEPS: u64 = 24;

/// How one kind of step is drawn.
type Draw = fn(&mut Rng) -> Step;

/// Each step's weight (per draw, out of the total) and how it is drawn.
const WEIGHTS: &[(u64, Draw)] = &[
    (14, |_| Step::GuestUses),
    (6, |_| Step::GuestTogglesDecode),
    (5, |_| Step::GuestMovesBar),
    (5, |_| Step::GuestClosesChannel),
    (6, |_| Step::GuestOpensChannel),
    (4, |rng| Step::GuestSendsGarbage(rng.next_u64())),
    (4, |_| Step::VmPauses),
    (5, |_| Step::VmResumes),
    (4, |_| Step::VmResets),
    (3, |_| Step::VmSavedAndRestored),
    (1, |_| Step::VmStops),
    (4, |_| Step::DeviceHostCrashes),
    (3, |_| Step::DeviceHostQuits),
    (6, |_| Step::DeviceHostStarts),
    (5, |_| Step::DeviceHostStalls),
    (1, |_| Step::SurpriseRemoval),
    (2, |_| Step::QueryRemove),
    (9, |rng| Step::Arm(draw_fault(rng))),
];

impl Schedule {
    /// The schedule of `seed`: the guest alternates with the seed's lowest bit; up to two
    /// failures are armed before the start (so setup paths fail too), then up to
    /// [`MAX_STEPS`] steps.
    pub fn generate(seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let guest = if seed & 1 == 0 {
            GuestKind::Linux
        } else {
            GuestKind::Windows
        };
        let mut steps = Vec::new();
        for _ in 0..rng.below(3) {
            steps.push(Step::Arm(draw_fault(&mut rng)));
        }
        let total: u64 = WEIGHTS.iter().map(|(weight, _)| weight).sum();
        let count = 4 + rng.below(MAX_STEPS - 3);
        for _ in 0..count {
            let mut pick = rng.below(total);
            let mut draw: Draw = |_| Step::GuestUses;
            for (weight, candidate) in WEIGHTS {
                if pick < *weight {
                    draw = *candidate;
                    break;
                }
                pick -= weight;
            }
            steps.push(draw(&mut rng));
        }
        Self { seed, guest, steps }
    }

    /// A schedule written by hand (the named lifecycle tests).
    pub fn scripted(guest: GuestKind, steps: &[Step]) -> Self {
        Self {
            seed: 0,
            guest,
            steps: steps.to_vec(),
        }
    }
}

fn draw_fault(rng: &mut Rng) -> Fault {
    match rng.below(4) {
        0 => {
            let failing = failing_kmcl_functions();
            let function = rng
                .pick(&failing)
                .copied()
                .unwrap_or(KmclFunction::VmbChannelEnable);
            Fault::Kmcl(function, u32::try_from(1 + rng.below(3)).unwrap_or(1))
        }
        1 => {
            let point = rng
                .pick(FaultPoint::ALL)
                .copied()
                .unwrap_or(FaultPoint::CreateSection);
            Fault::Section(point, 1 + rng.below(4))
        }
        2 => {
            let calls = failing_hdv_calls();
            match rng.pick(&calls) {
                Some(call) => Fault::Hdv(*call, 1 + rng.below(3)),
                None => Fault::Allocation(1),
            }
        }
        _ => Fault::Allocation(1 + rng.below(40)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_gives_one_schedule_and_both_guests_are_drawn() {
        assert_eq!(Schedule::generate(7), Schedule::generate(7));
        assert_ne!(Schedule::generate(7), Schedule::generate(8));
        assert_eq!(Schedule::generate(2).guest, GuestKind::Linux);
        assert_eq!(Schedule::generate(3).guest, GuestKind::Windows);
        for seed in 0..200 {
            let schedule = Schedule::generate(seed);
            assert!(schedule.steps.len() <= 2 + MAX_STEPS as usize);
        }
    }
}
