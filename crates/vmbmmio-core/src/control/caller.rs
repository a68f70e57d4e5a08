//! Who sent a request: admission by requestor mode, and the caller's process identity.
//!
//! # Process identity is the process object, not the process id
//! Process ids are reused once a process is gone, and a file handle can outlive the process
//! that opened it (a duplicated or inherited handle keeps the file object open). A "same
//! process" check by id would therefore let a later process that happens to get the same id
//! act as the device host that opened the file. The control device identifies processes by
//! their **process object** instead ([`ProcessKey`] is the object's identity: the `EPROCESS`
//! address on Windows, from `PsGetCurrentProcess`): at file create the glue takes a reference
//! on the opener's process object ([`ProcessReference`]), the file entry keeps it until file
//! cleanup, and while it is held the object cannot be freed, so its identity cannot be given
//! to another process. Every request compares the current process's identity with it.
//! (Microsoft docs: "ObReferenceObject function (wdm.h)": the object is not deleted while its
//! reference count is non-zero; "PsGetCurrentProcess" / "IoGetCurrentProcess": a pointer to
//! the current thread's process.)
//!
//! # Only user-mode requests are admitted
//! A request whose requestor mode is `KernelMode` (a driver's `ZwDeviceIoControlFile`,
//! `IoBuildDeviceIoControlRequest`, often running in the System process) is refused with
//! `STATUS_ACCESS_DENIED` before the control lock is taken and before any state is touched:
//! the driver hands out *user* handles opened in the current process, and a kernel-mode
//! sender must never obtain one in the System process (Microsoft docs:
//! "WdfRequestGetRequestorMode"; "Failure to validate the RequestorMode" in "Handling IRPs"
//! / "Common driver reliability issues"). [`Caller::admit`] and [`Opener::admit`] are the
//! only constructors, so no method of [`super::ControlDevice`] can be reached with a request
//! that was not admitted.

use crate::sections::ProcessKey;

use super::{ControlError, FileKey};

/// The requestor mode of a request (`KPROCESSOR_MODE`: `KernelMode` = 0, `UserMode` = 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestorMode {
    /// The request came from kernel mode (a driver or the System process).
    KernelMode,
    /// The request came from a user-mode thread.
    UserMode,
}

impl RequestorMode {
    /// `KPROCESSOR_MODE` as `WdfRequestGetRequestorMode` returns it. Only `UserMode` (1) is
    /// user mode; every other value is treated as kernel mode (refused).
    pub const fn from_raw(mode: i8) -> Self {
        if mode == 1 {
            Self::UserMode
        } else {
            Self::KernelMode
        }
    }
}

/// A referenced process object (on Windows: `ObReferenceObject` on `PsGetCurrentProcess()`).
/// Dropping it releases the reference (`ObDereferenceObject`).
///
/// While it exists, no other process can have the same [`ProcessKey`].
pub trait ProcessReference {
    /// The identity of the referenced process object (compared, never dereferenced).
    fn key(&self) -> ProcessKey;
}

/// Who sent a request: which file handle, from which process. Only [`Caller::admit`] makes one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caller {
    file: FileKey,
    process: ProcessKey,
}

impl Caller {
    /// Admits a request sent through `file` by a thread of the process object `process`
    /// (the *current* process's identity, in the same key space as
    /// [`crate::sections::SectionBackend::current_process`]), or refuses it
    /// ([`ControlError::KernelModeRequest`]) when `mode` is not user mode.
    ///
    /// Takes no lock and touches no state: the glue calls it first.
    ///
    /// IRQL: any.
    pub const fn admit(
        file: FileKey,
        process: ProcessKey,
        mode: RequestorMode,
    ) -> Result<Self, ControlError> {
        match mode {
            RequestorMode::UserMode => Ok(Self { file, process }),
            RequestorMode::KernelMode => Err(ControlError::KernelModeRequest),
        }
    }

    /// The file handle the request came through.
    pub const fn file(&self) -> FileKey {
        self.file
    }

    /// The process the calling thread runs in.
    pub const fn process(&self) -> ProcessKey {
        self.process
    }
}

/// A file create that was admitted: the new file handle and a reference on the opening
/// process's object, which the control device keeps until file cleanup.
#[derive(Debug)]
pub struct Opener<P> {
    pub(super) file: FileKey,
    pub(super) process: P,
}

impl<P: ProcessReference> Opener<P> {
    /// Admits a create of `file` or refuses it ([`ControlError::KernelModeRequest`]) when
    /// `mode` is not user mode. `reference` takes the reference on the current process's
    /// object; it runs only once the create is admitted, so a refused create takes nothing.
    ///
    /// Takes no lock and touches no state.
    ///
    /// IRQL: that of `reference` (`ObReferenceObject`: <= DISPATCH_LEVEL); the glue calls it
    /// at PASSIVE_LEVEL from `EvtDeviceFileCreate`, in the opening process's context.
    pub fn admit(
        file: FileKey,
        mode: RequestorMode,
        reference: impl FnOnce() -> P,
    ) -> Result<Self, ControlError> {
        match mode {
            RequestorMode::UserMode => Ok(Self {
                file,
                process: reference(),
            }),
            RequestorMode::KernelMode => Err(ControlError::KernelModeRequest),
        }
    }

    /// The file handle being opened.
    pub const fn file(&self) -> FileKey {
        self.file
    }

    /// The opening process's identity.
    pub fn process(&self) -> ProcessKey {
        self.process.key()
    }

    /// The request as the opener would send it later (for the opener's own requests).
    pub fn caller(&self) -> Caller {
        Caller {
            file: self.file,
            process: self.process.key(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Counted;
    impl ProcessReference for Counted {
        fn key(&self) -> ProcessKey {
            ProcessKey(7)
        }
    }

    #[test]
    fn only_user_mode_is_admitted() {
        assert_eq!(RequestorMode::from_raw(1), RequestorMode::UserMode);
        assert_eq!(RequestorMode::from_raw(0), RequestorMode::KernelMode);
        assert_eq!(RequestorMode::from_raw(-1), RequestorMode::KernelMode);
        assert_eq!(RequestorMode::from_raw(2), RequestorMode::KernelMode);
        assert_eq!(
            Caller::admit(FileKey(1), ProcessKey(2), RequestorMode::KernelMode),
            Err(ControlError::KernelModeRequest)
        );
        let caller = Caller::admit(FileKey(1), ProcessKey(2), RequestorMode::UserMode);
        assert_eq!(
            caller.map(|c| (c.file(), c.process())),
            Ok((FileKey(1), ProcessKey(2)))
        );
    }

    #[test]
    fn a_refused_create_takes_no_process_reference() {
        let taken = core::cell::Cell::new(0_u32);
        let take = || {
            taken.set(taken.get().saturating_add(1));
            Counted
        };
        assert!(Opener::admit(FileKey(1), RequestorMode::KernelMode, take).is_err());
        assert_eq!(taken.get(), 0);
        let opener = Opener::admit(FileKey(1), RequestorMode::UserMode, take);
        assert_eq!(taken.get(), 1);
        assert_eq!(opener.map(|o| o.process()).ok(), Some(ProcessKey(7)));
    }
}
