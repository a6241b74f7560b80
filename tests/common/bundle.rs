//! Bundles built by hand (hostile manifests sealed with age directly) and the digests a
//! manifest names.

use std::io::Write;
use std::path::Path;

/// Seals arbitrary plaintext as an armored age passphrase file, bypassing keyferry's own
/// manifest writer, to build hostile bundles.
pub fn seal_raw(plaintext: &[u8], passphrase: &str, path: &Path) {
    use age::secrecy::SecretString;
    let mut r = age::scrypt::Recipient::new(SecretString::from(passphrase.to_owned()));
    r.set_work_factor(4);
    let enc = age::Encryptor::with_recipients(std::iter::once(&r as &dyn age::Recipient)).unwrap();
    let mut out = Vec::new();
    let armor =
        age::armor::ArmoredWriter::wrap_output(&mut out, age::armor::Format::AsciiArmor).unwrap();
    let mut w = enc.wrap_output(armor).unwrap();
    w.write_all(plaintext).unwrap();
    w.finish().unwrap().finish().unwrap();
    std::fs::write(path, out).unwrap();
}

/// A hand-built bundle plaintext in the documented format (docs/bundle-format.md).
pub fn plaintext(header: &serde_json::Value, contents: &[&[u8]]) -> Vec<u8> {
    let mut v = b"keyferry-bundle 1\n".to_vec();
    v.extend_from_slice(serde_json::to_string(header).unwrap().as_bytes());
    v.push(b'\n');
    for c in contents {
        v.extend_from_slice(c);
    }
    v
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    keyferry::fingerprint::FileHash::of(bytes).to_hex()
}

pub fn fingerprint_of(entries: &[(&str, &[u8])]) -> String {
    let hashes: Vec<(&str, keyferry::fingerprint::FileHash)> = entries
        .iter()
        .map(|(n, b)| (*n, keyferry::fingerprint::FileHash::of(b)))
        .collect();
    keyferry::fingerprint::Fingerprint::of(hashes.iter().map(|(n, h)| (*n, h))).to_string()
}

/// A valid header for `entries` (name, bytes), for the Secret Server cluster "ss-prod".
pub fn header(entries: &[(&str, &[u8])], expires: &str) -> serde_json::Value {
    serde_json::json!({
        "created": "2026-01-01T00:00:00Z",
        "expires": expires,
        "cluster": "ss-prod",
        "profile": "secret-server",
        "source": { "node": "web1", "role": "primary", "host": "WEB1" },
        "fingerprint": fingerprint_of(entries),
        "entries": entries.iter().map(|(n, b)| serde_json::json!({
            "name": n, "len": b.len(), "sha256": sha256_hex(b),
            "roles": ["primary", "secondary", "dr", "action", "scheduler"],
        })).collect::<Vec<_>>(),
    })
}
