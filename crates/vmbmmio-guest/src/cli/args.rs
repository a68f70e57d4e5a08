//! The command line (clap derive) and its duration parser. The size and hex parsers are shared
//! with the host CLI (`vmbmmio_cli_support::parse`).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use vmbmmio_cli_support::parse::{HexBytes, parse_byte, parse_hex, parse_size};

/// The interface type GUID of vmbmmio's channel offer when none is given: the device host's
/// default (`docs/devhost.md`, "Configuration": `interface_type`).
pub const DEFAULT_INTERFACE_TYPE: &str = "9d0ee607-90ef-4c63-8f88-a81dcbc7ca83";

/// vmbmmio's Linux guest agent: finds the channel and the paired PCI function, speaks the
/// guest protocol over uio_hv_generic and reaches the shared regions through the BAR.
#[derive(Debug, Parser)]
#[command(name = "vmbmmio-guest", version)]
pub struct Cli {
    /// The sysfs root.
    #[arg(long, global = true, default_value = "/sys")]
    pub sysfs: PathBuf,
    /// The directory holding the uio character devices.
    #[arg(long, global = true, default_value = "/dev")]
    pub dev: PathBuf,
    /// Print JSON on stdout instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// The channel's interface type GUID.
    #[arg(long, global = true, default_value = DEFAULT_INTERFACE_TYPE)]
    pub interface_type: String,
    /// The channel's instance GUID (required when several vmbmmio channels exist).
    #[arg(long, global = true)]
    pub instance: Option<String>,
    /// The index of the paired function's shared-memory BAR.
    #[arg(long, global = true, default_value_t = 2)]
    pub bar: u8,
    /// How long to wait for the regions to be backed, in milliseconds.
    #[arg(long, global = true, default_value_t = 5000)]
    pub timeout_ms: u32,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show the channel, the paired function and (if it opens) the session and its layout.
    Status {
        /// Only discover; do not bind, enable decode or open the session.
        #[arg(long)]
        discover_only: bool,
    },
    /// Read bytes of a region through the BAR.
    Read(ReadArgs),
    /// Write bytes to a region through the BAR.
    Write(WriteArgs),
    /// Write a pattern over a region and read it back; exit 1 on a mismatch.
    Verify(VerifyArgs),
    /// Stay up following the host's changes; release and exit on SIGINT/SIGTERM.
    Serve,
    /// Ring a region's doorbell: the host signals the region's host consumers (protocol 1.1).
    Ring(RingArgs),
    /// Wait for host consumers' doorbells (protocol 1.1); exit 1 when the time is up first.
    Wait(WaitArgs),
}

/// `ring`.
#[derive(Debug, Args)]
pub struct RingArgs {
    /// The region's name or id.
    pub region: String,
    /// The value the doorbell carries (decimal or 0x hex).
    #[arg(long, default_value = "0", value_parser = parse_size)]
    pub value: u64,
}

/// `wait`.
#[derive(Debug, Args)]
pub struct WaitArgs {
    /// Only this region's doorbells (name or id); any region's when omitted.
    pub region: Option<String>,
    /// How long to wait in all (`500ms`, `2s`, `1m`; a bare number is seconds). Without it,
    /// waits until the doorbells came or SIGINT/SIGTERM.
    #[arg(long, value_parser = parse_duration)]
    pub timeout: Option<std::time::Duration>,
    /// How many doorbells to wait for (each one after coalescing).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub count: u64,
}

/// `read`.
#[derive(Debug, Args)]
pub struct ReadArgs {
    /// The region's name or id.
    pub region: String,
    /// Offset in the region (K/M units allowed).
    #[arg(long, default_value = "0", value_parser = parse_size)]
    pub offset: u64,
    /// Bytes to read (K/M units allowed).
    #[arg(long, default_value = "256", value_parser = parse_size)]
    pub length: u64,
}

/// `write`.
#[derive(Debug, Args)]
pub struct WriteArgs {
    /// The region's name or id.
    pub region: String,
    /// Offset in the region (K/M units allowed).
    #[arg(long, value_parser = parse_size)]
    pub offset: u64,
    /// Bytes to write, as hex (repeated to fill --length when given).
    #[arg(long, value_parser = parse_hex, conflicts_with = "byte", required_unless_present = "byte")]
    pub pattern: Option<HexBytes>,
    /// One byte value (decimal or 0x hex) to fill --length bytes with.
    #[arg(long, value_parser = parse_byte, requires = "length")]
    pub byte: Option<u8>,
    /// Bytes to write (K/M units allowed).
    #[arg(long, value_parser = parse_size)]
    pub length: Option<u64>,
}

/// `verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The region's name or id.
    pub region: String,
    /// Bytes to check from the region's start (default: the whole region).
    #[arg(long, value_parser = parse_size)]
    pub length: Option<u64>,
}

/// A duration: a number with `ms`, `s` or `m`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let text = text.trim();
    let bad = || format!("`{text}` is not a duration (for example 500ms, 2s, 1m)");
    let (digits, unit_ms) = if let Some(digits) = text.strip_suffix("ms") {
        (digits, 1)
    } else if let Some(digits) = text.strip_suffix('s') {
        (digits, 1000)
    } else if let Some(digits) = text.strip_suffix('m') {
        (digits, 60_000)
    } else {
        (text, 1000)
    };
    let value = digits.trim().parse::<u64>().map_err(|_| bad())?;
    value
        .checked_mul(unit_ms)
        .map(std::time::Duration::from_millis)
        .ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(
            parse_duration("500ms"),
            Ok(std::time::Duration::from_millis(500))
        );
        assert_eq!(parse_duration("2s"), Ok(std::time::Duration::from_secs(2)));
        assert_eq!(parse_duration("3"), Ok(std::time::Duration::from_secs(3)));
        assert_eq!(parse_duration("1m"), Ok(std::time::Duration::from_secs(60)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("99999999999999999999m").is_err());
    }

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from([
            "vmbmmio-guest",
            "write",
            "frames",
            "--offset",
            "4K",
            "--byte",
            "0xff",
            "--length",
            "1M",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Command::Write(WriteArgs {
                offset: 4096,
                byte: Some(255),
                length: Some(0x10_0000),
                ..
            })
        ));
        assert!(
            Cli::try_parse_from(["vmbmmio-guest", "write", "frames", "--offset", "0"]).is_err()
        );
    }
}
