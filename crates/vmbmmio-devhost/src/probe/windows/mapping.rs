//! The mapping check's backends: the device host's own Windows backends, built as
//! `vmbmmio-devhost` builds them (`main.rs`), then the portable `probe::mapping` run.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use crate::clock::SystemClock;
use crate::driver::DriverClient;
use crate::loopback::LoopbackDriver;
use crate::probe::mapping::{MappingFacts, MappingRun, Say, run_mapping_probe};
use crate::probe::run::MappingOptions;
use crate::sequence::Backends;
use crate::windows::{
    CONTROL_DEVICE_PATH, ComApartment, WinHcs, WinHdv, WinSectionFactory, WinSectionMapper,
    install_ctrl_c_handler,
};
use crate::{DeviceIoControlTransport, ProtoDriverClient};

fn failed(options: &MappingOptions, why: String) -> MappingFacts {
    MappingFacts {
        config_path: options.path.display().to_string(),
        vm_id: options.config.vm_id,
        run: MappingRun::StartFailed(why),
        events: Vec::new(),
        teardown: None,
    }
}

/// Runs the mapping check against the VM of `options.config`.
pub fn collect(options: &MappingOptions, bound: Duration) -> MappingFacts {
    let _apartment = match ComApartment::enter() {
        Ok(apartment) => apartment,
        Err(hr) => return failed(options, format!("CoInitializeEx failed: {hr}")),
    };
    let stop = match install_ctrl_c_handler() {
        Ok(stop) => stop,
        Err(hr) => return failed(options, format!("SetConsoleCtrlHandler failed: {hr}")),
    };
    let driver: Box<dyn DriverClient> = match &options.driver {
        None => Box::new(LoopbackDriver::new(WinSectionFactory)),
        Some(settings) => match DeviceIoControlTransport::open() {
            Ok(transport) => Box::new(ProtoDriverClient::new(transport, *settings)),
            Err(failure) => {
                return failed(
                    options,
                    format!(
                        "cannot open the driver's control device {CONTROL_DEVICE_PATH}: {failure}"
                    ),
                );
            }
        },
    };
    let hyperv = match crate::windows::hyperv() {
        Ok(hyperv) => hyperv,
        Err(error) => return failed(options, error.to_string()),
    };
    let backends = Backends {
        hcs: WinHcs::new(&hyperv.hcs),
        hdv: WinHdv::new(&hyperv.hdv),
        driver,
        mapper: WinSectionMapper,
    };
    let say: Say = Rc::new(RefCell::new(|line: &str| {
        eprintln!("vmbmmio-devhost probe: {line}");
    }));
    let clock = SystemClock::new();
    run_mapping_probe(
        &options.path.display().to_string(),
        &options.config,
        backends,
        &clock,
        stop,
        bound,
        say,
    )
}
