//! The probe's Windows collectors: each makes its calls and fills `probe::facts`; nothing here
//! decides what a value means (that is `probe::classify`). Compiled only on Windows;
//! type-checked on Linux by `scripts/check-windows-target.sh`, never run here.
//!
//! Load-time imports are limited to kernel32, advapi32 and version.dll. The Hyper-V libraries
//! are resolved at run time: the entry points the device host calls by its own loader
//! (`crate::windows::hyperv`, whose every library and entry point the `hyperv_components` check
//! reports), the HCS queries only the probe makes and the newer process-information entry
//! points here (`dynamic`), so the probe starts, and reports, on a Windows without Hyper-V too.

mod dynamic;
mod hcs;
mod host;
mod mapping;
mod registry;
mod vdev;
mod worker;

use super::build::{ProbeInputs, VmInputs};
use super::classify::resolve_vm;
use super::facts::VmLookupFacts;
use super::report::Evidence;
use super::run::ProbeOptions;

/// `text` as a NUL-terminated UTF-16 string.
pub(crate) fn wide(text: &str) -> Vec<u16> {
    text.encode_utf16().chain(std::iter::once(0)).collect()
}

/// The UTF-16 string up to its first NUL (or all of it).
pub(crate) fn from_wide(units: &[u16]) -> String {
    let end = units
        .iter()
        .position(|&unit| unit == 0)
        .unwrap_or(units.len());
    String::from_utf16_lossy(units.get(..end).unwrap_or_default())
}

/// `%SystemRoot%` (`C:\Windows` if the variable is missing).
pub(crate) fn system_root() -> String {
    std::env::var("SystemRoot").unwrap_or_else(|_| "C:\\Windows".to_string())
}

/// Runs every collector the options ask for.
pub fn collect(options: &ProbeOptions) -> ProbeInputs {
    let say = |line: &str| eprintln!("vmbmmio-devhost probe: {line}");
    say("reading the host (read-only)");
    let host = Evidence::new()
        .with("os", std::env::consts::OS)
        .with("arch", std::env::consts::ARCH)
        .with("elevated", host::elevated());
    let mut inputs = ProbeInputs {
        host,
        windows_version: Some(host::windows_version()),
        hyperv_role: Some(host::hyperv_role()),
        kmdf: Some(host::kmdf()),
        test_signing: Some(host::test_signing()),
        verifier: Some(host::verifier()),
        hyperv_components: Some(crate::windows::component_statuses()),
        kmcl_image: Some(host::kmcl_image()),
        vm: None,
        mapping: None,
    };
    if let Some(requested) = &options.vm {
        say(&format!("looking up VM {requested} (read-only)"));
        inputs.vm = Some(collect_vm(requested, options.experimental));
    }
    if let Some(mapping) = &options.mapping {
        say(&format!(
            "mapping check with {}: attaching a device host to VM {}",
            mapping.path.display(),
            mapping.config.vm_id
        ));
        inputs.mapping = Some(mapping::collect(mapping, options.guest_wait));
    }
    inputs
}

fn collect_vm(requested: &str, experimental: bool) -> VmInputs {
    let lookup = match hcs::enumerate_compute_systems() {
        Err(error) => VmLookupFacts::EnumerationFailed(error),
        Ok(list) => match resolve_vm(&list, requested) {
            Err(lookup) => lookup,
            Ok(entry) => {
                let properties = hcs::compute_system_properties(entry.id);
                VmLookupFacts::Found {
                    entry: Box::new(entry),
                    properties,
                }
            }
        },
    };
    let (worker, vdev) = match &lookup {
        VmLookupFacts::Found { entry, .. } => {
            let name = entry.name.clone().unwrap_or_else(|| entry.id.to_string());
            (
                Some(worker::collect(entry.id)),
                Some(vdev::collect(entry.id, &name, experimental)),
            )
        }
        _ => (None, None),
    };
    VmInputs {
        requested: requested.to_string(),
        lookup,
        worker,
        vdev,
    }
}
