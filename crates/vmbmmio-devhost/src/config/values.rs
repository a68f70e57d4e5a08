//! Parsers for the text forms of configuration values (command line and config file alike).
//!
//! Each returns a problem description without the field name; `config::validate` adds the
//! field and where the value came from.

use crate::guid::Guid;

/// Parses an unsigned integer: decimal, or hexadecimal with a `0x` prefix; `_` separators ok.
pub fn parse_integer(text: &str) -> Result<u64, String> {
    let cleaned: String = text.trim().chars().filter(|&c| c != '_').collect();
    let (digits, radix) = match cleaned
        .strip_prefix("0x")
        .or_else(|| cleaned.strip_prefix("0X"))
    {
        Some(hex) => (hex, 16),
        None => (cleaned.as_str(), 10),
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return Err(format!(
            "{text:?} is not a number (decimal, or hexadecimal with 0x)"
        ));
    }
    u64::from_str_radix(digits, radix).map_err(|_| format!("{text:?} is too large"))
}

/// Parses an integer that must fit in `max`.
pub fn parse_bounded(text: &str, min: u64, max: u64) -> Result<u64, String> {
    let value = parse_integer(text)?;
    if value < min || value > max {
        return Err(format!("{text:?} is out of range ({min:#x} to {max:#x})"));
    }
    Ok(value)
}

/// Parses a byte size: a number with an optional binary unit (`K`/`KiB`, `M`/`MiB`, `G`/`GiB`,
/// any case), e.g. `4096`, `0x1000`, `64KiB`, `32M`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let lower = trimmed.to_ascii_lowercase();
    let units: [(&str, u64); 7] = [
        ("kib", 1 << 10),
        ("mib", 1 << 20),
        ("gib", 1 << 30),
        ("k", 1 << 10),
        ("m", 1 << 20),
        ("g", 1 << 30),
        ("b", 1),
    ];
    let is_hex = lower.starts_with("0x");
    let (number, factor) = units
        .iter()
        .filter(|_| !is_hex)
        .find_map(|&(suffix, factor)| {
            lower
                .strip_suffix(suffix)
                .map(|number| (number.trim_end(), factor))
        })
        .unwrap_or((lower.as_str(), 1));
    let value = parse_integer(number).map_err(|_| {
        format!("{text:?} is not a size (bytes, or a number with K/KiB, M/MiB or G/GiB)")
    })?;
    value
        .checked_mul(factor)
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// Parses a GUID.
pub fn parse_guid(text: &str) -> Result<Guid, String> {
    text.parse()
        .map_err(|error| format!("{text:?} is not a GUID: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_and_sizes() {
        assert_eq!(parse_integer("0x1AF4"), Ok(0x1af4));
        assert_eq!(parse_integer("1_000"), Ok(1000));
        assert!(parse_integer("-1").is_err());
        assert!(parse_integer("0x").is_err());
        assert!(parse_integer("99999999999999999999999").is_err());
        assert_eq!(parse_bounded("0xFFFF", 0, 0xFFFF), Ok(0xFFFF));
        assert!(parse_bounded("0x10000", 0, 0xFFFF).is_err());
        assert_eq!(parse_size("64KiB"), Ok(64 << 10));
        assert_eq!(parse_size("32 M"), Ok(32 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert_eq!(parse_size("0x1000"), Ok(4096));
        assert_eq!(parse_size("4096b"), Ok(4096));
        assert!(parse_size("12 parsecs").is_err());
        assert!(parse_size("99999999999G").is_err());
    }
}
