//! The VM checks: the VM's state, its worker's protection, the second vdev open and the
//! experimental vdev IOCTLs. Also the two decisions the collectors need on the way: which
//! compute system `--vm` names ([`resolve_vm`]) and which process is its worker
//! ([`find_worker`]).

use serde_json::Value as Json;

use super::{Outcome, os_error};
use crate::guid::Guid;
use crate::probe::facts::{
    ERROR_ACCESS_DENIED, ERROR_FILE_NOT_FOUND, ERROR_INVALID_NAME, ERROR_PATH_NOT_FOUND,
    ERROR_SHARING_VIOLATION, IoctlFacts, IoctlResult, PROTECTION_LEVEL_NONE, ProcessFacts,
    VdevFacts, VmEntry, VmLookupFacts, WorkerFacts,
};
use crate::probe::report::{Evidence, Value, Verdict};

/// What the VM checks learned about the VM, for the checks after them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmStatus {
    /// Its compute-system id.
    pub id: Guid,
    /// Its name, if the HCS gave one.
    pub name: Option<String>,
    /// Whether its state is `Running`.
    pub running: bool,
}

fn text_field(object: &serde_json::Map<String, Json>, key: &str) -> Option<String> {
    object.get(key).and_then(Json::as_str).map(str::to_string)
}

/// Finds `requested` (a GUID, matched against `Id` and `RuntimeId`, or a name, matched against
/// `Name` without regard to case) in the answer of `HcsEnumerateComputeSystems`. `Err` is the
/// lookup's finding (not found, ambiguous, a malformed answer).
pub fn resolve_vm(list_json: &str, requested: &str) -> Result<VmEntry, VmLookupFacts> {
    let parsed: Json = serde_json::from_str(list_json)
        .map_err(|error| VmLookupFacts::BadAnswer(format!("not JSON: {error}")))?;
    let list = parsed.as_array().ok_or_else(|| {
        VmLookupFacts::BadAnswer("the compute-system list is not a JSON array".to_string())
    })?;
    let entries: Vec<VmEntry> = list
        .iter()
        .filter_map(Json::as_object)
        .filter_map(|object| {
            let id = text_field(object, "Id")?.parse::<Guid>().ok()?;
            Some(VmEntry {
                id,
                name: text_field(object, "Name"),
                state: text_field(object, "State"),
                owner: text_field(object, "Owner"),
                system_type: text_field(object, "SystemType"),
                runtime_id: text_field(object, "RuntimeId"),
            })
        })
        .collect();
    let wanted = requested.trim();
    let matches: Vec<VmEntry> = match wanted.parse::<Guid>() {
        Ok(guid) => entries
            .iter()
            .filter(|entry| {
                entry.id == guid
                    || entry
                        .runtime_id
                        .as_deref()
                        .and_then(|id| id.parse::<Guid>().ok())
                        == Some(guid)
            })
            .cloned()
            .collect(),
        Err(_) => entries
            .iter()
            .filter(|entry| {
                entry
                    .name
                    .as_deref()
                    .is_some_and(|name| name.eq_ignore_ascii_case(wanted))
            })
            .cloned()
            .collect(),
    };
    match matches.len() {
        1 => Ok(matches
            .into_iter()
            .next()
            .ok_or_else(|| VmLookupFacts::BadAnswer("internal: one match vanished".to_string()))?),
        0 => Err(VmLookupFacts::NotFound {
            known: entries
                .iter()
                .map(|entry| match &entry.name {
                    Some(name) => format!("{} ({name})", entry.id),
                    None => entry.id.to_string(),
                })
                .collect(),
        }),
        _ => Err(VmLookupFacts::Ambiguous(matches)),
    }
}

fn entry_evidence(entry: &VmEntry) -> Evidence {
    Evidence::new()
        .with("id", entry.id.to_string())
        .with("name", entry.name.clone())
        .with("state_in_list", entry.state.clone())
        .with("owner", entry.owner.clone())
        .with("system_type", entry.system_type.clone())
        .with("runtime_id", entry.runtime_id.clone())
}

/// `vm_state`, and what the later VM checks need (`None` when the VM was not identified).
pub fn vm_state(requested: &str, facts: &VmLookupFacts) -> (Outcome, Option<VmStatus>) {
    let evidence = Evidence::new().with("requested", requested);
    match facts {
        VmLookupFacts::EnumerationFailed(error) => (
            Outcome::error("listing the compute systems", error, evidence),
            None,
        ),
        VmLookupFacts::BadAnswer(text) => (
            Outcome::new(
                Verdict::Error,
                format!("the HCS's compute-system list could not be read: {text}"),
                evidence.with("parse_error", text.as_str()),
            ),
            None,
        ),
        VmLookupFacts::NotFound { known } => (
            Outcome::new(
                Verdict::AnsweredNo,
                format!(
                    "no compute system has the id or name {requested:?} ({} known; a VM \
                     created in Hyper-V Manager may be listed by id only: try (Get-VM \
                     <name>).Id)",
                    known.len()
                ),
                evidence.with("known", known.clone()),
            ),
            None,
        ),
        VmLookupFacts::Ambiguous(entries) => (
            Outcome::new(
                Verdict::Inconclusive,
                format!(
                    "{} compute systems are named {requested:?}: give the VM's id",
                    entries.len()
                ),
                evidence.with(
                    "matches",
                    entries.iter().map(entry_evidence).collect::<Vec<_>>(),
                ),
            ),
            None,
        ),
        VmLookupFacts::Found { entry, properties } => {
            let mut evidence = evidence.with("compute_system", entry_evidence(entry));
            let state = match properties {
                Ok(document) => {
                    evidence.set("properties", document.as_str());
                    serde_json::from_str::<Json>(document)
                        .ok()
                        .and_then(|json| json.get("State").and_then(Json::as_str).map(String::from))
                        .or_else(|| entry.state.clone())
                }
                Err(error) => {
                    evidence.set("properties_error", os_error(error));
                    entry.state.clone()
                }
            };
            evidence.set("state", state.clone());
            let running = state.as_deref() == Some("Running");
            let status = VmStatus {
                id: entry.id,
                name: entry.name.clone(),
                running,
            };
            let outcome = match state {
                Some(state) if running => Outcome::new(
                    Verdict::AnsweredYes,
                    format!("VM {} is {state}", entry.id),
                    evidence,
                ),
                Some(state) => Outcome::new(
                    Verdict::AnsweredNo,
                    format!(
                        "VM {} is {state}: the worker and vdev checks need it running",
                        entry.id
                    ),
                    evidence,
                ),
                None => Outcome::new(
                    Verdict::Inconclusive,
                    format!("VM {} exists but the HCS reported no state", entry.id),
                    evidence,
                ),
            };
            (outcome, Some(status))
        }
    }
}

/// Which `vmwp.exe` is the VM's worker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WorkerMatch {
    /// None has the VM id on its command line.
    None,
    /// Exactly this one.
    One(u32),
    /// Several do (should not happen).
    Several(Vec<u32>),
}

/// The `vmwp.exe` processes whose command line names `vm_id` (any case, braces or not).
pub fn find_worker(processes: &[ProcessFacts], vm_id: Guid) -> WorkerMatch {
    let id = vm_id.to_string();
    let pids: Vec<u32> = processes
        .iter()
        .filter(|process| process.image.eq_ignore_ascii_case("vmwp.exe"))
        .filter(|process| {
            process
                .command_line
                .as_ref()
                .is_ok_and(|line| line.to_ascii_lowercase().contains(&id))
        })
        .map(|process| process.pid)
        .collect();
    match pids.as_slice() {
        [] => WorkerMatch::None,
        [pid] => WorkerMatch::One(*pid),
        _ => WorkerMatch::Several(pids),
    }
}

/// `PROCESS_PROTECTION_LEVEL_INFORMATION.ProtectionLevel` names (processthreadsapi.h,
/// "PROCESS_PROTECTION_LEVEL_INFORMATION structure" on Microsoft Learn).
pub fn protection_level_name(level: u32) -> &'static str {
    match level {
        0 => "PROTECTION_LEVEL_WINTCB_LIGHT",
        1 => "PROTECTION_LEVEL_WINDOWS",
        2 => "PROTECTION_LEVEL_WINDOWS_LIGHT",
        3 => "PROTECTION_LEVEL_ANTIMALWARE_LIGHT",
        4 => "PROTECTION_LEVEL_LSA_LIGHT",
        5 => "PROTECTION_LEVEL_WINTCB",
        6 => "PROTECTION_LEVEL_CODEGEN_LIGHT",
        7 => "PROTECTION_LEVEL_AUTHENTICODE",
        8 => "PROTECTION_LEVEL_PPL_APP",
        PROTECTION_LEVEL_NONE => "PROTECTION_LEVEL_NONE",
        _ => "unknown",
    }
}

fn process_evidence(process: &ProcessFacts) -> Evidence {
    let evidence = Evidence::new()
        .with("pid", process.pid)
        .with("image", process.image.as_str());
    match &process.command_line {
        Ok(line) => evidence.with("command_line", line.as_str()),
        Err(error) => evidence.with("command_line_error", os_error(error)),
    }
}

/// `worker_protection`.
pub fn worker_protection(vm_id: Guid, facts: &WorkerFacts) -> Outcome {
    let evidence = Evidence::new().with("vm_id", vm_id.to_string());
    let processes = match &facts.processes {
        Err(error) => return Outcome::error("listing the processes", error, evidence),
        Ok(processes) => processes,
    };
    let evidence = evidence.with(
        "vmwp_processes",
        processes.iter().map(process_evidence).collect::<Vec<_>>(),
    );
    match find_worker(processes, vm_id) {
        WorkerMatch::None => {
            let unreadable = processes
                .iter()
                .filter(|process| process.command_line.is_err())
                .count();
            Outcome::new(
                Verdict::Inconclusive,
                format!(
                    "no vmwp.exe names VM {vm_id} on its command line ({} vmwp.exe, {unreadable} \
                     command lines unreadable): is the VM running?",
                    processes.len()
                ),
                evidence,
            )
        }
        WorkerMatch::Several(pids) => Outcome::new(
            Verdict::Inconclusive,
            format!(
                "{} vmwp.exe processes name VM {vm_id}: cannot tell which is its worker",
                pids.len()
            ),
            evidence.with("matching_pids", pids),
        ),
        WorkerMatch::One(pid) => {
            let Some(chosen) = facts.chosen.as_ref().filter(|chosen| chosen.pid == pid) else {
                return Outcome::new(
                    Verdict::Error,
                    format!("vmwp.exe {pid} is the worker but was not examined"),
                    evidence.with("worker_pid", pid),
                );
            };
            let mut evidence = evidence.with("worker_pid", pid);
            match &chosen.protection_level {
                Ok(level) => {
                    evidence.set("protection_level", *level);
                    evidence.set("protection_level_name", protection_level_name(*level));
                }
                Err(error) => evidence.set("protection_level_error", os_error(error)),
            }
            match &chosen.dup_handle_open {
                Ok(()) => evidence.set("open_process_dup_handle", "succeeded"),
                Err(error) => evidence.set("open_process_dup_handle_error", os_error(error)),
            }
            let protected = match &chosen.protection_level {
                Ok(level) => Some(*level != PROTECTION_LEVEL_NONE),
                Err(_) => None,
            };
            match (protected, &chosen.dup_handle_open) {
                (Some(true), _) => Outcome::new(
                    Verdict::AnsweredYes,
                    format!(
                        "vmwp.exe {pid} is a protected process ({})",
                        chosen
                            .protection_level
                            .as_ref()
                            .map_or("?", |level| protection_level_name(*level))
                    ),
                    evidence,
                ),
                (_, Ok(())) => Outcome::new(
                    Verdict::AnsweredNo,
                    format!(
                        "vmwp.exe {pid} is not protected: this elevated process opened it with \
                         PROCESS_DUP_HANDLE"
                    ),
                    evidence,
                ),
                (Some(false), Err(error)) if error.code == ERROR_ACCESS_DENIED => Outcome::new(
                    Verdict::AnsweredYes,
                    format!(
                        "vmwp.exe {pid} is not a protected process, but OpenProcess with \
                         PROCESS_DUP_HANDLE was denied (is the probe elevated?)"
                    ),
                    evidence,
                ),
                (Some(false), Err(error)) => Outcome::new(
                    Verdict::Inconclusive,
                    format!(
                        "vmwp.exe {pid} is not a protected process; OpenProcess with \
                         PROCESS_DUP_HANDLE failed with {}",
                        error.code
                    ),
                    evidence,
                ),
                (None, Err(_)) => Outcome::new(
                    Verdict::Error,
                    format!(
                        "neither the protection level nor a PROCESS_DUP_HANDLE open of vmwp.exe \
                         {pid} could be obtained"
                    ),
                    evidence,
                ),
            }
        }
    }
}

fn vdev_evidence(facts: &VdevFacts) -> Evidence {
    let evidence = Evidence::new()
        .with("path", facts.path.as_str())
        .with("desired_access", format!("{:#x}", facts.desired_access))
        .with("share_mode", facts.share_mode);
    match facts.open {
        Ok(()) => evidence.with("open", "succeeded"),
        Err(code) => evidence.with("open_error", code),
    }
}

/// `vdev_second_open`. `vm_running` comes from `vm_state`.
pub fn vdev_second_open(facts: &VdevFacts, vm_running: bool) -> Outcome {
    let evidence = vdev_evidence(facts).with("vm_running", vm_running);
    if !vm_running {
        let result = match facts.open {
            Ok(()) => "succeeded".to_string(),
            Err(code) => format!("failed with {code}"),
        };
        return Outcome::new(
            Verdict::Inconclusive,
            format!(
                "the VM is not running, so its worker holds no vdev: the open {result} but \
                 answers nothing about a running VM"
            ),
            evidence,
        );
    }
    match facts.open {
        Ok(()) => Outcome::new(
            Verdict::AnsweredYes,
            format!(
                "a second open of {} succeeded while the VM runs (closed again at once)",
                facts.path
            ),
            evidence,
        ),
        Err(ERROR_ACCESS_DENIED) => Outcome::new(
            Verdict::AnsweredNo,
            "the second open was refused with ERROR_ACCESS_DENIED (5)",
            evidence,
        ),
        Err(ERROR_SHARING_VIOLATION) => Outcome::new(
            Verdict::AnsweredNo,
            "the second open was refused with ERROR_SHARING_VIOLATION (32): an existing open \
             (the worker's, presumably) does not share the path",
            evidence,
        ),
        Err(code @ (ERROR_FILE_NOT_FOUND | ERROR_PATH_NOT_FOUND | ERROR_INVALID_NAME)) => {
            Outcome::new(
                Verdict::AnsweredNo,
                format!(
                    "the path does not open on this build (error {code}): the VMBus root \
                     exposes no such name for a running VM"
                ),
                evidence,
            )
        }
        Err(code) => Outcome::new(
            Verdict::Inconclusive,
            format!("the second open failed with error {code}, which the probe cannot place"),
            evidence,
        ),
    }
}

fn ioctl_evidence(ioctl: &IoctlFacts) -> Value {
    let evidence = Evidence::new()
        .with("code", format!("{:#x}", ioctl.code))
        .with("name", ioctl.name)
        .with("input_len", ioctl.input_len)
        .with("output_len", ioctl.output_len);
    match &ioctl.result {
        IoctlResult::Completed {
            bytes_returned,
            output_hex,
        } => evidence
            .with("result", "completed")
            .with("bytes_returned", *bytes_returned)
            .with("output_hex", output_hex.as_str()),
        IoctlResult::Failed { win32 } => evidence.with("result", "failed").with("win32", *win32),
        IoctlResult::TimedOut { cancelled } => evidence
            .with("result", "timed_out")
            .with("cancelled", *cancelled),
    }
    .into()
}

fn ioctl_line(ioctl: &IoctlFacts) -> String {
    match &ioctl.result {
        IoctlResult::Completed { bytes_returned, .. } => {
            format!("{} completed ({bytes_returned} bytes)", ioctl.name)
        }
        IoctlResult::Failed { win32 } => format!("{} failed with {win32}", ioctl.name),
        IoctlResult::TimedOut { cancelled } => format!(
            "{} did not complete in time ({})",
            ioctl.name,
            if *cancelled {
                "cancelled"
            } else {
                "cancel refused"
            }
        ),
    }
}

/// `vdev_ioctls`. `experimental` is `--experimental`.
pub fn vdev_ioctls(facts: Option<&VdevFacts>, experimental: bool) -> Outcome {
    if !experimental {
        return Outcome::not_run(
            "needs --experimental (the IOCTLs can disturb the VM's VMBus; nothing was sent)",
        );
    }
    let Some(facts) = facts else {
        return Outcome::not_run("the VM was not identified, so no vdev was opened");
    };
    if facts.open.is_err() {
        return Outcome::not_run("the second open failed, so there was no handle to send on");
    }
    let evidence = vdev_evidence(facts).with(
        "ioctls",
        facts.ioctls.iter().map(ioctl_evidence).collect::<Vec<_>>(),
    );
    let lines: Vec<String> = facts.ioctls.iter().map(ioctl_line).collect();
    let setup = facts
        .ioctls
        .iter()
        .find(|ioctl| ioctl.code == crate::probe::vdev::IOCTL_VDEV_SETUP);
    let summary = lines.join("; ");
    match setup.map(|ioctl| &ioctl.result) {
        Some(IoctlResult::Completed { .. }) => {
            Outcome::new(Verdict::AnsweredYes, summary, evidence)
        }
        Some(IoctlResult::Failed { .. }) => Outcome::new(Verdict::AnsweredNo, summary, evidence),
        Some(IoctlResult::TimedOut { .. }) => {
            Outcome::new(Verdict::Inconclusive, summary, evidence)
        }
        None => Outcome::new(
            Verdict::Error,
            "VDEV_SETUP was not sent on the open handle",
            evidence,
        ),
    }
}
