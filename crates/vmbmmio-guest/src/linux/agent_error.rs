//! [`AgentError`]: why the in-process session could not do what was asked, with a stable name
//! for scripts and whether it is a setup problem (fix the guest) or a failed check (the host
//! did not do its part, or the data is wrong).

use std::fmt;
use std::path::PathBuf;

use vmbmmio_proto::guest::ClientState;

use super::LinuxError;
use crate::channel::ChannelError;
use crate::discover::DiscoverError;
use crate::session::SessionError;

/// A failure of [`super::Session`].
#[derive(Debug)]
pub enum AgentError {
    /// Discovery failed (no channel, no paired function, no permission, module missing...).
    Discover(DiscoverError),
    /// Opening or mapping a device file failed, or an access was outside a region.
    Device(LinuxError),
    /// The uio node's ring map is not two VMBus rings.
    BadRingMap {
        /// The uio node.
        node: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// The guest protocol failed (an unsupported host version, a refused request, a timeout).
    Protocol(SessionError),
    /// The channel failed while waiting for the host.
    Channel(ChannelError),
    /// The host did not back the regions in time.
    NotBacked {
        /// How long was waited.
        timeout_ms: u64,
        /// Where the conversation was.
        state: ClientState,
    },
    /// The host closed the conversation: open the session again.
    Closed,
    /// The regions may not be used now (not backed, or the layout is not current).
    NotUsable,
    /// The layout has no region by that name or id.
    NoSuchRegion {
        /// What was asked for.
        which: String,
        /// The regions the layout has (`name (id)`).
        have: Vec<String>,
    },
}

impl AgentError {
    /// A stable snake_case name (`docs/guest-agent.md`, "Errors").
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Discover(error) => error.kind(),
            Self::Device(error) => error.kind(),
            Self::Protocol(error) => error.kind(),
            Self::BadRingMap { .. } | Self::Channel(_) => "session",
            Self::NotBacked { .. } | Self::NotUsable => "not_backed",
            Self::Closed => "closed",
            Self::NoSuchRegion { .. } => "no_such_region",
        }
    }

    /// Whether the guest's setup or the caller's request is at fault (as opposed to a failed
    /// check: the host did not do its part, or bytes differ).
    pub fn is_setup(&self) -> bool {
        match self {
            Self::Discover(_) | Self::NoSuchRegion { .. } => true,
            // The host's driver predates doorbells: update it (asking again cannot help).
            Self::Protocol(SessionError::DoorbellsUnsupported { .. }) => true,
            Self::Device(error) => !matches!(error, LinuxError::RegionOutsideBar { .. }),
            _ => false,
        }
    }
}

impl fmt::Display for AgentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Discover(error) => write!(f, "{error}"),
            Self::Device(error) => write!(f, "{error}"),
            Self::BadRingMap { node, why } => write!(
                f,
                "the ring map of {} is not two VMBus rings: {why}",
                node.display()
            ),
            Self::Protocol(error) => write!(f, "{error}"),
            Self::Channel(error) => write!(f, "{error}"),
            Self::NotBacked { timeout_ms, state } => write!(
                f,
                "the host did not back the regions within {timeout_ms} ms (session state \
                 {state:?}): is the device host running for this VM?"
            ),
            Self::Closed => {
                f.write_str("the host closed the conversation: open the session again (run again)")
            }
            Self::NotUsable => f.write_str(
                "the regions may not be used now: the host has not backed them for the current \
                 layout",
            ),
            Self::NoSuchRegion { which, have } => write!(
                f,
                "the layout has no region `{which}`; it has: {}",
                have.join(", ")
            ),
        }
    }
}

impl std::error::Error for AgentError {}

impl From<DiscoverError> for AgentError {
    fn from(error: DiscoverError) -> Self {
        Self::Discover(error)
    }
}

impl From<LinuxError> for AgentError {
    fn from(error: LinuxError) -> Self {
        Self::Device(error)
    }
}

impl From<SessionError> for AgentError {
    fn from(error: SessionError) -> Self {
        Self::Protocol(error)
    }
}

impl From<ChannelError> for AgentError {
    fn from(error: ChannelError) -> Self {
        Self::Channel(error)
    }
}
