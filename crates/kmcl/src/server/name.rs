//! The channel's friendly name as a `UNICODE_STRING` (kmcl.md §2.1
//! `VmbChannelInitSetFriendlyName`: "keep it short, e.g. Network").

use alloc::vec::Vec;

use crate::error::SetupError;
use crate::raw::UNICODE_STRING;

/// Most UTF-16 units a `UNICODE_STRING` can describe: `Length` is a `u16` byte count.
pub const MAX_NAME_UNITS: usize = (u16::MAX / 2) as usize;

/// A UTF-16 copy of the name and the `UNICODE_STRING` describing it.
///
/// The string points into `units`' heap buffer, which does not move when the `Vec` moves.
pub(crate) struct FriendlyName {
    // Read only by tests; in the driver it owns the buffer `string` points into.
    #[cfg_attr(not(test), allow(dead_code))]
    units: Vec<u16>,
    string: UNICODE_STRING,
}

impl FriendlyName {
    /// Encodes `name` as UTF-16 (no terminator: `UNICODE_STRING` lengths exclude it).
    pub(crate) fn new(name: &str) -> Result<Self, SetupError> {
        let count = name.encode_utf16().count();
        if count > MAX_NAME_UNITS {
            return Err(SetupError::NameTooLong);
        }
        let mut units = Vec::new();
        units
            .try_reserve_exact(count)
            .map_err(|_| SetupError::OutOfMemory)?;
        #[allow(
            clippy::disallowed_methods,
            reason = "`count` units, the capacity try_reserve_exact made: never reallocates"
        )]
        units.extend(name.encode_utf16());
        // count <= MAX_NAME_UNITS, so the byte count fits a u16.
        let bytes = count
            .checked_mul(2)
            .and_then(|bytes| u16::try_from(bytes).ok())
            .ok_or(SetupError::NameTooLong)?;
        let string = UNICODE_STRING {
            Length: bytes,
            MaximumLength: bytes,
            Buffer: units.as_mut_ptr(),
        };
        Ok(Self { units, string })
    }

    /// The `UNICODE_STRING` for `VmbChannelInitSetFriendlyName`.
    pub(crate) fn as_unicode_string(&self) -> &UNICODE_STRING {
        &self.string
    }

    /// The UTF-16 units.
    #[cfg(test)]
    pub(crate) fn units(&self) -> &[u16] {
        &self.units
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::String;

    #[test]
    fn encodes_utf16_without_terminator() {
        let name = FriendlyName::new("vmbmmio é").unwrap();
        let expected: Vec<u16> = "vmbmmio é".encode_utf16().collect();
        assert_eq!(name.units(), expected.as_slice());
        let string = name.as_unicode_string();
        assert_eq!(usize::from(string.Length), expected.len() * 2);
        assert_eq!(string.MaximumLength, string.Length);
        assert_eq!(string.Buffer.cast_const(), name.units().as_ptr());
    }

    #[test]
    fn buffer_survives_a_move() {
        let name = FriendlyName::new("abc").unwrap();
        let moved = name;
        assert_eq!(
            moved.as_unicode_string().Buffer.cast_const(),
            moved.units().as_ptr()
        );
    }

    #[test]
    fn rejects_names_a_unicode_string_cannot_hold() {
        let longest: String = core::iter::repeat_n('a', MAX_NAME_UNITS).collect();
        assert!(FriendlyName::new(&longest).is_ok());
        let too_long: String = core::iter::repeat_n('a', MAX_NAME_UNITS + 1).collect();
        assert_eq!(
            FriendlyName::new(&too_long).err(),
            Some(SetupError::NameTooLong)
        );
    }
}
