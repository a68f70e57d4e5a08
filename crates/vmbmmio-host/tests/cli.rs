//! The built `vmbmmio-host` binary: `--help`, the driver's absence off Windows (exit 2), and
//! every command against the test double (`VMBMMIO_HOST_TEST_DOUBLE=demo`).

use std::process::{Command, Output};

use serde_json::Value;

fn run(double: bool, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_vmbmmio-host"));
    command.args(args).env_remove("VMBMMIO_HOST_TEST_DOUBLE");
    if double {
        command.env("VMBMMIO_HOST_TEST_DOUBLE", "demo");
    }
    command.output().expect("the binary runs")
}

fn json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
        panic!(
            "not JSON ({error}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

#[test]
fn help_lists_every_command() {
    let output = run(false, &["--help"]);
    assert!(output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    for command in [
        "list", "map", "read", "write", "verify", "wait", "ring", "--json", "--vm",
    ] {
        assert!(
            text.contains(command),
            "{command} missing from --help:\n{text}"
        );
    }
}

#[test]
fn bad_usage_exits_2() {
    assert_eq!(
        run(false, &["write", "frames", "--offset", "0"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        run(false, &["read", "frames", "--length", "1Q"])
            .status
            .code(),
        Some(2)
    );
}

#[cfg(not(windows))]
#[test]
fn without_the_driver_commands_say_where_it_exists() {
    let output = run(false, &["--json", "list"]);
    assert_eq!(output.status.code(), Some(2));
    let value = json(&output);
    assert_eq!(value["ok"], false);
    assert_eq!(value["error"]["kind"], "unsupported");
    assert!(String::from_utf8_lossy(&output.stderr).contains("only on Windows"));
}

#[test]
fn list_map_read_write_verify_ring_wait_against_the_test_double() {
    let list = json(&run(true, &["--json", "list"]));
    assert_eq!(list["ok"], true);
    assert_eq!(
        list["sessions"][0]["vm_id"],
        "6ba7b810-9dad-11d1-80b4-00c04fd430c8"
    );
    assert_eq!(list["sessions"][0]["regions"][0]["name"], "frames");
    assert_eq!(list["sessions"][0]["regions"][1]["consumer_access"], "read");
    let text = String::from_utf8_lossy(&run(true, &["list"]).stdout).into_owned();
    assert!(text.contains("frames") && text.contains("65536"), "{text}");

    let map = json(&run(true, &["--json", "map", "frames", "--write"]));
    assert_eq!(
        (map["ok"].clone(), map["size"].clone()),
        (Value::Bool(true), 65536.into())
    );
    assert_eq!(map["access"], "read_write");

    let write = run(
        true,
        &[
            "--json",
            "write",
            "frames",
            "--offset",
            "1K",
            "--pattern",
            "c0ffee",
        ],
    );
    assert!(write.status.success());
    // Each invocation is a new process with a fresh test double: reads see zeroes.
    let read = json(&run(
        true,
        &[
            "--json", "read", "frames", "--offset", "0x10", "--length", "4",
        ],
    ));
    assert_eq!(read["hex"], "00000000");
    let verify = json(&run(
        true,
        &["--json", "verify", "frames", "--length", "8K"],
    ));
    assert_eq!(
        (verify["ok"].clone(), verify["mismatches"].clone()),
        (Value::Bool(true), 0.into())
    );

    let ring = json(&run(true, &["--json", "ring", "frames", "--value", "0x10"]));
    assert_eq!(
        (ring["ok"].clone(), ring["value"].clone()),
        (Value::Bool(true), 16.into())
    );
    // The demo guest rings once when the event is registered.
    let wait = json(&run(
        true,
        &["--json", "wait", "frames", "--timeout-ms", "1000"],
    ));
    assert_eq!(wait["ok"], true);
    assert_eq!(
        (wait["count"].clone(), wait["last_value"].clone()),
        (1.into(), 0x1234.into())
    );
}

#[test]
fn refusals_against_the_test_double_have_stable_kinds() {
    let cases: [(&[&str], i32, &str); 5] = [
        (
            &[
                "--json", "write", "log", "--offset", "0", "--byte", "1", "--length", "4",
            ],
            2,
            "access_denied",
        ),
        (&["--json", "read", "nope"], 2, "region_not_found"),
        (
            &[
                "--json", "read", "frames", "--offset", "64K", "--length", "1",
            ],
            2,
            "out_of_bounds",
        ),
        (
            &["--json", "--vm", "not-a-guid", "read", "frames"],
            2,
            "usage",
        ),
        (
            &[
                "--json",
                "--vm",
                "00000000-0000-0000-0000-000000000001",
                "read",
                "frames",
            ],
            2,
            "vm_not_found",
        ),
    ];
    for (args, exit, kind) in cases {
        let output = run(true, args);
        assert_eq!(output.status.code(), Some(exit), "{args:?}");
        let value = json(&output);
        assert_eq!(value["error"]["kind"], kind, "{args:?}: {value}");
        assert_eq!(value["error"]["exit_code"], exit);
    }
}
