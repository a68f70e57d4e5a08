//! The binary on a non-Windows host: validates its arguments, prints the VM configuration the
//! device needs, and says it only runs on Windows.

#![cfg(not(windows))]

#[path = "support/binary.rs"]
mod binary;

use binary::devhost;

#[test]
fn valid_arguments_print_the_flexible_iov_entry_and_exit_3() {
    let (code, stdout, stderr) = devhost(&[
        "--vm-id",
        "62cdfa57-7648-44f3-b164-98e2da991ec5",
        "--region-size",
        "5000",
        "--vendor-id",
        "0x1af4",
        "--device-id",
        "0x1110",
        "--instance-id",
        "01234567-89ab-cdef-0123-456789abcdef",
        "--vmbus-handle",
        "0x1a4",
    ]);
    assert_eq!(code, Some(3), "{stderr}");
    assert!(
        stdout.contains("driver session: channel offered to the VM of VMBus handle 0x1a4"),
        "{stdout}"
    );
    assert!(
        stdout.contains("region 0 \"region0\" (rw): 5000 bytes, rounded up to 8192"),
        "{stdout}"
    );
    assert!(stdout.contains(
        "\"FlexibleIov\": {\"01234567-89ab-cdef-0123-456789abcdef\": {\"EmulatorId\": \
         \"9bdff1a3-9ee9-41b5-96ee-5187a86b81fe\", \"HostingModel\": \"External\"}}"
    ));
    assert!(
        stderr.contains("only runs on a Windows Hyper-V host"),
        "{stderr}"
    );
}

#[test]
fn invalid_arguments_list_every_problem_and_exit_2() {
    let (code, stdout, stderr) = devhost(&["--vm-id", "nope", "--bar-index", "5"]);
    assert_eq!(code, Some(2));
    assert!(stdout.is_empty());
    for expected in [
        "vm_id (from --vm-id): \"nope\" is not a GUID",
        "region: required (pass --region NAME:SIZE[:ACCESS]",
        "vendor_id: required",
        "device_id: required",
        "bar_index (from --bar-index)",
    ] {
        assert!(stderr.contains(expected), "{expected}\n{stderr}");
    }
}

const VALID: [&str; 8] = [
    "--vm-id",
    "62cdfa57-7648-44f3-b164-98e2da991ec5",
    "--region-size",
    "4096",
    "--vendor-id",
    "0x1af4",
    "--device-id",
    "0x1110",
];

#[test]
fn without_loopback_the_driver_target_is_required() {
    let (code, stdout, stderr) = devhost(&VALID);
    assert_eq!(code, Some(2), "{stdout}");
    assert!(stderr.contains("vmbus_handle"), "{stderr}");
    assert!(stderr.contains("--offer-loopback"), "{stderr}");

    let mut args = VALID.to_vec();
    args.push("--loopback");
    let (code, stdout, stderr) = devhost(&args);
    assert_eq!(code, Some(3), "{stderr}");
    assert!(stdout.contains("loopback mode"), "{stdout}");

    let mut args = VALID.to_vec();
    args.push("--offer-loopback");
    let (code, stdout, stderr) = devhost(&args);
    assert_eq!(code, Some(3), "{stderr}");
    assert!(
        stdout.contains("channel offered to the host itself (loopback offer)"),
        "{stdout}"
    );
}

#[test]
fn named_regions_are_listed_with_their_access() {
    let (code, stdout, stderr) = devhost(&[
        "--vm-id",
        "62cdfa57-7648-44f3-b164-98e2da991ec5",
        "--region",
        "frames:16MiB:guest-ro",
        "--region",
        "ctl:5000",
        "--vendor-id",
        "0x1af4",
        "--device-id",
        "0x1110",
        "--offer-loopback",
    ]);
    assert_eq!(code, Some(3), "{stderr}");
    for expected in [
        "region 0 \"frames\" (guest-ro): 16777216 bytes",
        "region 1 \"ctl\" (rw): 5000 bytes, rounded up to 8192",
    ] {
        assert!(stdout.contains(expected), "{expected}\n{stdout}");
    }
}

#[test]
fn mixing_both_region_forms_exits_2_naming_both() {
    let (code, _, stderr) = devhost(&[
        "--vm-id",
        "62cdfa57-7648-44f3-b164-98e2da991ec5",
        "--region",
        "frames:4K",
        "--region-size",
        "4K",
        "--vendor-id",
        "0x1af4",
        "--device-id",
        "0x1110",
        "--offer-loopback",
    ]);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("region (from --region): both forms of the regions are given: --region and --region-size"),
        "{stderr}"
    );
}
