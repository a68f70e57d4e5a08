//! A set of KMCL entries, one bit per [`KmclFunction::ALL`] position.
//!
//! Used for what a resolved table lacks: the missing required entries DriverEntry names, and
//! the missing optional ones the driver reports to the device host (`QUERY_DRIVER`, whose
//! `kmcl_missing_optional` word is [`EntrySet::bits`]; docs/ioctl.md lists the bit order).

use core::fmt;

use crate::error::KmclFunction;

/// A set of KMCL entries (one bit per [`KmclFunction::ALL`] position). No allocation.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct EntrySet(pub(crate) u32);

impl EntrySet {
    /// No entry.
    pub const EMPTY: Self = Self(0);

    fn bit(function: KmclFunction) -> u32 {
        1u32.checked_shl(function as u32).unwrap_or(0)
    }

    /// Adds `function`.
    pub fn insert(&mut self, function: KmclFunction) {
        self.0 |= Self::bit(function);
    }

    /// Whether `function` is in the set.
    pub fn contains(self, function: KmclFunction) -> bool {
        self.0 & Self::bit(function) != 0
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Number of entries.
    pub fn len(self) -> u32 {
        self.0.count_ones()
    }

    /// The set whose bits are `bits` (bit `i` = `KmclFunction::ALL[i]`); bits beyond the table
    /// are dropped, so a value read from outside can never name an entry that does not exist.
    pub fn from_bits(bits: u32) -> Self {
        let width = u32::try_from(KmclFunction::ALL.len()).unwrap_or(u32::MAX);
        let mask = 1u32
            .checked_shl(width)
            .map_or(u32::MAX, |b| b.wrapping_sub(1));
        Self(bits & mask)
    }

    /// The raw bits (bit `i` = `KmclFunction::ALL[i]`), e.g. for a status report.
    pub fn bits(self) -> u32 {
        self.0
    }

    /// The entries, in table order.
    pub fn iter(self) -> impl Iterator<Item = KmclFunction> {
        KmclFunction::ALL
            .into_iter()
            .filter(move |&function| self.contains(function))
    }
}

impl fmt::Display for EntrySet {
    /// The C names, comma-separated.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, function) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(function.c_name())?;
        }
        Ok(())
    }
}

impl fmt::Debug for EntrySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}
