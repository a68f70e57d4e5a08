//! The `vmbmmio-guest` binary against fake sysfs trees: its commands, the documented errors and
//! exit codes, and the discovery part of `status --json` (`docs/guest-agent.md`).

#[path = "support/fake_sysfs.rs"]
mod fake_sysfs;

use std::path::Path;
use std::process::Command;

use fake_sysfs::{FakeSysfs, PciFunction};
use serde_json::Value;

/// The default interface type (`docs/devhost.md`): 9d0ee607-90ef-4c63-8f88-a81dcbc7ca83.
const TYPE: u128 = 0x9d0e_e607_90ef_4c63_8f88_a81d_cbc7_ca83;
const INSTANCE: u128 = 0x1234_5678_9abc_4def_8123_4567_89ab_cdef;
const OTHER: u128 = 0x0fed_cba9_8765_4321_8fed_cba9_8765_4321;
const BDF: &str = "7870:00:00.0";
const BASE: u64 = 0xf_8000_0000;
const SIZE: u64 = 0x1000_0000;

/// Runs the agent on `sysfs` with `args`: exit code, stdout, stderr.
fn agent(sysfs: &Path, args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_vmbmmio-guest"))
        .arg("--sysfs")
        .arg(sysfs)
        .arg("--dev")
        .arg(sysfs.join("dev"))
        .args(args)
        .output()
        .expect("run the agent");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// `status --json` (plus `extra`): exit code and the parsed object.
fn status(sysfs: &FakeSysfs, extra: &[&str]) -> (i32, Value) {
    let mut args = vec!["--json", "status"];
    args.extend_from_slice(extra);
    let (code, stdout, stderr) = agent(sysfs.root(), &args);
    let value: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|error| panic!("not JSON ({error}): {stdout:?}; stderr {stderr:?}"));
    (code, value)
}

fn error_kind(value: &Value) -> &str {
    value["error"]["kind"].as_str().unwrap_or("<none>")
}

/// A guest with our channel bound to uio_hv_generic as uio0 and our paired function.
fn guest() -> FakeSysfs {
    let sysfs = FakeSysfs::with_buses();
    sysfs.bound_channel("chan0", TYPE, INSTANCE, 0);
    sysfs.pci_function(&PciFunction::other("0000:00:08.0"));
    sysfs.pci_function(&PciFunction::vmbmmio(BDF, TYPE, INSTANCE, BASE, SIZE));
    sysfs
}

#[test]
fn help_lists_the_commands() {
    let (code, stdout, _) = agent(Path::new("/nonexistent"), &["--help"]);
    assert_eq!(code, 0);
    for command in ["status", "read", "write", "verify", "serve"] {
        assert!(stdout.contains(command), "{command} missing from {stdout}");
    }
}

#[test]
fn a_usage_error_exits_2() {
    let (code, _, stderr) = agent(Path::new("/nonexistent"), &["read"]);
    assert_eq!(code, 2, "{stderr}");
    let (code, value) = status(&guest(), &["--interface-type", "not-a-guid"]);
    assert_eq!((code, error_kind(&value)), (2, "usage"));
}

#[test]
fn no_vmbus_exits_2() {
    let sysfs = FakeSysfs::new();
    let (code, value) = status(&sysfs, &[]);
    assert_eq!((code, error_kind(&value)), (2, "no_vmbus"));
    assert_eq!(value["ok"], false);
    assert!(value["channel"].is_null());
}

#[test]
fn no_channel_exits_2_and_says_so() {
    let sysfs = FakeSysfs::with_buses();
    sysfs.vmbus_device("other", OTHER, INSTANCE);
    let (code, value) = status(&sysfs, &[]);
    assert_eq!((code, error_kind(&value)), (2, "no_such_channel"));
    let message = value["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("9d0ee607-90ef-4c63-8f88-a81dcbc7ca83"),
        "{message}"
    );
    assert_eq!(value["error"]["exit_code"], 2);
}

#[test]
fn several_channels_need_an_instance() {
    let sysfs = guest();
    sysfs.vmbus_device("chan1", TYPE, OTHER);
    let (code, value) = status(&sysfs, &["--discover-only"]);
    assert_eq!((code, error_kind(&value)), (2, "several_channels"));
    let (code, value) = status(
        &sysfs,
        &[
            "--discover-only",
            "--instance",
            "12345678-9abc-4def-8123-456789abcdef",
        ],
    );
    assert_eq!(code, 0, "{value}");
    assert_eq!(value["channel"]["device"], "chan0");
}

#[test]
fn a_missing_module_exits_2_with_the_channel_shown() {
    let sysfs = FakeSysfs::with_buses();
    sysfs.vmbus_device("chan0", TYPE, INSTANCE);
    let (code, value) = status(&sysfs, &[]);
    assert_eq!((code, error_kind(&value)), (2, "module_missing"));
    assert_eq!(value["channel"]["bound"], false);
    assert!(value["channel"]["uio"].is_null());
    assert!(value["function"].is_null());
}

#[test]
fn no_paired_function_exits_2() {
    let sysfs = FakeSysfs::with_buses();
    sysfs.bound_channel("chan0", TYPE, INSTANCE, 0);
    sysfs.pci_function(&PciFunction::vmbmmio(BDF, TYPE, OTHER, BASE, SIZE));
    let (code, value) = status(&sysfs, &[]);
    assert_eq!((code, error_kind(&value)), (2, "no_paired_function"));
    assert_eq!(value["channel"]["bound"], true);
    assert!(value["function"].is_null());
}

#[test]
fn status_json_has_the_documented_discovery_fields() {
    let sysfs = guest();
    let (code, value) = status(&sysfs, &["--discover-only"]);
    assert_eq!(code, 0, "{value}");
    assert_eq!(value["ok"], true);
    assert!(value["error"].is_null());
    assert!(value["session"].is_null());
    assert_eq!(
        value["interface_type"],
        "9d0ee607-90ef-4c63-8f88-a81dcbc7ca83"
    );
    let channel = &value["channel"];
    assert_eq!(channel["device"], "chan0");
    assert_eq!(
        channel["interface_type"],
        "9d0ee607-90ef-4c63-8f88-a81dcbc7ca83"
    );
    assert_eq!(channel["instance"], "12345678-9abc-4def-8123-456789abcdef");
    assert_eq!(channel["driver"], "uio_hv_generic");
    assert_eq!(channel["bound"], true);
    assert_eq!(channel["uio"]["name"], "uio0");
    assert_eq!(channel["uio"]["number"], 0);
    assert!(
        channel["uio"]["dev_node"]
            .as_str()
            .unwrap()
            .ends_with("dev/uio0")
    );
    assert!(channel["uio"]["ring_map_size"].as_u64().unwrap() > 0);
    let function = &value["function"];
    assert_eq!(function["bdf"], BDF);
    assert_eq!(function["vendor_id"], "0x1414");
    assert_eq!(function["device_id"], "0xb0b0");
    assert_eq!(function["bar_index"], 2);
    assert_eq!(function["bar_base"], BASE);
    assert_eq!(function["bar_size"], SIZE);
    assert!(function["bar_file"].as_str().unwrap().contains("resource2"));
    assert!(function["write_combined"].is_boolean());
    assert!(function["decode"].is_boolean());
    assert!(function["pairing_protocol_version"].is_u64());
}

#[test]
fn status_without_the_uio_device_node_exits_2_after_discovery() {
    let sysfs = guest();
    let (code, value) = status(&sysfs, &[]);
    assert_eq!((code, error_kind(&value)), (2, "device"), "{value}");
    assert!(value["error"]["message"].as_str().unwrap().contains("uio0"));
    assert_eq!(value["function"]["bdf"], BDF);
    assert!(value["session"].is_null());
}

#[test]
fn text_output_fails_on_stderr_with_the_same_exit_code() {
    let sysfs = FakeSysfs::with_buses();
    sysfs.vmbus_device("chan0", TYPE, INSTANCE);
    let (code, stdout, stderr) = agent(sysfs.root(), &["status"]);
    assert_eq!(code, 2);
    assert!(stdout.is_empty(), "{stdout}");
    assert!(stderr.contains("uio_hv_generic"), "{stderr}");
}
