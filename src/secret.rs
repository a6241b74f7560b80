//! Containers for key bytes and passphrases. They have no `Debug`, `Clone` or `Serialize`;
//! reading them takes an explicit `expose_secret()`, easy to grep for. Memory is wiped on
//! drop and, where the OS allows, kept out of swap.

use crate::error::{Error, Result};
use age::secrecy::{ExposeSecret, SecretString};
use rand::Rng;
use zeroize::Zeroize;

/// Key material: the bytes of one key file.
pub struct KeyBytes {
    buf: Box<[u8]>,
    locked: bool,
}

impl KeyBytes {
    /// Takes ownership of `v`. If `v` has spare capacity, its bytes are copied into an exact
    /// allocation and the original is wiped, so no unwiped copy is left behind.
    pub fn new(mut v: Vec<u8>) -> Self {
        let buf: Box<[u8]> = if v.capacity() == v.len() {
            v.into_boxed_slice()
        } else {
            let b: Box<[u8]> = v.as_slice().into();
            v.zeroize();
            b
        };
        let locked = crate::os::lock_memory(&buf);
        KeyBytes { buf, locked }
    }

    /// Copies `bytes` into a new secret buffer.
    pub fn copy_from(bytes: &[u8]) -> Self {
        let mut v = Vec::with_capacity(bytes.len());
        v.extend_from_slice(bytes);
        KeyBytes::new(v)
    }

    /// The key's bytes: only to hash, compare or write them.
    pub fn expose_secret(&self) -> &[u8] {
        &self.buf
    }

    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether it holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The bytes, to fill in place (a read straight into the buffer, no copy elsewhere).
    pub fn expose_secret_mut(&mut self) -> &mut [u8] {
        &mut self.buf
    }

    /// Takes a wiped-on-drop buffer (the OS's DPAPI output) without copying it.
    pub fn from_zeroizing(mut z: zeroize::Zeroizing<Vec<u8>>) -> Self {
        KeyBytes::new(std::mem::take(&mut *z))
    }

    /// Whether the OS agreed to keep these pages out of swap.
    pub fn is_locked(&self) -> bool {
        self.locked
    }
}

impl Drop for KeyBytes {
    fn drop(&mut self) {
        self.buf.zeroize();
        if self.locked {
            crate::os::unlock_memory(&self.buf);
        }
    }
}

/// A bundle passphrase.
pub struct Passphrase(SecretString);

/// The floor for a passphrase an admin supplies: zxcvbn's estimate of at least 10^14 guesses
/// (about 46 bits). Against scrypt at work factor 18 (about a second per guess per core, and
/// memory-hard) that is centuries of guessing; below it sit dictionary words with a digit,
/// dates and keyboard walks. Documented in `docs/bundle-format.md`.
pub const MIN_GUESSES_LOG10: f64 = 14.0;

/// Words in a generated passphrase: 10 × 11 bits = 110 bits of entropy.
pub const GENERATED_WORDS: usize = 10;

impl Passphrase {
    /// A fresh passphrase of [`GENERATED_WORDS`] words drawn uniformly from the 2048-word list
    /// with the OS random number generator.
    pub fn generate() -> Passphrase {
        let mut rng = rand::rngs::OsRng;
        let list = crate::words::list();
        let mut s = String::with_capacity(GENERATED_WORDS * 9);
        for i in 0..GENERATED_WORDS {
            if i > 0 {
                s.push(' ');
            }
            s.push_str(list[rng.gen_range(0..list.len())]);
        }
        Passphrase(SecretString::from(s))
    }

    /// Builds a passphrase from text the admin supplied (a file, a descriptor, the terminal).
    /// One trailing line ending is removed; an empty passphrase is refused. A passphrase made
    /// of words from keyferry's list is normalised (see [`normalise_words`]), on export and on
    /// import alike, so reading it aloud over the phone cannot break it.
    pub fn from_text(mut text: String) -> Result<Passphrase> {
        if text.ends_with('\n') {
            text.pop();
            if text.ends_with('\r') {
                text.pop();
            }
        }
        if text.is_empty() {
            text.zeroize();
            return Err(Error::Passphrase("the passphrase is empty".into()));
        }
        if let Some(words) = normalise_words(&text) {
            text.zeroize();
            return Ok(Passphrase(SecretString::from(words)));
        }
        Ok(Passphrase(SecretString::from(text)))
    }

    /// zxcvbn's estimate of how many guesses this passphrase takes, as log10.
    pub fn guesses_log10(&self) -> f64 {
        zxcvbn::zxcvbn(self.expose_secret(), &[]).guesses_log10()
    }

    /// Refuses a supplied passphrase below [`MIN_GUESSES_LOG10`] (generated ones are far
    /// above it).
    pub fn require_strong(&self) -> Result<()> {
        let g = self.guesses_log10();
        if g < MIN_GUESSES_LOG10 {
            return Err(Error::WeakPassphrase {
                bits: (g.max(0.0) * std::f64::consts::LOG2_10) as u32,
                floor: (MIN_GUESSES_LOG10 * std::f64::consts::LOG2_10) as u32,
            });
        }
        Ok(())
    }

    /// Reads a passphrase from raw bytes (which are wiped), e.g. a whole file.
    pub fn from_bytes(mut bytes: Vec<u8>) -> Result<Passphrase> {
        let text = match std::str::from_utf8(&bytes) {
            Ok(s) => s.to_owned(),
            Err(_) => {
                bytes.zeroize();
                return Err(Error::Passphrase("the passphrase is not UTF-8 text".into()));
            }
        };
        bytes.zeroize();
        Passphrase::from_text(text)
    }

    /// The passphrase: only to seal or open a bundle.
    pub fn expose_secret(&self) -> &str {
        self.0.expose_secret()
    }

    /// The passphrase in the form the age crate takes.
    pub(crate) fn to_age(&self) -> SecretString {
        SecretString::from(self.0.expose_secret().to_owned())
    }
}

/// The canonical form of a passphrase made of at least four words from keyferry's list:
/// lower case, words separated by single spaces, whatever capitals, hyphens, underscores,
/// dots, commas or runs of spaces it was typed with. `None` for anything else, which is used
/// exactly as typed.
pub fn normalise_words(text: &str) -> Option<String> {
    let list = crate::words::list();
    let mut words: Vec<String> = text
        .split(|c: char| c.is_whitespace() || matches!(c, '-' | '_' | '.' | ','))
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect();
    let canonical = (words.len() >= 4 && words.iter().all(|w| list.contains(&w.as_str())))
        .then(|| words.join(" "));
    // The words are pieces of the passphrase: wipe them, as its other copies are.
    words.iter_mut().for_each(Zeroize::zeroize);
    canonical
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_list_passphrases_survive_being_read_aloud() {
        let canonical = "tiger lemon orbit basket pilot cargo wisdom maple rhythm canvas";
        for typed in [
            "Tiger Lemon Orbit Basket Pilot Cargo Wisdom Maple Rhythm Canvas",
            "tiger-lemon-orbit-basket-pilot-cargo-wisdom-maple-rhythm-canvas",
            "  tiger  lemon orbit\tbasket pilot cargo wisdom maple rhythm canvas ",
            "TIGER_LEMON_ORBIT_BASKET_PILOT_CARGO_WISDOM_MAPLE_RHYTHM_CANVAS",
        ] {
            let p = Passphrase::from_text(typed.into()).unwrap();
            assert_eq!(p.expose_secret(), canonical, "{typed:?}");
        }
        // Not made of list words: used exactly as given.
        let p = Passphrase::from_text("Tiger Lemon zqxj".into()).unwrap();
        assert_eq!(p.expose_secret(), "Tiger Lemon zqxj");
    }

    #[test]
    fn weak_passphrases_are_below_the_floor_and_generated_ones_far_above() {
        for weak in ["a", "password1", "Tr0ub4dor&3", "summer2026!"] {
            let p = Passphrase::from_text(weak.into()).unwrap();
            assert!(
                matches!(p.require_strong(), Err(Error::WeakPassphrase { .. })),
                "{weak}"
            );
        }
        Passphrase::generate().require_strong().unwrap();
    }

    #[test]
    fn generated_passphrases_have_ten_listed_words_and_differ() {
        let a = Passphrase::generate();
        let b = Passphrase::generate();
        let words: Vec<_> = a.expose_secret().split(' ').collect();
        assert_eq!(words.len(), GENERATED_WORDS);
        assert!(words.iter().all(|w| crate::words::list().contains(w)));
        assert_ne!(a.expose_secret(), b.expose_secret());
    }

    #[test]
    fn from_text_trims_one_line_ending_and_refuses_empty() {
        assert_eq!(
            Passphrase::from_text("a b\r\n".into())
                .unwrap()
                .expose_secret(),
            "a b"
        );
        assert_eq!(
            Passphrase::from_text("a b\n\n".into())
                .unwrap()
                .expose_secret(),
            "a b\n"
        );
        assert!(Passphrase::from_text("\n".into()).is_err());
    }

    #[test]
    fn key_bytes_exact_copy() {
        let mut v = Vec::with_capacity(64);
        v.extend_from_slice(b"secret");
        let k = KeyBytes::new(v);
        assert_eq!(k.expose_secret(), b"secret");
        assert_eq!(k.len(), 6);
    }
}
