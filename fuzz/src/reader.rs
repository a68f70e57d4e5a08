//! Reads fuzz input as little-endian fields; a short input reads as zeros, so every input is a
//! valid sequence (libFuzzer's mutations then never waste time on framing errors).

/// A cursor over the input.
pub struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader at the start of `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Self { data }
    }

    /// Whether everything was read.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Up to `n` bytes (fewer at the end of the input).
    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (head, tail) = self.data.split_at(n.min(self.data.len()));
        self.data = tail;
        head
    }

    /// One byte, 0 past the end.
    pub fn u8(&mut self) -> u8 {
        self.bytes(1).first().copied().unwrap_or(0)
    }

    /// A little-endian `u16`, zero-extended past the end.
    pub fn u16(&mut self) -> u16 {
        let mut word = [0u8; 2];
        let bytes = self.bytes(2);
        word[..bytes.len()].copy_from_slice(bytes);
        u16::from_le_bytes(word)
    }

    /// A little-endian `u32`, zero-extended past the end.
    pub fn u32(&mut self) -> u32 {
        let mut word = [0u8; 4];
        let bytes = self.bytes(4);
        word[..bytes.len()].copy_from_slice(bytes);
        u32::from_le_bytes(word)
    }
}
