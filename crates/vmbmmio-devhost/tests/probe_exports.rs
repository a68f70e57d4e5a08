//! The export comparison against synthetic `vmbkmclr.sys` images, built byte by byte with the
//! kmcl crate's PE test builder (file layout: RVAs mapped through the section table, as the
//! probe reads the file from disk).

#[path = "../../kmcl/tests/pe_support/mod.rs"]
mod pe_support;

use kmcl::resolve::{ENTRIES, EntryPolicy};
use pe_support::{Built, Func, Spec, code_rva};
use vmbmmio_devhost::probe::Verdict;
use vmbmmio_devhost::probe::classify::kmcl_exports;
use vmbmmio_devhost::probe::exports::{ExportStatus, compare_exports};
use vmbmmio_devhost::probe::facts::{ExportImageFacts, OsError};

/// An image exporting `names` (sorted, as a linker writes them) as code, plus `forwarded`
/// (name, target) as forwarders.
fn image(names: &[&str], forwarded: &[(&str, &str)]) -> Vec<u8> {
    let mut all: Vec<(String, Func)> = names
        .iter()
        .enumerate()
        .map(|(i, name)| (name.to_string(), Func::Code(code_rva(i as u32))))
        .collect();
    for (name, target) in forwarded {
        all.push((name.to_string(), Func::Forward(target.to_string())));
    }
    all.sort_by(|a, b| a.0.cmp(&b.0));
    let spec = Spec {
        ordinal_base: 1,
        funcs: all.iter().map(|(_, func)| func.clone()).collect(),
        names: all
            .iter()
            .enumerate()
            .map(|(i, (name, _))| (name.clone(), i as u16))
            .collect(),
    };
    Built::new(&spec).file
}

fn names(policy: Option<EntryPolicy>) -> Vec<&'static str> {
    ENTRIES
        .iter()
        .filter(|spec| policy.is_none_or(|policy| spec.policy == policy))
        .map(|spec| spec.name)
        .collect()
}

fn facts(image: Vec<u8>) -> ExportImageFacts {
    ExportImageFacts {
        path: "C:\\Windows\\System32\\drivers\\vmbkmclr.sys".into(),
        image: Ok(image),
    }
}

#[test]
fn every_entry_exported_answers_yes_and_lists_every_name() {
    let mut exported = names(None);
    exported.push("VmbChannelSomethingElse");
    let comparison = compare_exports(&image(&exported, &[])).unwrap();
    assert_eq!(comparison.entries.len(), ENTRIES.len());
    for (entry, spec) in comparison.entries.iter().zip(ENTRIES.iter()) {
        assert_eq!(entry.name, spec.name, "the driver's table order");
        assert_eq!(entry.required, spec.policy == EntryPolicy::Required);
        assert!(
            matches!(entry.status, ExportStatus::Present { .. }),
            "{entry:?}"
        );
    }
    assert_eq!(comparison.present_count(), ENTRIES.len());
    assert_eq!(comparison.driver_verdict, Ok(()));
    assert_eq!(comparison.module_name.as_deref(), Some("synthetic.dll"));
    assert_eq!(comparison.exported_names.len(), ENTRIES.len() + 1);
    assert!(
        comparison
            .exported_names
            .contains(&"VmbChannelSomethingElse".to_string())
    );

    let outcome = kmcl_exports(&facts(image(&exported, &[])));
    assert_eq!(outcome.verdict, Verdict::AnsweredYes, "{}", outcome.summary);
    let json = serde_json::to_value(&outcome.evidence).unwrap();
    assert_eq!(json["driver_would_start"], true);
    assert_eq!(json["missing_required"], serde_json::json!([]));
    assert_eq!(json["entries"][2]["name"], "VmbChannelEnable");
    assert_eq!(json["entries"][2]["status"], "present");
    assert_eq!(json["entries"][2]["evidenced_export"], true);
}

#[test]
fn required_only_answers_yes_and_names_the_missing_optional_ones() {
    let outcome = kmcl_exports(&facts(image(&names(Some(EntryPolicy::Required)), &[])));
    assert_eq!(outcome.verdict, Verdict::AnsweredYes, "{}", outcome.summary);
    let optional = names(Some(EntryPolicy::Optional));
    let json = serde_json::to_value(&outcome.evidence).unwrap();
    assert_eq!(json["missing_optional"], serde_json::json!(optional));
    assert_eq!(json["driver_would_start"], true);
    assert!(
        outcome.summary.contains("VmbChannelGetMmioSpace"),
        "{}",
        outcome.summary
    );
}

#[test]
fn a_missing_and_a_forwarded_required_entry_answer_no() {
    let exported: Vec<&str> = names(None)
        .into_iter()
        .filter(|name| *name != "VmbChannelAllocate" && *name != "VmbChannelCleanup")
        .collect();
    let built = image(
        &exported,
        &[("VmbChannelCleanup", "vmbusr.VmbChannelCleanup")],
    );
    let comparison = compare_exports(&built).unwrap();
    assert_eq!(
        comparison.missing(true),
        vec!["VmbChannelAllocate", "VmbChannelCleanup"]
    );
    assert_eq!(comparison.forwarded(), vec!["VmbChannelCleanup"]);
    assert!(
        matches!(
            &comparison.entries[1].status,
            ExportStatus::Forwarded { target, .. } if target == "vmbusr.VmbChannelCleanup"
        ),
        "{:?}",
        comparison.entries[1]
    );
    let message = comparison.driver_verdict.clone().unwrap_err();
    assert!(message.contains("VmbChannelAllocate"), "{message}");

    let outcome = kmcl_exports(&facts(built));
    assert_eq!(outcome.verdict, Verdict::AnsweredNo, "{}", outcome.summary);
    assert!(
        outcome
            .summary
            .contains("VmbChannelAllocate, VmbChannelCleanup")
    );
    let json = serde_json::to_value(&outcome.evidence).unwrap();
    assert_eq!(json["driver_would_start"], false);
    assert_eq!(json["forwarded"], serde_json::json!(["VmbChannelCleanup"]));
    assert_eq!(json["entries"][1]["status"], "forwarded");
    assert_eq!(
        json["entries"][1]["forwarded_to"],
        "vmbusr.VmbChannelCleanup"
    );
    assert_eq!(json["entries"][0]["status"], "missing");
}

#[test]
fn a_malformed_image_is_an_error_with_the_parser_message() {
    let mut built = image(&names(None), &[]);
    built.truncate(0x100);
    assert!(compare_exports(&built).is_err());
    let outcome = kmcl_exports(&facts(built));
    assert_eq!(outcome.verdict, Verdict::Error);
    assert!(outcome.evidence.get("pe_error").is_some());
    let outcome = kmcl_exports(&facts(b"not a PE image at all, just text".to_vec()));
    assert_eq!(outcome.verdict, Verdict::Error);
}

#[test]
fn a_missing_file_answers_no_and_another_read_error_is_an_error() {
    let missing = ExportImageFacts {
        path: "C:\\Windows\\System32\\drivers\\vmbkmclr.sys".into(),
        image: Err(OsError::new("reading vmbkmclr.sys", 2)),
    };
    let outcome = kmcl_exports(&missing);
    assert_eq!(outcome.verdict, Verdict::AnsweredNo);
    assert!(outcome.summary.contains("does not exist"));
    let denied = ExportImageFacts {
        image: Err(OsError::new("reading vmbkmclr.sys", 5)),
        ..missing
    };
    assert_eq!(kmcl_exports(&denied).verdict, Verdict::Error);
}
