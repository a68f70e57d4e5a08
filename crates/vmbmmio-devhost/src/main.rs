//! `vmbmmio-devhost`: command-line entry point of the device host.
//!
//! Validates the configuration on every OS (so a config can be checked anywhere), including the
//! driver session's target unless `--loopback`, prints the VM configuration the device needs,
//! and on Windows runs the HCS/HDV sequence until Ctrl-C, talking to the driver through
//! `ProtoDriverClient<DeviceIoControlTransport>` (or to the in-process loopback driver). With the
//! driver, the guest's events (WAIT_GUEST_EVENT) are followed on a second thread from
//! OPEN_SESSION on; Ctrl-C cancels its pending request at once, and the release stops and joins
//! it before CLOSE_SESSION.
//! On Windows, HCS and HDV are loaded at run time (`windows::hyperv`) before anything else runs,
//! so a host without the Hyper-V feature gets a message naming the missing DLL or entry point.
//! Exit codes: 0 clean run, 1 a step or the teardown failed, 2 invalid configuration or a
//! missing Hyper-V component, 3 not Windows. `vmbmmio-devhost probe` (the field probes,
//! `vmbmmio_devhost::probe`) has its own: 0 ran, 2 usage error or cannot run.

use std::process::ExitCode;

use clap::Parser;
use vmbmmio_devhost::DriverSessionSettings;
use vmbmmio_devhost::config::{self, CliArgs, Command, DeviceHostConfig};
use vmbmmio_devhost::driver_ioctl::DriverTarget;
use vmbmmio_devhost::vm_config::flexible_iov_snippet;

fn main() -> ExitCode {
    let cli = CliArgs::parse();
    if let Some(Command::Probe(args)) = &cli.command {
        return vmbmmio_devhost::probe::cli_main(args);
    }
    let config = match config::load(&cli) {
        Ok(config) => config,
        Err(errors) => {
            eprint!("vmbmmio-devhost: {errors}");
            return ExitCode::from(2);
        }
    };
    let driver = if config.loopback {
        None
    } else {
        match config.driver_session() {
            Ok(settings) => Some(settings),
            Err(errors) => {
                eprint!("vmbmmio-devhost: {errors}");
                return ExitCode::from(2);
            }
        }
    };
    print_summary(&config, driver.as_ref());
    platform::run(&config, driver)
}

fn print_summary(config: &DeviceHostConfig, driver: Option<&DriverSessionSettings>) {
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
    for (index, region) in config.regions.iter().enumerate() {
        let (asked, size) = (region.requested_size, region.size);
        let (name, access) = (region.name.as_str(), region.access);
        if asked == size {
            println!("vmbmmio-devhost: region {index} {name:?} ({access}): {size} bytes");
        } else {
            println!(
                "vmbmmio-devhost: region {index} {name:?} ({access}): {asked} bytes, rounded up \
                 to {size}"
            );
        }
    }
    match driver {
        None => {
            println!("vmbmmio-devhost: loopback mode: sections are created here, not by the driver")
        }
        Some(settings) => {
            let target = match settings.target {
                DriverTarget::VmbusHandle(value) => format!("the VM of VMBus handle {value:#x}"),
                DriverTarget::LoopbackOffer => "the host itself (loopback offer)".to_string(),
            };
            println!(
                "vmbmmio-devhost: driver session: channel offered to {target}, interface type \
                 {}, instance {}",
                settings.interface_type, settings.interface_instance
            );
        }
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

    use vmbmmio_devhost::DriverSessionSettings;
    use vmbmmio_devhost::config::DeviceHostConfig;

    pub fn run(_config: &DeviceHostConfig, _driver: Option<DriverSessionSettings>) -> ExitCode {
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
    use vmbmmio_devhost::loopback::LoopbackDriver;
    use vmbmmio_devhost::sequence::guest_wait::LoopStopHandle;
    use vmbmmio_devhost::sequence::{Backends, Event, Progress, RunHooks, ServeEnd, run_with};
    use vmbmmio_devhost::windows::{
        CONTROL_DEVICE_PATH, ComApartment, WinHcs, WinHdv, WinSectionFactory, WinSectionMapper,
        clear_stop_hook, hyperv, install_ctrl_c_handler, set_stop_hook,
    };
    use vmbmmio_devhost::{DeviceIoControlTransport, DriverSessionSettings, ProtoDriverClient};

    pub fn run(config: &DeviceHostConfig, driver: Option<DriverSessionSettings>) -> ExitCode {
        // computecore.dll and vmdevicehost.dll are not imported: a Windows without Hyper-V gets
        // here and is told what is missing (a setup error, like an invalid configuration).
        let hyperv = match hyperv() {
            Ok(hyperv) => hyperv,
            Err(error) => {
                eprintln!("vmbmmio-devhost: {error}");
                return ExitCode::from(2);
            }
        };
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
        // `main` passes settings exactly when not in loopback mode.
        let driver: Box<dyn DriverClient> = match driver {
            None => Box::new(LoopbackDriver::new(WinSectionFactory)),
            Some(settings) => match DeviceIoControlTransport::open() {
                Ok(transport) => Box::new(ProtoDriverClient::new(transport, settings)),
                Err(failure) => {
                    eprintln!(
                        "vmbmmio-devhost: cannot open the driver's control device \
                         {CONTROL_DEVICE_PATH}: {failure} (is the vmbmmio driver installed and \
                         started? --loopback runs without it)"
                    );
                    return ExitCode::from(1);
                }
            },
        };
        let backends = Backends {
            hcs: WinHcs::new(&hyperv.hcs),
            hdv: WinHdv::new(&hyperv.hdv),
            driver,
            mapper: WinSectionMapper,
        };
        let log = Box::new(|event: &Event| println!("vmbmmio-devhost: {event}"));
        let clock = SystemClock::new();
        // With a driver that has WAIT_GUEST_EVENT, the sequence follows the guest's events on a
        // thread of its own (docs/devhost.md, "Following the guest"); Ctrl-C stops that thread
        // at once, and the release stops and joins it before CLOSE_SESSION either way.
        let hooks = RunHooks {
            guest_loop_started: Some(Box::new(|handle: LoopStopHandle| {
                set_stop_hook(move || handle.request_stop());
            })),
        };
        let result = run_with(config, backends, &clock, stop, log, hooks);
        clear_stop_hook();
        match result {
            Ok(summary) => {
                println!("vmbmmio-devhost: final states: {:?}", summary.states);
                println!("vmbmmio-devhost: {}", summary.teardown);
                let guest_stopped = summary.progress == Progress::GuestStopped
                    || summary.serve_end == Some(ServeEnd::GuestStopped);
                if guest_stopped {
                    eprintln!(
                        "vmbmmio-devhost: the guest misbehaved past the protocol's threshold; \
                         its session and channel were closed (restart the device host to offer \
                         the device again)"
                    );
                }
                if summary.teardown.is_clean() && !guest_stopped {
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
