//! The component table, the report that tries everything, and the messages a user sees.

use std::collections::BTreeSet;

use super::*;

/// A fake System32: the DLLs present, each with the names it exports.
fn system32(present: &[(&'static str, &[&'static str])]) -> Vec<ComponentStatus> {
    check_components(
        |dll| {
            present
                .iter()
                .find(|(name, _)| *name == dll)
                .map(|(_, exports)| exports.to_vec())
                .ok_or(ERROR_MOD_NOT_FOUND)
        },
        |exports: &Vec<&'static str>, entry| {
            if exports.contains(&entry) {
                Ok(())
            } else {
                Err(ERROR_PROC_NOT_FOUND)
            }
        },
    )
}

#[test]
fn the_table_names_both_dlls_and_every_entry_point_once() {
    assert_eq!(
        COMPONENTS.map(|component| component.dll),
        ["computecore.dll", "vmdevicehost.dll"]
    );
    let mut seen = BTreeSet::new();
    for component in &COMPONENTS {
        assert!(!component.entries.is_empty());
        for entry in component.entries {
            assert!(seen.insert(*entry), "{entry} listed twice");
            let prefix = if component.dll == COMPUTECORE_DLL {
                "Hcs"
            } else {
                "Hdv"
            };
            assert!(entry.starts_with(prefix), "{entry} in {}", component.dll);
            assert!(entry.bytes().all(|byte| byte.is_ascii_alphanumeric()));
        }
    }
    assert_eq!(seen.len(), 12);
}

#[test]
fn components_are_found_by_dll_name_in_any_case() {
    assert_eq!(component("ComputeCore.DLL"), Some(&HCS));
    assert_eq!(component("vmdevicehost.dll"), Some(&HDV));
    assert_eq!(component("kernel32.dll"), None);
}

#[test]
fn a_complete_system_reports_every_line_found() {
    let statuses = system32(&[
        (COMPUTECORE_DLL, HCS_ENTRIES),
        (VMDEVICEHOST_DLL, HDV_ENTRIES),
    ]);
    assert_eq!(statuses.len(), 2 + HCS_ENTRIES.len() + HDV_ENTRIES.len());
    assert!(statuses.iter().all(|status| status.found));
    assert!(statuses.iter().all(|status| status.os_error.is_none()));
    assert_eq!(first_error(&statuses), None);
    assert_eq!(statuses[0].entry, None);
    assert_eq!(statuses[1].entry, Some("HcsCreateOperation"));
    assert_eq!(
        statuses[1].to_string(),
        "computecore.dll!HcsCreateOperation: found"
    );
}

#[test]
fn without_hyper_v_every_line_is_reported_and_the_entries_are_not_checked() {
    let statuses = system32(&[]);
    assert_eq!(statuses.len(), 14);
    assert!(statuses.iter().all(|status| !status.found));
    let dlls: Vec<_> = statuses.iter().filter(|s| s.entry.is_none()).collect();
    assert_eq!(dlls.len(), 2);
    for dll in dlls {
        assert_eq!(dll.os_error, Some(ERROR_MOD_NOT_FOUND));
        assert!(!dll.not_checked());
    }
    for entry in statuses.iter().filter(|s| s.entry.is_some()) {
        assert!(entry.not_checked(), "{entry}");
        assert_eq!(entry.error(), None);
    }
    assert_eq!(
        statuses[0].to_string(),
        "computecore.dll: missing (OS error 126 (ERROR_MOD_NOT_FOUND))"
    );
    assert_eq!(
        statuses[1].to_string(),
        "computecore.dll!HcsCreateOperation: not checked (its DLL did not load)"
    );
    assert_eq!(
        first_error(&statuses),
        Some(ComponentError::DllNotLoaded {
            dll: COMPUTECORE_DLL,
            os_error: ERROR_MOD_NOT_FOUND
        })
    );
}

#[test]
fn a_missing_entry_does_not_stop_the_report() {
    let old_hdv: Vec<&'static str> = HDV_ENTRIES
        .iter()
        .copied()
        .filter(|entry| *entry != "HdvInitializeDeviceHostEx")
        .collect();
    let old_hcs: Vec<&'static str> = HCS_ENTRIES
        .iter()
        .copied()
        .filter(|entry| *entry != "HcsPauseComputeSystem")
        .collect();
    let statuses = system32(&[(COMPUTECORE_DLL, &old_hcs), (VMDEVICEHOST_DLL, &old_hdv)]);
    let missing: Vec<String> = statuses
        .iter()
        .filter(|status| !status.found)
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        missing,
        [
            "computecore.dll!HcsPauseComputeSystem: missing (OS error 127 \
             (ERROR_PROC_NOT_FOUND))",
            "vmdevicehost.dll!HdvInitializeDeviceHostEx: missing (OS error 127 \
             (ERROR_PROC_NOT_FOUND))",
        ]
    );
    // Entries after the missing ones were still looked up.
    assert!(
        statuses
            .iter()
            .any(|s| s.entry == Some("HcsResumeComputeSystem") && s.found)
    );
    assert_eq!(
        first_error(&statuses),
        Some(ComponentError::EntryMissing {
            dll: COMPUTECORE_DLL,
            entry: "HcsPauseComputeSystem",
            os_error: ERROR_PROC_NOT_FOUND
        })
    );
}

#[test]
fn hcs_present_but_hdv_missing_names_vmdevicehost() {
    let statuses = system32(&[(COMPUTECORE_DLL, HCS_ENTRIES)]);
    let error = first_error(&statuses).unwrap();
    assert_eq!(error.dll(), VMDEVICEHOST_DLL);
    assert_eq!(error.entry(), None);
    assert_eq!(error.os_error(), ERROR_MOD_NOT_FOUND);
}

#[test]
fn a_missing_dll_message_names_it_and_says_to_enable_hyper_v() {
    let error = ComponentError::DllNotLoaded {
        dll: VMDEVICEHOST_DLL,
        os_error: ERROR_MOD_NOT_FOUND,
    };
    let text = error.to_string();
    assert!(
        text.starts_with(
            "cannot load vmdevicehost.dll (Host Device Virtualization (HDV) API) from System32: \
             OS error 126 (ERROR_MOD_NOT_FOUND); the Hyper-V feature is not enabled"
        ),
        "{text}"
    );
    assert!(text.contains("Enable-WindowsOptionalFeature -Online -FeatureName Microsoft-Hyper-V"));
    assert!(text.contains("Install-WindowsFeature -Name Hyper-V"));
}

#[test]
fn a_dll_that_fails_otherwise_says_it_is_there_but_did_not_load() {
    let error = ComponentError::DllNotLoaded {
        dll: COMPUTECORE_DLL,
        os_error: ERROR_DLL_INIT_FAILED,
    };
    let text = error.to_string();
    assert!(
        text.contains("OS error 1114 (ERROR_DLL_INIT_FAILED)"),
        "{text}"
    );
    assert!(text.contains("could not load it"), "{text}");
    let unnamed = ComponentError::DllNotLoaded {
        dll: COMPUTECORE_DLL,
        os_error: 4242,
    };
    assert!(unnamed.to_string().contains("OS error 4242;"));
}

#[test]
fn a_missing_entry_message_names_dll_entry_and_error_and_says_update_windows() {
    let error = ComponentError::EntryMissing {
        dll: VMDEVICEHOST_DLL,
        entry: "HdvInitializeDeviceHostEx",
        os_error: ERROR_PROC_NOT_FOUND,
    };
    assert_eq!(error.entry(), Some("HdvInitializeDeviceHostEx"));
    let text = error.to_string();
    assert!(
        text.starts_with(
            "vmdevicehost.dll (Host Device Virtualization (HDV) API) has no entry point \
             HdvInitializeDeviceHostEx: OS error 127 (ERROR_PROC_NOT_FOUND); this Windows \
             build is too old"
        ),
        "{text}"
    );
}

#[test]
fn same_names_compares_contents_and_order() {
    assert!(same_names(HCS_ENTRIES, HCS_ENTRIES));
    assert!(same_names(&[], &[]));
    assert!(!same_names(&["a", "b"], &["b", "a"]));
    assert!(!same_names(&["a"], &["a", "b"]));
    assert!(!same_names(&["ab"], &["a"]));
    assert!(!same_names(&["HdvX"], &["HdvY"]));
}
