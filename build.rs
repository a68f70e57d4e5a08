//! Build script of the driver package.
//!
//! On a Windows build host it runs windows-drivers-rs's KMDF binary configuration (WDK library
//! paths, `/DRIVER` link arguments, the `driver_model__driver_type` cfg). Elsewhere it does
//! nothing: wdk-build refuses to compile off Windows, and the Linux build only needs the
//! driver's portable modules.

#[cfg(windows)]
fn main() -> Result<(), wdk_build::ConfigError> {
    wdk_build::configure_wdk_binary_build()
}

#[cfg(not(windows))]
fn main() {}
