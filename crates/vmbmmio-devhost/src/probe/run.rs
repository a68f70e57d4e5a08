//! The `probe` subcommand: options checked up front, collectors, report files, exit codes.
//!
//! Exit codes: 0 the probe ran (findings may be negative); 2 a usage error (a bad option, an
//! invalid `--mapping` config, an output directory that cannot be written) or the probe cannot
//! run at all (not Windows, or the report could not be written).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use super::build_report;
use super::report::{Invocation, Report};
use super::summary::render_summary;
use super::timestamp::now_rfc3339_utc;
use crate::config::{self, CliArgs, DeviceHostConfig, ProbeArgs};
use crate::driver_ioctl::DriverSessionSettings;
use crate::guid::Guid;

/// The report's file name.
pub const REPORT_FILE: &str = "probe-report.json";
/// The summary's file name.
pub const SUMMARY_FILE: &str = "probe-summary.txt";
/// The warning `--experimental` prints.
pub const EXPERIMENTAL_WARNING: &str = "vmbmmio-devhost probe: WARNING: --experimental sends \
     VDEV_SETUP and VDEV_WAIT_FOR_CONNECT on a second handle to the VM's VMBus vdev; this can \
     disturb the VM's VMBus (devices may stop working until the VM restarts). Use a throw-away \
     VM.";

/// The `--mapping` config, checked.
#[derive(Clone, Debug)]
pub struct MappingOptions {
    /// The path, as given.
    pub path: PathBuf,
    /// The validated config.
    pub config: DeviceHostConfig,
    /// The driver session's settings; `None` in loopback mode.
    pub driver: Option<DriverSessionSettings>,
}

/// The probe's options, checked.
#[derive(Clone, Debug)]
pub struct ProbeOptions {
    /// `--vm`.
    pub vm: Option<String>,
    /// `--mapping`.
    pub mapping: Option<MappingOptions>,
    /// `--experimental`.
    pub experimental: bool,
    /// `--out`, or the current directory.
    pub out_dir: PathBuf,
    /// `--json`.
    pub json: bool,
    /// `--guest-wait-secs`.
    pub guest_wait: Duration,
}

impl ProbeOptions {
    /// Checks `args`: every problem is a usage error (exit 2).
    pub fn from_args(args: &ProbeArgs) -> Result<Self, String> {
        let mut problems = Vec::new();
        let vm = match args.vm.as_deref().map(str::trim) {
            Some("") => {
                problems.push("--vm: empty (give the VM's name or id)".to_string());
                None
            }
            other => other.map(str::to_string),
        };
        let mapping = match &args.mapping {
            None => None,
            Some(path) => {
                let cli = CliArgs {
                    config: Some(path.clone()),
                    ..CliArgs::default()
                };
                match config::load(&cli) {
                    Err(errors) => {
                        problems.push(format!("--mapping {}: {errors}", path.display()));
                        None
                    }
                    Ok(config) => {
                        let driver = if config.loopback {
                            Ok(None)
                        } else {
                            config.driver_session().map(Some)
                        };
                        match driver {
                            Err(errors) => {
                                problems.push(format!("--mapping {}: {errors}", path.display()));
                                None
                            }
                            Ok(driver) => Some(MappingOptions {
                                path: path.clone(),
                                config,
                                driver,
                            }),
                        }
                    }
                }
            }
        };
        // The mapping check writes its pattern into the first region through the device
        // host's view and asks the guest to write it: a guest-ro region allows neither.
        if let Some(mapping) = &mapping
            && let Some(first) = mapping.config.regions.first()
            && !first.access.guest_writable()
        {
            problems.push(format!(
                "--mapping {}: region 0 ({:?}) is {}, but the mapping check writes to region 0 \
                 and asks the guest to write it: make region 0 rw or host-ro",
                mapping.path.display(),
                first.name.as_str(),
                first.access
            ));
        }
        if let (Some(vm), Some(mapping)) = (&vm, &mapping)
            && let Ok(id) = vm.parse::<Guid>()
            && id != mapping.config.vm_id
        {
            problems.push(format!(
                "--vm {id} and the --mapping config's vm_id {} name different VMs",
                mapping.config.vm_id
            ));
        }
        let out_dir = args.out.clone().unwrap_or_else(|| PathBuf::from("."));
        if let Err(error) = fs::create_dir_all(&out_dir) {
            problems.push(format!(
                "--out {}: cannot create the directory: {error}",
                out_dir.display()
            ));
        }
        if problems.is_empty() {
            Ok(Self {
                vm,
                mapping,
                experimental: args.experimental,
                out_dir,
                json: args.json,
                guest_wait: Duration::from_secs(args.guest_wait_secs),
            })
        } else {
            Err(problems.join("\n"))
        }
    }

    /// What the report records of the options.
    pub fn invocation(&self) -> Invocation {
        Invocation {
            vm: self.vm.clone(),
            mapping: self
                .mapping
                .as_ref()
                .map(|mapping| mapping.path.display().to_string()),
            experimental: self.experimental,
            guest_wait_secs: self.guest_wait.as_secs(),
        }
    }
}

/// Writes `probe-report.json` and `probe-summary.txt` into `dir`.
pub fn write_outputs(report: &Report, dir: &Path) -> io::Result<()> {
    fs::write(dir.join(REPORT_FILE), report.to_json())?;
    fs::write(dir.join(SUMMARY_FILE), render_summary(report))
}

/// Writes the outputs and prints: the summary on stdout, or with `--json` the report on
/// stdout and the summary on stderr.
pub fn deliver(report: &Report, options: &ProbeOptions) -> ExitCode {
    if let Err(error) = write_outputs(report, &options.out_dir) {
        eprintln!(
            "vmbmmio-devhost probe: cannot write the report into {}: {error}",
            options.out_dir.display()
        );
        if options.json {
            print!("{}", report.to_json());
        }
        return ExitCode::from(2);
    }
    let summary = render_summary(report);
    if options.json {
        eprint!("{summary}");
        print!("{}", report.to_json());
    } else {
        print!("{summary}");
    }
    eprintln!(
        "vmbmmio-devhost probe: wrote {} and {} in {}",
        REPORT_FILE,
        SUMMARY_FILE,
        options.out_dir.display()
    );
    ExitCode::SUCCESS
}

/// The subcommand's entry point.
pub fn cli_main(args: &ProbeArgs) -> ExitCode {
    let options = match ProbeOptions::from_args(args) {
        Ok(options) => options,
        Err(problems) => {
            eprintln!("vmbmmio-devhost probe: {problems}");
            return ExitCode::from(2);
        }
    };
    if options.experimental {
        eprintln!("{EXPERIMENTAL_WARNING}");
        if options.vm.is_none() {
            eprintln!(
                "vmbmmio-devhost probe: --experimental has no effect without --vm (nothing is \
                 sent)"
            );
        }
    }
    collect_and_deliver(&options)
}

#[cfg(windows)]
fn collect_and_deliver(options: &ProbeOptions) -> ExitCode {
    let inputs = super::windows::collect(options);
    let report = build_report(now_rfc3339_utc(), options.invocation(), &inputs);
    deliver(&report, options)
}

#[cfg(not(windows))]
fn collect_and_deliver(options: &ProbeOptions) -> ExitCode {
    // The report types are used on every OS (tests); only collecting needs Windows.
    let _ = (build_report, now_rfc3339_utc, options);
    eprintln!(
        "vmbmmio-devhost probe: the arguments are valid, but the probe's collectors only run on \
         a Windows Hyper-V host; nothing was collected"
    );
    ExitCode::from(2)
}
