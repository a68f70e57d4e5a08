//! The command line (clap derive) and its value parsers (sizes with K/M units, hex patterns),
//! following the guest agent's conventions (`docs/guest-agent.md`).

use clap::{Args, Parser, Subcommand};

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

/// A size: decimal or `0x` hex, with an optional `K` (KiB) or `M` (MiB) suffix.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (digits, unit) = match text.strip_suffix(['K', 'k']) {
        Some(digits) => (digits, 1u64 << 10),
        None => match text.strip_suffix(['M', 'm']) {
            Some(digits) => (digits, 1u64 << 20),
            None => (text, 1),
        },
    };
    let value = match digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => digits.parse::<u64>(),
    }
    .map_err(|_| format!("`{text}` is not a size (a number, optionally 0x hex, with K or M)"))?;
    value
        .checked_mul(unit)
        .ok_or_else(|| format!("`{text}` is too large"))
}

/// Bytes given as hex on the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HexBytes(pub Vec<u8>);

/// Hex bytes (`deadbeef`, optionally `0x`-prefixed), at least one.
pub fn parse_hex(text: &str) -> Result<HexBytes, String> {
    let digits = text
        .strip_prefix("0x")
        .or_else(|| text.strip_prefix("0X"))
        .unwrap_or(text);
    if digits.is_empty() || !digits.len().is_multiple_of(2) {
        return Err(format!("`{text}` is not an even number of hex digits"));
    }
    digits
        .as_bytes()
        .chunks(2)
        .map(|pair| {
            std::str::from_utf8(pair)
                .ok()
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                .ok_or_else(|| format!("`{text}` is not hex"))
        })
        .collect::<Result<Vec<u8>, String>>()
        .map(HexBytes)
}

/// One byte: decimal or `0x` hex.
pub fn parse_byte(text: &str) -> Result<u8, String> {
    let value = parse_size(text)?;
    u8::try_from(value).map_err(|_| format!("`{text}` is not a byte (0..=255)"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn sizes_and_patterns() {
        assert_eq!(parse_size("4K"), Ok(4096));
        assert_eq!(parse_size("2M"), Ok(2 << 20));
        assert_eq!(parse_size("0x10"), Ok(16));
        assert!(parse_size("99999999999999999999M").is_err());
        assert!(parse_size("x").is_err());
        assert_eq!(
            parse_hex("0xdeadBEEF"),
            Ok(HexBytes(vec![0xde, 0xad, 0xbe, 0xef]))
        );
        assert!(parse_hex("abc").is_err());
        assert_eq!(parse_byte("0xff"), Ok(255));
        assert!(parse_byte("256").is_err());
    }

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
