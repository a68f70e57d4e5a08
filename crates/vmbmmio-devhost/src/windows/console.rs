//! Ctrl-C, Ctrl-Break and console close ask the device host to stop and release everything.

use std::sync::atomic::{AtomicBool, Ordering};

use windows_sys::Win32::Foundation::{FALSE, TRUE};
use windows_sys::Win32::System::Console::{
    CTRL_BREAK_EVENT, CTRL_C_EVENT, CTRL_CLOSE_EVENT, SetConsoleCtrlHandler,
};
use windows_sys::core::BOOL;

use crate::hresult::HResult;

static STOP: AtomicBool = AtomicBool::new(false);

/// Runs on a thread the console creates; only sets the flag.
unsafe extern "system" fn on_console_event(event: u32) -> BOOL {
    match event {
        CTRL_C_EVENT | CTRL_BREAK_EVENT | CTRL_CLOSE_EVENT => {
            STOP.store(true, Ordering::SeqCst);
            TRUE
        }
        _ => FALSE,
    }
}

/// Installs the handler and returns the flag it sets.
pub fn install_ctrl_c_handler() -> Result<&'static AtomicBool, HResult> {
    // SAFETY: `on_console_event` is a valid handler for the life of the process (a static fn).
    let ok = unsafe { SetConsoleCtrlHandler(Some(on_console_event), TRUE) };
    if ok == FALSE {
        // SAFETY: no preconditions.
        let code = unsafe { windows_sys::Win32::Foundation::GetLastError() };
        return Err(HResult::from_win32(code));
    }
    Ok(&STOP)
}
