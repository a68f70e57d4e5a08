//! The value parsers of the command-line options both CLIs accept (clap `value_parser`s): sizes
//! and offsets (`4096`, `0x1000`, `4K`, `2M`), hex byte patterns (`deadbeef`, `0xdeadbeef`) and
//! single bytes (`255`, `0xff`).

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

/// Bytes given as hex on the command line. A type of its own: clap's derive would take an
/// `Option<Vec<u8>>` field for a list of single-byte values.
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

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("4K"), Ok(4096));
        assert_eq!(parse_size("4k"), Ok(4096));
        assert_eq!(parse_size("2M"), Ok(2 << 20));
        assert_eq!(parse_size("0x10"), Ok(16));
        assert_eq!(parse_size("0X10k"), Ok(16 << 10));
        assert_eq!(parse_size(" 8 "), Ok(8));
        assert!(parse_size("99999999999999999999M").is_err());
        assert!(parse_size("0x8000000000000000K").is_err());
        assert!(parse_size("x").is_err());
        assert!(parse_size("").is_err());
        assert!(parse_size("4G").is_err());
    }

    #[test]
    fn patterns_and_bytes() {
        assert_eq!(
            parse_hex("0xdeadBEEF"),
            Ok(HexBytes(vec![0xde, 0xad, 0xbe, 0xef]))
        );
        assert_eq!(parse_hex("00"), Ok(HexBytes(vec![0])));
        assert!(parse_hex("abc").is_err());
        assert!(parse_hex("zz").is_err());
        assert!(parse_hex("").is_err());
        assert!(parse_hex("0x").is_err());
        assert_eq!(parse_byte("0xff"), Ok(255));
        assert_eq!(parse_byte("7"), Ok(7));
        assert!(parse_byte("256").is_err());
        assert!(parse_byte("1K").is_err());
    }
}
