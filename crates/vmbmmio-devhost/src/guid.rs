//! GUIDs as the HCS and HDV spell them.
//!
//! The device host handles three GUIDs: the VM's compute-system id, the emulator class id
//! (`EmulatorId` in the VM's `FlexibleIov` entry) and the device instance id (the entry's key).
//! hdv.md §3.2 and §5: the JSON key is hashed to a GUID unless it already is one, so the device
//! host always prints and uses the canonical form `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`, which
//! makes both ends match exactly.

use std::fmt;
use std::str::FromStr;

/// A GUID in the Windows field layout (`Data1`..`Data4`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Guid {
    /// First 32 bits.
    pub data1: u32,
    /// Next 16 bits.
    pub data2: u16,
    /// Next 16 bits.
    pub data3: u16,
    /// Last 64 bits, in text order.
    pub data4: [u8; 8],
}

/// Why a string is not a GUID.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuidParseError;

impl fmt::Display for GuidParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("expected a GUID like 01234567-89ab-cdef-0123-456789abcdef (braces optional)")
    }
}

impl std::error::Error for GuidParseError {}

impl Guid {
    /// Builds a GUID from its 128-bit big-endian text value (`0x01234567_89ab_cdef_...`).
    pub const fn from_u128(value: u128) -> Self {
        let bytes = value.to_be_bytes();
        Self {
            data1: (value >> 96) as u32,
            data2: (value >> 80) as u16,
            data3: (value >> 64) as u16,
            data4: [
                bytes[8], bytes[9], bytes[10], bytes[11], bytes[12], bytes[13], bytes[14],
                bytes[15],
            ],
        }
    }

    /// The 128-bit value in text order (inverse of [`Guid::from_u128`]).
    pub const fn to_u128(self) -> u128 {
        ((self.data1 as u128) << 96)
            | ((self.data2 as u128) << 80)
            | ((self.data3 as u128) << 64)
            | (u64::from_be_bytes(self.data4) as u128)
    }
}

impl FromStr for Guid {
    type Err = GuidParseError;

    /// Accepts `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`, optionally in braces, any hex case.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        let inner = match text.strip_prefix('{') {
            Some(rest) => rest.strip_suffix('}').ok_or(GuidParseError)?,
            None => text,
        };
        let groups: Vec<&str> = inner.split('-').collect();
        let lengths: Vec<usize> = groups.iter().map(|group| group.len()).collect();
        if lengths != [8, 4, 4, 4, 12] {
            return Err(GuidParseError);
        }
        let mut value: u128 = 0;
        for digit in groups.concat().chars() {
            let nibble = digit.to_digit(16).ok_or(GuidParseError)?;
            value = (value << 4) | u128::from(nibble);
        }
        Ok(Self::from_u128(value))
    }
}

impl fmt::Display for Guid {
    /// Lower-case, hyphenated, no braces: the form the HCS JSON uses.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.data4;
        write!(
            f,
            "{:08x}-{:04x}-{:04x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
            self.data1, self.data2, self.data3, d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]
        )
    }
}

impl fmt::Debug for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{{{self}}}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_the_canonical_form() {
        let guid: Guid = "{62CDFA57-7648-44F3-B164-98E2DA991EC5}".parse().unwrap();
        assert_eq!(guid.data1, 0x62cd_fa57);
        assert_eq!(guid.data2, 0x7648);
        assert_eq!(guid.data3, 0x44f3);
        assert_eq!(guid.data4, [0xb1, 0x64, 0x98, 0xe2, 0xda, 0x99, 0x1e, 0xc5]);
        assert_eq!(guid.to_string(), "62cdfa57-7648-44f3-b164-98e2da991ec5");
        assert_eq!(Guid::from_u128(guid.to_u128()), guid);
    }

    #[test]
    fn rejects_malformed_text() {
        for bad in [
            "",
            "62cdfa57764844f3b16498e2da991ec5",
            "62cdfa57-7648-44f3-b164-98e2da991ec",
            "62cdfa57-7648-44f3-b164-98e2da991ecg",
            "{62cdfa57-7648-44f3-b164-98e2da991ec5",
            "62cdfa57-7648-44f3-b164-98e2-da991ec5",
            "+2cdfa57-7648-44f3-b164-98e2da991ec5",
        ] {
            assert_eq!(bad.parse::<Guid>(), Err(GuidParseError), "{bad}");
        }
    }
}
