//! Ctrl-C, Ctrl-Break and console close ask the device host to stop and release everything.
//!
//! The handler runs on a thread the console creates (Microsoft Learn, "HandlerRoutine callback
//! function"): it sets the flag the sequence polls and calls the one stop hook `main`
//! registered, which stops the guest-event loop early (its flag, then `CancelIoEx` on the
//! pending WAIT_GUEST_EVENT). The device host's thread still stops and joins the loop before
//! CLOSE_SESSION; the hook only makes the waiting thread end at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

use windows_sys::Win32::Foundation::{FALSE, TRUE};
use windows_sys::Win32::System::Console::{
    CTRL_BREAK_EVENT, CTRL_C_EVENT, CTRL_CLOSE_EVENT, SetConsoleCtrlHandler,
};
use windows_sys::core::BOOL;

use crate::hresult::HResult;

static STOP: AtomicBool = AtomicBool::new(false);

/// Called by the handler after it set [`STOP`].
type StopHook = Box<dyn Fn() + Send + Sync>;
static STOP_HOOK: Mutex<Option<StopHook>> = Mutex::new(None);

/// Runs on a thread the console creates; sets the flag and calls the stop hook. Never panics
/// (a panic cannot cross this `extern "system"` boundary).
unsafe extern "system" fn on_console_event(event: u32) -> BOOL {
    match event {
        CTRL_C_EVENT | CTRL_BREAK_EVENT | CTRL_CLOSE_EVENT => {
            STOP.store(true, Ordering::SeqCst);
            let hook = STOP_HOOK.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(hook) = hook.as_ref() {
                hook();
            }
            TRUE
        }
        _ => FALSE,
    }
}

/// Registers `hook`, called on the handler's thread at every Ctrl-C, Ctrl-Break and console
/// close after the stop flag is set (replacing an earlier hook). Keep it short and
/// non-blocking: `main` passes the guest-event loop's `LoopStopHandle::request_stop`.
pub fn set_stop_hook(hook: impl Fn() + Send + Sync + 'static) {
    *STOP_HOOK.lock().unwrap_or_else(PoisonError::into_inner) = Some(Box::new(hook));
}

/// Removes the stop hook (after the run, so nothing the hook holds outlives it).
pub fn clear_stop_hook() {
    STOP_HOOK
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
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
