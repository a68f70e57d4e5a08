//! One process's handle table.
//!
//! General Windows object-manager semantics (not in `shared/reference/`): a handle is an index
//! into the table of the process it was opened in, a multiple of 4 starting at 4; a closed
//! slot is reused by a later open. The exact reuse order is not documented; the model reuses
//! the most recently freed value first, which is the order that makes a stale close most
//! dangerous (the next open gets the value back at once). Kernel handles (`OBJ_KERNEL_HANDLE`,
//! windows-drivers-rs.md §3) live in the System process's table and have the kernel bit set,
//! so user mode can never name one.

use std::collections::BTreeMap;

use super::object::ObjectId;

/// The bit that marks a kernel handle value (the sign bit of a 32-bit handle, sign-extended).
pub const KERNEL_HANDLE_BIT: u64 = 0xFFFF_FFFF_8000_0000;

/// One open handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HandleEntry {
    /// The object it refers to.
    pub object: ObjectId,
    /// The granted `ACCESS_MASK`.
    pub access_mask: u32,
    /// Opened with `OBJ_KERNEL_HANDLE`: usable only from kernel mode.
    pub kernel: bool,
}

/// A process's handles, with slot reuse.
#[derive(Debug, Default)]
pub struct HandleTable {
    entries: BTreeMap<u64, HandleEntry>,
    free: Vec<u64>,
    next_slot: u64,
}

impl HandleTable {
    /// Inserts `entry` and returns its handle value.
    pub fn insert(&mut self, entry: HandleEntry) -> u64 {
        let slot = self.free.pop().unwrap_or_else(|| {
            self.next_slot += 1;
            self.next_slot * 4
        });
        let value = if entry.kernel {
            slot | KERNEL_HANDLE_BIT
        } else {
            slot
        };
        self.entries.insert(value, entry);
        value
    }

    /// The entry behind `value`, if open.
    pub fn get(&self, value: u64) -> Option<HandleEntry> {
        self.entries.get(&value).copied()
    }

    /// Closes `value`; its slot becomes reusable.
    pub fn remove(&mut self, value: u64) -> Option<HandleEntry> {
        let entry = self.entries.remove(&value)?;
        self.free.push(value & !KERNEL_HANDLE_BIT);
        Some(entry)
    }

    /// Closes every handle (process exit) and returns what was open.
    pub fn drain(&mut self) -> Vec<HandleEntry> {
        let entries = std::mem::take(&mut self.entries);
        self.free.clear();
        self.next_slot = 0;
        entries.into_values().collect()
    }

    /// Open handles.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no handle is open.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(kernel: bool) -> HandleEntry {
        HandleEntry {
            object: ObjectId(1),
            access_mask: 7,
            kernel,
        }
    }

    #[test]
    fn values_are_multiples_of_four_and_reused_after_close() {
        let mut table = HandleTable::default();
        let a = table.insert(entry(false));
        let b = table.insert(entry(false));
        assert_eq!((a, b), (4, 8));
        table.remove(a).unwrap();
        assert_eq!(table.insert(entry(false)), 4, "a closed value comes back");
    }

    #[test]
    fn kernel_handles_carry_the_kernel_bit() {
        let mut table = HandleTable::default();
        let k = table.insert(entry(true));
        assert_eq!(k & KERNEL_HANDLE_BIT, KERNEL_HANDLE_BIT);
        assert!(table.get(k & !KERNEL_HANDLE_BIT).is_none());
        assert!(table.remove(k).is_some());
        assert!(table.is_empty());
    }
}
