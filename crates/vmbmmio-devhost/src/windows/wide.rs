//! UTF-16 strings for Win32 calls.

/// `text` as a NUL-terminated UTF-16 string.
pub fn to_wide(text: &str) -> Vec<u16> {
    text.encode_utf16().chain(std::iter::once(0)).collect()
}

/// Longest configuration string read from HDV, in UTF-16 units (a bound for a missing NUL).
pub const MAX_WIDE_LEN: usize = 32 * 1024;

/// Reads a NUL-terminated UTF-16 string.
///
/// # Safety
/// `ptr` is null or points to a NUL-terminated UTF-16 string readable up to its NUL or
/// [`MAX_WIDE_LEN`] units, whichever comes first.
pub unsafe fn from_wide(ptr: *const u16) -> String {
    if ptr.is_null() {
        return String::new();
    }
    let mut units = Vec::new();
    while units.len() < MAX_WIDE_LEN {
        let next = ptr.wrapping_add(units.len());
        // SAFETY: the caller guarantees the string is readable up to its NUL; the loop stops
        // at the NUL (below) before reading past it, so `next` is in bounds.
        let unit = unsafe { next.read() };
        if unit == 0 {
            break;
        }
        units.push(unit);
    }
    String::from_utf16_lossy(&units)
}
