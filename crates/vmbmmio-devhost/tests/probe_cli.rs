//! The `probe` subcommand of the built binary on a non-Windows host: its help documents every
//! check, the serve invocation is untouched, usage errors and "cannot run here" exit 2.

#![cfg(not(windows))]

#[path = "support/binary.rs"]
mod binary;

use binary::devhost;

use vmbmmio_devhost::probe::checks::CHECKS;

#[test]
fn the_top_level_help_lists_probe_and_keeps_the_serve_options() {
    let (code, stdout, _) = devhost(&["--help"]);
    assert_eq!(code, Some(0));
    assert!(stdout.contains("probe"), "{stdout}");
    assert!(stdout.contains("--config"), "{stdout}");
}

#[test]
fn probe_long_help_documents_every_check_and_option() {
    let (code, stdout, _) = devhost(&["probe", "--help"]);
    assert_eq!(code, Some(0));
    for check in &CHECKS {
        assert!(stdout.contains(check.id), "{}", check.id);
        assert!(stdout.contains(check.question.id), "{}", check.id);
    }
    for option in [
        "--vm",
        "--mapping",
        "--experimental",
        "--out",
        "--json",
        "--guest-wait-secs",
    ] {
        assert!(stdout.contains(option), "{option}");
    }
    assert!(stdout.contains("CAN DISTURB THE VM'S VMBUS"));
}

#[test]
fn probe_on_linux_checks_its_options_then_says_it_cannot_run() {
    let out = std::env::temp_dir().join(format!("vmbmmio-probe-cli-{}", std::process::id()));
    let (code, stdout, stderr) = devhost(&["probe", "--out", out.to_str().unwrap()]);
    assert_eq!(code, Some(2));
    assert!(stdout.is_empty());
    assert!(
        stderr.contains("only run on a Windows Hyper-V host"),
        "{stderr}"
    );
    assert!(out.is_dir(), "--out is created up front");
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn experimental_prints_the_warning() {
    let (code, _, stderr) = devhost(&["probe", "--experimental", "--vm", "x"]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("can disturb the VM's VMBus"), "{stderr}");
}

#[test]
fn usage_errors_exit_2_and_name_the_option() {
    let (code, _, stderr) = devhost(&["probe", "--vm", " "]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("--vm: empty"), "{stderr}");
    let (code, _, stderr) = devhost(&["probe", "--mapping", "/nonexistent/probe.toml"]);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("--mapping /nonexistent/probe.toml"),
        "{stderr}"
    );
    let (code, _, _) = devhost(&["probe", "--bogus"]);
    assert_eq!(code, Some(2));
    // Serve options do not mix with the subcommand.
    let (code, _, _) = devhost(&["--vm-id", "62cdfa57-7648-44f3-b164-98e2da991ec5", "probe"]);
    assert_eq!(code, Some(2));
}

#[test]
fn a_mapping_config_for_another_vm_than_vm_is_refused() {
    let dir = std::env::temp_dir().join(format!("vmbmmio-probe-map-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("probe.toml");
    std::fs::write(
        &config,
        "vm_id = \"62cdfa57-7648-44f3-b164-98e2da991ec5\"\nregion_sizes = [\"4096\"]\n\
         vendor_id = \"0x1af4\"\ndevice_id = \"0x1110\"\nloopback = true\n",
    )
    .unwrap();
    let path = config.to_str().unwrap();
    let (code, _, stderr) = devhost(&[
        "probe",
        "--mapping",
        path,
        "--vm",
        "11111111-2222-3333-4444-555555555555",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("name different VMs"), "{stderr}");
    let (code, _, stderr) = devhost(&["probe", "--mapping", path, "--out", dir.to_str().unwrap()]);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("only run on a Windows"),
        "a valid config: {stderr}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_mapping_config_with_named_regions_works_unless_region_0_is_guest_ro() {
    let dir = std::env::temp_dir().join(format!("vmbmmio-probe-named-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("probe.toml");
    let text = |access: &str| {
        format!(
            "vm_id = \"62cdfa57-7648-44f3-b164-98e2da991ec5\"\nvendor_id = \"0x1af4\"\n\
             device_id = \"0x1110\"\nloopback = true\n\n[[region]]\nname = \"frames\"\n\
             size = \"64KiB\"\naccess = \"{access}\"\n"
        )
    };
    let path = config.to_str().unwrap();
    let out = dir.to_str().unwrap();
    std::fs::write(&config, text("host-ro")).unwrap();
    let (code, _, stderr) = devhost(&["probe", "--mapping", path, "--out", out]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("only run on a Windows"), "{stderr}");

    std::fs::write(&config, text("guest-ro")).unwrap();
    let (code, _, stderr) = devhost(&["probe", "--mapping", path, "--out", out]);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("region 0 (\"frames\") is guest-ro"),
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
