//! The KMCL table the Windows driver uses: resolved once at load time, then read by every call.
//!
//! DriverEntry resolves the table from the loaded `vmbkmclr.sys` ([`crate::resolve`]) and
//! [`Vmbkmclr::install`]s it before it creates anything that could call KMCL; every later call
//! reads it through [`Vmbkmclr`], a [`KmclProvider`]. The table lives in static storage (a
//! driver must free every pool allocation before unload, so nothing is leaked to get a
//! `'static`), written once and never again.
//!
//! Before installation (never reached by the driver, which fails DriverEntry when resolution
//! fails) the provider returns [`UNRESOLVED`]: every entry that returns a status fails with
//! `STATUS_PROCEDURE_NOT_FOUND`, so the first `VmbChannelAllocate` fails cleanly and nothing
//! else runs; the `VOID` entries do nothing. No path panics for want of a table.

use core::cell::UnsafeCell;
use core::ffi::c_void;
use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicU8, Ordering};

use crate::provider::KmclProvider;
use crate::raw::{
    BOOLEAN, GUID, HANDLE, NTSTATUS, PCUNICODE_STRING, PDEVICE_OBJECT,
    PFN_VMB_CHANNEL_PROCESS_PACKET, PFN_VMB_CHANNEL_PROCESSING_COMPLETE,
    PVMB_CHANNEL_STATE_CHANGE_CALLBACKS, STATUS_PROCEDURE_NOT_FOUND, VMBCHANNEL,
    VMBPACKETCOMPLETION,
};
use crate::table::KmclApi;

/// A [`KmclApi`] written at most once, then read from any thread.
pub struct TableCell {
    /// [`EMPTY`], [`WRITING`] or [`READY`].
    state: AtomicU8,
    table: UnsafeCell<MaybeUninit<KmclApi>>,
}

const EMPTY: u8 = 0;
const WRITING: u8 = 1;
const READY: u8 = 2;

// SAFETY: the table is written only by the one `set` that moved the state from EMPTY to WRITING,
// and read only after a reader saw READY (Acquire), which the writer stores (Release) after the
// write: no read overlaps the write, and after it the table is never written again. `KmclApi`
// holds only function pointers (Send + Sync).
unsafe impl Sync for TableCell {}

/// Why [`TableCell::set`] refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AlreadyInstalled;

impl TableCell {
    /// An empty cell.
    pub const fn new() -> Self {
        Self {
            state: AtomicU8::new(EMPTY),
            table: UnsafeCell::new(MaybeUninit::uninit()),
        }
    }

    /// Stores `table` if the cell is empty. IRQL: any (atomics and a copy).
    pub fn set(&self, table: KmclApi) -> Result<(), AlreadyInstalled> {
        self.state
            .compare_exchange(EMPTY, WRITING, Ordering::Acquire, Ordering::Relaxed)
            .map_err(|_| AlreadyInstalled)?;
        // SAFETY: this thread won the EMPTY → WRITING exchange, so it is the only writer ever,
        // and no reader looks at the table before READY is stored below.
        unsafe { (*self.table.get()).write(table) };
        self.state.store(READY, Ordering::Release);
        Ok(())
    }

    /// The stored table, once [`TableCell::set`] finished. IRQL: any.
    pub fn get(&self) -> Option<&KmclApi> {
        if self.state.load(Ordering::Acquire) != READY {
            return None;
        }
        // SAFETY: READY is stored (Release) only after the table was fully written, this load
        // (Acquire) saw it, and the table is never written again.
        let table: *const MaybeUninit<KmclApi> = self.table.get();
        // SAFETY: the pointer is the cell's own, valid for `&self`, and nobody writes through it
        // any more (above).
        let table: &MaybeUninit<KmclApi> = unsafe { &*table };
        // SAFETY: initialised before READY was stored (above).
        Some(unsafe { table.assume_init_ref() })
    }
}

impl Default for TableCell {
    fn default() -> Self {
        Self::new()
    }
}

/// The driver's table, filled by DriverEntry.
static VMBKMCLR_TABLE: TableCell = TableCell::new();

/// The provider the Windows driver uses: the table resolved from the loaded `vmbkmclr.sys`.
pub struct Vmbkmclr;

impl Vmbkmclr {
    /// Installs the resolved table. Called once, by DriverEntry, before anything that could
    /// call KMCL exists. IRQL: any.
    pub fn install(table: KmclApi) -> Result<(), AlreadyInstalled> {
        VMBKMCLR_TABLE.set(table)
    }

    /// Whether a table is installed.
    pub fn is_installed() -> bool {
        VMBKMCLR_TABLE.get().is_some()
    }
}

impl KmclProvider for Vmbkmclr {
    fn api() -> &'static KmclApi {
        VMBKMCLR_TABLE.get().unwrap_or(&UNRESOLVED)
    }
}

extern "system" fn not_found_allocate(
    _: PDEVICE_OBJECT,
    _: BOOLEAN,
    _: *mut VMBCHANNEL,
) -> NTSTATUS {
    STATUS_PROCEDURE_NOT_FOUND
}
extern "system" fn not_found_channel(_: VMBCHANNEL) -> NTSTATUS {
    STATUS_PROCEDURE_NOT_FOUND
}
extern "system" fn nothing_channel(_: VMBCHANNEL) {}
extern "system" fn not_found_u32(_: VMBCHANNEL, _: u32) -> NTSTATUS {
    STATUS_PROCEDURE_NOT_FOUND
}
extern "system" fn not_found_state_callbacks(
    _: VMBCHANNEL,
    _: PVMB_CHANNEL_STATE_CHANGE_CALLBACKS,
) -> NTSTATUS {
    STATUS_PROCEDURE_NOT_FOUND
}
extern "system" fn not_found_packet_callbacks(
    _: VMBCHANNEL,
    _: PFN_VMB_CHANNEL_PROCESS_PACKET,
    _: PFN_VMB_CHANNEL_PROCESSING_COMPLETE,
) -> NTSTATUS {
    STATUS_PROCEDURE_NOT_FOUND
}
extern "system" fn not_found_name(_: VMBCHANNEL, _: PCUNICODE_STRING) -> NTSTATUS {
    STATUS_PROCEDURE_NOT_FOUND
}
extern "system" fn not_found_mmio(_: VMBCHANNEL, _: u16, _: u16) -> NTSTATUS {
    STATUS_PROCEDURE_NOT_FOUND
}
extern "system" fn not_found_interface(_: VMBCHANNEL, _: GUID, _: GUID) -> NTSTATUS {
    STATUS_PROCEDURE_NOT_FOUND
}
extern "system" fn not_found_handle(_: VMBCHANNEL, _: HANDLE) -> NTSTATUS {
    STATUS_PROCEDURE_NOT_FOUND
}
extern "system" fn not_found_convert(_: HANDLE, _: *mut HANDLE) -> NTSTATUS {
    STATUS_PROCEDURE_NOT_FOUND
}
extern "system" fn nothing_set_pointer(_: VMBCHANNEL, _: *mut c_void) {}
extern "system" fn null_get_pointer(_: VMBCHANNEL) -> *mut c_void {
    core::ptr::null_mut()
}
extern "system" fn nothing_passive(_: VMBCHANNEL, _: BOOLEAN) {}
extern "system" fn nothing_complete(_: VMBPACKETCOMPLETION, _: *mut c_void, _: u32) {}

/// The table before installation: statuses are `STATUS_PROCEDURE_NOT_FOUND`, `VOID` entries do
/// nothing, `VmbChannelGetPointer` returns NULL, and every optional entry is `None`.
pub static UNRESOLVED: KmclApi = KmclApi {
    VmbChannelAllocate: not_found_allocate,
    VmbChannelCleanup: nothing_channel,
    VmbChannelEnable: not_found_channel,
    VmbChannelDisable: nothing_channel,
    VmbChannelStart: nothing_channel,
    VmbChannelPause: None,
    VmbChannelInitSetMaximumPacketSize: not_found_u32,
    VmbChannelInitSetStateChangeCallbacks: not_found_state_callbacks,
    VmbChannelInitSetProcessPacketCallbacks: not_found_packet_callbacks,
    VmbChannelInitSetFriendlyName: not_found_name,
    VmbChannelInitSetFlags: None,
    VmbServerChannelInitSetFlags: not_found_u32,
    VmbServerChannelInitSetMmioMegabytes: not_found_mmio,
    VmbServerChannelInitSetTargetInterfaceId: not_found_interface,
    VmbServerChannelInitSetVmbusHandle: not_found_handle,
    VmbConvertVmbusHandleToKernelHandle: not_found_convert,
    VmbChannelSetPointer: nothing_set_pointer,
    VmbChannelGetPointer: null_get_pointer,
    VmbChannelSetIncomingProcessingAtPassive: nothing_passive,
    VmbChannelPacketComplete: nothing_complete,
    VmbChannelPacketDeferToPassive: None,
    VmbChannelPacketFail: None,
    VmbPacketAllocate: None,
    VmbPacketFree: None,
    VmbPacketSetCompletionRoutine: None,
    VmbPacketSend: None,
    VmbChannelGetMmioSpace: None,
};

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;

    #[test]
    fn a_cell_is_written_once() {
        let cell = TableCell::new();
        assert!(cell.get().is_none());
        assert_eq!(cell.set(UNRESOLVED), Ok(()));
        assert_eq!(cell.set(UNRESOLVED), Err(AlreadyInstalled));
        let table = cell.get().map(|t| t.VmbChannelAllocate as usize);
        assert_eq!(table, Some(UNRESOLVED.VmbChannelAllocate as usize));
    }

    #[test]
    fn racing_writers_install_exactly_one_table() {
        static CELL: TableCell = TableCell::new();
        let winners: usize = std::thread::scope(|scope| {
            let handles: alloc::vec::Vec<_> = (0..8)
                .map(|_| scope.spawn(|| CELL.set(UNRESOLVED).is_ok()))
                .collect();
            handles
                .into_iter()
                .map(|h| usize::from(h.join().unwrap_or(false)))
                .sum()
        });
        assert_eq!(winners, 1);
        assert!(CELL.get().is_some());
    }

    #[test]
    fn the_unresolved_table_fails_the_first_call_and_lacks_every_optional_entry() {
        let mut channel: VMBCHANNEL = core::ptr::null_mut();
        // SAFETY: the stub ignores its arguments.
        let status =
            unsafe { (UNRESOLVED.VmbChannelAllocate)(core::ptr::null_mut(), 1, &raw mut channel) };
        assert_eq!(status, STATUS_PROCEDURE_NOT_FOUND);
        assert!(channel.is_null());
        assert_eq!(UNRESOLVED.missing_optional().len(), 9);
    }
}
