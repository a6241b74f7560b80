//! The 2048-word list behind generated passphrases and `fingerprint --words`.
//!
//! BIP39's English list: every word is unique in its first four letters, which makes words
//! easy to read aloud and to type back.

/// The list, 2048 words, index = 11-bit value.
pub fn list() -> &'static [&'static str; 2048] {
    bip39::Language::English.word_list()
}

/// Spells the first `count * 11` bits of `bytes` as words, most significant bit first.
///
/// Panics if `bytes` holds fewer than `count * 11` bits.
pub fn encode(bytes: &[u8], count: usize) -> Vec<&'static str> {
    assert!(
        bytes.len() * 8 >= count * 11,
        "not enough bits for {count} words"
    );
    (0..count)
        .map(|i| {
            let mut v = 0usize;
            for b in i * 11..i * 11 + 11 {
                let bit = (bytes[b / 8] >> (7 - b % 8)) & 1;
                v = (v << 1) | bit as usize;
            }
            list()[v]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_has_2048_unique_words() {
        let mut v: Vec<_> = list().to_vec();
        v.sort();
        v.dedup();
        assert_eq!(v.len(), 2048);
    }

    #[test]
    fn encode_reads_bits_msb_first() {
        // 11 zero bits -> word 0; then 11 one bits -> word 2047.
        let bytes = [0x00, 0x1f, 0xff, 0xc0];
        assert_eq!(encode(&bytes, 2), [list()[0], list()[2047]]);
    }
}
