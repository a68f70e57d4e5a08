//! The questions the probe answers, each with a stable id and one public line.
//!
//! Why stable ids: reports from different hosts and tool versions are compared by question, and
//! several checks may answer one question. `open_question` marks a platform question nothing
//! public answers (docs/probe.md, "What the probe answers"); `environment` marks a fact about
//! the test host that the open questions' answers depend on.

use serde::Serialize;

/// Whether a question is open or a fact about the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum QuestionKind {
    /// A platform question that no public source answers; only a real host can.
    OpenQuestion,
    /// A fact about the test host (its build, role, settings).
    Environment,
}

/// One question.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Question {
    /// Stable id (kebab-case).
    pub id: &'static str,
    /// Open question or environment fact.
    pub kind: QuestionKind,
    /// One line, worded so that "yes"/"no" are the answers.
    pub text: &'static str,
}

const fn environment(id: &'static str, text: &'static str) -> Question {
    Question {
        id,
        kind: QuestionKind::Environment,
        text,
    }
}

const fn open(id: &'static str, text: &'static str) -> Question {
    Question {
        id,
        kind: QuestionKind::OpenQuestion,
        text,
    }
}

/// The host's Windows build against the oldest host the driver targets.
pub const WINDOWS_BUILD: Question = environment(
    "host-windows-build",
    "Does the host run Windows build 20348 (Windows Server 2022) or later, the oldest host the \
     driver targets?",
);
/// The Hyper-V role.
pub const HYPERV_ROLE: Question = environment(
    "host-hyperv-role",
    "Is the Hyper-V role installed: does the Virtual Machine Management service (vmms) exist \
     and is vmbkmclr.sys present?",
);
/// The KMDF runtime.
pub const KMDF_VERSION: Question = environment(
    "host-kmdf-version",
    "Is the host's KMDF runtime (Wdf01000.sys) version 1.33 or later, the version the driver \
     is built for?",
);
/// Test signing.
pub const TEST_SIGNING: Question = environment(
    "host-test-signing",
    "Is test signing on, so that a test-signed vmbmmio.sys can load?",
);
/// Driver Verifier.
pub const DRIVER_VERIFIER: Question = environment(
    "host-driver-verifier",
    "Is Driver Verifier set to verify vmbmmio.sys?",
);
/// The Hyper-V user-mode libraries the device host loads.
pub const HYPERV_COMPONENTS: Question = environment(
    "host-hyperv-components",
    "Are the Hyper-V libraries the device host loads (computecore.dll, vmdevicehost.dll) \
     present with every entry point it uses?",
);
/// The KMCL exports of the host library.
pub const KMCL_EXPORTS: Question = open(
    "kmcl-exports",
    "Does the host's vmbkmclr.sys export, by name, every KMCL entry point the driver requires \
     (and which optional ones)?",
);
/// The named VM.
pub const VM_STATE: Question = environment(
    "vm-state",
    "Is the named VM known to the Host Compute Service, and is it running?",
);
/// Whether vmwp.exe is protected.
pub const WORKER_PROTECTED: Question = open(
    "vmwp-protected",
    "Is the VM's worker process (vmwp.exe) protected, so that an elevated process cannot open \
     it to duplicate its handles?",
);
/// A second open of the VM's VMBus vdev path.
pub const VDEV_SECOND_OPEN: Question = open(
    "vmbus-vdev-second-open",
    "Does a second open of the VM's VMBus vdev path (\\\\.\\VMBus\\vdev\\{VmId}) succeed \
     while its worker process runs?",
);
/// The vdev IOCTLs on that second handle.
pub const VDEV_IOCTLS: Question = open(
    "vmbus-vdev-ioctls",
    "Does VDEV_SETUP succeed on a second vdev handle of a running VM, and what does \
     VDEV_WAIT_FOR_CONNECT return on it?",
);
/// The section-backed BAR range mapped after decode.
pub const SECTION_AFTER_DECODE: Question = open(
    "hdv-section-after-decode",
    "Does a section-backed BAR range (HdvCreateSectionBackedMmioRange) take effect when it is \
     mapped after the guest enabled memory decode, with the VM paused around the call?",
);

/// Every question, in report order.
pub const ALL: [Question; 12] = [
    WINDOWS_BUILD,
    HYPERV_ROLE,
    KMDF_VERSION,
    TEST_SIGNING,
    DRIVER_VERIFIER,
    HYPERV_COMPONENTS,
    KMCL_EXPORTS,
    VM_STATE,
    WORKER_PROTECTED,
    VDEV_SECOND_OPEN,
    VDEV_IOCTLS,
    SECTION_AFTER_DECODE,
];
