//! Every classification rule of the probe, from hand-written raw facts: host checks, the VM
//! lookup, the worker's protection, the second vdev open and its IOCTLs.

use vmbmmio_devhost::guid::Guid;
use vmbmmio_devhost::hyperv_components::{
    ERROR_MOD_NOT_FOUND, ERROR_PROC_NOT_FOUND, check_components,
};
use vmbmmio_devhost::probe::Verdict;
use vmbmmio_devhost::probe::classify::*;
use vmbmmio_devhost::probe::facts::*;
use vmbmmio_devhost::probe::vdev::{
    IOCTL_VDEV_SETUP, IOCTL_VDEV_WAIT_FOR_CONNECT, experimental_ioctls, vdev_path, vdev_setup_input,
};

const VM: Guid = Guid::from_u128(0x62cdfa57_7648_44f3_b164_98e2da991ec5);

fn version(build: Option<&str>) -> WindowsVersionFacts {
    WindowsVersionFacts {
        major: Some(10),
        minor: Some(0),
        build: build.map(String::from),
        ubr: Some(1742),
        product_name: Some("Windows Server 2025 Datacenter".into()),
        display_version: Some("24H2".into()),
        installation_type: Some("Server".into()),
    }
}

#[test]
fn windows_build_against_server_2022() {
    assert_eq!(
        windows_build(&version(Some("26100"))).verdict,
        Verdict::AnsweredYes
    );
    assert_eq!(
        windows_build(&version(Some("20348"))).verdict,
        Verdict::AnsweredYes
    );
    let old = windows_build(&version(Some("19045")));
    assert_eq!(old.verdict, Verdict::AnsweredNo);
    assert!(old.summary.contains("10.0.19045.1742"), "{}", old.summary);
    assert_eq!(
        windows_build(&version(Some("x"))).verdict,
        Verdict::Inconclusive
    );
    assert_eq!(windows_build(&version(None)).verdict, Verdict::Inconclusive);
}

#[test]
fn hyperv_role_needs_both_the_service_and_the_library() {
    let role = |vmms, present| HyperVRoleFacts {
        vmms,
        vmbkmclr_present: present,
    };
    let running = ServiceLookup::Present { state: 4 };
    assert_eq!(
        hyperv_role(&role(running.clone(), Ok(true))).verdict,
        Verdict::AnsweredYes
    );
    assert_eq!(
        hyperv_role(&role(ServiceLookup::Absent, Ok(false))).verdict,
        Verdict::AnsweredNo
    );
    let partial = hyperv_role(&role(running, Ok(false)));
    assert_eq!(partial.verdict, Verdict::AnsweredNo);
    assert!(
        partial.summary.contains("vmbkmclr.sys missing"),
        "{}",
        partial.summary
    );
    let failed = hyperv_role(&role(
        ServiceLookup::Failed(OsError::new("OpenSCManagerW", 5)),
        Ok(true),
    ));
    assert_eq!(failed.verdict, Verdict::Error);
    assert!(failed.summary.contains("OpenSCManagerW"));
}

#[test]
fn kmdf_version_from_the_file_version() {
    let kmdf = |version| KmdfFacts {
        path: "Wdf01000.sys".into(),
        file_version: version,
    };
    assert_eq!(
        kmdf_version(&kmdf(Ok(Some([1, 33, 26100, 1])))).verdict,
        Verdict::AnsweredYes
    );
    assert_eq!(
        kmdf_version(&kmdf(Ok(Some([1, 35, 0, 0])))).verdict,
        Verdict::AnsweredYes
    );
    assert_eq!(
        kmdf_version(&kmdf(Ok(Some([1, 31, 19041, 1])))).verdict,
        Verdict::AnsweredNo
    );
    assert_eq!(kmdf_version(&kmdf(Ok(None))).verdict, Verdict::Inconclusive);
    // No file: no KMDF runtime (seen under Wine); any other failure is an error.
    let missing = kmdf_version(&kmdf(Err(OsError::new("GetFileVersionInfoSizeW", 2))));
    assert_eq!(missing.verdict, Verdict::AnsweredNo);
    assert!(
        missing.summary.contains("no KMDF runtime"),
        "{}",
        missing.summary
    );
    assert_eq!(
        kmdf_version(&kmdf(Err(OsError::new("GetFileVersionInfoSizeW", 5)))).verdict,
        Verdict::Error
    );
}

#[test]
fn test_signing_reads_the_boot_options() {
    let options = |text: Option<&str>| TestSigningFacts {
        system_start_options: Ok(text.map(String::from)),
    };
    assert_eq!(
        test_signing(&options(Some(" TESTSIGNING  NOEXECUTE=OPTIN"))).verdict,
        Verdict::AnsweredYes
    );
    assert_eq!(
        test_signing(&options(Some("/testsigning"))).verdict,
        Verdict::AnsweredYes
    );
    assert_eq!(
        test_signing(&options(Some(" NOEXECUTE=OPTIN  NOTESTSIGNINGX"))).verdict,
        Verdict::AnsweredNo
    );
    assert_eq!(test_signing(&options(None)).verdict, Verdict::Inconclusive);
    assert_eq!(
        test_signing(&TestSigningFacts {
            system_start_options: Err(OsError::new("RegGetValueW", 5))
        })
        .verdict,
        Verdict::Error
    );
}

#[test]
fn driver_verifier_must_name_the_driver() {
    let verifier = |drivers: Option<&str>| VerifierFacts {
        verify_drivers: Ok(drivers.map(String::from)),
        verify_driver_level: Ok(Some(0x209bb)),
    };
    assert_eq!(
        driver_verifier(&verifier(Some("VMBMMIO.SYS"))).verdict,
        Verdict::AnsweredYes
    );
    assert_eq!(
        driver_verifier(&verifier(Some("foo.sys vmbmmio.sys"))).verdict,
        Verdict::AnsweredYes
    );
    assert_eq!(
        driver_verifier(&verifier(Some("*"))).verdict,
        Verdict::AnsweredYes
    );
    let other = driver_verifier(&verifier(Some("foo.sys")));
    assert_eq!(other.verdict, Verdict::AnsweredNo);
    assert!(other.summary.contains("foo.sys"));
    assert_eq!(
        driver_verifier(&verifier(Some("  "))).verdict,
        Verdict::AnsweredNo
    );
    assert_eq!(
        driver_verifier(&verifier(None)).verdict,
        Verdict::AnsweredNo
    );
    let json = serde_json::to_value(&driver_verifier(&verifier(None)).evidence).unwrap();
    assert_eq!(json["verify_driver_level_hex"], "0x209bb");
}

#[test]
fn hyperv_components_found_missing_or_unchecked() {
    let all = check_components(|_| Ok(()), |_: &(), _| Ok(()));
    let outcome = hyperv_components(&all);
    assert_eq!(outcome.verdict, Verdict::AnsweredYes, "{}", outcome.summary);
    let json = serde_json::to_value(&outcome.evidence).unwrap();
    assert_eq!(json["missing"], 0);
    assert_eq!(json["components"].as_array().map(Vec::len), Some(all.len()));

    // Without Hyper-V neither library loads: answered no, naming the library and the fix.
    let none = check_components(|_| Err::<(), u32>(ERROR_MOD_NOT_FOUND), |_, _| Ok(()));
    let outcome = hyperv_components(&none);
    assert_eq!(outcome.verdict, Verdict::AnsweredNo);
    assert!(
        outcome.summary.contains("computecore.dll"),
        "{}",
        outcome.summary
    );
    assert!(outcome.summary.contains("Hyper-V"), "{}", outcome.summary);

    // An older build without one entry point: answered no, naming it.
    let one_missing = check_components(
        |_| Ok(()),
        |_: &(), entry| {
            if entry == "HdvCreateSectionBackedMmioRange" {
                Err(ERROR_PROC_NOT_FOUND)
            } else {
                Ok(())
            }
        },
    );
    let outcome = hyperv_components(&one_missing);
    assert_eq!(outcome.verdict, Verdict::AnsweredNo);
    assert!(
        outcome.summary.contains("HdvCreateSectionBackedMmioRange"),
        "{}",
        outcome.summary
    );
    let json = serde_json::to_value(&outcome.evidence).unwrap();
    assert_eq!(json["missing"], 1);

    assert_eq!(hyperv_components(&[]).verdict, Verdict::Inconclusive);
}

const LIST: &str = r#"[
  {"Id": "62CDFA57-7648-44F3-B164-98E2DA991EC5", "SystemType": "VirtualMachine",
   "Name": "probe-vm", "Owner": "VMMS", "State": "Running",
   "RuntimeId": "11111111-2222-3333-4444-555555555555"},
  {"Id": "aaaaaaaa-0000-0000-0000-000000000001", "Name": "twin", "State": "Off"},
  {"Id": "aaaaaaaa-0000-0000-0000-000000000002", "Name": "TWIN", "State": "Off"},
  {"Id": "not a guid", "Name": "broken"},
  "not an object"
]"#;

#[test]
fn resolve_vm_by_id_runtime_id_and_name() {
    let by_id = resolve_vm(LIST, "{62cdfa57-7648-44f3-b164-98e2da991ec5}").unwrap();
    assert_eq!(by_id.id, VM);
    assert_eq!(by_id.owner.as_deref(), Some("VMMS"));
    assert_eq!(
        resolve_vm(LIST, "11111111-2222-3333-4444-555555555555")
            .unwrap()
            .id,
        VM
    );
    assert_eq!(resolve_vm(LIST, "Probe-VM").unwrap().id, VM);
    assert!(
        matches!(resolve_vm(LIST, "twin"), Err(VmLookupFacts::Ambiguous(ref list)) if list.len() == 2)
    );
    let Err(VmLookupFacts::NotFound { known }) = resolve_vm(LIST, "nope") else {
        panic!("not found");
    };
    assert_eq!(
        known.len(),
        3,
        "the entry without a GUID is skipped: {known:?}"
    );
    assert!(known.contains(&format!("{VM} (probe-vm)")));
    assert!(matches!(
        resolve_vm("{", "x"),
        Err(VmLookupFacts::BadAnswer(_))
    ));
    assert!(matches!(
        resolve_vm("{}", "x"),
        Err(VmLookupFacts::BadAnswer(_))
    ));
}

fn found(properties: Result<&str, OsError>) -> VmLookupFacts {
    VmLookupFacts::Found {
        entry: Box::new(resolve_vm(LIST, "probe-vm").unwrap()),
        properties: properties.map(String::from),
    }
}

#[test]
fn vm_state_takes_the_properties_state_first() {
    let (running, status) = vm_state("probe-vm", &found(Ok(r#"{"State":"Running"}"#)));
    assert_eq!(running.verdict, Verdict::AnsweredYes);
    assert!(status.unwrap().running);
    let (paused, status) = vm_state("probe-vm", &found(Ok(r#"{"State":"Paused"}"#)));
    assert_eq!(paused.verdict, Verdict::AnsweredNo);
    assert!(!status.unwrap().running);
    // A failed property query falls back to the list's state, and records the failure.
    let (fallback, _) = vm_state(
        "probe-vm",
        &found(Err(OsError::new(
            "HcsGetComputeSystemProperties",
            0x8037_0100,
        ))),
    );
    assert_eq!(fallback.verdict, Verdict::AnsweredYes);
    assert!(fallback.evidence.get("properties_error").is_some());
    let (missing, status) = vm_state("x", &VmLookupFacts::NotFound { known: vec![] });
    assert_eq!(missing.verdict, Verdict::AnsweredNo);
    assert!(status.is_none());
    let (failed, _) = vm_state(
        "x",
        &VmLookupFacts::EnumerationFailed(OsError::new("LoadLibraryExW(computecore.dll)", 126)),
    );
    assert_eq!(failed.verdict, Verdict::Error);
    assert!(failed.summary.contains("computecore.dll"));
    let (twins, _) = vm_state("twin", &resolve_vm(LIST, "twin").unwrap_err());
    assert_eq!(twins.verdict, Verdict::Inconclusive);
}

fn process(pid: u32, line: Result<&str, u32>) -> ProcessFacts {
    ProcessFacts {
        pid,
        image: "vmwp.exe".into(),
        command_line: line
            .map(String::from)
            .map_err(|code| OsError::new("NtQueryInformationProcess", code)),
    }
}

#[test]
fn find_worker_matches_the_vm_id_in_the_command_line() {
    let processes = vec![
        process(
            10,
            Ok("\"C:\\Windows\\System32\\vmwp.exe\" 11111111-0000-0000-0000-000000000000"),
        ),
        process(
            20,
            Ok("\"C:\\Windows\\System32\\vmwp.exe\" 62CDFA57-7648-44F3-B164-98E2DA991EC5"),
        ),
        process(30, Err(5)),
    ];
    assert_eq!(find_worker(&processes, VM), WorkerMatch::One(20));
    assert_eq!(find_worker(&processes[..1], VM), WorkerMatch::None);
    let twice = vec![
        processes[1].clone(),
        ProcessFacts {
            pid: 21,
            ..processes[1].clone()
        },
    ];
    assert_eq!(find_worker(&twice, VM), WorkerMatch::Several(vec![20, 21]));
}

fn worker(level: Result<u32, u32>, dup: Result<(), u32>) -> WorkerFacts {
    WorkerFacts {
        processes: Ok(vec![process(20, Ok(&format!("vmwp.exe {VM}")))]),
        chosen: Some(WorkerProcessFacts {
            pid: 20,
            protection_level: level.map_err(|code| OsError::new("GetProcessInformation", code)),
            dup_handle_open: dup.map_err(|code| OsError::new("OpenProcess", code)),
        }),
    }
}

#[test]
fn worker_protection_rules() {
    let ppl = worker_protection(VM, &worker(Ok(2), Err(5)));
    assert_eq!(ppl.verdict, Verdict::AnsweredYes);
    assert!(
        ppl.summary.contains("PROTECTION_LEVEL_WINDOWS_LIGHT"),
        "{}",
        ppl.summary
    );
    let open = worker_protection(VM, &worker(Ok(PROTECTION_LEVEL_NONE), Ok(())));
    assert_eq!(open.verdict, Verdict::AnsweredNo);
    assert_eq!(
        worker_protection(VM, &worker(Err(87), Ok(()))).verdict,
        Verdict::AnsweredNo
    );
    assert_eq!(
        worker_protection(VM, &worker(Ok(PROTECTION_LEVEL_NONE), Err(5))).verdict,
        Verdict::AnsweredYes
    );
    assert_eq!(
        worker_protection(VM, &worker(Ok(PROTECTION_LEVEL_NONE), Err(87))).verdict,
        Verdict::Inconclusive
    );
    assert_eq!(
        worker_protection(VM, &worker(Err(87), Err(5))).verdict,
        Verdict::Error
    );
    let none = WorkerFacts {
        processes: Ok(vec![]),
        chosen: None,
    };
    assert_eq!(worker_protection(VM, &none).verdict, Verdict::Inconclusive);
    let listing_failed = WorkerFacts {
        processes: Err(OsError::new("CreateToolhelp32Snapshot", 5)),
        chosen: None,
    };
    assert_eq!(
        worker_protection(VM, &listing_failed).verdict,
        Verdict::Error
    );
    assert_eq!(
        protection_level_name(PROTECTION_LEVEL_NONE),
        "PROTECTION_LEVEL_NONE"
    );
}

fn vdev(open: Result<(), u32>, ioctls: Vec<IoctlFacts>) -> VdevFacts {
    VdevFacts {
        path: vdev_path(VM),
        desired_access: 0x1000_0000,
        share_mode: 0,
        open,
        ioctls,
    }
}

#[test]
fn the_vdev_path_and_setup_input_follow_the_public_tool() {
    assert_eq!(
        vdev_path(VM),
        "\\\\.\\VMBus\\vdev\\{62cdfa57-7648-44f3-b164-98e2da991ec5}"
    );
    assert_eq!(
        vdev_setup_input("vm"),
        vec![0, 0, 5, 0, 0, 0, 0, 0, b'v', 0, b'm', 0, 0, 0]
    );
    let ioctls = experimental_ioctls("vm");
    assert_eq!(ioctls[0].0, 0x3EC04C);
    assert_eq!(ioctls[1].0, 0x3EC074);
    assert_eq!(ioctls[1].3, 12);
}

#[test]
fn second_open_rules() {
    assert_eq!(
        vdev_second_open(&vdev(Ok(()), vec![]), true).verdict,
        Verdict::AnsweredYes
    );
    for code in [5, 32, 2, 3, 123] {
        assert_eq!(
            vdev_second_open(&vdev(Err(code), vec![]), true).verdict,
            Verdict::AnsweredNo,
            "{code}"
        );
    }
    assert_eq!(
        vdev_second_open(&vdev(Err(1), vec![]), true).verdict,
        Verdict::Inconclusive
    );
    assert_eq!(
        vdev_second_open(&vdev(Ok(()), vec![]), false).verdict,
        Verdict::Inconclusive
    );
}

fn ioctl(code: u32, result: IoctlResult) -> IoctlFacts {
    IoctlFacts {
        code,
        name: if code == IOCTL_VDEV_SETUP {
            "VDEV_SETUP"
        } else {
            "VDEV_WAIT_FOR_CONNECT"
        },
        input_len: 0,
        output_len: 0,
        result,
    }
}

#[test]
fn ioctl_rules() {
    let sent = |setup| {
        vdev(
            Ok(()),
            vec![
                ioctl(IOCTL_VDEV_SETUP, setup),
                ioctl(
                    IOCTL_VDEV_WAIT_FOR_CONNECT,
                    IoctlResult::Failed { win32: 1 },
                ),
            ],
        )
    };
    assert_eq!(
        vdev_ioctls(Some(&sent(IoctlResult::Failed { win32: 1 })), false).verdict,
        Verdict::NotRun
    );
    let ok = vdev_ioctls(
        Some(&sent(IoctlResult::Completed {
            bytes_returned: 0,
            output_hex: String::new(),
        })),
        true,
    );
    assert_eq!(ok.verdict, Verdict::AnsweredYes);
    assert!(
        ok.summary.contains("VDEV_WAIT_FOR_CONNECT failed with 1"),
        "{}",
        ok.summary
    );
    assert_eq!(
        vdev_ioctls(Some(&sent(IoctlResult::Failed { win32: 50 })), true).verdict,
        Verdict::AnsweredNo
    );
    assert_eq!(
        vdev_ioctls(Some(&sent(IoctlResult::TimedOut { cancelled: true })), true).verdict,
        Verdict::Inconclusive
    );
    assert_eq!(
        vdev_ioctls(Some(&vdev(Err(5), vec![])), true).verdict,
        Verdict::NotRun
    );
    assert_eq!(vdev_ioctls(None, true).verdict, Verdict::NotRun);
}
