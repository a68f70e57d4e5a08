//! Finding the pairing capability in a configuration space the guest reads dword by dword.
//!
//! The walk follows the PCI capability list the way Linux does (`drivers/pci/pci.c`
//! `__pci_find_next_cap_ttl`: start at the pointer at 0x34 when the status register's
//! "capabilities list" bit is set, mask the two reserved low bits of every pointer, stop after
//! 48 entries), but it is stricter: a pointer into the standard header or a list that does not
//! end is an error rather than a silent stop, because a guest driver that gets the pairing wrong
//! talks to the wrong channel.

use super::error::PairingError;
use super::layout::{
    PAIRING_CAP_DWORDS, PAIRING_CAP_SIZE, PAIRING_SIGNATURE, PCI_CAP_ID_VENDOR, Pairing,
    parse_pairing,
};

/// Status register bit "capabilities list" (bit 4 of the status word at 0x06; Linux
/// `PCI_STATUS_CAP_LIST`).
pub const PCI_STATUS_CAP_LIST: u16 = 0x0010;
/// Offset of the capabilities pointer in a type-0 header (Linux `PCI_CAPABILITY_LIST`).
pub const PCI_CAPABILITY_LIST: u16 = 0x34;
/// Size of the standard type-0 header; capabilities live above it (Linux `PCI_STD_HEADER_SIZEOF`).
pub const PCI_STD_HEADER_SIZE: u16 = 0x40;
/// Size of conventional PCI configuration space, where the capability list lives.
pub const PCI_CONFIG_SPACE_SIZE: u16 = 0x100;
/// Most capabilities walked before the list counts as looping (Linux `PCI_FIND_CAP_TTL`).
pub const MAX_CAPABILITIES: usize = 48;

const COMMAND_STATUS: u16 = 0x04;

/// A pairing capability found in configuration space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FoundPairing {
    /// Its offset in configuration space.
    pub offset: u16,
    /// What it says.
    pub pairing: Pairing,
}

/// Walks the capability list through `read_dword` (given a dword-aligned byte offset below
/// 0x100, returns that dword of configuration space) and returns the vmbmmio pairing capability,
/// `Ok(None)` if the function has no capability list or none of its capabilities is vmbmmio's.
///
/// Vendor-specific capabilities of other vendors (another signature) are skipped; a capability
/// with vmbmmio's signature must parse completely, and there must be only one.
pub fn find_pairing<F: FnMut(u16) -> u32>(
    mut read_dword: F,
) -> Result<Option<FoundPairing>, PairingError> {
    let status = read_dword(COMMAND_STATUS).to_le_bytes();
    if u16::from_le_bytes([status[2], status[3]]) & PCI_STATUS_CAP_LIST == 0 {
        return Ok(None);
    }
    let mut pointer = u16::from(read_dword(PCI_CAPABILITY_LIST).to_le_bytes()[0] & !3);
    let mut found: Option<FoundPairing> = None;
    for _ in 0..MAX_CAPABILITIES {
        if pointer == 0 {
            return Ok(found);
        }
        // `pointer` is one masked byte, so it is below 0x100 here.
        if pointer < PCI_STD_HEADER_SIZE {
            return Err(PairingError::PointerOutOfRange { pointer });
        }
        let [id, next, length, _] = read_dword(pointer).to_le_bytes();
        if id == PCI_CAP_ID_VENDOR
            && length >= 8
            && let Some(signature_at) = pointer.checked_add(4)
            && signature_at < PCI_CONFIG_SPACE_SIZE
            && read_dword(signature_at) == PAIRING_SIGNATURE
        {
            let pairing = read_capability(&mut read_dword, pointer)?;
            if let Some(first) = found {
                return Err(PairingError::Duplicate {
                    first: first.offset,
                    second: pointer,
                });
            }
            found = Some(FoundPairing {
                offset: pointer,
                pairing,
            });
        }
        pointer = u16::from(next & !3);
    }
    Err(PairingError::ListTooLong)
}

/// Reads the capability at `offset` dword by dword and parses it.
fn read_capability<F: FnMut(u16) -> u32>(
    read_dword: &mut F,
    offset: u16,
) -> Result<Pairing, PairingError> {
    let fits = usize::from(offset)
        .checked_add(PAIRING_CAP_SIZE)
        .is_some_and(|end| end <= usize::from(PCI_CONFIG_SPACE_SIZE));
    if !fits {
        return Err(PairingError::OutOfBounds { offset });
    }
    let mut bytes = [0u8; PAIRING_CAP_SIZE];
    let mut at = offset;
    for chunk in bytes.chunks_exact_mut(4).take(PAIRING_CAP_DWORDS) {
        chunk.copy_from_slice(&read_dword(at).to_le_bytes());
        at = at.saturating_add(4);
    }
    parse_pairing(&bytes)
}
