//! The vPCI model: how an HDV device reaches the guest as a PCI function, and where the guest
//! puts its BARs.
//!
//! # Why it exists
//! On Hyper-V an HDV device appears to the guest as a Hyper-V vPCI device (hdv.md §5 step 4).
//! Its BAR base registers and its command register's memory-decode bit belong to the platform
//! (the VM worker's vPCI), not to the device host's emulator: the observed run on
//! 10.0.26100 saw the host's vPCI handle the BAR registers itself (hdv.md §3.3), OpenHCL's
//! `vpci_client` shadows BAR reads because Hyper-V does not handle them consistently, and
//! OpenVMM's vPCI applies the guest's BARs in `set_bars` (platform-paths.md G3). The model
//! therefore keeps those registers in the platform ([`function`], served by the HDV model's
//! `vpci_host`), and a guest address reaches a BAR only where the platform placed it with
//! decode on ([`crate::guest_memory`]). HDV's section-backed ranges are BAR-relative (hdv.md
//! §3.3), so they appear wherever the guest put the BAR.
//!
//! # The guests ([`GuestPci`], by [`crate::vm::GuestKind`])
//! - **Linux** (pci-hyperv, torvalds/linux `drivers/pci/controller/pci-hyperv.c`; anchors.md
//!   §2.3, platform-paths.md G1, G2): a 0x2000-byte configuration window aligned to 0x1000 at
//!   or above 4 GiB (`hv_allocate_config_window`, after the kdump fix); the BAR sizes surveyed
//!   page-rounded from the probed BARs (`survey_child_resources`, `get_bar_size`): 64-bit BARs
//!   make one high bridge window, 32-bit BARs one low window, each aligned to the largest power
//!   of two not above its size (`hv_pci_allocate_bridge_windows`, "Need %#llx of high MMIO
//!   space. Consider reconfiguring the VM." when there is no room); then `prepopulate_bars`:
//!   decode off, BARs packed largest first into the windows, decode **left off**. A guest
//!   driver turns decode on later (`pci_enable_device`): [`GuestPci::set_memory_decode`].
//! - **Windows** (vpci.sys and the PnP arbiter; platform-paths.md G3, G6): each BAR gets its
//!   own PnP assignment from the pool, aligned to its size, sent to the host in
//!   `ASSIGNED_RESOURCES` and applied like OpenVMM `set_bars` (alignment checked, no range
//!   check); then the device starts with memory decode on.
//! - A Linux kernel driver may move a BAR on purpose (platform-paths.md J2: decode off, write the
//!   BAR, decode on), for instance into a range its channel driver claimed:
//!   [`GuestPci::move_bar`]. The platform accepts any BAR aligned to its size (OpenVMM
//!   `set_bars` does no range check; whether Hyper-V's vmvpci checks is open, Q2.2), and the
//!   guest view flags a BAR outside its own window ([`GuestBar::inside_own_window`]) so that a
//!   demo can name the assumption.
//!
//! Guest code keeps its own shadow of what it wrote to the BAR registers ([`GuestPci::bar`]),
//! because BAR reads are unreliable (the model: all ones).

pub mod function;
mod guest;
mod linux;
mod windows;

pub use function::PlatformBar;
pub use guest::{BusReport, Capability, GuestBar, GuestPci, GuestPciError, PciFunction};
