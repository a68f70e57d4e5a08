//! Parsing the short text attributes sysfs prints: GUIDs, hexadecimal and decimal numbers.
//!
//! Every parser takes the whole attribute (as [`super::fsread::read_text`] returns it, one
//! trailing newline removed) and accepts exactly the form the kernel prints, so a file that holds
//! anything else reads as an error instead of a guess.

use std::fmt;

use vmbmmio_proto::ioctl::WireGuid;

/// Number of hex digits in a GUID.
const GUID_HEX_DIGITS: usize = 32;

/// A GUID in its canonical text form, lower case, without braces
/// (`6ba7b810-9dad-11d1-80b4-00c04fd430c8`): what `bind`, `unbind` and `new_id` take.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct GuidText(pub WireGuid);

impl fmt::Display for GuidText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.0.to_u128();
        write!(
            f,
            "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            (v >> 96) & 0xffff_ffff,
            (v >> 80) & 0xffff,
            (v >> 64) & 0xffff,
            (v >> 48) & 0xffff,
            v & 0xffff_ffff_ffff
        )
    }
}

impl fmt::Debug for GuidText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{{{self}}}")
    }
}

/// Parses a GUID as `%pUl` prints it (`xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`), inside braces or
/// not (`class_id` and `device_id` print braces; device names and `new_id` have none). Hex digits
/// of either case are accepted; anything else (missing dashes, extra characters, one brace) is
/// `None`.
pub fn parse_guid(text: &str) -> Option<WireGuid> {
    let inner = match text.strip_prefix('{') {
        Some(rest) => rest.strip_suffix('}')?,
        None => text,
    };
    if inner.len() != 36 {
        return None;
    }
    let mut value: u128 = 0;
    let mut digits = 0usize;
    for (position, byte) in inner.bytes().enumerate() {
        let dash_expected = matches!(position, 8 | 13 | 18 | 23);
        if dash_expected {
            if byte != b'-' {
                return None;
            }
            continue;
        }
        let nibble = hex_value(byte)?;
        value = value.checked_shl(4)? | u128::from(nibble);
        digits = digits.checked_add(1)?;
    }
    (digits == GUID_HEX_DIGITS).then_some(WireGuid::from_u128(value))
}

/// Parses `0x` followed by 1 to 16 hex digits (how sysfs prints `vendor`, `device`, each field of
/// `resource`, and uio's map `size` and `offset`).
pub fn parse_hex_u64(text: &str) -> Option<u64> {
    let digits = text
        .strip_prefix("0x")
        .or_else(|| text.strip_prefix("0X"))?;
    if digits.is_empty() || digits.len() > 16 {
        return None;
    }
    let mut value: u64 = 0;
    for byte in digits.bytes() {
        value = value.checked_shl(4)? | u64::from(hex_value(byte)?);
    }
    Some(value)
}

/// Parses `0x` and at most four hex digits (PCI `vendor` and `device`).
pub fn parse_hex_u16(text: &str) -> Option<u16> {
    parse_hex_u64(text).and_then(|value| u16::try_from(value).ok())
}

/// Parses a decimal `u32` of at most ten digits, without sign or spaces (PCI `enable`, uio
/// numbers).
pub fn parse_decimal_u32(text: &str) -> Option<u32> {
    if text.is_empty() || text.len() > 10 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => byte.checked_sub(b'0'),
        b'a'..=b'f' => byte.checked_sub(b'a').and_then(|v| v.checked_add(10)),
        b'A'..=b'F' => byte.checked_sub(b'A').and_then(|v| v.checked_add(10)),
        _ => None,
    }
}

/// At most this many characters of a rejected value are quoted back in an error.
pub const QUOTE_LIMIT: usize = 64;

/// The first [`QUOTE_LIMIT`] characters of `text`, escaped, for an error message.
pub fn quote(text: &str) -> String {
    let mut quoted: String = text
        .chars()
        .take(QUOTE_LIMIT)
        .flat_map(char::escape_debug)
        .collect();
    if text.chars().nth(QUOTE_LIMIT).is_some() {
        quoted.push('…');
    }
    quoted
}

#[cfg(test)]
mod tests {
    use super::*;

    const G: u128 = 0x6ba7b810_9dad_11d1_80b4_00c04fd430c8;

    #[test]
    fn guid_forms() {
        let want = Some(WireGuid::from_u128(G));
        assert_eq!(parse_guid("6ba7b810-9dad-11d1-80b4-00c04fd430c8"), want);
        assert_eq!(parse_guid("{6ba7b810-9dad-11d1-80b4-00c04fd430c8}"), want);
        assert_eq!(parse_guid("6BA7B810-9DAD-11D1-80B4-00C04FD430C8"), want);
        assert_eq!(
            GuidText(WireGuid::from_u128(G)).to_string(),
            "6ba7b810-9dad-11d1-80b4-00c04fd430c8"
        );
    }

    #[test]
    fn guid_garbage() {
        for bad in [
            "",
            "{}",
            "{6ba7b810-9dad-11d1-80b4-00c04fd430c8",
            "6ba7b810-9dad-11d1-80b4-00c04fd430c8}",
            "6ba7b8109dad11d180b400c04fd430c8",
            "6ba7b810-9dad-11d1-80b4-00c04fd430c",
            "6ba7b810-9dad-11d1-80b4-00c04fd430c8 ",
            "6ba7b810+9dad-11d1-80b4-00c04fd430c8",
            "6ba7b810-9dad-11d1-80b4-00c04fd430cg",
            "6ba7b81é-9dad-11d1-80b4-00c04fd430c",
        ] {
            assert_eq!(parse_guid(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_hex_u64("0x0000000000000000"), Some(0));
        assert_eq!(parse_hex_u64("0xffffffffffffffff"), Some(u64::MAX));
        assert_eq!(parse_hex_u64("0x1ffffffffffffffff"), None);
        assert_eq!(parse_hex_u64("ff"), None);
        assert_eq!(parse_hex_u64("0x"), None);
        assert_eq!(parse_hex_u64("-0x1"), None);
        assert_eq!(parse_hex_u16("0x1414"), Some(0x1414));
        assert_eq!(parse_hex_u16("0x10000"), None);
        assert_eq!(parse_decimal_u32("0"), Some(0));
        assert_eq!(parse_decimal_u32("4294967295"), Some(u32::MAX));
        assert_eq!(parse_decimal_u32("4294967296"), None);
        assert_eq!(parse_decimal_u32("+1"), None);
        assert_eq!(parse_decimal_u32(""), None);
    }

    #[test]
    fn quote_is_bounded() {
        let long = "x".repeat(1000);
        assert!(quote(&long).chars().count() <= QUOTE_LIMIT + 1);
        assert_eq!(quote("a\nb"), "a\\nb");
    }
}
