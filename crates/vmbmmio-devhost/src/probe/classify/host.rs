//! The host checks: build, Hyper-V role, KMDF, test signing, Driver Verifier, KMCL exports.

use super::{Outcome, os_error};
use crate::hyperv_components::{ComponentStatus, first_error};
use crate::probe::exports::{ExportComparison, ExportStatus, compare_exports};
use crate::probe::facts::{
    ERROR_FILE_NOT_FOUND, ERROR_PATH_NOT_FOUND, ExportImageFacts, HyperVRoleFacts, KmdfFacts,
    ServiceLookup, TestSigningFacts, VerifierFacts, WindowsVersionFacts,
};
use crate::probe::report::{Evidence, Value, Verdict};

/// The oldest host build the driver targets: Windows Server 2022 (the root Cargo.toml's KMDF
/// 1.33 comment: hosts older than Server 2022 are out of scope).
pub const MIN_WINDOWS_BUILD: u32 = 20348;
/// The KMDF version the driver is built for (root Cargo.toml, `minimum-kmdf-version-minor`).
pub const MIN_KMDF: (u16, u16) = (1, 33);
/// The driver's file name, as Driver Verifier lists it.
pub const DRIVER_FILE: &str = "vmbmmio.sys";

/// `windows_build`.
pub fn windows_build(facts: &WindowsVersionFacts) -> Outcome {
    let evidence = Evidence::new()
        .with("current_major_version_number", facts.major)
        .with("current_minor_version_number", facts.minor)
        .with("current_build_number", facts.build.clone())
        .with("ubr", facts.ubr)
        .with("product_name", facts.product_name.clone())
        .with("display_version", facts.display_version.clone())
        .with("installation_type", facts.installation_type.clone());
    let version = format!(
        "{}.{}.{}.{}",
        facts.major.map_or("?".to_string(), |v| v.to_string()),
        facts.minor.map_or("?".to_string(), |v| v.to_string()),
        facts.build.as_deref().unwrap_or("?"),
        facts.ubr.map_or("?".to_string(), |v| v.to_string()),
    );
    let product = facts.product_name.as_deref().unwrap_or("Windows");
    match facts
        .build
        .as_deref()
        .map(|build| build.trim().parse::<u32>())
    {
        Some(Ok(build)) if build >= MIN_WINDOWS_BUILD => Outcome::new(
            Verdict::AnsweredYes,
            format!("{product} {version}: build {build} >= {MIN_WINDOWS_BUILD}"),
            evidence,
        ),
        Some(Ok(build)) => Outcome::new(
            Verdict::AnsweredNo,
            format!(
                "{product} {version}: build {build} is older than {MIN_WINDOWS_BUILD} (Windows \
                 Server 2022), the oldest host the driver targets"
            ),
            evidence,
        ),
        Some(Err(_)) => Outcome::new(
            Verdict::Inconclusive,
            format!("CurrentBuildNumber {version} is not a number"),
            evidence,
        ),
        None => Outcome::new(
            Verdict::Inconclusive,
            "the registry has no CurrentBuildNumber",
            evidence,
        ),
    }
}

fn service_evidence(lookup: &ServiceLookup) -> Value {
    match lookup {
        ServiceLookup::Present { state } => Evidence::new()
            .with("exists", true)
            .with("state", *state)
            .with("state_name", service_state_name(*state))
            .into(),
        ServiceLookup::Absent => Evidence::new().with("exists", false).into(),
        ServiceLookup::Failed(error) => Evidence::new().with("error", os_error(error)).into(),
    }
}

/// `SERVICE_STATUS.dwCurrentState` names (winsvc.h).
pub fn service_state_name(state: u32) -> &'static str {
    match state {
        1 => "stopped",
        2 => "start_pending",
        3 => "stop_pending",
        4 => "running",
        5 => "continue_pending",
        6 => "pause_pending",
        7 => "paused",
        _ => "unknown",
    }
}

/// `hyperv_role`.
pub fn hyperv_role(facts: &HyperVRoleFacts) -> Outcome {
    let mut evidence = Evidence::new().with("vmms_service", service_evidence(&facts.vmms));
    match &facts.vmbkmclr_present {
        Ok(present) => evidence.set("vmbkmclr_sys_present", *present),
        Err(error) => evidence.set("vmbkmclr_sys_present", os_error(error)),
    }
    let vmms = match &facts.vmms {
        ServiceLookup::Present { .. } => Some(true),
        ServiceLookup::Absent => Some(false),
        ServiceLookup::Failed(_) => None,
    };
    match (vmms, &facts.vmbkmclr_present) {
        (Some(true), Ok(true)) => Outcome::new(
            Verdict::AnsweredYes,
            "the vmms service exists and vmbkmclr.sys is present",
            evidence,
        ),
        (Some(false), Ok(false)) => Outcome::new(
            Verdict::AnsweredNo,
            "no vmms service and no vmbkmclr.sys: the Hyper-V role is not installed",
            evidence,
        ),
        (Some(vmms), Ok(library)) => Outcome::new(
            Verdict::AnsweredNo,
            format!(
                "only part of the role is there: vmms service {}, vmbkmclr.sys {}",
                if vmms { "exists" } else { "missing" },
                if *library { "present" } else { "missing" }
            ),
            evidence,
        ),
        (None, _) => match &facts.vmms {
            ServiceLookup::Failed(error) => {
                Outcome::error("looking up the vmms service", error, evidence)
            }
            _ => Outcome::new(Verdict::Error, "the vmms lookup failed", evidence),
        },
        (Some(_), Err(error)) => Outcome::error("looking for vmbkmclr.sys", error, evidence),
    }
}

/// `kmdf_version`.
pub fn kmdf_version(facts: &KmdfFacts) -> Outcome {
    let evidence = Evidence::new()
        .with("path", facts.path.as_str())
        .with("source", "file version resource (VS_FIXEDFILEINFO)");
    match &facts.file_version {
        Err(error) if error.code == ERROR_FILE_NOT_FOUND || error.code == ERROR_PATH_NOT_FOUND => {
            Outcome::new(
                Verdict::AnsweredNo,
                format!(
                    "{} does not exist: no KMDF runtime on this host",
                    facts.path
                ),
                evidence.with("error", os_error(error)),
            )
        }
        Err(error) => Outcome::error("reading the KMDF runtime's version", error, evidence),
        Ok(None) => Outcome::new(
            Verdict::Inconclusive,
            format!("{} has no version resource", facts.path),
            evidence,
        ),
        Ok(Some(version)) => {
            let [major, minor, build, revision] = *version;
            let evidence = evidence.with(
                "file_version",
                format!("{major}.{minor}.{build}.{revision}"),
            );
            let (min_major, min_minor) = MIN_KMDF;
            if (major, minor) >= MIN_KMDF {
                Outcome::new(
                    Verdict::AnsweredYes,
                    format!("KMDF {major}.{minor} >= {min_major}.{min_minor}"),
                    evidence,
                )
            } else {
                Outcome::new(
                    Verdict::AnsweredNo,
                    format!(
                        "KMDF {major}.{minor} is older than {min_major}.{min_minor}, the version \
                         the driver is built for: it will not load"
                    ),
                    evidence,
                )
            }
        }
    }
}

/// The `/`-less, upper-cased boot options of `SystemStartOptions`.
fn boot_options(text: &str) -> Vec<String> {
    text.split_whitespace()
        .map(|option| option.trim_start_matches('/').to_ascii_uppercase())
        .collect()
}

/// `test_signing`.
pub fn test_signing(facts: &TestSigningFacts) -> Outcome {
    let evidence = Evidence::new();
    match &facts.system_start_options {
        Err(error) => Outcome::error("reading SystemStartOptions", error, evidence),
        Ok(None) => Outcome::new(
            Verdict::Inconclusive,
            "SystemStartOptions is absent",
            evidence.with("system_start_options", Value::Null),
        ),
        Ok(Some(text)) => {
            let options = boot_options(text);
            let on = options.iter().any(|option| option == "TESTSIGNING");
            let integrity_checks_off = options
                .iter()
                .any(|option| option == "DISABLE_INTEGRITY_CHECKS");
            let evidence = evidence
                .with("system_start_options", text.as_str())
                .with("testsigning", on)
                .with("disable_integrity_checks", integrity_checks_off);
            if on {
                Outcome::new(
                    Verdict::AnsweredYes,
                    "TESTSIGNING is among the boot options in effect",
                    evidence,
                )
            } else {
                Outcome::new(
                    Verdict::AnsweredNo,
                    "test signing is off (no TESTSIGNING boot option): a test-signed driver \
                     will not load; turn it on and reboot (docs/probe.md)",
                    evidence,
                )
            }
        }
    }
}

/// `driver_verifier`.
pub fn driver_verifier(facts: &VerifierFacts) -> Outcome {
    let mut evidence = Evidence::new();
    match &facts.verify_drivers {
        Ok(value) => evidence.set("verify_drivers", value.clone()),
        Err(error) => evidence.set("verify_drivers", os_error(error)),
    }
    match &facts.verify_driver_level {
        Ok(Some(level)) => {
            evidence.set("verify_driver_level", *level);
            evidence.set("verify_driver_level_hex", format!("{level:#x}"));
        }
        Ok(None) => evidence.set("verify_driver_level", Value::Null),
        Err(error) => evidence.set("verify_driver_level", os_error(error)),
    }
    evidence.set(
        "note",
        "registry settings: they take effect at the next boot (verifier /querysettings shows \
         the same; verifier /query shows what runs now)",
    );
    let drivers = match &facts.verify_drivers {
        Err(error) => return Outcome::error("reading VerifyDrivers", error, evidence),
        Ok(None) => {
            return Outcome::new(
                Verdict::AnsweredNo,
                "Driver Verifier has no drivers configured (no VerifyDrivers value)",
                evidence,
            );
        }
        Ok(Some(text)) => text,
    };
    let listed: Vec<String> = drivers
        .split_whitespace()
        .map(str::to_ascii_lowercase)
        .collect();
    let all = listed.iter().any(|name| name == "*");
    let ours = listed.iter().any(|name| name == DRIVER_FILE);
    if ours || all {
        Outcome::new(
            Verdict::AnsweredYes,
            if all {
                "Driver Verifier is set to verify every driver (*), vmbmmio.sys included"
                    .to_string()
            } else {
                format!("Driver Verifier is set to verify {DRIVER_FILE}")
            },
            evidence,
        )
    } else if listed.is_empty() {
        Outcome::new(
            Verdict::AnsweredNo,
            "Driver Verifier has no drivers configured (VerifyDrivers is empty)",
            evidence,
        )
    } else {
        Outcome::new(
            Verdict::AnsweredNo,
            format!(
                "Driver Verifier verifies {} but not {DRIVER_FILE}",
                listed.join(" ")
            ),
            evidence,
        )
    }
}

/// `hyperv_components`: what the device host's run-time load of `computecore.dll` and
/// `vmdevicehost.dll` found (`crate::hyperv_components::check_components`, one status per
/// library and entry point): yes when every library loads from System32 and exports every
/// entry point the device host calls; no with the first thing missing and what to do.
pub fn hyperv_components(statuses: &[ComponentStatus]) -> Outcome {
    let lines: Vec<Value> = statuses
        .iter()
        .map(|status| Value::from(status.to_string()))
        .collect();
    let missing = statuses.iter().filter(|status| !status.found).count();
    let evidence = Evidence::new()
        .with("components", Value::List(lines))
        .with("missing", u64::try_from(missing).unwrap_or(u64::MAX));
    match first_error(statuses) {
        Some(error) => Outcome::new(Verdict::AnsweredNo, error.to_string(), evidence),
        None if statuses.is_empty() => {
            Outcome::new(Verdict::Inconclusive, "no component was checked", evidence)
        }
        None => Outcome::new(
            Verdict::AnsweredYes,
            "computecore.dll and vmdevicehost.dll load from System32 and export every entry \
             point the device host calls",
            evidence,
        ),
    }
}

fn entry_evidence(comparison: &ExportComparison) -> Vec<Value> {
    comparison
        .entries
        .iter()
        .map(|entry| {
            let mut evidence = Evidence::new()
                .with("name", entry.name)
                .with(
                    "policy",
                    if entry.required {
                        "required"
                    } else {
                        "optional"
                    },
                )
                .with("evidenced_export", entry.evidenced_export)
                .with("status", entry.status.as_str());
            match &entry.status {
                ExportStatus::Present { ordinal, rva } => {
                    evidence.set("ordinal", *ordinal);
                    evidence.set("rva", format!("{rva:#x}"));
                }
                ExportStatus::Forwarded { ordinal, target } => {
                    evidence.set("ordinal", *ordinal);
                    evidence.set("forwarded_to", target.as_str());
                }
                ExportStatus::Missing => {}
                ExportStatus::Unreadable(error) => evidence.set("error", error.to_string()),
            }
            evidence.into()
        })
        .collect()
}

/// `kmcl_exports`: compares the image with the driver's entries.
pub fn kmcl_exports(facts: &ExportImageFacts) -> Outcome {
    let evidence = Evidence::new().with("path", facts.path.as_str());
    let image = match &facts.image {
        Err(error) if error.code == ERROR_FILE_NOT_FOUND || error.code == ERROR_PATH_NOT_FOUND => {
            return Outcome::new(
                Verdict::AnsweredNo,
                format!("{} does not exist on this host", facts.path),
                evidence.with("error", os_error(error)),
            );
        }
        Err(error) => return Outcome::error("reading vmbkmclr.sys", error, evidence),
        Ok(image) => image,
    };
    let evidence = evidence.with("file_size", image.len() as u64);
    let comparison = match compare_exports(image) {
        Ok(comparison) => comparison,
        Err(error) => {
            return Outcome::new(
                Verdict::Error,
                format!("the image's export directory was refused: {error}"),
                evidence.with("pe_error", error.to_string()),
            );
        }
    };
    classify_comparison(&comparison, evidence)
}

/// The verdict of a comparison (split out so tests can give one directly).
pub fn classify_comparison(comparison: &ExportComparison, evidence: Evidence) -> Outcome {
    let missing_required = comparison.missing(true);
    let missing_optional = comparison.missing(false);
    let forwarded = comparison.forwarded();
    let evidence = evidence
        .with("module_name", comparison.module_name.clone())
        .with("number_of_functions", comparison.number_of_functions)
        .with("number_of_names", comparison.number_of_names)
        .with("entries_checked", comparison.entries.len() as u64)
        .with("present", comparison.present_count() as u64)
        .with("missing_required", missing_required.clone())
        .with("missing_optional", missing_optional.clone())
        .with("forwarded", forwarded.clone())
        .with(
            "driver_would_start",
            match &comparison.driver_verdict {
                Ok(()) => Value::Bool(true),
                Err(_) => Value::Bool(false),
            },
        )
        .with("driver_message", comparison.driver_verdict.clone().err())
        .with("entries", entry_evidence(comparison))
        .with("exported_names", comparison.exported_names.clone());
    let counts = format!(
        "{} of {} entry points present ({} forwarded)",
        comparison.present_count(),
        comparison.entries.len(),
        forwarded.len()
    );
    if missing_required.is_empty() {
        let optional = if missing_optional.is_empty() {
            "every optional one too".to_string()
        } else {
            format!("optional missing: {}", missing_optional.join(", "))
        };
        Outcome::new(
            Verdict::AnsweredYes,
            format!("{counts}: every required entry point is exported; {optional}"),
            evidence,
        )
    } else {
        Outcome::new(
            Verdict::AnsweredNo,
            format!(
                "{counts}: required entry points missing: {} (the driver would refuse to \
                 start)",
                missing_required.join(", ")
            ),
            evidence,
        )
    }
}
