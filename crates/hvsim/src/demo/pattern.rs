//! The bytes the demo writes into every page, distinct per page, side and run.

/// Bytes written at the start of each page: enough to tell pages, sides and runs apart.
pub const PATTERN_LEN: usize = 32;

/// Who wrote a pattern.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Writer {
    /// The guest, through the BAR.
    Guest,
    /// The host, through the driver's section.
    Host,
}

/// The pattern for `page` (global page index across the BAR) written by `writer`.
pub fn page_pattern(page: u64, writer: Writer) -> [u8; PATTERN_LEN] {
    let tag: u64 = match writer {
        Writer::Guest => 0x4755_4553_5421_0000, // "GUEST!"
        Writer::Host => 0x484F_5354_2121_0000,  // "HOST!!"
    };
    let mut out = [0u8; PATTERN_LEN];
    let words = [
        tag ^ page,
        page.wrapping_mul(0x9E37_79B9_7F4A_7C15),
        !page,
        tag.rotate_left((page % 64) as u32),
    ];
    for (chunk, word) in out.chunks_exact_mut(8).zip(words) {
        chunk.copy_from_slice(&word.to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_differ_per_page_and_writer() {
        assert_ne!(
            page_pattern(1, Writer::Guest),
            page_pattern(2, Writer::Guest)
        );
        assert_ne!(
            page_pattern(1, Writer::Guest),
            page_pattern(1, Writer::Host)
        );
    }
}
