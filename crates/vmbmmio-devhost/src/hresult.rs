//! HRESULT values the device host produces, expects or reports.
//!
//! hdv.md §3: no HDV function documents specific error codes; the only ones the device host
//! treats specially are the two the reference records as observed: `RPC_E_TOO_LATE` from a
//! second COM-security initialization (§3.1) and `HRESULT_FROM_WIN32(ERROR_INVALID_STATE)` from
//! a section-backed mapping attempted before the VM runs (§3.3).

use std::fmt;

/// A Windows HRESULT (negative = failure).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct HResult(pub i32);

/// `ERROR_INVALID_STATE` (Win32 error 5023).
pub const ERROR_INVALID_STATE: u32 = 5023;

impl HResult {
    /// Success.
    pub const S_OK: Self = Self(0);
    /// Unspecified failure.
    pub const E_FAIL: Self = Self::from_bits(0x8000_4005);
    /// Not implemented.
    pub const E_NOTIMPL: Self = Self::from_bits(0x8000_4001);
    /// Catastrophic failure / unexpected state.
    pub const E_UNEXPECTED: Self = Self::from_bits(0x8000_FFFF);
    /// Invalid pointer.
    pub const E_POINTER: Self = Self::from_bits(0x8000_4003);
    /// Invalid argument (`HRESULT_FROM_WIN32(ERROR_INVALID_PARAMETER)`).
    pub const E_INVALIDARG: Self = Self::from_bits(0x8007_0057);
    /// Invalid handle (`HRESULT_FROM_WIN32(ERROR_INVALID_HANDLE)`).
    pub const E_HANDLE: Self = Self::from_bits(0x8007_0006);
    /// Access denied (`HRESULT_FROM_WIN32(ERROR_ACCESS_DENIED)`).
    pub const E_ACCESSDENIED: Self = Self::from_bits(0x8007_0005);
    /// Out of memory (`HRESULT_FROM_WIN32(ERROR_OUTOFMEMORY)`).
    pub const E_OUTOFMEMORY: Self = Self::from_bits(0x8007_000E);
    /// COM security was already initialized in this process (hdv.md §3.1, observed).
    pub const RPC_E_TOO_LATE: Self = Self::from_bits(0x8001_0119);
    /// Called on a thread other than the one that must make the call.
    pub const RPC_E_WRONG_THREAD: Self = Self::from_bits(0x8001_010E);
    /// `HRESULT_FROM_WIN32(ERROR_INVALID_STATE)`: what HDV returns for a section-backed mapping
    /// before the VM runs (hdv.md §3.3, observed on 10.0.26100).
    pub const INVALID_STATE: Self = Self::from_win32(ERROR_INVALID_STATE);

    /// The HRESULT with these 32 bits.
    pub const fn from_bits(bits: u32) -> Self {
        Self(bits as i32)
    }

    /// The 32 bits of the HRESULT.
    pub const fn bits(self) -> u32 {
        self.0 as u32
    }

    /// `HRESULT_FROM_WIN32`: facility 7 with the error code in the low 16 bits; 0 stays S_OK.
    pub const fn from_win32(code: u32) -> Self {
        if code == 0 {
            Self::S_OK
        } else {
            Self::from_bits((code & 0xFFFF) | 0x8007_0000)
        }
    }

    /// `SUCCEEDED(hr)`.
    pub const fn is_success(self) -> bool {
        self.0 >= 0
    }

    /// `Ok(())` on success, the HRESULT itself on failure.
    pub const fn ok(self) -> Result<(), Self> {
        if self.is_success() { Ok(()) } else { Err(self) }
    }

    /// The HRESULT that reports `result` to a caller that only understands HRESULTs.
    pub const fn from_result(result: Result<(), Self>) -> Self {
        match result {
            Ok(()) => Self::S_OK,
            Err(hr) => hr,
        }
    }

    /// The symbolic name of the values this crate knows, for messages.
    pub const fn name(self) -> Option<&'static str> {
        Some(match self {
            Self::S_OK => "S_OK",
            Self::E_FAIL => "E_FAIL",
            Self::E_NOTIMPL => "E_NOTIMPL",
            Self::E_UNEXPECTED => "E_UNEXPECTED",
            Self::E_POINTER => "E_POINTER",
            Self::E_INVALIDARG => "E_INVALIDARG",
            Self::E_HANDLE => "E_HANDLE",
            Self::E_ACCESSDENIED => "E_ACCESSDENIED",
            Self::E_OUTOFMEMORY => "E_OUTOFMEMORY",
            Self::RPC_E_TOO_LATE => "RPC_E_TOO_LATE",
            Self::RPC_E_WRONG_THREAD => "RPC_E_WRONG_THREAD",
            Self::INVALID_STATE => "HRESULT_FROM_WIN32(ERROR_INVALID_STATE)",
            _ => return None,
        })
    }
}

impl fmt::Display for HResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "0x{:08X} ({name})", self.bits()),
            None => write!(f, "0x{:08X}", self.bits()),
        }
    }
}

impl fmt::Debug for HResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for HResult {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observed_values_match_the_reference() {
        assert_eq!(HResult::INVALID_STATE.bits(), 0x8007_139F);
        assert_eq!(HResult::RPC_E_TOO_LATE.bits(), 0x8001_0119);
        assert_eq!(HResult::from_win32(0), HResult::S_OK);
        assert!(!HResult::INVALID_STATE.is_success());
        assert_eq!(HResult::S_OK.ok(), Ok(()));
        assert_eq!(
            HResult::INVALID_STATE.to_string(),
            "0x8007139F (HRESULT_FROM_WIN32(ERROR_INVALID_STATE))"
        );
        assert_eq!(HResult::from_bits(0x8037_0100).to_string(), "0x80370100");
    }
}
