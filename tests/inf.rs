//! Checks the driver's install template `inf/vmbmmio.inx`.
//!
//! InfVerif runs only on Windows (during `cargo make`), so the invariants that matter for this
//! driver are checked here on every test run: PnpLockdown, the Driver Store destination
//! (DIRID 13), the KMDF service section with the stamped `$KMDFVERSION$`, a demand-start kernel
//! service, a binary named after the crate, and models decorated for Windows Server 2022
//! (build 20348) and later only, with an inf2cat OS list (Makefile.toml) that matches that
//! decoration. Each invariant also has a test on a deliberately broken copy, so a checker that
//! silently passes everything would fail here.

use std::collections::BTreeMap;

const INX: &str = include_str!("../inf/vmbmmio.inx");
const MAKEFILE: &str = include_str!("../Makefile.toml");
/// The oldest Windows build the package may install on: Windows Server 2022, the first host
/// release with KMDF 1.33 (the INX's `NT$ARCH$.10.0...20348` decoration).
const MINIMUM_BUILD: u32 = 20348;
/// SYSTEM and Administrators only: the SDDL the driver assigns to its device object.
const DEVICE_SDDL: &str = "D:P(A;;GA;;;SY)(A;;GA;;;BA)";

/// The driver binary the packaging produces: `<crate name>.sys`.
fn binary_name() -> String {
    format!("{}.sys", env!("CARGO_PKG_NAME").replace('-', "_"))
}

/// One INF section: its lines as (key, value) with the key lower-cased, or (None, line).
type Section = Vec<(Option<String>, String)>;

/// A minimal INF reader: sections by lower-cased name, `;` comments outside quotes removed.
fn parse(text: &str) -> BTreeMap<String, Section> {
    let mut sections: BTreeMap<String, Section> = BTreeMap::new();
    let mut current: Option<String> = None;
    for raw in text.lines() {
        let line = strip_comment(raw).trim().to_string();
        if line.is_empty() {
            continue;
        }
        if line.starts_with('[') && line.ends_with(']') {
            let name = line[1..line.len() - 1].trim().to_ascii_lowercase();
            sections.entry(name.clone()).or_default();
            current = Some(name);
            continue;
        }
        let Some(section) = current.as_ref() else {
            continue;
        };
        let entry = match line.split_once('=') {
            Some((key, value)) => (
                Some(key.trim().to_ascii_lowercase()),
                value.trim().to_string(),
            ),
            None => (None, line),
        };
        sections.entry(section.clone()).or_default().push(entry);
    }
    sections
}

fn strip_comment(line: &str) -> &str {
    let mut in_quotes = false;
    for (index, ch) in line.char_indices() {
        match ch {
            '"' => in_quotes = !in_quotes,
            ';' if !in_quotes => return &line[..index],
            _ => {}
        }
    }
    line
}

fn value<'a>(inf: &'a BTreeMap<String, Section>, section: &str, key: &str) -> Option<&'a str> {
    inf.get(&section.to_ascii_lowercase())?
        .iter()
        .find(|(k, _)| k.as_deref() == Some(key))
        .map(|(_, v)| v.as_str())
}

fn fields(value: &str) -> Vec<String> {
    value.split(',').map(|f| f.trim().to_string()).collect()
}

/// What is wrong with an INF, as far as this driver's invariants go.
#[derive(Debug, PartialEq, Eq)]
enum Problem {
    PnpLockdownNotSet,
    ClassNotSystem,
    DestinationNotDriverStore(String),
    NoModelsSection,
    NoInstallSection,
    BinaryNotInSourceDisks,
    BinaryNotCopied,
    NoService,
    ServiceNotKernelDemandStart,
    ServiceBinaryWrong(String),
    NoKmdfService,
    KmdfServiceMismatch(String),
    KmdfVersionNotStamped(String),
    DeviceSecurityNotAdminsOnly(String),
    /// A `[Manufacturer]` entry whose models apply below `MINIMUM_BUILD` (or to every build).
    ModelsBelowMinimumBuild(String),
}

/// The build number of a `NT$ARCH$.10.0...<build>` models decoration; None for any other form
/// (undecorated, no build number, another major/minor or a product type/suite mask).
fn decoration_build(decoration: &str) -> Option<u32> {
    let parts: Vec<&str> = decoration.split('.').collect();
    match parts.as_slice() {
        [nt, "10", "0", "", "", build] if nt.eq_ignore_ascii_case("NT$ARCH$") => build.parse().ok(),
        _ => None,
    }
}

fn check(text: &str) -> Vec<Problem> {
    let inf = parse(text);
    let binary = binary_name();
    let mut problems = Vec::new();

    if value(&inf, "Version", "pnplockdown") != Some("1") {
        problems.push(Problem::PnpLockdownNotSet);
    }
    if !value(&inf, "Version", "class").is_some_and(|c| c.eq_ignore_ascii_case("System")) {
        problems.push(Problem::ClassNotSystem);
    }
    // Every destination must be DIRID 13 (the Driver Store).
    for (key, dest) in inf.get("destinationdirs").into_iter().flatten() {
        if dest.trim() != "13" {
            problems.push(Problem::DestinationNotDriverStore(format!(
                "{} = {dest}",
                key.as_deref().unwrap_or("")
            )));
        }
    }
    if value(&inf, "DestinationDirs", "defaultdestdir").is_none() {
        problems.push(Problem::DestinationNotDriverStore(
            "no DefaultDestDir".into(),
        ));
    }
    let source_disks = inf.get("sourcedisksfiles");
    if !source_disks
        .into_iter()
        .flatten()
        .any(|(k, v)| k.as_deref().unwrap_or(v).eq_ignore_ascii_case(&binary))
    {
        problems.push(Problem::BinaryNotInSourceDisks);
    }

    // Every [Manufacturer] entry is decorated for MINIMUM_BUILD or later only: no undecorated
    // fallback that would install the package on hosts without KMDF 1.33 (see Makefile.toml,
    // task inf2cat, for the catalog's OS list that follows from this).
    for (key, entry) in inf.get("manufacturer").into_iter().flatten() {
        let line = key
            .as_deref()
            .map_or(entry.clone(), |k| format!("{k}={entry}"));
        let decorations = fields(&line).into_iter().skip(1).collect::<Vec<_>>();
        if decorations.is_empty() {
            problems.push(Problem::ModelsBelowMinimumBuild("undecorated".into()));
        }
        for decoration in decorations {
            if decoration_build(&decoration).is_none_or(|build| build < MINIMUM_BUILD) {
                problems.push(Problem::ModelsBelowMinimumBuild(decoration));
            }
        }
    }

    // [Manufacturer] -> models section -> install section.
    let install = value(&inf, "Manufacturer", "%manufacturername%")
        .map(fields)
        .and_then(|f| {
            let base = f.first()?.clone();
            let decoration = f.get(1)?.clone();
            Some(format!("{base}.{decoration}"))
        })
        .and_then(|models| inf.get(&models.to_ascii_lowercase()))
        .and_then(|models| models.first())
        .and_then(|(_, v)| fields(v).first().cloned());
    let Some(install) = install else {
        problems.push(Problem::NoModelsSection);
        return problems;
    };
    let install_nt = format!("{install}.NT");
    if !inf.contains_key(&install_nt.to_ascii_lowercase()) {
        problems.push(Problem::NoInstallSection);
        return problems;
    }

    let copied = value(&inf, &install_nt, "copyfiles")
        .map(fields)
        .unwrap_or_default()
        .iter()
        .filter_map(|s| inf.get(&s.to_ascii_lowercase()))
        .flatten()
        .any(|(k, v)| k.is_none() && v.eq_ignore_ascii_case(&binary));
    if !copied {
        problems.push(Problem::BinaryNotCopied);
    }

    let add_service = value(&inf, &format!("{install_nt}.Services"), "addservice").map(fields);
    let service_name = add_service.as_ref().and_then(|f| f.first().cloned());
    match add_service.as_ref().and_then(|f| f.get(2)) {
        None => problems.push(Problem::NoService),
        Some(section) => {
            if value(&inf, section, "servicetype") != Some("1")
                || value(&inf, section, "starttype") != Some("3")
            {
                problems.push(Problem::ServiceNotKernelDemandStart);
            }
            let expected = format!("%13%\\{binary}");
            let found = value(&inf, section, "servicebinary").unwrap_or("");
            if !found.eq_ignore_ascii_case(&expected) {
                problems.push(Problem::ServiceBinaryWrong(found.to_string()));
            }
        }
    }

    // The device's security: exactly SYSTEM and Administrators, as the driver's own SDDL.
    let security = value(&inf, &format!("{install_nt}.HW"), "addreg")
        .map(fields)
        .unwrap_or_default()
        .iter()
        .filter_map(|s| inf.get(&s.to_ascii_lowercase()))
        .flatten()
        .find_map(|(k, v)| {
            let line = k.as_deref().map_or(v.clone(), |k| format!("{k}={v}"));
            let parts = fields(&line);
            (parts
                .first()
                .is_some_and(|root| root.eq_ignore_ascii_case("HKR"))
                && parts
                    .get(2)
                    .is_some_and(|name| name.eq_ignore_ascii_case("Security")))
            .then(|| parts.get(4).cloned().unwrap_or_default())
        })
        .unwrap_or_default();
    if security != format!("\"{DEVICE_SDDL}\"") {
        problems.push(Problem::DeviceSecurityNotAdminsOnly(security));
    }

    match value(&inf, &format!("{install_nt}.Wdf"), "kmdfservice").map(fields) {
        None => problems.push(Problem::NoKmdfService),
        Some(kmdf) => {
            let kmdf_name = kmdf.first().cloned().unwrap_or_default();
            if Some(&kmdf_name) != service_name.as_ref() {
                problems.push(Problem::KmdfServiceMismatch(kmdf_name));
            }
            let version = kmdf
                .get(1)
                .and_then(|section| value(&inf, section, "kmdflibraryversion"))
                .unwrap_or("");
            if version != "$KMDFVERSION$" {
                problems.push(Problem::KmdfVersionNotStamped(version.to_string()));
            }
        }
    }
    problems
}

#[test]
fn shipped_inx_satisfies_every_invariant() {
    assert_eq!(check(INX), Vec::<Problem>::new());
}

#[test]
fn service_binary_is_named_after_the_crate() {
    assert_eq!(binary_name(), "vmbmmio.sys");
    assert!(INX.contains("ServiceBinary = %13%\\vmbmmio.sys"));
}

/// Replaces exactly one occurrence, so a broken copy differs from the original in one place.
fn broken(from: &str, to: &str) -> String {
    assert_eq!(INX.matches(from).count(), 1, "{from:?} must occur once");
    INX.replacen(from, to, 1)
}

#[test]
fn missing_pnp_lockdown_is_caught() {
    let problems = check(&broken("PnpLockdown = 1", "PnpLockdown = 0"));
    assert_eq!(problems, vec![Problem::PnpLockdownNotSet]);
    let problems = check(&broken("PnpLockdown = 1\n", ""));
    assert_eq!(problems, vec![Problem::PnpLockdownNotSet]);
}

#[test]
fn destination_other_than_driver_store_is_caught() {
    let problems = check(&broken("DefaultDestDir = 13", "DefaultDestDir = 12"));
    assert_eq!(
        problems,
        vec![Problem::DestinationNotDriverStore(
            "defaultdestdir = 12".into()
        )]
    );
}

#[test]
fn service_binary_outside_driver_store_is_caught() {
    let problems = check(&broken(
        "ServiceBinary = %13%\\vmbmmio.sys",
        "ServiceBinary = %12%\\vmbmmio.sys",
    ));
    assert_eq!(
        problems,
        vec![Problem::ServiceBinaryWrong("%12%\\vmbmmio.sys".into())]
    );
}

#[test]
fn wrong_binary_name_is_caught() {
    let text = INX.replace("vmbmmio.sys", "other.sys");
    let problems = check(&text);
    assert!(
        problems.contains(&Problem::BinaryNotInSourceDisks),
        "{problems:?}"
    );
    assert!(problems.contains(&Problem::BinaryNotCopied), "{problems:?}");
    assert!(
        problems.contains(&Problem::ServiceBinaryWrong("%13%\\other.sys".into())),
        "{problems:?}"
    );
}

#[test]
fn missing_kmdf_service_section_is_caught() {
    let problems = check(&broken(
        "KmdfService = vmbmmio, vmbmmio_wdfsect",
        "; no KMDF service",
    ));
    assert_eq!(problems, vec![Problem::NoKmdfService]);
    let problems = check(&broken(
        "KmdfLibraryVersion = $KMDFVERSION$",
        "KmdfLibraryVersion = 1.15",
    ));
    assert_eq!(
        problems,
        vec![Problem::KmdfVersionNotStamped("1.15".into())]
    );
    let problems = check(&broken(
        "KmdfService = vmbmmio, vmbmmio_wdfsect",
        "KmdfService = other, vmbmmio_wdfsect",
    ));
    assert_eq!(problems, vec![Problem::KmdfServiceMismatch("other".into())]);
}

#[test]
fn a_device_open_to_everyone_is_caught() {
    let problems = check(&broken(
        "HKR,,Security,,\"D:P(A;;GA;;;SY)(A;;GA;;;BA)\"",
        "HKR,,Security,,\"D:P(A;;GA;;;SY)(A;;GA;;;BA)(A;;GA;;;WD)\"",
    ));
    assert_eq!(
        problems,
        vec![Problem::DeviceSecurityNotAdminsOnly(
            "\"D:P(A;;GA;;;SY)(A;;GA;;;BA)(A;;GA;;;WD)\"".into()
        )]
    );
    let problems = check(&broken("AddReg = vmbmmio_Security_AddReg", "; none"));
    assert_eq!(
        problems,
        vec![Problem::DeviceSecurityNotAdminsOnly(String::new())]
    );
}

#[test]
fn the_glue_assigns_the_same_sddl() {
    let glue = include_str!("../src/glue/control.rs");
    assert!(glue.contains(&format!("utf16!(\"{DEVICE_SDDL}\")")));
}

#[test]
fn auto_start_service_is_caught() {
    let problems = check(&broken(
        "StartType     = 3               ; SERVICE_DEMAND_START",
        "StartType     = 2",
    ));
    assert_eq!(problems, vec![Problem::ServiceNotKernelDemandStart]);
}

#[test]
fn models_for_older_builds_are_caught() {
    let problems = check(&broken(
        "%ManufacturerName% = Standard,NT$ARCH$.10.0...20348",
        "%ManufacturerName% = Standard,NT$ARCH$.10.0...20348,NT$ARCH$",
    ));
    assert_eq!(
        problems,
        vec![Problem::ModelsBelowMinimumBuild("NT$ARCH$".into())]
    );
    let problems = check(&broken(
        "%ManufacturerName% = Standard,NT$ARCH$.10.0...20348",
        "%ManufacturerName% = Standard,NT$ARCH$.10.0...20348,NT$ARCH$.10.0...16299",
    ));
    assert_eq!(
        problems,
        vec![Problem::ModelsBelowMinimumBuild(
            "NT$ARCH$.10.0...16299".into()
        )]
    );
}

/// Windows builds of the Inf2Cat `/os` identifiers this check knows (Microsoft's Inf2Cat page,
/// learn.microsoft.com/windows-hardware/drivers/devtest/inf2cat; builds from the Windows
/// release information). An identifier not listed here fails the check until it is added.
const INF2CAT_OS_BUILDS: &[(&str, u32)] = &[
    ("10_x64", 10240),
    ("Server10_x64", 14393),
    ("ServerRS5_x64", 17763),
    ("ServerFE_x64", 20348),
    ("10_CO_x64", 22000),
    ("10_NI_x64", 22621),
];

/// The x64 `/os` list the packaging hands inf2cat, or why it cannot be found: the value of
/// Makefile.toml's `[tasks.inf2cat]` override of wdk-build's `WDK_BUILD_INF2CAT_OS` (without
/// the override wdk-build 0.6.0 passes `10_x64`).
fn inf2cat_os_list(makefile: &str) -> Result<Vec<String>, String> {
    let task = makefile
        .split("\n[")
        .find(|section| section.starts_with("tasks.inf2cat]"))
        .ok_or("no [tasks.inf2cat] override: wdk-build passes /os:10_x64")?;
    let key = "\"x86_64-pc-windows-msvc\" = \"";
    let start = task
        .find("WDK_BUILD_INF2CAT_OS")
        .and_then(|at| task.get(at..))
        .and_then(|rest| rest.find(key).map(|k| (rest, k)))
        .and_then(|(rest, k)| rest.get(k + key.len()..))
        .ok_or("no x86_64 mapping for WDK_BUILD_INF2CAT_OS")?;
    let list = start.split('"').next().unwrap_or_default();
    Ok(list.split(',').map(|os| os.trim().to_string()).collect())
}

/// The OS identifiers in the list that are unknown or older than the models decoration.
fn inf2cat_os_problems(makefile: &str) -> Vec<String> {
    match inf2cat_os_list(makefile) {
        Err(why) => vec![why],
        Ok(list) => list
            .into_iter()
            .filter(|os| {
                !INF2CAT_OS_BUILDS
                    .iter()
                    .any(|(id, build)| id.eq_ignore_ascii_case(os) && *build >= MINIMUM_BUILD)
            })
            .collect(),
    }
}

#[test]
fn inf2cat_targets_only_builds_the_models_section_covers() {
    assert_eq!(inf2cat_os_problems(MAKEFILE), Vec::<String>::new());
    assert_eq!(
        inf2cat_os_list(MAKEFILE),
        Ok(vec!["ServerFE_X64".to_string(), "10_CO_X64".to_string()])
    );
}

#[test]
fn inf2cat_for_windows_10_is_caught() {
    let with_win10 = MAKEFILE.replacen("\"ServerFE_X64,10_CO_X64\"", "\"10_x64\"", 1);
    assert_eq!(inf2cat_os_problems(&with_win10), vec!["10_x64".to_string()]);
    let unknown = MAKEFILE.replacen("ServerFE_X64,", "Server99_X64,", 1);
    assert_eq!(
        inf2cat_os_problems(&unknown),
        vec!["Server99_X64".to_string()]
    );
    let without_override = MAKEFILE.replacen("[tasks.inf2cat]", "[tasks.not-inf2cat]", 1);
    assert_eq!(inf2cat_os_problems(&without_override).len(), 1);
}

/// The event-log source DriverEntry writes to (`src/glue/event_log.rs`): the service's
/// `AddService` names an event-log section whose registry values point at `IoLogMsg.dll`, the
/// message file of the `IO_ERR_*` codes the driver logs.
fn event_log_registered(text: &str) -> bool {
    let inf = parse(text);
    let Some(add_service) = value(&inf, "vmbmmio_Device.NT.Services", "addservice") else {
        return false;
    };
    let Some(section) = fields(add_service).get(3).cloned() else {
        return false;
    };
    let Some(add_reg) = value(&inf, &section, "addreg") else {
        return false;
    };
    let Some(lines) = inf.get(&add_reg.trim().to_ascii_lowercase()) else {
        return false;
    };
    let text: Vec<String> = lines.iter().map(|(_, v)| v.to_ascii_lowercase()).collect();
    text.iter()
        .any(|l| l.contains("eventmessagefile") && l.contains("iologmsg.dll"))
        && text.iter().any(|l| l.contains("typessupported"))
}

#[test]
fn the_event_log_source_is_registered_with_iologmsg() {
    assert!(event_log_registered(INX));
    assert!(!event_log_registered(&broken(
        "vmbmmio_Service_Inst, vmbmmio_EventLog_Inst",
        "vmbmmio_Service_Inst"
    )));
}
