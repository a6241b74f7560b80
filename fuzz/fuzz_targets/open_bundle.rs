//! Opening bundles, decrypted manifest parsing included. Property: any input gives an error
//! or a valid manifest, never a panic; a valid manifest re-serialises and parses back to the
//! same header and bytes; the age envelope and the bare parser agree on what is valid.
//!
//! First byte selects the mode: 2 = the plaintext is sealed in a real age envelope (work
//! factor 1) and opened through `Bundle::open` (slow: age times a small scrypt whenever it
//! builds a passphrase recipient or identity, so this mode gets one first byte in 256);
//! other even values = the input is a whole bundle file; odd = decrypted plaintext.

#![no_main]

use keyferry::keys::Bundle;
use keyferry::keys::Manifest;
use keyferry::secret::Passphrase;
use libfuzzer_sys::fuzz_target;
use std::io::Write;

const PASS: &str = "fuzz passphrase";

fn check_valid(m: &Manifest) {
    let mut out = Vec::new();
    m.write_to(&mut out).expect("write to Vec");
    let again = Manifest::parse(&out).expect("a written manifest parses");
    assert_eq!(again.header, m.header);
    for ((_, a), (_, b)) in again.entries().zip(m.entries()) {
        assert_eq!(a.expose_secret(), b.expose_secret());
    }
    // Integrity and names are checks, not parsing: they may fail, but must not panic.
    let _ = m.verify_integrity();
    let _ = m.check_names(None);
}

fn seal_raw(plaintext: &[u8]) -> Vec<u8> {
    use age::secrecy::SecretString;
    let mut r = age::scrypt::Recipient::new(SecretString::from(PASS.to_owned()));
    r.set_work_factor(1);
    let enc = age::Encryptor::with_recipients(std::iter::once(&r as &dyn age::Recipient)).unwrap();
    let mut out = Vec::new();
    let mut w = enc.wrap_output(&mut out).unwrap();
    w.write_all(plaintext).unwrap();
    w.finish().unwrap();
    out
}

fuzz_target!(|data: &[u8]| {
    let pass = Passphrase::from_text(PASS.into()).unwrap();
    let Some((mode, rest)) = data.split_first() else { return };
    match mode {
        2 => {
            let sealed = seal_raw(rest);
            let via_age = Bundle::open(&sealed[..], &pass, 2);
            let bare = Manifest::parse(rest);
            assert_eq!(via_age.is_ok(), bare.is_ok(), "envelope and parser disagree");
            if let (Ok(a), Ok(b)) = (via_age, bare) {
                assert_eq!(a.header, b.header);
                check_valid(&a);
            }
        }
        m if m % 2 == 0 => {
            if let Ok(m) = Bundle::open(rest, &pass, 2) {
                check_valid(&m);
            }
        }
        _ => {
            if let Ok(m) = Manifest::parse(rest) {
                check_valid(&m);
            }
        }
    }
});
