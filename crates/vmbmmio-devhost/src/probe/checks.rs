//! The probe's checks: id, question, what each reads, which option runs it and what, if
//! anything, it changes. One table, so that `probe --help`, the report and docs/probe.md name
//! the same checks in the same order.

use super::questions::{self, Question};

/// Which option a check needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Needs {
    /// Runs on every probe.
    Nothing,
    /// Runs with `--vm`.
    Vm,
    /// Runs with `--vm` and `--experimental`.
    VmExperimental,
    /// Runs with `--mapping`.
    Mapping,
}

impl Needs {
    /// The options, as the user types them.
    pub const fn options(self) -> &'static str {
        match self {
            Self::Nothing => "always",
            Self::Vm => "--vm",
            Self::VmExperimental => "--vm --experimental",
            Self::Mapping => "--mapping",
        }
    }
}

/// One check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Check {
    /// The finding's id.
    pub id: &'static str,
    /// The question it answers.
    pub question: Question,
    /// Which option runs it.
    pub needs: Needs,
    /// What it reads.
    pub reads: &'static str,
    /// What it changes ("nothing" for a read-only check).
    pub changes: &'static str,
}

/// `windows_build`.
pub const WINDOWS_BUILD: &str = "windows_build";
/// `hyperv_role`.
pub const HYPERV_ROLE: &str = "hyperv_role";
/// `kmdf_version`.
pub const KMDF_VERSION: &str = "kmdf_version";
/// `test_signing`.
pub const TEST_SIGNING: &str = "test_signing";
/// `driver_verifier`.
pub const DRIVER_VERIFIER: &str = "driver_verifier";
/// `hyperv_components`.
pub const HYPERV_COMPONENTS: &str = "hyperv_components";
/// `kmcl_exports`.
pub const KMCL_EXPORTS: &str = "kmcl_exports";
/// `vm_state`.
pub const VM_STATE: &str = "vm_state";
/// `worker_protection`.
pub const WORKER_PROTECTION: &str = "worker_protection";
/// `vdev_second_open`.
pub const VDEV_SECOND_OPEN: &str = "vdev_second_open";
/// `vdev_ioctls`.
pub const VDEV_IOCTLS: &str = "vdev_ioctls";
/// `section_backed_mapping`.
pub const SECTION_BACKED_MAPPING: &str = "section_backed_mapping";

/// Every check, in report order.
pub const CHECKS: [Check; 12] = [
    Check {
        id: WINDOWS_BUILD,
        question: questions::WINDOWS_BUILD,
        needs: Needs::Nothing,
        reads: "registry HKLM\\SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion: \
                CurrentMajorVersionNumber, CurrentMinorVersionNumber, CurrentBuildNumber, UBR, \
                ProductName, DisplayVersion, InstallationType",
        changes: "nothing",
    },
    Check {
        id: HYPERV_ROLE,
        question: questions::HYPERV_ROLE,
        needs: Needs::Nothing,
        reads: "the service control manager (does service vmms exist, its state) and whether \
                %SystemRoot%\\System32\\drivers\\vmbkmclr.sys exists",
        changes: "nothing",
    },
    Check {
        id: KMDF_VERSION,
        question: questions::KMDF_VERSION,
        needs: Needs::Nothing,
        reads: "the file version resource of %SystemRoot%\\System32\\drivers\\Wdf01000.sys (its \
                major.minor is the KMDF version; the registry holds no documented minor \
                version)",
        changes: "nothing",
    },
    Check {
        id: TEST_SIGNING,
        question: questions::TEST_SIGNING,
        needs: Needs::Nothing,
        reads: "registry HKLM\\SYSTEM\\CurrentControlSet\\Control SystemStartOptions (the boot \
                options in effect; TESTSIGNING when test signing is on)",
        changes: "nothing",
    },
    Check {
        id: DRIVER_VERIFIER,
        question: questions::DRIVER_VERIFIER,
        needs: Needs::Nothing,
        reads: "registry HKLM\\SYSTEM\\CurrentControlSet\\Control\\Session Manager\\Memory \
                Management VerifyDrivers and VerifyDriverLevel (the settings verifier.exe \
                writes; they take effect at the next boot)",
        changes: "nothing",
    },
    Check {
        id: HYPERV_COMPONENTS,
        question: questions::HYPERV_COMPONENTS,
        needs: Needs::Nothing,
        reads: "computecore.dll and vmdevicehost.dll, loaded from System32 as the device host \
                loads them, and every entry point it calls",
        changes: "nothing",
    },
    Check {
        id: KMCL_EXPORTS,
        question: questions::KMCL_EXPORTS,
        needs: Needs::Nothing,
        reads: "%SystemRoot%\\System32\\drivers\\vmbkmclr.sys from disk: its PE export \
                directory, parsed by the driver's own parser, against every KMCL entry point \
                the driver resolves (present, forwarded, missing; required or optional)",
        changes: "nothing",
    },
    Check {
        id: VM_STATE,
        question: questions::VM_STATE,
        needs: Needs::Vm,
        reads: "the Host Compute Service: the list of compute systems (HcsEnumerateComputeSystems) \
                to find the VM by name or id, then its properties (HcsGetComputeSystemProperties)",
        changes: "nothing",
    },
    Check {
        id: WORKER_PROTECTION,
        question: questions::WORKER_PROTECTED,
        needs: Needs::Vm,
        reads: "the vmwp.exe processes and their command lines (the VM id), the protection \
                level of the VM's one (GetProcessInformation ProcessProtectionLevelInfo), and \
                whether OpenProcess with PROCESS_DUP_HANDLE succeeds (the handle is closed at \
                once; nothing is duplicated)",
        changes: "nothing",
    },
    Check {
        id: VDEV_SECOND_OPEN,
        question: questions::VDEV_SECOND_OPEN,
        needs: Needs::Vm,
        reads: "CreateFileW on \\\\.\\VMBus\\vdev\\{VmId} (GENERIC_ALL, no sharing, as the one \
                public tool that used it), then CloseHandle; no IOCTL is sent",
        changes: "nothing the probe knows of: an open creates an uninitialized vdev file that \
                  the close discards",
    },
    Check {
        id: VDEV_IOCTLS,
        question: questions::VDEV_IOCTLS,
        needs: Needs::VmExperimental,
        reads: "the results of IOCTL_VMBUS_VDEV_SETUP (0x3EC04C, the VM's name) and \
                IOCTL_VMBUS_VDEV_WAIT_FOR_CONNECT (0x3EC074) on the second vdev handle, each \
                bounded to 5 seconds and cancelled after",
        changes: "MAY DISTURB THE VM'S VMBUS: VDEV_SETUP binds a vdev to the VM's partition \
                  beside the worker process's own; use a throw-away VM",
    },
    Check {
        id: SECTION_BACKED_MAPPING,
        question: questions::SECTION_AFTER_DECODE,
        needs: Needs::Mapping,
        reads: "runs the device host's sequence with the config until one region is mapped \
                (after the guest placed the BAR and enabled decode), writes a pattern through \
                the device host's view of the section, and watches the intercept counter and \
                the section for a guest access (bounded by --guest-wait-secs)",
        changes: "ATTACHES A DEVICE HOST TO THE VM and pauses/resumes it around each mapping \
                  (as vmbmmio-devhost does); the region's first bytes are overwritten; the \
                  VM must declare the paired device (the FlexibleIov entry)",
    },
];

/// The check with id `id`.
pub fn check(id: &str) -> Option<&'static Check> {
    CHECKS.iter().find(|check| check.id == id)
}

/// The probe's long help: every check, its option, what it reads and changes.
pub fn long_help() -> String {
    let mut text = String::from(
        "Checks (each becomes one finding of probe-report.json; a check whose option is not \
         given is reported as not_run):\n",
    );
    for check in &CHECKS {
        text.push_str(&format!(
            "\n  {} [{}]\n    question ({}): {}\n    reads: {}\n    changes: {}\n",
            check.id,
            check.needs.options(),
            check.question.id,
            check.question.text,
            check.reads,
            check.changes,
        ));
    }
    text.push_str(
        "\nWithout --vm, --mapping and --experimental the probe only reads. Exit 0: the probe \
         ran (findings may be negative); 2: a usage error, or it cannot run at all. Send back \
         probe-report.json (docs/probe.md).",
    );
    text
}
