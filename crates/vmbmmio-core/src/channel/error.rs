//! Why a channel could not be offered.

use kmcl::raw::{NTSTATUS, STATUS_INVALID_PARAMETER};
use kmcl::{KmclError, SetupError};

use crate::error::DriverError;

/// A configuration value the driver refuses before any KMCL call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// The interface type GUID is all zeros: the guest could not match a driver to it.
    NilInterfaceType,
    /// The friendly name is empty.
    EmptyName,
    /// The friendly name is longer than [`super::MAX_FRIENDLY_NAME_UNITS`] UTF-16 units.
    NameTooLong,
    /// The maximum packet size is 0 or above [`super::MAX_PACKET_SIZE`].
    PacketSizeOutOfRange {
        /// What was asked for.
        size: u32,
    },
    /// The VMBus handle value is 0 (or does not fit a pointer-sized handle).
    InvalidVmbusHandle,
}

/// Everything that can go wrong while offering a channel or converting its VMBus handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelError {
    /// Refused before any KMCL call (`STATUS_INVALID_PARAMETER`).
    Config(ConfigError),
    /// Creating the KMCL channel failed; nothing was left allocated.
    Setup(SetupError),
    /// `VmbConvertVmbusHandleToKernelHandle` failed (wrong process, bad handle, ...).
    HandleConversion(KmclError),
}

impl ChannelError {
    /// The NTSTATUS the IOCTL that asked for the channel completes with.
    pub const fn to_ntstatus(self) -> NTSTATUS {
        match self {
            Self::Config(_) => STATUS_INVALID_PARAMETER,
            Self::Setup(error) => error.to_ntstatus(),
            Self::HandleConversion(error) => error.to_ntstatus(),
        }
    }
}

impl From<ConfigError> for ChannelError {
    fn from(error: ConfigError) -> Self {
        Self::Config(error)
    }
}

impl From<ChannelError> for DriverError {
    fn from(error: ChannelError) -> Self {
        match error {
            ChannelError::Config(_) | ChannelError::Setup(SetupError::NameTooLong) => {
                Self::InvalidParameter
            }
            ChannelError::Setup(SetupError::OutOfMemory) => Self::InsufficientResources,
            ChannelError::Setup(SetupError::Kmcl(error))
            | ChannelError::HandleConversion(error) => Self::Platform(error.status),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kmcl::KmclFunction;
    use kmcl::raw::{NT_SUCCESS, STATUS_ACCESS_DENIED, STATUS_INVALID_PARAMETER_1};

    #[test]
    fn statuses_pass_through_and_match_the_driver_error() {
        let kmcl = KmclError {
            call: KmclFunction::VmbChannelEnable,
            status: STATUS_INVALID_PARAMETER_1,
        };
        let cases = [
            ChannelError::Config(ConfigError::EmptyName),
            ChannelError::Setup(SetupError::OutOfMemory),
            ChannelError::Setup(SetupError::NameTooLong),
            ChannelError::Setup(SetupError::Kmcl(kmcl)),
            ChannelError::HandleConversion(KmclError {
                call: KmclFunction::VmbConvertVmbusHandleToKernelHandle,
                status: STATUS_ACCESS_DENIED,
            }),
        ];
        for error in cases {
            assert!(!NT_SUCCESS(error.to_ntstatus()));
            assert_eq!(DriverError::from(error).to_ntstatus(), error.to_ntstatus());
        }
        assert_eq!(
            ChannelError::Setup(SetupError::Kmcl(kmcl)).to_ntstatus(),
            STATUS_INVALID_PARAMETER_1
        );
    }
}
