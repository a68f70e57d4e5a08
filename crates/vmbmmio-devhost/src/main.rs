//! `vmbmmio-devhost`: command-line entry point of the device host.
//!
//! Validates the configuration on every OS (so a config can be checked anywhere), prints the
//! VM configuration the device needs, and on Windows runs the HCS/HDV sequence until Ctrl-C.
//! Exit codes: 0 clean run, 1 a step or the teardown failed, 2 invalid configuration, 3 not
//! Windows.

use std::process::ExitCode;

use clap::Parser;
use vmbmmio_devhost::config::{self, CliArgs, DeviceHostConfig};
use vmbmmio_devhost::vm_config::flexible_iov_snippet;

fn main() -> ExitCode {
    let cli = CliArgs::parse();
    let config = match config::load(&cli) {
        Ok(config) => config,
        Err(errors) => {
            eprint!("vmbmmio-devhost: {errors}");
            return ExitCode::from(2);
        }
    };
    print_summary(&config);
    platform::run(&config)
}

fn print_summary(config: &DeviceHostConfig) {
    let id = config.pnp_id;
    println!("vmbmmio-devhost: VM {}", config.vm_id);
    println!(
        "vmbmmio-devhost: PCI {:04x}:{:04x} rev {:02x} class {:02x}{:02x}{:02x} subsystem \
         {:04x}:{:04x}, 64-bit prefetchable BAR{}",
        id.vendor_id,
        id.device_id,
        id.revision_id,
        id.base_class,
        id.sub_class,
        id.prog_if,
        id.subsystem_vendor_id,
        id.subsystem_id,
        config.bar_index
    );
    for (index, (&asked, &size)) in config
        .requested_region_sizes
        .iter()
        .zip(&config.region_sizes)
        .enumerate()
    {
        if asked == size {
            println!("vmbmmio-devhost: region {index}: {size} bytes");
        } else {
            println!("vmbmmio-devhost: region {index}: {asked} bytes, rounded up to {size}");
        }
    }
    if config.loopback {
        println!("vmbmmio-devhost: loopback mode: sections are created here, not by the driver");
    }
    println!("vmbmmio-devhost: the VM's configuration (VirtualMachine.Devices) needs:");
    println!(
        "  {}",
        flexible_iov_snippet(config.instance_id, config.emulator_class_id)
    );
}

#[cfg(not(windows))]
mod platform {
    use std::process::ExitCode;

    use vmbmmio_devhost::config::DeviceHostConfig;

    pub fn run(_config: &DeviceHostConfig) -> ExitCode {
        eprintln!(
            "vmbmmio-devhost: the arguments are valid, but the device host only runs on a \
             Windows Hyper-V host (it needs HCS and HDV); on Linux use the simulator (hvsim)"
        );
        ExitCode::from(3)
    }
}

#[cfg(windows)]
mod platform {
    use std::process::ExitCode;

    use vmbmmio_devhost::clock::SystemClock;
    use vmbmmio_devhost::config::DeviceHostConfig;
    use vmbmmio_devhost::driver::DriverClient;
    use vmbmmio_devhost::driver_ioctl::IoctlDriverClient;
    use vmbmmio_devhost::loopback::LoopbackDriver;
    use vmbmmio_devhost::sequence::{Backends, Event, run as run_sequence};
    use vmbmmio_devhost::windows::{
        ComApartment, WinHcs, WinHdv, WinSectionFactory, WinSectionMapper, install_ctrl_c_handler,
    };

    pub fn run(config: &DeviceHostConfig) -> ExitCode {
        let _apartment = match ComApartment::enter() {
            Ok(apartment) => apartment,
            Err(hr) => {
                eprintln!("vmbmmio-devhost: CoInitializeEx failed: {hr}");
                return ExitCode::from(1);
            }
        };
        let stop = match install_ctrl_c_handler() {
            Ok(stop) => stop,
            Err(hr) => {
                eprintln!("vmbmmio-devhost: SetConsoleCtrlHandler failed: {hr}");
                return ExitCode::from(1);
            }
        };
        let driver: Box<dyn DriverClient> = if config.loopback {
            Box::new(LoopbackDriver::new(WinSectionFactory))
        } else {
            Box::new(IoctlDriverClient)
        };
        let backends = Backends {
            hcs: WinHcs::default(),
            hdv: WinHdv::default(),
            driver,
            mapper: WinSectionMapper,
        };
        let log = Box::new(|event: &Event| println!("vmbmmio-devhost: {event}"));
        let clock = SystemClock::new();
        match run_sequence(config, backends, &clock, stop, log) {
            Ok(summary) => {
                println!("vmbmmio-devhost: final states: {:?}", summary.states);
                println!("vmbmmio-devhost: {}", summary.teardown);
                if summary.teardown.is_clean() {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(1)
                }
            }
            Err(error) => {
                eprintln!("vmbmmio-devhost: {error}");
                ExitCode::from(1)
            }
        }
    }
}
