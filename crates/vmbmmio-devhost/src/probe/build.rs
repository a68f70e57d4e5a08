//! From collected facts to the report: one finding per check, in the check table's order.

use super::checks::{self, CHECKS};
use super::classify::{self, Outcome, VmStatus};
use super::facts::{
    Collected, ExportImageFacts, HyperVRoleFacts, KmdfFacts, TestSigningFacts, VdevFacts,
    VerifierFacts, VmLookupFacts, WindowsVersionFacts, WorkerFacts,
};
use super::mapping::MappingFacts;
use super::report::{Evidence, Finding, Invocation, REPORT_VERSION, Report, ToolInfo};
use crate::hyperv_components::ComponentStatus;

/// What the collectors gathered for the VM checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmInputs {
    /// `--vm`, as given.
    pub requested: String,
    /// How it was looked up.
    pub lookup: VmLookupFacts,
    /// The worker's facts (collected when the VM was identified).
    pub worker: Option<WorkerFacts>,
    /// The second vdev open (collected when the VM was identified).
    pub vdev: Option<VdevFacts>,
}

/// Everything the collectors gathered; `None` = not collected (the check is `not_run`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProbeInputs {
    /// Facts about the host that are not findings (OS, architecture, elevation).
    pub host: Evidence,
    /// `windows_build`.
    pub windows_version: Option<Collected<WindowsVersionFacts>>,
    /// `hyperv_role`.
    pub hyperv_role: Option<HyperVRoleFacts>,
    /// `kmdf_version`.
    pub kmdf: Option<KmdfFacts>,
    /// `test_signing`.
    pub test_signing: Option<TestSigningFacts>,
    /// `driver_verifier`.
    pub verifier: Option<VerifierFacts>,
    /// `hyperv_components`: what the device host's run-time load of the Hyper-V libraries
    /// found, one status per library and entry point (`crate::hyperv_components`).
    pub hyperv_components: Option<Vec<ComponentStatus>>,
    /// `kmcl_exports`.
    pub kmcl_image: Option<ExportImageFacts>,
    /// The VM checks (`--vm`).
    pub vm: Option<VmInputs>,
    /// `section_backed_mapping` (`--mapping`).
    pub mapping: Option<MappingFacts>,
}

const NOT_COLLECTED: &str = "not collected: the collectors run only on Windows";

fn or_not_run<T>(facts: Option<&T>, classify: impl FnOnce(&T) -> Outcome) -> Outcome {
    facts.map_or_else(|| Outcome::not_run(NOT_COLLECTED), classify)
}

/// Builds the report.
pub fn build_report(generated_at: String, invocation: Invocation, inputs: &ProbeInputs) -> Report {
    let (vm_outcome, status) = match &inputs.vm {
        None => (Outcome::not_run("needs --vm"), None),
        Some(vm) => classify::vm_state(&vm.requested, &vm.lookup),
    };
    let vm_check_not_run = |status: &Option<VmStatus>| {
        if inputs.vm.is_none() {
            Outcome::not_run("needs --vm")
        } else if status.is_none() {
            Outcome::not_run("the VM was not identified (see vm_state)")
        } else {
            Outcome::not_run("not collected")
        }
    };
    let findings = CHECKS
        .iter()
        .map(|check| {
            let outcome = match check.id {
                checks::WINDOWS_BUILD => match &inputs.windows_version {
                    None => Outcome::not_run(NOT_COLLECTED),
                    Some(Ok(facts)) => classify::windows_build(facts),
                    Some(Err(error)) => {
                        Outcome::error("reading the Windows version", error, Evidence::new())
                    }
                },
                checks::HYPERV_ROLE => {
                    or_not_run(inputs.hyperv_role.as_ref(), classify::hyperv_role)
                }
                checks::KMDF_VERSION => or_not_run(inputs.kmdf.as_ref(), classify::kmdf_version),
                checks::TEST_SIGNING => {
                    or_not_run(inputs.test_signing.as_ref(), classify::test_signing)
                }
                checks::DRIVER_VERIFIER => {
                    or_not_run(inputs.verifier.as_ref(), classify::driver_verifier)
                }
                checks::HYPERV_COMPONENTS => inputs.hyperv_components.as_deref().map_or_else(
                    || Outcome::not_run(NOT_COLLECTED),
                    classify::hyperv_components,
                ),
                checks::KMCL_EXPORTS => {
                    or_not_run(inputs.kmcl_image.as_ref(), classify::kmcl_exports)
                }
                checks::VM_STATE => vm_outcome.clone(),
                checks::WORKER_PROTECTION => {
                    match (
                        &status,
                        inputs.vm.as_ref().and_then(|vm| vm.worker.as_ref()),
                    ) {
                        (Some(status), Some(worker)) => {
                            classify::worker_protection(status.id, worker)
                        }
                        _ => vm_check_not_run(&status),
                    }
                }
                checks::VDEV_SECOND_OPEN => {
                    match (&status, inputs.vm.as_ref().and_then(|vm| vm.vdev.as_ref())) {
                        (Some(status), Some(vdev)) => {
                            classify::vdev_second_open(vdev, status.running)
                        }
                        _ => vm_check_not_run(&status),
                    }
                }
                checks::VDEV_IOCTLS => {
                    if inputs.vm.is_none() {
                        Outcome::not_run("needs --vm and --experimental")
                    } else {
                        classify::vdev_ioctls(
                            inputs.vm.as_ref().and_then(|vm| vm.vdev.as_ref()),
                            invocation.experimental,
                        )
                    }
                }
                checks::SECTION_BACKED_MAPPING => match &inputs.mapping {
                    None if invocation.mapping.is_none() => {
                        Outcome::not_run("needs --mapping <CONFIG.toml>")
                    }
                    None => Outcome::not_run(NOT_COLLECTED),
                    Some(facts) => classify::section_backed_mapping(facts),
                },
                _ => Outcome::not_run("unknown check"),
            };
            Finding {
                id: check.id,
                question: check.question,
                verdict: outcome.verdict,
                summary: outcome.summary,
                evidence: outcome.evidence,
            }
        })
        .collect();
    Report {
        report_version: REPORT_VERSION,
        tool: ToolInfo::this(),
        generated_at,
        invocation,
        host: inputs.host.clone(),
        findings,
    }
}
