//! Section views (`MapViewOfFile`), handle closing, and the loopback mode's sections
//! (`CreateFileMappingW`, `DuplicateHandle`).

use std::ffi::c_void;
use std::ptr::{null, null_mut};

use windows_sys::Win32::Foundation::{
    CloseHandle, DUPLICATE_SAME_ACCESS, DuplicateHandle, FALSE, GetLastError, HANDLE,
    INVALID_HANDLE_VALUE,
};
use windows_sys::Win32::System::Memory::{
    CreateFileMappingW, FILE_MAP_READ, FILE_MAP_WRITE, MEMORY_MAPPED_VIEW_ADDRESS, MapViewOfFile,
    PAGE_READWRITE, SEC_COMMIT, UnmapViewOfFile,
};
use windows_sys::Win32::System::Threading::GetCurrentProcess;

use crate::driver::{DriverError, SectionAccess};
use crate::loopback::SectionFactory;
use crate::platform::SectionHandle;
use crate::views::{SectionMapper, SectionView, ViewError, check_bounds};

fn last_error() -> u32 {
    // SAFETY: no preconditions.
    unsafe { GetLastError() }
}

/// A mapped view; unmapped on drop.
#[derive(Debug)]
pub struct WinView {
    base: *mut c_void,
    size: u64,
    writable: bool,
}

// SAFETY: the view is plain process memory valid until drop; every access goes through raw
// copies (no references into it), so sharing the pointer between threads is sound.
unsafe impl Send for WinView {}
// SAFETY: as for Send: `&WinView` only allows bounds-checked raw copies.
unsafe impl Sync for WinView {}

impl SectionView for WinView {
    fn size(&self) -> u64 {
        self.size
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), ViewError> {
        check_bounds(offset, out.len(), self.size)?;
        let source = self
            .base
            .cast::<u8>()
            .cast_const()
            .wrapping_add(offset as usize);
        // SAFETY: `offset + out.len() <= size` (checked), so the source lies in the mapped
        // view. The memory is shared with the guest and the driver; copying bytes from it is
        // the intended (racy by nature) access and creates no reference into it.
        unsafe { std::ptr::copy_nonoverlapping(source, out.as_mut_ptr(), out.len()) };
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), ViewError> {
        if !self.writable {
            return Err(ViewError::AccessDenied);
        }
        check_bounds(offset, data.len(), self.size)?;
        let target = self.base.cast::<u8>().wrapping_add(offset as usize);
        // SAFETY: in bounds (checked) of a view mapped with FILE_MAP_WRITE; as for `read`.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), target, data.len()) };
        Ok(())
    }
}

impl Drop for WinView {
    fn drop(&mut self) {
        // SAFETY: `base` is the address MapViewOfFile returned, unmapped exactly once here.
        unsafe { UnmapViewOfFile(MEMORY_MAPPED_VIEW_ADDRESS { Value: self.base }) };
    }
}

/// Maps views of section handles of this process and closes them.
#[derive(Debug, Default)]
pub struct WinSectionMapper;

impl SectionMapper for WinSectionMapper {
    type View = WinView;

    fn map_view(
        &mut self,
        handle: SectionHandle,
        size: u64,
        access: SectionAccess,
    ) -> Result<WinView, ViewError> {
        let bytes = usize::try_from(size).map_err(|_| ViewError::TooLarge {
            requested: size,
            available: usize::MAX as u64,
        })?;
        let (desired, writable) = match access {
            SectionAccess::Read => (FILE_MAP_READ, false),
            SectionAccess::ReadWrite => (FILE_MAP_READ | FILE_MAP_WRITE, true),
        };
        // SAFETY: `handle` is a section handle of this process (from the driver); the view
        // is owned by the returned WinView.
        let view = unsafe { MapViewOfFile(handle.0 as HANDLE, desired, 0, 0, bytes) };
        if view.Value.is_null() {
            return Err(ViewError::Os { code: last_error() });
        }
        Ok(WinView {
            base: view.Value,
            size,
            writable,
        })
    }

    fn close_handle(&mut self, handle: SectionHandle) {
        close_section_handle(handle);
    }
}

/// The one way the device host closes a section handle it owns, whichever owner it is with: the
/// driver client (a handle it refused) or the section mapper (every accepted handle).
pub(crate) fn close_section_handle(handle: SectionHandle) {
    // SAFETY: the caller owns `handle`, a handle of this process, and closes it exactly once.
    unsafe { CloseHandle(handle.0 as HANDLE) };
}

/// Pagefile-backed sections for `--loopback` (hdv.md §6.3 creates them the same way).
#[derive(Debug, Default)]
pub struct WinSectionFactory;

impl SectionFactory for WinSectionFactory {
    fn create_section(&mut self, size: u64) -> Result<SectionHandle, DriverError> {
        // SAFETY: an unnamed pagefile-backed section with default security; the returned
        // handle is owned by the loopback driver.
        let handle = unsafe {
            CreateFileMappingW(
                INVALID_HANDLE_VALUE,
                null(),
                PAGE_READWRITE | SEC_COMMIT,
                (size >> 32) as u32,
                size as u32,
                null(),
            )
        };
        if handle.is_null() {
            return Err(DriverError::Os { code: last_error() });
        }
        Ok(SectionHandle(handle as u64))
    }

    fn duplicate_handle(
        &mut self,
        handle: SectionHandle,
        access: SectionAccess,
    ) -> Result<SectionHandle, DriverError> {
        // SAFETY: no preconditions; the pseudo-handle needs no closing.
        let process = unsafe { GetCurrentProcess() };
        let mut duplicate: HANDLE = null_mut();
        let (desired, options) = match access {
            SectionAccess::Read => (FILE_MAP_READ, 0),
            SectionAccess::ReadWrite => (0, DUPLICATE_SAME_ACCESS),
        };
        // SAFETY: `handle` is a live section handle of this process; `duplicate` is a valid
        // out pointer; the duplicate is owned by the caller.
        let ok = unsafe {
            DuplicateHandle(
                process,
                handle.0 as HANDLE,
                process,
                &mut duplicate,
                desired,
                FALSE,
                options,
            )
        };
        if ok == FALSE {
            return Err(DriverError::Os { code: last_error() });
        }
        Ok(SectionHandle(duplicate as u64))
    }

    fn close_section(&mut self, handle: SectionHandle) {
        // SAFETY: the loopback driver owns `handle` and closes it exactly once.
        unsafe { CloseHandle(handle.0 as HANDLE) };
    }
}
