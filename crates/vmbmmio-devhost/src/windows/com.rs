//! COM for the device-host thread: HDV calls back through COM from the VM worker (hdv.md §3.1);
//! the one public device host initializes a multithreaded apartment first (§6.4 step 1).

use windows_sys::Win32::System::Com::{COINIT_MULTITHREADED, CoInitializeEx, CoUninitialize};

use crate::hresult::HResult;

/// The calling thread's membership in the multithreaded apartment; left on drop.
#[derive(Debug)]
pub struct ComApartment {
    _not_send: std::marker::PhantomData<*const ()>,
}

impl ComApartment {
    /// `CoInitializeEx(NULL, COINIT_MULTITHREADED)` on the calling thread.
    pub fn enter() -> Result<Self, HResult> {
        // SAFETY: the reserved argument is null as documented; no other preconditions.
        let hr = unsafe { CoInitializeEx(std::ptr::null(), COINIT_MULTITHREADED as u32) };
        HResult(hr).ok()?;
        Ok(Self {
            _not_send: std::marker::PhantomData,
        })
    }
}

impl Drop for ComApartment {
    fn drop(&mut self) {
        // SAFETY: balances the successful CoInitializeEx of `enter` on the same thread (the
        // type is not Send).
        unsafe { CoUninitialize() };
    }
}
