//! The bundle envelope: an age file with one scrypt (passphrase) recipient around a
//! [`Manifest`]. Armored by default so it survives copy and paste and mail gateways.

use crate::error::{Error, Result};
use crate::keys::manifest::Manifest;
use crate::secret::Passphrase;
use age::armor::{ArmoredReader, ArmoredWriter, Format};
use std::io::{BufReader, Read, Write};

/// scrypt work factor (log2 N) for every bundle keyferry writes: about 256 MiB and a second.
pub const EXPORT_WORK_FACTOR: u8 = 18;
/// Highest work factor accepted when opening, so bundles from fast machines still open on slow
/// ones while a hostile file cannot ask for hours of work.
pub const MAX_IMPORT_WORK_FACTOR: u8 = 20;

/// Largest bundle file accepted: the manifest caps the key files at 64 MiB in all, which
/// armored is about 86 MiB; nothing a real key set needs comes near (they are kilobytes).
pub const MAX_BUNDLE_BYTES: u64 = 96 * 1024 * 1024;
/// The age header of a bundle (the version line, one scrypt stanza, the MAC) is about 200
/// bytes. A header that has not ended within this many bytes is refused before age parses
/// it: age re-parses a growing header, so its cost rises with the square of its size.
pub const MAX_AGE_HEADER: usize = 4096;

/// How the age file is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// `-----BEGIN AGE ENCRYPTED FILE-----` text.
    Armored,
    /// Raw age binary.
    Binary,
}

/// Sealing and opening of bundles.
pub struct Bundle;

impl Bundle {
    /// Encrypts `manifest` under `passphrase` and writes the age file to `out`.
    ///
    /// `work_factor` is [`EXPORT_WORK_FACTOR`] for everything keyferry ships; tests pass a
    /// lower one to stay fast.
    pub fn seal(
        manifest: &Manifest,
        passphrase: &Passphrase,
        work_factor: u8,
        encoding: Encoding,
        out: impl Write,
    ) -> Result<()> {
        let io = |e| Error::io("<bundle>", e);
        let mut recipient = age::scrypt::Recipient::new(passphrase.to_age());
        recipient.set_work_factor(work_factor.clamp(1, 63));
        let encryptor =
            age::Encryptor::with_recipients(std::iter::once(&recipient as &dyn age::Recipient))
                .map_err(|e| Error::InvalidInput(format!("cannot encrypt: {e}")))?;
        let format = match encoding {
            Encoding::Armored => Format::AsciiArmor,
            Encoding::Binary => Format::Binary,
        };
        let armored = ArmoredWriter::wrap_output(out, format).map_err(io)?;
        let mut writer = encryptor.wrap_output(armored).map_err(io)?;
        manifest.write_to(&mut writer).map_err(io)?;
        writer.finish().and_then(|a| a.finish()).map_err(io)?;
        Ok(())
    }

    /// Decrypts and parses a bundle. Checks, in order: the envelope is an age passphrase file
    /// within the work-factor limit; the passphrase opens it; the ciphertext is intact; the
    /// plaintext is a manifest of a known version. Names, hashes and expiry are the caller's
    /// next steps (see `crate::keys::import`).
    pub fn open(
        input: impl Read,
        passphrase: &Passphrase,
        max_work_factor: u8,
    ) -> Result<Manifest> {
        use std::io::BufRead;
        let mut input = BufReader::new(input.take(MAX_BUNDLE_BYTES + 1));
        // The wrong file is not an attack: if it is neither binary nor armored age, say so.
        let start = input
            .fill_buf()
            .map_err(|e| Error::BundleCorrupt(format!("not a readable file: {e}")))?;
        let text = String::from_utf8_lossy(&start[..start.len().min(64)]);
        let t = text.trim_start();
        let could_be =
            |magic: &str| t.starts_with(magic) || (!t.is_empty() && magic.starts_with(t));
        if !could_be("age-encryption.org/") && !could_be("-----BEGIN AGE ENCRYPTED FILE-----") {
            return Err(Error::BundleFormat(
                "it is not an age file at all (is it the right file?)".into(),
            ));
        }
        let mut reader = ArmoredReader::new(input);
        let mut head = Vec::with_capacity(MAX_AGE_HEADER);
        (&mut reader)
            .take(MAX_AGE_HEADER as u64)
            .read_to_end(&mut head)
            .map_err(|e| Error::BundleCorrupt(format!("not a readable age file: {e}")))?;
        if !head.starts_with(b"age-encryption.org/") {
            // The wrong file, not an attack: say what it is not.
            return Err(Error::BundleFormat(
                "it is not an age file at all (is it the right file?)".into(),
            ));
        }
        if header_end(&head).is_none() {
            return Err(Error::BundleCorrupt(format!(
                "the age header does not end within {MAX_AGE_HEADER} bytes (a keyferry bundle's is about 200)"
            )));
        }
        let reader = std::io::Cursor::new(head).chain(reader);
        let decryptor = age::Decryptor::new(reader).map_err(|e| match e {
            age::DecryptError::Io(io) => {
                Error::BundleCorrupt(format!("not a readable age file: {io}"))
            }
            age::DecryptError::UnknownFormat => {
                Error::BundleCorrupt("not an age file of a version this build reads".into())
            }
            other => Error::BundleCorrupt(format!("not a valid age file: {other}")),
        })?;
        if !decryptor.is_scrypt() {
            return Err(Error::BundleFormat(
                "this age file is encrypted to recipients, not to a passphrase".into(),
            ));
        }
        let mut identity = age::scrypt::Identity::new(passphrase.to_age());
        identity.set_max_work_factor(max_work_factor);
        let mut plaintext = decryptor
            .decrypt(std::iter::once(&identity as &dyn age::Identity))
            .map_err(|e| match e {
                age::DecryptError::ExcessiveWork { required, .. } => Error::ExcessiveWork {
                    required,
                    max: max_work_factor,
                },
                age::DecryptError::DecryptionFailed
                | age::DecryptError::KeyDecryptionFailed
                | age::DecryptError::NoMatchingKeys => Error::WrongPassphrase,
                age::DecryptError::InvalidMac => {
                    Error::BundleCorrupt("the header's MAC does not verify".into())
                }
                other => Error::BundleCorrupt(other.to_string()),
            })?;
        Manifest::read_from(&mut plaintext)
    }
}

impl Bundle {
    /// Reads a bundle file: opened once without following links, at most
    /// [`MAX_BUNDLE_BYTES`].
    pub fn read_file(path: &std::path::Path) -> Result<Vec<u8>> {
        crate::fs::read_bounded(path, MAX_BUNDLE_BYTES, "keyferry bundle")
    }
}

/// Where the age header ends: after the `--- <MAC>` line.
fn header_end(head: &[u8]) -> Option<usize> {
    let start = head.windows(5).position(|w| w == b"\n--- ")? + 5;
    head[start..]
        .iter()
        .position(|&b| b == b'\n')
        .map(|n| start + n + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::manifest::Source;
    use crate::profile::{ProfileId, Role};
    use crate::secret::KeyBytes;
    use crate::time::Timestamp;

    fn manifest() -> Manifest {
        Manifest::new(
            Timestamp::now(),
            Timestamp::now(),
            None,
            ProfileId::SecretServer,
            Source {
                node: "a".into(),
                role: Role::Primary,
                host: "h".into(),
            },
            vec![(
                "encryption.config".into(),
                vec![Role::Secondary],
                KeyBytes::copy_from(b"0123456789"),
            )],
        )
    }

    fn pass(s: &str) -> Passphrase {
        Passphrase::from_text(s.into()).unwrap()
    }

    fn sealed(enc: Encoding, wf: u8) -> Vec<u8> {
        let mut out = Vec::new();
        Bundle::seal(&manifest(), &pass("right horse"), wf, enc, &mut out).unwrap();
        out
    }

    #[test]
    fn armored_and_binary_round_trip() {
        let a = sealed(Encoding::Armored, 2);
        assert!(a.starts_with(b"-----BEGIN AGE ENCRYPTED FILE-----"));
        let m = Bundle::open(&a[..], &pass("right horse"), 20).unwrap();
        m.verify_integrity().unwrap();
        let b = sealed(Encoding::Binary, 2);
        assert!(b.starts_with(b"age-encryption.org/v1\n-> scrypt "));
        let m = Bundle::open(&b[..], &pass("right horse"), 20).unwrap();
        assert_eq!(m.header.entries, manifest().header.entries);
    }

    #[test]
    fn wrong_passphrase_tamper_and_work_factor() {
        let b = sealed(Encoding::Binary, 2);
        assert!(matches!(
            Bundle::open(&b[..], &pass("wrong horse"), 20),
            Err(Error::WrongPassphrase)
        ));
        let mut t = b.clone();
        let n = t.len();
        t[n - 5] ^= 1;
        assert!(matches!(
            Bundle::open(&t[..], &pass("right horse"), 20),
            Err(Error::BundleCorrupt(_))
        ));
        assert!(matches!(
            Bundle::open(&b[..b.len() - 20], &pass("right horse"), 20),
            Err(Error::BundleCorrupt(_) | Error::BundleFormat(_))
        ));
        assert!(matches!(
            Bundle::open(&b[..], &pass("right horse"), 1),
            Err(Error::ExcessiveWork {
                required: 2,
                max: 1
            })
        ));
        assert!(matches!(
            Bundle::open(&b"hello"[..], &pass("right horse"), 20),
            Err(Error::BundleFormat(_))
        ));
    }

    /// A made-up header of a megabyte (age would spend minutes on it) is refused at once.
    #[test]
    fn a_header_that_does_not_end_is_refused_before_age_parses_it() {
        let mut hostile = b"age-encryption.org/v1\n".to_vec();
        while hostile.len() < 1024 * 1024 {
            hostile.extend_from_slice(
                b"-> X25519 AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\nAAAA\n",
            );
        }
        let Err(e) = Bundle::open(&hostile[..], &pass("x"), 20) else {
            panic!("a hostile header opened")
        };
        assert!(
            e.to_string().contains("does not end within 4096 bytes"),
            "{e}"
        );
        // Armored the same.
        let mut armored = Vec::new();
        {
            let mut w = ArmoredWriter::wrap_output(&mut armored, Format::AsciiArmor).unwrap();
            w.write_all(&hostile).unwrap();
            w.finish().unwrap();
        }
        let Err(e) = Bundle::open(&armored[..], &pass("x"), 20) else {
            panic!("a hostile header opened")
        };
        assert!(e.to_string().contains("does not end within"), "{e}");
    }

    #[test]
    fn shipped_work_factor_is_18() {
        // Pinned so a change to the default is a visible, reviewed decision.
        assert_eq!(EXPORT_WORK_FACTOR, 18);
        assert_eq!(MAX_IMPORT_WORK_FACTOR, 20);
    }
}
