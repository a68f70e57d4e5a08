//! The command line (clap derive). Its value parsers (sizes with K/M units, hex patterns) are
//! the guest agent's (`docs/guest-agent.md`), shared in `vmbmmio_cli_support::parse`.

use clap::{Args, Parser, Subcommand};
use vmbmmio_cli_support::parse::{HexBytes, parse_byte, parse_hex, parse_size};

/// vmbmmio's host consumer: attach to a running VM's named region, read, write and check its
/// memory, wait for and send doorbells.
#[derive(Debug, Parser)]
#[command(name = "vmbmmio-host", version)]
pub struct Cli {
    /// Print one JSON object on stdout instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// The VM's id (its compute-system GUID, `Get-VM <name> | Select Id`); needed only when
    /// several VMs have a region of the name.
    #[arg(long, global = true)]
    pub vm: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List the VMs with named regions and their regions.
    List,
    /// Attach to a region and map it; print the attachment (id, size, access, handle).
    Map(MapArgs),
    /// Read bytes of a region.
    Read(ReadArgs),
    /// Write bytes to a region (attaches read-write).
    Write(WriteArgs),
    /// Write a pattern over a region and read it back; exit 1 on a mismatch.
    Verify(VerifyArgs),
    /// Wait for the guest's doorbell on a region; exit 1 if none comes in time.
    Wait(WaitArgs),
    /// Ring the guest's doorbell for a region.
    Ring(RingArgs),
}

/// `map`.
#[derive(Debug, Args)]
pub struct MapArgs {
    /// The region's name.
    pub region: String,
    /// Attach read-write (the region must allow consumer writes).
    #[arg(long)]
    pub write: bool,
}

/// `read`.
#[derive(Debug, Args)]
pub struct ReadArgs {
    /// The region's name.
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
    /// The region's name.
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
    /// The region's name.
    pub region: String,
    /// Bytes to check from the region's start (default: the whole region).
    #[arg(long, value_parser = parse_size)]
    pub length: Option<u64>,
}

/// `wait`.
#[derive(Debug, Args)]
pub struct WaitArgs {
    /// The region's name.
    pub region: String,
    /// How long to wait, in milliseconds.
    #[arg(long, default_value_t = 5000)]
    pub timeout_ms: u32,
}

/// `ring`.
#[derive(Debug, Args)]
pub struct RingArgs {
    /// The region's name.
    pub region: String,
    /// The doorbell's value (decimal or 0x hex).
    #[arg(long, default_value = "0", value_parser = parse_size)]
    pub value: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from([
            "vmbmmio-host",
            "--json",
            "write",
            "frames",
            "--offset",
            "4K",
            "--pattern",
            "abcd",
        ])
        .unwrap();
        assert!(cli.json);
        assert!(matches!(
            cli.command,
            Command::Write(WriteArgs { offset: 4096, .. })
        ));
        assert!(Cli::try_parse_from(["vmbmmio-host", "write", "frames", "--offset", "0"]).is_err());
        assert!(Cli::try_parse_from(["vmbmmio-host", "ring", "frames", "--value", "0x10"]).is_ok());
    }
}
