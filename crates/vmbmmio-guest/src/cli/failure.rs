//! Why a command failed: a stable kind for `--json`, the message for people, and the exit code
//! (2: a usage or setup problem, something to fix before the agent can work; 1: a failed check
//! or a session the host did not complete).

use serde_json::{Value, json};

use vmbmmio_guest::discover::DiscoverError;
use vmbmmio_guest::linux::LinuxError;
use vmbmmio_guest::session::SessionError;

/// Exit code of a usage or setup problem.
pub const SETUP: u8 = 2;
/// Exit code of a failed check.
pub const CHECK: u8 = 1;

/// A failed command.
#[derive(Debug)]
pub struct Failure {
    /// The exit code.
    pub exit: u8,
    /// A stable snake_case name (`docs/guest-agent.md`, "Errors").
    pub kind: &'static str,
    /// What happened and what to do.
    pub message: String,
}

impl Failure {
    /// A usage or setup problem.
    pub fn setup(kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            exit: SETUP,
            kind,
            message: message.into(),
        }
    }

    /// A failed check.
    pub fn check(kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            exit: CHECK,
            kind,
            message: message.into(),
        }
    }

    /// The `error` object of the JSON output.
    pub fn to_json(&self) -> Value {
        json!({ "kind": self.kind, "message": self.message, "exit_code": self.exit })
    }
}

/// The stable name of a discovery error.
pub fn discover_kind(error: &DiscoverError) -> &'static str {
    match error {
        DiscoverError::Io { .. } => "io",
        DiscoverError::NotPermitted { .. } => "not_permitted",
        DiscoverError::TooLarge { .. } => "too_large",
        DiscoverError::TooManyEntries { .. } => "too_many_entries",
        DiscoverError::Parse { .. } => "parse",
        DiscoverError::NoVmbus { .. } => "no_vmbus",
        DiscoverError::NoSuchChannel { .. } => "no_such_channel",
        DiscoverError::DuplicateChannel { .. } => "duplicate_channel",
        DiscoverError::ModuleMissing { .. } => "module_missing",
        DiscoverError::BoundElsewhere { .. } => "bound_elsewhere",
        DiscoverError::BindRefused { .. } => "bind_refused",
        DiscoverError::BindDidNotTake { .. } => "bind_did_not_take",
        DiscoverError::NoUioNode { .. } => "no_uio_node",
        DiscoverError::MultipleUioNodes { .. } => "multiple_uio_nodes",
        DiscoverError::NoRingMap { .. } => "no_ring_map",
        DiscoverError::NoPci { .. } => "no_pci",
        DiscoverError::ConfigRestricted { .. } => "config_restricted",
        DiscoverError::MalformedPairing { .. } => "malformed_pairing",
        DiscoverError::NoPairedFunction { .. } => "no_paired_function",
        DiscoverError::DuplicatePairing { .. } => "duplicate_pairing",
        DiscoverError::BadBar { .. } => "bad_bar",
        DiscoverError::DecodeRefused { .. } => "decode_refused",
        DiscoverError::DecodeDidNotTake { .. } => "decode_did_not_take",
    }
}

impl From<DiscoverError> for Failure {
    fn from(error: DiscoverError) -> Self {
        Self::setup(discover_kind(&error), error.to_string())
    }
}

impl From<LinuxError> for Failure {
    fn from(error: LinuxError) -> Self {
        match error {
            LinuxError::OutOfBounds { .. } | LinuxError::Misaligned { .. } => {
                Self::setup("out_of_bounds", error.to_string())
            }
            LinuxError::ReadOnly { .. } => Self::setup("read_only", error.to_string()),
            LinuxError::RegionOutsideBar { .. } => {
                Self::check("region_outside_bar", error.to_string())
            }
            _ => Self::setup("device", error.to_string()),
        }
    }
}

impl From<SessionError> for Failure {
    fn from(error: SessionError) -> Self {
        Self::check("session", error.to_string())
    }
}
