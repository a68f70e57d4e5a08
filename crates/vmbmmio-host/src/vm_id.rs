//! A VM's id: its compute-system GUID (what `Get-VM | Select Id` and the HCS print), which
//! consumers name the VM by.

use std::fmt;
use std::str::FromStr;

/// A VM's compute-system id. Spelled as one `u128` read like the canonical text
/// (`{6ba7b810-9dad-11d1-80b4-00c04fd430c8}` is `0x6ba7b810_9dad_11d1_80b4_00c04fd430c8`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VmId(u128);

impl VmId {
    /// The id whose canonical text, without dashes, is the hex spelling of `value`.
    pub const fn from_u128(value: u128) -> Self {
        Self(value)
    }

    /// The inverse of [`Self::from_u128`].
    pub const fn to_u128(self) -> u128 {
        self.0
    }

    /// The id from a Windows `GUID` in memory (`Data1`, `Data2`, `Data3` little-endian, then
    /// `Data4`), as the C ABI passes it.
    pub fn from_windows_bytes(bytes: [u8; 16]) -> Self {
        let [a0, a1, a2, a3, b0, b1, c0, c1, rest @ ..] = bytes;
        let mut text_order = [0u8; 16];
        let head = [a3, a2, a1, a0, b1, b0, c1, c0];
        for (slot, byte) in text_order.iter_mut().zip(head.iter().chain(rest.iter())) {
            *slot = *byte;
        }
        Self(u128::from_be_bytes(text_order))
    }

    /// The inverse of [`Self::from_windows_bytes`].
    pub fn to_windows_bytes(self) -> [u8; 16] {
        let [a0, a1, a2, a3, b0, b1, c0, c1, rest @ ..] = self.0.to_be_bytes();
        let mut out = [0u8; 16];
        let head = [a3, a2, a1, a0, b1, b0, c1, c0];
        for (slot, byte) in out.iter_mut().zip(head.iter().chain(rest.iter())) {
            *slot = *byte;
        }
        out
    }

    /// Whether this is the nil GUID (never a VM's id).
    pub const fn is_nil(self) -> bool {
        self.0 == 0
    }
}

impl fmt::Display for VmId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.0;
        write!(
            f,
            "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            v >> 96,
            (v >> 80) & 0xFFFF,
            (v >> 64) & 0xFFFF,
            (v >> 48) & 0xFFFF,
            v & 0xFFFF_FFFF_FFFF
        )
    }
}

/// Why a string is not a VM id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmIdParseError(String);

impl fmt::Display for VmIdParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` is not a VM id: expected a GUID like 01234567-89ab-cdef-0123-456789abcdef \
             (braces optional; `Get-VM <name> | Select Id`)",
            self.0
        )
    }
}

impl std::error::Error for VmIdParseError {}

impl FromStr for VmId {
    type Err = VmIdParseError;

    /// Accepts `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`, optionally in braces, any hex case.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || VmIdParseError(text.to_owned());
        let trimmed = text.trim();
        let inner = match trimmed.strip_prefix('{') {
            Some(rest) => rest.strip_suffix('}').ok_or_else(bad)?,
            None => trimmed,
        };
        let lengths: Vec<usize> = inner.split('-').map(str::len).collect();
        if lengths != [8, 4, 4, 4, 12] {
            return Err(bad());
        }
        let mut value: u128 = 0;
        for digit in inner.chars().filter(|&c| c != '-') {
            let nibble = digit.to_digit(16).ok_or_else(bad)?;
            value = (value << 4) | u128::from(nibble);
        }
        Ok(Self(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_windows_layout_round_trip() {
        let id: VmId = "{6BA7B810-9dad-11d1-80b4-00c04fd430c8}".parse().unwrap();
        assert_eq!(id.to_u128(), 0x6ba7b810_9dad_11d1_80b4_00c04fd430c8);
        assert_eq!(id.to_string(), "6ba7b810-9dad-11d1-80b4-00c04fd430c8");
        let bytes = id.to_windows_bytes();
        assert_eq!(
            bytes,
            [
                0x10, 0xb8, 0xa7, 0x6b, 0xad, 0x9d, 0xd1, 0x11, 0x80, 0xb4, 0x00, 0xc0, 0x4f, 0xd4,
                0x30, 0xc8
            ]
        );
        assert_eq!(VmId::from_windows_bytes(bytes), id);
        for bad in [
            "",
            "6ba7b810",
            "6ba7b810-9dad-11d1-80b4-00c04fd430cz",
            "{6ba7b810-9dad-11d1-80b4-00c04fd430c8",
        ] {
            assert!(bad.parse::<VmId>().is_err(), "{bad}");
        }
    }
}
