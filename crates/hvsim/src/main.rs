//! `hvsim`: runs the simulated end-to-end demo (`cargo run -p hvsim -- demo`) and replays guest
//! packets against the driver's packet handler (`cargo run -p hvsim -- replay <DIR>`), and
//! explores randomized lifecycle schedules (`cargo run -p hvsim -- explore --schedules <N>
//! --seed <S>`).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use hvsim::demo::{self, DemoOptions};
use hvsim::hdv::PlatformQuirks;
use hvsim::vm::GuestKind;

/// The simulated Hyper-V host and guest of vmbmmio.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Runs the real driver and device-host code against the simulated host and guest, checks
    /// every page in both directions, tears everything down and counts what is left.
    Demo {
        /// Region sizes (bytes, or with K/M/G suffix), in BAR order.
        #[arg(long = "region", value_parser = parse_region, default_values_t = DemoOptions::default().region_sizes)]
        regions: Vec<u64>,
        /// The guest the VM runs. Linux (the default) is the stricter one: its VMBus driver
        /// reserves nothing for the offer and its vPCI driver places the BAR with memory decode
        /// left off; Windows reserves MmioMegabytes through PnP and assigns the BAR itself.
        #[arg(long, value_enum, default_value_t = Guest::Linux)]
        guest: Guest,
        /// A Linux guest places the BAR inside a range its channel driver claimed for the
        /// channel (the guest opts in; the host checks the placement it reports).
        #[arg(long)]
        bar_in_channel_range: bool,
        /// Simulate the build where section-backed ranges have no effect (observed on Windows
        /// 10.0.26100 nested): every guest access then goes through the device host's
        /// intercept fallback.
        #[arg(long)]
        mapping_has_no_effect: bool,
        /// Simulate the whole observed nested build: section-backed ranges have no effect, BAR
        /// accesses never reach the device host, and a range made before the guest enables
        /// memory decode crashes the VM worker. Neither data path works there; the demo reports
        /// every page as a mismatch and exits non-zero.
        #[arg(long)]
        observed_nested_build: bool,
    },
    /// Feeds every file in DIR, in file-name order, to the driver's real packet handler as one
    /// guest packet (on one open channel, after a normal version negotiation) and prints one
    /// line per file, `<file-name> <accepted|rejected:<code>>`, then the totals.
    Replay {
        /// The directory of packets.
        dir: PathBuf,
    },
    /// Runs randomized, reproducible schedules of guest, VM, device-host and driver events
    /// and injected failures through the real driver, device-host and guest-library code, and
    /// checks after each step and at the end that nothing leaked and no rule was broken.
    /// Exits 1 if anything leaked or a rule was broken; a failing schedule is printed with its
    /// seed.
    Explore {
        /// How many schedules (at least 1).
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
        schedules: u64,
        /// The first schedule's seed (schedule i uses seed + i).
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Print every schedule's steps and what happened, not only failing ones.
        #[arg(long)]
        verbose: bool,
    },
}

/// The guest operating system of the demo's VM.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Guest {
    /// Linux: hv_vmbus, pci-hyperv.
    Linux,
    /// Windows: vmbus.sys, vpci.sys.
    Windows,
}

/// A region size: a whole number of bytes, optionally with a K, M or G (binary) suffix.
fn parse_region(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (digits, shift) = match text.char_indices().last() {
        Some((i, 'K' | 'k')) => (&text[..i], 10),
        Some((i, 'M' | 'm')) => (&text[..i], 20),
        Some((i, 'G' | 'g')) => (&text[..i], 30),
        _ => (text, 0),
    };
    let value: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a size (bytes, or a number with K, M or G)"))?;
    match value.checked_shl(shift).filter(|v| v >> shift == value) {
        Some(0) => Err("a region cannot be empty".into()),
        Some(size) => Ok(size),
        None => Err(format!("{text:?} is too large")),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Explore {
            schedules,
            seed,
            verbose,
        } => {
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            let options = hvsim::explore::ExploreOptions {
                schedules,
                seed,
                verbose,
            };
            if hvsim::explore::run(&options, &mut out).passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Command::Replay { dir } => {
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            match hvsim::replay::run(&dir, &mut out) {
                Ok(_) => ExitCode::SUCCESS,
                Err(error) => {
                    let _ = out.flush();
                    eprintln!("replay: {error}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Demo {
            regions,
            guest,
            bar_in_channel_range,
            mapping_has_no_effect,
            observed_nested_build,
        } => {
            let quirks = if observed_nested_build {
                PlatformQuirks::observed_build()
            } else {
                PlatformQuirks {
                    mapping_has_no_effect,
                    ..PlatformQuirks::default()
                }
            };
            let options = DemoOptions {
                region_sizes: regions,
                guest: match guest {
                    Guest::Linux => GuestKind::Linux,
                    Guest::Windows => GuestKind::Windows,
                },
                quirks,
                bar_in_channel_range,
                ..DemoOptions::default()
            };
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            let _ = writeln!(
                out,
                "vmbmmio simulated demo: regions {:?}, {:?} guest",
                options.region_sizes, options.guest
            );
            match demo::run(&options, &mut out) {
                Ok(report) => {
                    let _ = writeln!(out, "{report}");
                    if report.passed() {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::FAILURE
                    }
                }
                Err(error) => {
                    let _ = writeln!(out, "{error}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
