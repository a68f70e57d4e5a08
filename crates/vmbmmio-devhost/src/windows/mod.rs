//! Windows backends of the platform traits, with `windows-sys`. Thin and mechanical: every
//! decision lives in the portable modules; each function here makes one documented call and
//! converts its result. Compiled only on Windows; type-checked on Linux by
//! `scripts/check-windows-target.sh`, never run here.

pub mod com;
pub mod console;
pub mod hcs;
pub mod hdv;
pub mod hyperv;
pub mod ioctl;
pub mod sections;
mod trampolines;
mod wide;

pub use com::ComApartment;
pub use console::{clear_stop_hook, install_ctrl_c_handler, set_stop_hook};
pub use hcs::WinHcs;
pub use hdv::WinHdv;
pub use hyperv::{HcsEntries, HdvEntries, HyperV, component_statuses, hyperv};
pub use ioctl::{CONTROL_DEVICE_PATH, DeviceIoControlTransport};
pub use sections::{WinSectionFactory, WinSectionMapper, WinView};
