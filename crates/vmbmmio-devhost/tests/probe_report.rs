//! The report format: a golden JSON document built from fixed facts (the same document is the
//! full example in docs/probe.md), the summary, the timestamp, and the files `probe` writes.

use vmbmmio_devhost::guid::Guid;
use vmbmmio_devhost::hyperv_components::check_components;
use vmbmmio_devhost::probe::checks::{CHECKS, long_help};
use vmbmmio_devhost::probe::facts::*;
use vmbmmio_devhost::probe::run::{REPORT_FILE, SUMMARY_FILE, write_outputs};
use vmbmmio_devhost::probe::timestamp::rfc3339_utc;
use vmbmmio_devhost::probe::{
    Evidence, Invocation, ProbeInputs, REPORT_VERSION, Verdict, VmInputs, build_report,
    render_summary,
};

const GOLDEN: &str = include_str!("golden/probe_report_v1.json");
const VM: Guid = Guid::from_u128(0x62cdfa57_7648_44f3_b164_98e2da991ec5);

fn inputs() -> ProbeInputs {
    let entry = VmEntry {
        id: VM,
        name: Some("probe-vm".into()),
        state: Some("Running".into()),
        owner: Some("VMMS".into()),
        system_type: Some("VirtualMachine".into()),
        runtime_id: None,
    };
    ProbeInputs {
        host: Evidence::new()
            .with("os", "windows")
            .with("arch", "x86_64")
            .with("elevated", true),
        windows_version: Some(Ok(WindowsVersionFacts {
            major: Some(10),
            minor: Some(0),
            build: Some("26100".into()),
            ubr: Some(1742),
            product_name: Some("Windows Server 2025 Datacenter".into()),
            display_version: Some("24H2".into()),
            installation_type: Some("Server".into()),
        })),
        hyperv_role: Some(HyperVRoleFacts {
            vmms: ServiceLookup::Present { state: 4 },
            vmbkmclr_present: Ok(true),
        }),
        kmdf: Some(KmdfFacts {
            path: "C:\\Windows\\System32\\drivers\\Wdf01000.sys".into(),
            file_version: Ok(Some([1, 33, 26100, 1150])),
        }),
        test_signing: Some(TestSigningFacts {
            system_start_options: Ok(Some(" TESTSIGNING  NOEXECUTE=OPTIN".into())),
        }),
        verifier: Some(VerifierFacts {
            verify_drivers: Ok(None),
            verify_driver_level: Ok(None),
        }),
        // A host with Hyper-V: both libraries and every entry point found.
        hyperv_components: Some(check_components(|_| Ok(()), |_: &(), _| Ok(()))),
        kmcl_image: Some(ExportImageFacts {
            path: "C:\\Windows\\System32\\drivers\\vmbkmclr.sys".into(),
            image: Err(OsError::new(
                "reading C:\\Windows\\System32\\drivers\\vmbkmclr.sys",
                2,
            )),
        }),
        vm: Some(VmInputs {
            requested: "probe-vm".into(),
            lookup: VmLookupFacts::Found {
                entry: Box::new(entry),
                properties: Ok(
                    "{\"Id\":\"62cdfa57-7648-44f3-b164-98e2da991ec5\",\"State\":\"Running\"}"
                        .into(),
                ),
            },
            worker: Some(WorkerFacts {
                processes: Ok(vec![ProcessFacts {
                    pid: 4242,
                    image: "vmwp.exe".into(),
                    command_line: Ok(format!(
                        "\"C:\\Windows\\System32\\vmwp.exe\" {}",
                        VM.to_string().to_uppercase()
                    )),
                }]),
                chosen: Some(WorkerProcessFacts {
                    pid: 4242,
                    protection_level: Ok(PROTECTION_LEVEL_NONE),
                    dup_handle_open: Ok(()),
                }),
            }),
            vdev: Some(VdevFacts {
                path: "\\\\.\\VMBus\\vdev\\{62cdfa57-7648-44f3-b164-98e2da991ec5}".into(),
                desired_access: 0x1000_0000,
                share_mode: 0,
                open: Err(ERROR_SHARING_VIOLATION),
                ioctls: vec![],
            }),
        }),
        mapping: None,
    }
}

fn report() -> vmbmmio_devhost::probe::Report {
    let mut report = build_report(
        rfc3339_utc(1_790_000_000),
        Invocation {
            vm: Some("probe-vm".into()),
            mapping: None,
            experimental: false,
            guest_wait_secs: 120,
        },
        &inputs(),
    );
    // The golden document must not change with the crate's version.
    report.tool.version = "0.1.0".into();
    report
}

#[test]
fn the_report_matches_the_golden_document() {
    let json = report().to_json();
    if std::env::var_os("PROBE_GOLDEN_PRINT").is_some() {
        print!("{json}");
    }
    assert_eq!(
        json, GOLDEN,
        "the report format changed: bump REPORT_VERSION"
    );
}

#[test]
fn the_golden_document_has_every_check_once_in_order() {
    let value: serde_json::Value = serde_json::from_str(GOLDEN).unwrap();
    assert_eq!(value["report_version"], REPORT_VERSION);
    let findings = value["findings"].as_array().unwrap();
    assert_eq!(findings.len(), CHECKS.len());
    for (finding, check) in findings.iter().zip(CHECKS.iter()) {
        assert_eq!(finding["id"], check.id);
        assert_eq!(finding["question"]["id"], check.question.id);
        let verdict = finding["verdict"].as_str().unwrap();
        assert!(
            [
                "answered_yes",
                "answered_no",
                "inconclusive",
                "not_run",
                "error"
            ]
            .contains(&verdict)
        );
        assert!(finding["evidence"].is_object());
    }
}

#[test]
fn verdicts_of_the_example() {
    let report = report();
    let verdict = |id| report.finding(id).unwrap().verdict;
    assert_eq!(verdict("windows_build"), Verdict::AnsweredYes);
    assert_eq!(verdict("driver_verifier"), Verdict::AnsweredNo);
    assert_eq!(verdict("hyperv_components"), Verdict::AnsweredYes);
    assert_eq!(verdict("kmcl_exports"), Verdict::AnsweredNo);
    assert_eq!(verdict("vm_state"), Verdict::AnsweredYes);
    assert_eq!(verdict("worker_protection"), Verdict::AnsweredNo);
    assert_eq!(verdict("vdev_second_open"), Verdict::AnsweredNo);
    assert_eq!(verdict("vdev_ioctls"), Verdict::NotRun);
    assert_eq!(verdict("section_backed_mapping"), Verdict::NotRun);
}

#[test]
fn without_options_only_the_host_checks_are_reported_as_run() {
    let inputs = ProbeInputs {
        vm: None,
        mapping: None,
        ..inputs()
    };
    let report = build_report(String::new(), Invocation::default(), &inputs);
    for id in [
        "vm_state",
        "worker_protection",
        "vdev_second_open",
        "vdev_ioctls",
    ] {
        let finding = report.finding(id).unwrap();
        assert_eq!(finding.verdict, Verdict::NotRun, "{id}");
        assert!(
            finding.summary.contains("--vm"),
            "{id}: {}",
            finding.summary
        );
    }
    let mapping = report.finding("section_backed_mapping").unwrap();
    assert!(mapping.summary.contains("--mapping"));
    // Nothing collected at all (a non-Windows build): every check is not_run, none panics.
    let empty = build_report(
        String::new(),
        Invocation::default(),
        &ProbeInputs::default(),
    );
    assert!(
        empty
            .findings
            .iter()
            .all(|finding| finding.verdict == Verdict::NotRun)
    );
}

#[test]
fn the_summary_names_every_finding_and_the_totals() {
    let summary = render_summary(&report());
    assert!(summary.starts_with("vmbmmio-devhost 0.1.0 probe, report version 1, 2026-09-21T"));
    assert!(summary.contains("host: os=windows arch=x86_64 elevated=true"));
    assert!(summary.contains("options: --vm probe-vm"));
    for check in &CHECKS {
        assert!(summary.contains(check.id), "{}", check.id);
        assert!(summary.contains(check.question.text), "{}", check.id);
    }
    assert!(
        summary
            .contains("totals: 6 answered_yes, 4 answered_no, 0 inconclusive, 2 not_run, 0 error"),
        "{summary}"
    );
}

#[test]
fn timestamps_are_rfc3339_utc() {
    assert_eq!(rfc3339_utc(0), "1970-01-01T00:00:00Z");
    assert_eq!(rfc3339_utc(951_782_400), "2000-02-29T00:00:00Z");
    assert_eq!(rfc3339_utc(1_790_000_000), "2026-09-21T14:13:20Z");
    assert_eq!(rfc3339_utc(4_107_542_399), "2100-02-28T23:59:59Z");
}

#[test]
fn both_files_are_written() {
    let dir = std::env::temp_dir().join(format!("vmbmmio-probe-report-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    write_outputs(&report(), &dir).unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.join(REPORT_FILE)).unwrap(),
        GOLDEN
    );
    assert_eq!(
        std::fs::read_to_string(dir.join(SUMMARY_FILE)).unwrap(),
        render_summary(&report())
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_long_help_documents_every_check() {
    let help = long_help();
    for check in &CHECKS {
        assert!(help.contains(check.id));
        assert!(help.contains(check.reads));
        assert!(help.contains(check.changes));
    }
}

#[test]
fn the_docs_full_example_is_the_golden_document() {
    let docs = include_str!("../../../docs/probe.md");
    assert!(
        docs.contains(GOLDEN.trim_end()),
        "docs/probe.md's full example differs from tests/golden/probe_report_v1.json"
    );
}
