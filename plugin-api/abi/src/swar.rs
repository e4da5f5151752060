//! Byte-wise tests on the eight bytes of a `u64` at once, for the checks that run on every
//! publish (topic and exchange names): a byte at a time, or the compiler's own vectorising
//! of that loop, cost more for the short names these are.

const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
const ONES: u64 = 0x0101_0101_0101_0101;

/// The high bit of each byte of `word` that is zero, and no other bit.
fn zero_bytes(word: u64) -> u64 {
    !(((word & LOW7) + LOW7) | word | LOW7)
}

/// The high bit of each byte of `word` that is `byte`.
pub(crate) fn equal_bytes(word: u64, byte: u8) -> u64 {
    zero_bytes(word ^ (ONES * u64::from(byte)))
}

/// How many bytes of `word` are `byte`: the ones at the bottom of each such byte, summed
/// into the top byte by one multiplication (no byte's sum passes 8).
pub(crate) fn count_equal(word: u64, byte: u8) -> u32 {
    ((equal_bytes(word, byte) >> 7).wrapping_mul(ONES) >> 56) as u32
}

/// Whether every byte of `word` lies in `low..=high` (both below 0x80).
pub(crate) fn all_in(word: u64, low: u8, high: u8) -> bool {
    // A byte with its high bit set is outside; for the others, adding `0x7f - high`
    // sets the high bit exactly when the byte is above `high`, and adding `0x80 - low`
    // sets it exactly when the byte is at least `low`. No byte carries into the next:
    // each sum stays below 0x100.
    let high_bit = !LOW7;
    let seven = word & LOW7;
    let above = (seven + ONES * u64::from(0x7f - high)) & high_bit;
    let at_least_low = (seven + ONES * u64::from(0x80 - low)) & high_bit;
    word & high_bit == 0 && above == 0 && at_least_low == high_bit
}

/// `text` as the little-endian words of its whole eight-byte chunks, and the bytes left over.
pub(crate) fn words(text: &[u8]) -> (impl Iterator<Item = u64> + '_, &[u8]) {
    let chunks = text.chunks_exact(8);
    let rest = chunks.remainder();
    let words = chunks.filter_map(|chunk| <[u8; 8]>::try_from(chunk).ok().map(u64::from_le_bytes));
    (words, rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every byte value in every position of a word: each test agrees with the same test
    /// made a byte at a time.
    #[test]
    fn word_tests_agree_with_byte_tests() {
        for at in 0..8 {
            for byte in 0..=255u8 {
                let mut bytes = *b"ab/cd+e#";
                bytes[at] = byte;
                let word = u64::from_le_bytes(bytes);
                for probe in [b'/', b'+', 0, 0xff] {
                    let count = bytes.iter().filter(|&&b| b == probe).count() as u32;
                    assert_eq!(count_equal(word, probe), count, "{probe:#x} in {bytes:?}");
                    assert_eq!(equal_bytes(word, probe) != 0, count > 0);
                }
                let printable = bytes.iter().all(|b| (b' '..=b'~').contains(b));
                assert_eq!(all_in(word, b' ', b'~'), printable, "{bytes:?}");
            }
        }
    }

    #[test]
    fn words_and_the_rest_cover_the_text() {
        let text = b"0123456789abcdefXYZ";
        let (words, rest) = words(text);
        let words: Vec<u64> = words.collect();
        assert_eq!(words.len(), 2);
        assert_eq!(words[1].to_le_bytes(), *b"89abcdef");
        assert_eq!(rest, b"XYZ");
    }
}
