//! Counted UTF-16 strings (`UNICODE_STRING`) from ASCII literals, built at compile time.
//!
//! `RTL_CONSTANT_STRING` is a macro wdk-sys does not generate (windows-drivers-rs.md §2.5).

use wdk_sys::UNICODE_STRING;

/// A counted string over a static UTF-16 array without a terminator.
pub(super) const fn unicode(text: &'static [u16]) -> UNICODE_STRING {
    UNICODE_STRING {
        Length: (text.len() * 2) as u16,
        MaximumLength: (text.len() * 2) as u16,
        Buffer: text.as_ptr().cast_mut(),
    }
}

/// UTF-16 of an ASCII literal, at compile time (`&'static [u16]`, no terminator).
macro_rules! utf16 {
    ($text:literal) => {{
        const BYTES: &[u8] = $text.as_bytes();
        // Evaluated at compile time: an index out of range fails the build, never the kernel.
        #[allow(clippy::indexing_slicing)]
        const UNITS: [u16; BYTES.len()] = {
            let mut units = [0u16; BYTES.len()];
            let mut i = 0;
            while i < BYTES.len() {
                units[i] = BYTES[i] as u16;
                i += 1;
            }
            units
        };
        &UNITS
    }};
}

pub(super) use utf16;
