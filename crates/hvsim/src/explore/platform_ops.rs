//! The platform events the explorer schedules, as calls into the simulated host: VM power
//! operations through the HCS model, faults armed in each model, and what a new device-host
//! process needs from the platform.

use std::sync::Arc;

use kmcl::KmclFunction;
use kmcl::raw::STATUS_INSUFFICIENT_RESOURCES;
use vmbmmio_devhost::hresult::HResult;
use vmbmmio_devhost::platform::{ComputeSystem, HcsApi};

use super::schedule::Fault;
use super::world::Env;
use crate::demo::world::VM_ID;
use crate::hdv::{HdvCall, HdvSim};
use crate::memory::{ProcessId, SectionMemory};
use crate::sections::FaultPoint;

/// `E_FAIL`, the HRESULT an armed HCS/HDV failure returns.
const E_FAIL: HResult = HResult(0x8000_4005_u32 as i32);

/// Pauses the VM as an operator would (`HcsPauseComputeSystem` on its own handle).
pub(super) fn pause(env: &Env) -> Result<(), String> {
    with_system(env, |hcs, system| hcs.pause(system))
}

/// Resumes the VM.
pub(super) fn resume(env: &Env) -> Result<(), String> {
    with_system(env, |hcs, system| hcs.resume(system))
}

fn with_system(
    env: &Env,
    f: impl FnOnce(&mut HdvSim, ComputeSystem) -> Result<(), HResult>,
) -> Result<(), String> {
    let mut hcs = env.hdv.clone();
    let system = hcs
        .open_compute_system(VM_ID)
        .map_err(|error| format!("HcsOpenComputeSystem: {error:?}"))?;
    let result = f(&mut hcs, system).map_err(|error| format!("{error:?}"));
    hcs.close_compute_system(system);
    result
}

/// Arms `fault` (each model counts "the nth call from now"); returns a probe that says later
/// whether it fired.
pub(super) fn arm(env: &Env, fault: Fault) -> Armed {
    match fault {
        Fault::Kmcl(function, nth) => {
            let at = u64::from(env.sim.calls_of(function)) + u64::from(nth);
            env.sim
                .fail_nth(function, nth, STATUS_INSUFFICIENT_RESOURCES);
            Armed::Kmcl(function, at)
        }
        Fault::Section(point, nth) => {
            let at = env.kernel.calls(point) + nth;
            env.kernel
                .fail_nth(point, nth, STATUS_INSUFFICIENT_RESOURCES);
            Armed::Section(point, at)
        }
        Fault::Hdv(call, nth) => {
            let at = env.hdv.calls(call) + nth;
            env.hdv.fail_nth(call, nth, E_FAIL);
            Armed::Hdv(call, at)
        }
        Fault::Allocation(nth) => {
            let before = crate::alloc_faults::injected();
            crate::alloc_faults::arm_nth(nth);
            Armed::Allocation(before)
        }
    }
}

/// An armed fault and how to tell whether it fired: the call count it fires at (or, for
/// allocations, the injection count before it was armed).
#[derive(Clone, Copy, Debug)]
pub(super) enum Armed {
    Kmcl(KmclFunction, u64),
    Section(FaultPoint, u64),
    Hdv(HdvCall, u64),
    Allocation(u64),
}

impl Armed {
    /// Whether the armed call was reached.
    pub(super) fn fired(&self, env: &Env) -> bool {
        match *self {
            Self::Kmcl(function, at) => u64::from(env.sim.calls_of(function)) >= at,
            Self::Section(point, at) => env.kernel.calls(point) >= at,
            Self::Hdv(call, at) => env.hdv.calls(call) >= at,
            Self::Allocation(before) => crate::alloc_faults::injected() > before,
        }
    }
}

/// The KMCL functions an armed failure can hit (those returning an NTSTATUS).
pub(super) fn failing_kmcl_functions() -> Vec<KmclFunction> {
    KmclFunction::ALL
        .into_iter()
        .filter(|function| function.returns_status())
        .collect()
}

/// The HCS/HDV calls an armed failure can hit.
pub(super) fn failing_hdv_calls() -> Vec<HdvCall> {
    HdvCall::ALL
        .iter()
        .copied()
        .filter(|call| call.can_fail())
        .collect()
}

/// A guest-initiated reset of the running VM.
pub(super) fn reset(env: &Env) -> Result<(), String> {
    env.hdv
        .reset_compute_system(VM_ID)
        .map_err(|error| format!("{error:?}"))
}

/// Section-backed ranges whose section the driver no longer holds: each must be one of the
/// driver's live sessions' sections.
pub(super) fn ranges_without_live_section(env: &Env) -> Vec<String> {
    let live: Vec<Arc<SectionMemory>> = {
        let control = env.control.borrow();
        let files: Vec<_> = control.session_files().collect();
        files
            .into_iter()
            .flat_map(|file| {
                (0u32..8)
                    .filter_map(|region| control.region_section(file, region))
                    .filter_map(|section| env.kernel.kernel_memory(section))
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    env.hdv
        .live_range_memories()
        .into_iter()
        .filter(|memory| !live.iter().any(|held| Arc::ptr_eq(held, memory)))
        .map(|memory| format!("a {}-byte section", memory.size()))
        .collect()
}

/// The HDV model as device-host process `process` reaches it.
pub(super) fn hdv_for(env: &Env, process: ProcessId) -> HdvSim {
    env.hdv.for_process(process)
}
