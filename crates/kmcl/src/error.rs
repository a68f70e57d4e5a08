//! Typed errors: which KMCL function failed and with what NTSTATUS.
//!
//! KMCL reports failures as bare NTSTATUS values. The wrapper never lets one escape untyped: a
//! failed call becomes a [`KmclError`] naming the entry point, so a log line or a test can say
//! *which* of the dozen Init calls refused, and the driver still passes the exact status on.

use crate::raw::{
    NT_SUCCESS, NTSTATUS, STATUS_INSUFFICIENT_RESOURCES, STATUS_INVALID_PARAMETER,
    STATUS_UNSUCCESSFUL,
};

/// One entry of [`crate::KmclApi`], by its C name.
#[allow(missing_docs)] // each variant is the C function of the same name (kmcl.md §2)
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KmclFunction {
    VmbChannelAllocate,
    VmbChannelCleanup,
    VmbChannelEnable,
    VmbChannelDisable,
    VmbChannelStart,
    VmbChannelPause,
    VmbChannelInitSetMaximumPacketSize,
    VmbChannelInitSetStateChangeCallbacks,
    VmbChannelInitSetProcessPacketCallbacks,
    VmbChannelInitSetFriendlyName,
    VmbChannelInitSetFlags,
    VmbServerChannelInitSetFlags,
    VmbServerChannelInitSetMmioMegabytes,
    VmbServerChannelInitSetTargetInterfaceId,
    VmbServerChannelInitSetVmbusHandle,
    VmbConvertVmbusHandleToKernelHandle,
    VmbChannelSetPointer,
    VmbChannelGetPointer,
    VmbChannelSetIncomingProcessingAtPassive,
    VmbChannelPacketComplete,
    VmbChannelPacketDeferToPassive,
    VmbChannelPacketFail,
    VmbPacketAllocate,
    VmbPacketFree,
    VmbPacketSetCompletionRoutine,
    VmbPacketSend,
    VmbChannelGetMmioSpace,
}

impl KmclFunction {
    /// Every entry point, in table order.
    pub const ALL: [Self; 27] = [
        Self::VmbChannelAllocate,
        Self::VmbChannelCleanup,
        Self::VmbChannelEnable,
        Self::VmbChannelDisable,
        Self::VmbChannelStart,
        Self::VmbChannelPause,
        Self::VmbChannelInitSetMaximumPacketSize,
        Self::VmbChannelInitSetStateChangeCallbacks,
        Self::VmbChannelInitSetProcessPacketCallbacks,
        Self::VmbChannelInitSetFriendlyName,
        Self::VmbChannelInitSetFlags,
        Self::VmbServerChannelInitSetFlags,
        Self::VmbServerChannelInitSetMmioMegabytes,
        Self::VmbServerChannelInitSetTargetInterfaceId,
        Self::VmbServerChannelInitSetVmbusHandle,
        Self::VmbConvertVmbusHandleToKernelHandle,
        Self::VmbChannelSetPointer,
        Self::VmbChannelGetPointer,
        Self::VmbChannelSetIncomingProcessingAtPassive,
        Self::VmbChannelPacketComplete,
        Self::VmbChannelPacketDeferToPassive,
        Self::VmbChannelPacketFail,
        Self::VmbPacketAllocate,
        Self::VmbPacketFree,
        Self::VmbPacketSetCompletionRoutine,
        Self::VmbPacketSend,
        Self::VmbChannelGetMmioSpace,
    ];

    /// Whether the C function returns an NTSTATUS (the others are `VOID` or return a value that
    /// is not a status), i.e. whether a failure can be reported at all.
    pub const fn returns_status(self) -> bool {
        matches!(
            self,
            Self::VmbChannelAllocate
                | Self::VmbChannelEnable
                | Self::VmbChannelInitSetMaximumPacketSize
                | Self::VmbChannelInitSetStateChangeCallbacks
                | Self::VmbChannelInitSetProcessPacketCallbacks
                | Self::VmbChannelInitSetFriendlyName
                | Self::VmbChannelInitSetFlags
                | Self::VmbServerChannelInitSetFlags
                | Self::VmbServerChannelInitSetMmioMegabytes
                | Self::VmbServerChannelInitSetTargetInterfaceId
                | Self::VmbServerChannelInitSetVmbusHandle
                | Self::VmbConvertVmbusHandleToKernelHandle
                | Self::VmbPacketSend
        )
    }
}

/// A KMCL call failed with `status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KmclError {
    /// The entry point that failed.
    pub call: KmclFunction,
    /// What it returned (always a failure status).
    pub status: NTSTATUS,
}

impl KmclError {
    /// The status passed on to the caller: KMCL's own, unchanged.
    pub const fn to_ntstatus(self) -> NTSTATUS {
        self.status
    }

    /// `Ok(())` when `status` is a success (`NT_SUCCESS`), else the typed error.
    pub const fn check(call: KmclFunction, status: NTSTATUS) -> Result<(), Self> {
        if NT_SUCCESS(status) {
            Ok(())
        } else {
            Err(Self { call, status })
        }
    }
}

/// Why creating a server channel failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetupError {
    /// A KMCL call failed; everything allocated before it was released.
    Kmcl(KmclError),
    /// The wrapper could not allocate the channel context (`STATUS_INSUFFICIENT_RESOURCES`).
    OutOfMemory,
    /// The friendly name does not fit a `UNICODE_STRING` (more than 32,767 UTF-16 units)
    /// (`STATUS_INVALID_PARAMETER`).
    NameTooLong,
}

impl SetupError {
    /// The NTSTATUS this failure is reported with.
    pub const fn to_ntstatus(self) -> NTSTATUS {
        match self {
            Self::Kmcl(error) => error.to_ntstatus(),
            Self::OutOfMemory => STATUS_INSUFFICIENT_RESOURCES,
            Self::NameTooLong => STATUS_INVALID_PARAMETER,
        }
    }
}

impl From<KmclError> for SetupError {
    fn from(error: KmclError) -> Self {
        Self::Kmcl(error)
    }
}

/// A failure status a callback hands back to KMCL (the Opened callback's return value).
///
/// Always a non-success NTSTATUS: a success value passed to [`ErrorStatus::new`] becomes
/// `STATUS_UNSUCCESSFUL`, so "failed" can never be reported to KMCL as "succeeded".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ErrorStatus(NTSTATUS);

impl ErrorStatus {
    /// `status` if it is a failure, else `STATUS_UNSUCCESSFUL`.
    pub const fn new(status: NTSTATUS) -> Self {
        if NT_SUCCESS(status) {
            Self(STATUS_UNSUCCESSFUL)
        } else {
            Self(status)
        }
    }

    /// The NTSTATUS value (never a success).
    pub const fn get(self) -> NTSTATUS {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raw::{STATUS_INVALID_PARAMETER_1, STATUS_PENDING, STATUS_SUCCESS};

    #[test]
    fn check_accepts_success_and_informational_statuses() {
        assert_eq!(
            KmclError::check(KmclFunction::VmbChannelEnable, STATUS_SUCCESS),
            Ok(())
        );
        assert_eq!(
            KmclError::check(KmclFunction::VmbChannelEnable, STATUS_PENDING),
            Ok(())
        );
        let error = KmclError::check(
            KmclFunction::VmbServerChannelInitSetMmioMegabytes,
            STATUS_INVALID_PARAMETER_1,
        )
        .unwrap_err();
        assert_eq!(
            error.call,
            KmclFunction::VmbServerChannelInitSetMmioMegabytes
        );
        assert_eq!(error.to_ntstatus(), STATUS_INVALID_PARAMETER_1);
        assert_eq!(
            SetupError::from(error).to_ntstatus(),
            STATUS_INVALID_PARAMETER_1
        );
    }

    #[test]
    fn error_status_is_never_success() {
        assert_eq!(ErrorStatus::new(STATUS_SUCCESS).get(), STATUS_UNSUCCESSFUL);
        assert_eq!(ErrorStatus::new(STATUS_PENDING).get(), STATUS_UNSUCCESSFUL);
        assert_eq!(
            ErrorStatus::new(STATUS_INVALID_PARAMETER).get(),
            STATUS_INVALID_PARAMETER
        );
    }

    #[test]
    fn setup_errors_map_to_failures() {
        for error in [SetupError::OutOfMemory, SetupError::NameTooLong] {
            assert!(!NT_SUCCESS(error.to_ntstatus()));
        }
    }

    #[test]
    fn all_lists_every_function_once() {
        let mut all = KmclFunction::ALL;
        all.sort();
        assert!(all.windows(2).all(|pair| pair[0] != pair[1]));
    }
}
