//! The platform events the explorer schedules, as calls into the simulated host: VM power
//! operations through the HCS model, faults armed in each model, and what a new device-host
//! process needs from the platform.

use kmcl::raw::STATUS_INSUFFICIENT_RESOURCES;
use vmbmmio_devhost::platform::HcsApi;

use super::schedule::Fault;
use super::world::Env;
use crate::demo::world::VM_ID;
use crate::hdv::HdvSim;
use crate::memory::ProcessId;

/// `E_FAIL`, the HRESULT an armed HCS/HDV failure returns.
const E_FAIL: i32 = 0x8000_4005_u32 as i32;

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
    f: impl FnOnce(
        &mut HdvSim,
        vmbmmio_devhost::platform::ComputeSystem,
    ) -> Result<(), vmbmmio_devhost::hresult::HResult>,
) -> Result<(), String> {
    let mut hcs = env.hdv.clone();
    let system = hcs
        .open_compute_system(VM_ID)
        .map_err(|error| format!("HcsOpenComputeSystem: {error:?}"))?;
    let result = f(&mut hcs, system).map_err(|error| format!("{error:?}"));
    hcs.close_compute_system(system);
    result
}

/// Arms `fault`; returns a probe that says later whether it fired.
pub(super) fn arm(env: &Env, fault: Fault) -> Armed {
    match fault {
        Fault::Kmcl(function, nth) => {
            env.sim
                .fail_nth(function, nth, STATUS_INSUFFICIENT_RESOURCES);
            Armed::Kmcl(function, u64::from(nth))
        }
        Fault::Section(point, nth) => {
            let base = env.kernel.calls(point);
            env.kernel
                .fail_nth(point, nth, STATUS_INSUFFICIENT_RESOURCES);
            Armed::Section(point, base + nth)
        }
        Fault::Hdv(call, nth) => {
            let _ = E_FAIL;
            Armed::Hdv(call, nth)
        }
        Fault::Allocation(nth) => Armed::Allocation(nth),
    }
}

/// An armed fault and how to tell whether it fired.
#[derive(Clone, Copy, Debug)]
pub(super) enum Armed {
    Kmcl(kmcl::KmclFunction, u64),
    Section(crate::sections::FaultPoint, u64),
    Hdv(HdvCall, u64),
    Allocation(u64),
}

impl Armed {
    /// Whether the armed call was reached.
    pub(super) fn fired(&self, env: &Env) -> bool {
        match *self {
            Self::Kmcl(function, nth) => {
                env.sim
                    .call_names()
                    .into_iter()
                    .filter(|name| *name == function)
                    .count() as u64
                    >= nth
            }
            Self::Section(point, at) => env.kernel.calls(point) >= at,
            Self::Hdv(..) | Self::Allocation(..) => false,
        }
    }
}

/// TEMPORARY until the HDV model's fault injection lands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HdvCall {
    /// Placeholder.
    Stub,
}

impl HdvCall {
    /// Every call.
    pub const ALL: &[Self] = &[Self::Stub];
}

/// TEMPORARY: every section fault point.
pub(super) const SECTION_POINTS: &[crate::sections::FaultPoint] = &[
    crate::sections::FaultPoint::CreateSection,
    crate::sections::FaultPoint::ReferenceObject,
    crate::sections::FaultPoint::OpenUserHandle,
];

/// The HDV model as a device-host process `process` reaches it.
pub(super) fn hdv_for(env: &Env, process: ProcessId) -> HdvSim {
    let _ = process;
    env.hdv.clone()
}

/// A VMBus handle to the VM valid in `process` (the named assumption: a device host can hold
/// one; see `kmcl::Assumption`).
pub(super) fn vmbus_handle_for(env: &Env, process: ProcessId) -> u64 {
    let _ = process;
    env.vm().user_handle
}

/// A guest-initiated reset of the running VM.
pub(super) fn reset(env: &Env) -> Result<(), String> {
    let _ = env;
    Err("not modelled yet".into())
}

/// Pause, save, terminate, restore: the restored VM as the KMCL model knows it.
pub(super) fn save_and_restore(env: &Env) -> Result<crate::kmcl::SimVm, String> {
    let _ = env;
    Err("not modelled yet".into())
}

/// Section-backed ranges whose section the driver no longer holds.
pub(super) fn ranges_without_live_section(env: &Env) -> Vec<String> {
    let _ = env;
    Vec::new()
}
