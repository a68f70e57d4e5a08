//! The VM's worker process: every `vmwp.exe` with its command line, then the chosen one's
//! protection level and whether it opens with `PROCESS_DUP_HANDLE` (closed at once).
//!
//! The command line comes from `NtQueryInformationProcess` with information class 60
//! (`ProcessCommandLineInformation`, Windows 8.1 and later), which needs only
//! `PROCESS_QUERY_LIMITED_INFORMATION` (granted for protected processes too); the protection
//! level from `GetProcessInformation(ProcessProtectionLevelInfo)` (Microsoft Learn,
//! "PROCESS_PROTECTION_LEVEL_INFORMATION structure"). Both are resolved at run time.

use std::ffi::c_void;

use windows_sys::Win32::Foundation::{CloseHandle, GetLastError, HANDLE, INVALID_HANDLE_VALUE};
use windows_sys::Win32::System::Diagnostics::ToolHelp::{
    CreateToolhelp32Snapshot, PROCESSENTRY32W, Process32FirstW, Process32NextW, TH32CS_SNAPPROCESS,
};
use windows_sys::Win32::System::Threading::{
    OpenProcess, PROCESS_DUP_HANDLE, PROCESS_PROTECTION_LEVEL_INFORMATION,
    PROCESS_QUERY_LIMITED_INFORMATION, ProcessProtectionLevelInfo,
};

use super::dynamic::{Library, resolve};
use super::from_wide;
use crate::guid::Guid;
use crate::probe::classify::{WorkerMatch, find_worker};
use crate::probe::facts::{Collected, OsError, ProcessFacts, WorkerFacts, WorkerProcessFacts};

type NtQueryInformationProcess =
    unsafe extern "system" fn(HANDLE, i32, *mut c_void, u32, *mut u32) -> i32;
type GetProcessInformation = unsafe extern "system" fn(HANDLE, i32, *mut c_void, u32) -> i32;

/// `ProcessCommandLineInformation`.
const PROCESS_COMMAND_LINE_INFORMATION: i32 = 60;
/// Room for the longest command line (32767 UTF-16 units) and its UNICODE_STRING header.
const COMMAND_LINE_BUFFER: usize = 65_536 + 16;

fn last_error() -> u32 {
    // SAFETY: no preconditions.
    unsafe { GetLastError() }
}

/// `UNICODE_STRING` (x64 layout).
#[repr(C)]
#[derive(Clone, Copy)]
struct UnicodeString {
    length: u16,
    maximum_length: u16,
    buffer: *const u16,
}

fn open(pid: u32, access: u32) -> Collected<HANDLE> {
    // SAFETY: no inheritance; a failure returns null.
    let handle = unsafe { OpenProcess(access, 0, pid) };
    if handle.is_null() {
        Err(OsError::new(
            format!("OpenProcess({pid}, {access:#x})"),
            last_error(),
        ))
    } else {
        Ok(handle)
    }
}

fn command_line(pid: u32) -> Collected<String> {
    let ntdll = Library::load("ntdll.dll")?;
    let query = resolve!(
        ntdll,
        "NtQueryInformationProcess",
        NtQueryInformationProcess
    )?;
    let process = open(pid, PROCESS_QUERY_LIMITED_INFORMATION)?;
    // u64 elements: the buffer starts 8-aligned, as UNICODE_STRING needs.
    let mut buffer = vec![0u64; COMMAND_LINE_BUFFER / 8];
    let mut returned = 0u32;
    // SAFETY: `process` is open with PROCESS_QUERY_LIMITED_INFORMATION; the buffer is
    // writable for its full size.
    let status = unsafe {
        query(
            process,
            PROCESS_COMMAND_LINE_INFORMATION,
            buffer.as_mut_ptr().cast(),
            (buffer.len() * 8) as u32,
            &mut returned,
        )
    };
    // SAFETY: opened above, closed once.
    unsafe { CloseHandle(process) };
    if status < 0 {
        return Err(OsError::new(
            format!("NtQueryInformationProcess({pid}, ProcessCommandLineInformation)"),
            status as u32,
        ));
    }
    // SAFETY: on success the buffer starts with a UNICODE_STRING (8-aligned, see above).
    let header = unsafe { std::ptr::read(buffer.as_ptr().cast::<UnicodeString>()) };
    let base = buffer.as_ptr() as usize;
    let end = base + buffer.len() * 8;
    let start = header.buffer as usize;
    let units = usize::from(header.length) / 2;
    if header.buffer.is_null() || start < base || start + units * 2 > end {
        return Ok(String::new());
    }
    // SAFETY: checked above: the string lies inside `buffer`, which is alive.
    let text = unsafe { std::slice::from_raw_parts(header.buffer, units) };
    let _ = header.maximum_length;
    Ok(from_wide(text))
}

fn vmwp_processes() -> Collected<Vec<ProcessFacts>> {
    // SAFETY: a snapshot of every process.
    let snapshot = unsafe { CreateToolhelp32Snapshot(TH32CS_SNAPPROCESS, 0) };
    if snapshot == INVALID_HANDLE_VALUE {
        return Err(OsError::new("CreateToolhelp32Snapshot", last_error()));
    }
    let mut processes = Vec::new();
    // SAFETY: PROCESSENTRY32W is plain data; dwSize is set before use.
    let mut entry: PROCESSENTRY32W = unsafe { std::mem::zeroed() };
    entry.dwSize = std::mem::size_of::<PROCESSENTRY32W>() as u32;
    // SAFETY: `snapshot` is open; `entry` has its size set.
    let mut more = unsafe { Process32FirstW(snapshot, &mut entry) } != 0;
    while more {
        let image = from_wide(&entry.szExeFile);
        if image.eq_ignore_ascii_case("vmwp.exe") {
            processes.push(ProcessFacts {
                pid: entry.th32ProcessID,
                command_line: command_line(entry.th32ProcessID),
                image,
            });
        }
        // SAFETY: as above.
        more = unsafe { Process32NextW(snapshot, &mut entry) } != 0;
    }
    // SAFETY: opened above, closed once.
    unsafe { CloseHandle(snapshot) };
    Ok(processes)
}

fn protection_level(pid: u32) -> Collected<u32> {
    let kernel32 = Library::load("kernel32.dll")?;
    let get = resolve!(kernel32, "GetProcessInformation", GetProcessInformation)?;
    let process = open(pid, PROCESS_QUERY_LIMITED_INFORMATION)?;
    let mut info = PROCESS_PROTECTION_LEVEL_INFORMATION { ProtectionLevel: 0 };
    // SAFETY: `process` is open with PROCESS_QUERY_LIMITED_INFORMATION; `info` has the size
    // passed.
    let ok = unsafe {
        get(
            process,
            ProcessProtectionLevelInfo,
            (&mut info as *mut PROCESS_PROTECTION_LEVEL_INFORMATION).cast(),
            std::mem::size_of::<PROCESS_PROTECTION_LEVEL_INFORMATION>() as u32,
        )
    };
    let result = if ok == 0 {
        Err(OsError::new(
            format!("GetProcessInformation({pid}, ProcessProtectionLevelInfo)"),
            last_error(),
        ))
    } else {
        Ok(info.ProtectionLevel)
    };
    // SAFETY: opened above, closed once.
    unsafe { CloseHandle(process) };
    result
}

fn dup_handle_open(pid: u32) -> Collected<()> {
    let process = open(pid, PROCESS_DUP_HANDLE)?;
    // SAFETY: opened above, closed at once: nothing is duplicated.
    unsafe { CloseHandle(process) };
    Ok(())
}

/// Lists the `vmwp.exe` processes and examines the VM's.
pub fn collect(vm_id: Guid) -> WorkerFacts {
    let processes = vmwp_processes();
    let chosen = match processes.as_ref().map(|list| find_worker(list, vm_id)) {
        Ok(WorkerMatch::One(pid)) => Some(WorkerProcessFacts {
            pid,
            protection_level: protection_level(pid),
            dup_handle_open: dup_handle_open(pid),
        }),
        _ => None,
    };
    WorkerFacts { processes, chosen }
}
