//! Little-endian field reads that cannot panic: every read is bounds-checked and returns
//! `None` when the bytes are not there.

/// The `N` bytes at `offset`, if all are inside `bytes`.
pub(crate) fn array<const N: usize>(bytes: &[u8], offset: usize) -> Option<[u8; N]> {
    let end = offset.checked_add(N)?;
    bytes.get(offset..end)?.try_into().ok()
}

/// The little-endian `u16` at `offset`.
pub(crate) fn u16_at(bytes: &[u8], offset: usize) -> Option<u16> {
    array(bytes, offset).map(u16::from_le_bytes)
}

/// The little-endian `u32` at `offset`.
pub(crate) fn u32_at(bytes: &[u8], offset: usize) -> Option<u32> {
    array(bytes, offset).map(u32::from_le_bytes)
}

/// `a + b` as a `usize` offset, `None` on overflow.
pub(crate) fn offset(a: usize, b: u32) -> Option<usize> {
    a.checked_add(usize::try_from(b).ok()?)
}

/// The bytes of a NUL-terminated string at the start of `bytes`, without the NUL, if the NUL
/// occurs within `bytes` and within `max` bytes.
pub(crate) fn c_string(bytes: &[u8], max: usize) -> Option<&[u8]> {
    let window = bytes.get(..max).unwrap_or(bytes);
    let nul = window.iter().position(|&b| b == 0)?;
    window.get(..nul)
}
