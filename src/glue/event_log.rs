//! Writing DriverEntry's failure to the System event log and the debugger.
//!
//! An I/O error-log entry (Microsoft Learn, "Writing to the System Event Log";
//! "IoAllocateErrorLogEntry function (wdm.h)", "IoWriteErrorLogEntry function (wdm.h)") is an
//! `IO_ERROR_LOG_PACKET` followed by NUL-terminated UTF-16 insertion strings, at most
//! `ERROR_LOG_MAXIMUM_SIZE` (240) bytes in all. The text and the number of entries are decided
//! by the portable code (`HostLibraryError::event_lines`: one entry per missing required KMCL
//! entry, each short enough); this module only fills the packets.
//!
//! Each entry carries `IO_ERR_CONFIGURATION_ERROR` (ntiologc.h), whose message in
//! `IoLogMsg.dll` (the event message file the INF registers) reads as a configuration error of
//! `\Driver\vmbmmio`; the line naming what is missing is the entry's insertion string (Event
//! Viewer: Details), the NTSTATUS DriverEntry returns is its final status, and the missing
//! required entries' bit mask (docs/ioctl.md's KMCL bit order) is its dump data.
//!
//! IRQL: PASSIVE_LEVEL here (DriverEntry); both routines allow <= DISPATCH_LEVEL.

use kmcl::resolve::{EventLine, HostLibraryError};
use wdk_sys::ntddk::{DbgPrint, IoAllocateErrorLogEntry, IoWriteErrorLogEntry};
use wdk_sys::{IO_ERROR_LOG_PACKET, NTSTATUS, PDRIVER_OBJECT};

/// `IO_ERR_CONFIGURATION_ERROR` (ntiologc.h).
const IO_ERR_CONFIGURATION_ERROR: NTSTATUS = 0xC004_0003_u32 as i32;
/// `ERROR_LOG_MAXIMUM_SIZE` (wdm.h).
const ERROR_LOG_MAXIMUM_SIZE: usize = 240;
/// `UniqueErrorValue` of a "required entry missing" line, and of any other failure.
const UNIQUE_MISSING_ENTRY: u32 = 1;
const UNIQUE_OTHER: u32 = 2;

/// Logs `error` (every line to the event log and the debugger).
pub(super) fn report_failure(driver: PDRIVER_OBJECT, error: &HostLibraryError) {
    let unique = if error.missing_bits() != 0 {
        UNIQUE_MISSING_ENTRY
    } else {
        UNIQUE_OTHER
    };
    error.event_lines(|line| {
        debug_line(&line);
        write_entry(
            driver,
            &line,
            error.ntstatus(),
            unique,
            error.missing_bits(),
        );
    });
}

/// One line to the debugger (`DbgPrint`, shown by a kernel debugger or DebugView).
pub(super) fn debug_line(line: &EventLine) {
    // SAFETY: a NUL-terminated format whose one conversion (%s) matches the one NUL-terminated
    // string argument, which lives across the call.
    unsafe { DbgPrint(c"vmbmmio: %s\n".as_ptr(), line.as_c_str().as_ptr()) };
}

fn write_entry(driver: PDRIVER_OBJECT, line: &EventLine, status: NTSTATUS, unique: u32, dump: u32) {
    let header = size_of::<IO_ERROR_LOG_PACKET>();
    let text = line.as_str();
    // ASCII: one UTF-16 unit per byte, plus the NUL.
    let units = text.len().saturating_add(1);
    let total = units.saturating_mul(2).saturating_add(header);
    let (Ok(size), Ok(offset)) = (u8::try_from(total), u16::try_from(header)) else {
        return;
    };
    if total > ERROR_LOG_MAXIMUM_SIZE {
        return;
    }
    // SAFETY: `driver` is this driver's object (DriverEntry's argument), a valid IoObject for
    // the routine; `size` is at most ERROR_LOG_MAXIMUM_SIZE.
    let entry = unsafe { IoAllocateErrorLogEntry(driver.cast(), size) };
    let packet = entry.cast::<IO_ERROR_LOG_PACKET>();
    if packet.is_null() {
        return;
    }
    let mut filled = IO_ERROR_LOG_PACKET {
        DumpDataSize: size_of::<u32>() as u16,
        NumberOfStrings: 1,
        StringOffset: offset,
        ErrorCode: IO_ERR_CONFIGURATION_ERROR,
        UniqueErrorValue: unique,
        FinalStatus: status,
        ..IO_ERROR_LOG_PACKET::default()
    };
    filled.DumpData = [dump];
    // SAFETY: the routine returned a non-NULL entry of `size` bytes, suitably aligned for the
    // packet, which this driver owns until IoWriteErrorLogEntry.
    unsafe { packet.write(filled) };
    let strings = entry.cast::<u8>().wrapping_add(header).cast::<u16>();
    for (index, unit) in text.encode_utf16().chain(core::iter::once(0)).enumerate() {
        // SAFETY: `index < units` and `header + 2 * units == total == size`, so every unit lies
        // inside the entry; unaligned writes need no alignment.
        unsafe { strings.wrapping_add(index).write_unaligned(unit) };
    }
    // SAFETY: a fully filled entry from IoAllocateErrorLogEntry, handed over exactly once (the
    // I/O manager frees it).
    unsafe { IoWriteErrorLogEntry(entry) };
}
