//! Typed driver errors and their NTSTATUS mapping.
//!
//! Kernel code never panics on input: every failure is a [`DriverError`], and the glue turns it
//! into the NTSTATUS it completes a request or a callback with ([`DriverError::to_ntstatus`]).
//! Later issues add variants; each variant documents the status it maps to.

use kmcl::raw::{
    NTSTATUS, STATUS_INSUFFICIENT_RESOURCES, STATUS_INVALID_DEVICE_STATE, STATUS_INVALID_PARAMETER,
    STATUS_NOT_SUPPORTED,
};

/// Everything that can go wrong in the driver's portable code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DriverError {
    /// A caller-supplied value is out of range or malformed (`STATUS_INVALID_PARAMETER`).
    InvalidParameter,
    /// The object is not in a state that allows the request (`STATUS_INVALID_DEVICE_STATE`).
    InvalidState,
    /// An allocation or a quota ran out (`STATUS_INSUFFICIENT_RESOURCES`).
    InsufficientResources,
    /// The platform lacks what the request needs (`STATUS_NOT_SUPPORTED`).
    NotSupported,
    /// A KMCL or kernel call failed with this NTSTATUS, passed through unchanged.
    Platform(NTSTATUS),
}

impl DriverError {
    /// The NTSTATUS this error completes a request or a callback with.
    pub const fn to_ntstatus(self) -> NTSTATUS {
        match self {
            Self::InvalidParameter => STATUS_INVALID_PARAMETER,
            Self::InvalidState => STATUS_INVALID_DEVICE_STATE,
            Self::InsufficientResources => STATUS_INSUFFICIENT_RESOURCES,
            Self::NotSupported => STATUS_NOT_SUPPORTED,
            Self::Platform(status) => status,
        }
    }
}

/// Result type of the driver's portable code.
pub type DriverResult<T> = Result<T, DriverError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_maps_to_a_failure_status() {
        for error in [
            DriverError::InvalidParameter,
            DriverError::InvalidState,
            DriverError::InsufficientResources,
            DriverError::NotSupported,
            DriverError::Platform(kmcl::raw::STATUS_INVALID_PARAMETER_1),
        ] {
            assert!(!kmcl::raw::NT_SUCCESS(error.to_ntstatus()), "{error:?}");
        }
    }
}
