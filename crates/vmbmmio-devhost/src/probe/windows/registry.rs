//! Reading `HKLM` values with `RegGetValueW` (advapi32). An absent value is `Ok(None)`.

use std::ptr::null_mut;

use windows_sys::Win32::Foundation::{ERROR_FILE_NOT_FOUND, ERROR_SUCCESS};
use windows_sys::Win32::System::Registry::{
    HKEY_LOCAL_MACHINE, RRF_RT_REG_DWORD, RRF_RT_REG_SZ, RegGetValueW,
};

use super::{from_wide, wide};
use crate::probe::facts::{Collected, OsError};

fn call(key: &str, value: &str) -> String {
    format!("RegGetValueW(HKLM\\{key}\\{value})")
}

/// A `REG_SZ` value.
pub fn read_sz(key: &str, value: &str) -> Collected<Option<String>> {
    let wide_key = wide(key);
    let wide_value = wide(value);
    let mut size: u32 = 0;
    // SAFETY: key and value names are NUL-terminated; a null data pointer asks for the size.
    let status = unsafe {
        RegGetValueW(
            HKEY_LOCAL_MACHINE,
            wide_key.as_ptr(),
            wide_value.as_ptr(),
            RRF_RT_REG_SZ,
            null_mut(),
            null_mut(),
            &mut size,
        )
    };
    if status == ERROR_FILE_NOT_FOUND {
        return Ok(None);
    }
    if status != ERROR_SUCCESS {
        return Err(OsError::new(call(key, value), status));
    }
    let mut buffer = vec![0u16; (size as usize).div_ceil(2) + 1];
    let mut size = u32::try_from(buffer.len() * 2).unwrap_or(u32::MAX);
    // SAFETY: `buffer` holds `size` bytes; the names are NUL-terminated.
    let status = unsafe {
        RegGetValueW(
            HKEY_LOCAL_MACHINE,
            wide_key.as_ptr(),
            wide_value.as_ptr(),
            RRF_RT_REG_SZ,
            null_mut(),
            buffer.as_mut_ptr().cast(),
            &mut size,
        )
    };
    match status {
        ERROR_SUCCESS => Ok(Some(from_wide(&buffer))),
        ERROR_FILE_NOT_FOUND => Ok(None),
        other => Err(OsError::new(call(key, value), other)),
    }
}

/// A `REG_DWORD` value.
pub fn read_dword(key: &str, value: &str) -> Collected<Option<u32>> {
    let wide_key = wide(key);
    let wide_value = wide(value);
    let mut data: u32 = 0;
    let mut size: u32 = 4;
    // SAFETY: `data` holds 4 bytes; the names are NUL-terminated.
    let status = unsafe {
        RegGetValueW(
            HKEY_LOCAL_MACHINE,
            wide_key.as_ptr(),
            wide_value.as_ptr(),
            RRF_RT_REG_DWORD,
            null_mut(),
            (&mut data as *mut u32).cast(),
            &mut size,
        )
    };
    match status {
        ERROR_SUCCESS => Ok(Some(data)),
        ERROR_FILE_NOT_FOUND => Ok(None),
        other => Err(OsError::new(call(key, value), other)),
    }
}
