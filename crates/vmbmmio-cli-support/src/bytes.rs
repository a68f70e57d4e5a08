//! Bytes as the CLIs print and check them: lowercase hex (`read --json`'s `hex`), the hex dump
//! of `read`'s text, and the pattern `verify` writes and reads back.

/// The bytes as lowercase hex, two digits each.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// A hex dump, 16 bytes a line, offsets from `base`.
pub fn hex_dump(base: u64, bytes: &[u8]) -> String {
    let mut text = String::new();
    let mut offset = base;
    for line in bytes.chunks(16) {
        let hex: Vec<String> = line.iter().map(|byte| format!("{byte:02x}")).collect();
        let ascii: String = line
            .iter()
            .map(|&byte| {
                if byte.is_ascii_graphic() || byte == b' ' {
                    char::from(byte)
                } else {
                    '.'
                }
            })
            .collect();
        text.push_str(&format!("{offset:08x}  {:<47}  |{ascii}|\n", hex.join(" ")));
        offset = offset.saturating_add(16);
    }
    text
}

/// The byte `verify` writes at `offset` (varies with the offset and the run's seed).
pub fn pattern_byte(offset: usize, seed: u8) -> u8 {
    let low = offset.to_le_bytes();
    low.first().copied().unwrap_or(0) ^ low.get(1).copied().unwrap_or(0).rotate_left(3) ^ seed
}

/// What `write` repeats over the range and the range's length: `--pattern`'s bytes, else
/// `--byte`; the length is `--length`, else one pattern. `Err` is the usage failure when
/// neither was given.
pub fn write_unit(
    pattern: Option<&crate::parse::HexBytes>,
    byte: Option<u8>,
    length: Option<u64>,
) -> Result<(Vec<u8>, u64), crate::failure::Failure> {
    let unit = match (pattern, byte) {
        (Some(pattern), _) => pattern.0.clone(),
        (None, Some(byte)) => vec![byte],
        (None, None) => {
            return Err(crate::failure::Failure::setup(
                "usage",
                "give --pattern or --byte",
            ));
        }
    };
    let length = length.unwrap_or_else(|| u64::try_from(unit.len()).unwrap_or(u64::MAX));
    Ok((unit, length))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_unit_prefers_the_pattern_and_defaults_the_length_to_it() {
        let pattern = crate::parse::HexBytes(vec![1, 2, 3]);
        assert_eq!(
            write_unit(Some(&pattern), Some(9), None).ok(),
            Some((vec![1, 2, 3], 3))
        );
        assert_eq!(write_unit(None, Some(9), Some(5)).ok(), Some((vec![9], 5)));
        let failure = write_unit(None, None, Some(5)).err();
        assert_eq!(failure.map(|f| (f.exit, f.kind)), Some((2, "usage")));
    }

    #[test]
    fn hex_and_dump() {
        assert_eq!(hex(&[0x00, 0xab, 0x7f]), "00ab7f");
        assert_eq!(hex(&[]), "");
        let bytes: Vec<u8> = (0x41..0x53).collect();
        assert_eq!(
            hex_dump(0x1000, &bytes),
            format!(
                "00001000  41 42 43 44 45 46 47 48 49 4a 4b 4c 4d 4e 4f 50  |ABCDEFGHIJKLMNOP|\n\
                 00001010  51 52{}  |QR|\n",
                " ".repeat(42)
            )
        );
        assert_eq!(
            hex_dump(0, &[0x00, b' ']),
            format!("00000000  00 20{}  |. |\n", " ".repeat(42))
        );
        assert_eq!(hex_dump(0, &[]), "");
    }

    #[test]
    fn the_pattern_varies_with_offset_and_seed() {
        assert_eq!(pattern_byte(0, 0), 0);
        assert_eq!(pattern_byte(0x0102, 0), 0x02 ^ 0x08);
        assert_eq!(pattern_byte(1, 0x5a), 1 ^ 0x5a);
        assert_ne!(pattern_byte(0x100, 0), pattern_byte(0, 0));
    }
}
