//! Entry points resolved at run time: a library from System32 only
//! (`LOAD_LIBRARY_SEARCH_SYSTEM32`), one `GetProcAddress` per name. A missing library or entry
//! point becomes an [`OsError`] naming it, never a load failure of the whole binary.

use std::ffi::CString;

use windows_sys::Win32::Foundation::{FARPROC, GetLastError, HMODULE};
use windows_sys::Win32::System::LibraryLoader::{
    GetProcAddress, LOAD_LIBRARY_SEARCH_SYSTEM32, LoadLibraryExW,
};

use super::wide;
use crate::probe::facts::OsError;

/// A library loaded from System32, kept loaded for the life of the process (its entry points
/// are called until the probe exits; nothing is gained by unloading it).
#[derive(Clone, Copy, Debug)]
pub struct Library {
    module: HMODULE,
    name: &'static str,
}

impl Library {
    /// Loads `name` from System32.
    pub fn load(name: &'static str) -> Result<Self, OsError> {
        let wide_name = wide(name);
        // SAFETY: `wide_name` is NUL-terminated and outlives the call; no file handle.
        let module = unsafe {
            LoadLibraryExW(
                wide_name.as_ptr(),
                std::ptr::null_mut(),
                LOAD_LIBRARY_SEARCH_SYSTEM32,
            )
        };
        if module.is_null() {
            // SAFETY: no preconditions.
            let code = unsafe { GetLastError() };
            return Err(OsError::new(format!("LoadLibraryExW({name})"), code));
        }
        Ok(Self { module, name })
    }

    /// The address of `symbol`.
    pub fn symbol(&self, symbol: &str) -> Result<FARPROC, OsError> {
        let call = || format!("GetProcAddress({}!{symbol})", self.name);
        let c_symbol = CString::new(symbol).map_err(|_| OsError::new(call(), 0))?;
        // SAFETY: `module` is a loaded module; `c_symbol` is NUL-terminated.
        let address = unsafe { GetProcAddress(self.module, c_symbol.as_ptr().cast()) };
        if address.is_none() {
            // SAFETY: no preconditions.
            let code = unsafe { GetLastError() };
            return Err(OsError::new(call(), code));
        }
        Ok(address)
    }
}

/// Resolves `$symbol` of `$library` as the function pointer type `$ty`.
macro_rules! resolve {
    ($library:expr, $symbol:literal, $ty:ty) => {
        $library.symbol($symbol).map(|address| {
            // SAFETY: `$ty` is the documented signature of `$symbol` (the declaration in the
            // Windows SDK header its docs name); a non-null FARPROC is a function address.
            unsafe { std::mem::transmute::<windows_sys::Win32::Foundation::FARPROC, $ty>(address) }
        })
    };
}

pub(crate) use resolve;
