//! Windows DPAPI blobs, read in pure Rust on every platform: parse and validate the whole
//! structure, and find blobs in the forms key files carry them (raw, base64, hex, UTF-16LE
//! text, embedded in XML or config files). Wine's variant and DPAPI-NG (CMS) data are
//! recognised and labelled separately.
//!
//! Layout (little-endian u32 fields, no padding; DOMAIN.md §4): version, provider GUID (16),
//! master-key version, master-key GUID (16), flags, description length + description
//! (UTF-16LE with NUL), cipher ALG_ID, cipher key bits, salt, HMAC key, hash ALG_ID, hash bits,
//! second HMAC key, data, signature (each length-prefixed). A well-formed blob ends exactly at
//! its last byte. Wine writes the same layout with the text `Wine Crypt32 ok\0` in both GUID
//! places, 3DES and SHA-1, and an empty first HMAC key.

use base64::prelude::{Engine, BASE64_STANDARD};
use serde::Serialize;
use std::fmt;

/// Provider GUID df9d8cd0-1501-11d1-8c7a-00c04fc297eb in Windows byte order.
pub const WINDOWS_PROVIDER: [u8; 16] = [
    0xd0, 0x8c, 0x9d, 0xdf, 0x01, 0x15, 0xd1, 0x11, 0x8c, 0x7a, 0x00, 0xc0, 0x4f, 0xc2, 0x97, 0xeb,
];
/// What Wine writes where Windows has the provider and master-key GUIDs.
pub const WINE_MAGIC: [u8; 16] = *b"Wine Crypt32 ok\0";

/// Flag: the blob is bound to the machine, not a user.
pub const FLAG_LOCAL_MACHINE: u32 = 0x4;
/// Flag: the caller forbade UI.
pub const FLAG_UI_FORBIDDEN: u32 = 0x1;
/// Flag: protected by the SYSTEM account.
pub const FLAG_SYSTEM: u32 = 0x2000_0000;

/// Who wrote the blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Variant {
    /// Windows's own DPAPI: bound to a master key of a user or the machine.
    Windows,
    /// Wine's DPAPI: bound to nothing (its provider GUID is Wine's).
    Wine,
}

/// Whose secret decrypts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scope {
    /// `CRYPTPROTECT_LOCAL_MACHINE`: any process on the machine that wrote it.
    Machine,
    /// The user account that wrote it, on that machine or with a roaming profile.
    User,
    /// `CRYPTPROTECT_SYSTEM`: only the SYSTEM account.
    System,
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Scope::Machine => "machine",
            Scope::User => "user",
            Scope::System => "system",
        })
    }
}

/// A parsed DPAPI blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    /// The blob format's version (1).
    pub version: u32,
    /// The provider GUID (DPAPI's, or Wine's).
    pub provider: [u8; 16],
    /// The master key's format version.
    pub master_key_version: u32,
    /// The GUID of the master key that protects it.
    pub master_key: [u8; 16],
    /// The `CRYPTPROTECT_*` flags it was made with.
    pub flags: u32,
    /// Description bytes as stored (UTF-16LE, normally NUL-terminated).
    pub description_raw: Vec<u8>,
    /// The cipher's ALG_ID (`CALG_AES_256`, `CALG_3DES`, ...).
    pub cipher_alg: u32,
    /// The cipher's key length in bits.
    pub cipher_bits: u32,
    /// The key-derivation salt.
    pub salt: Vec<u8>,
    /// The HMAC key (may be empty).
    pub hmac_key: Vec<u8>,
    /// The hash's ALG_ID (`CALG_SHA_512`, `CALG_SHA1`, ...).
    pub hash_alg: u32,
    /// The hash's length in bits.
    pub hash_bits: u32,
    /// The second HMAC key.
    pub hmac2_key: Vec<u8>,
    /// The encrypted data.
    pub data: Vec<u8>,
    /// The HMAC over the blob.
    pub signature: Vec<u8>,
}

/// Why bytes are not a DPAPI blob.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The bytes do not begin with DPAPI's version and provider GUID.
    #[error("no DPAPI magic at the start")]
    NoMagic,
    /// The named field is longer than the bytes left.
    #[error("the {0} field runs past the end")]
    Truncated(&'static str),
    /// Bytes after the signature (a blob must end there).
    #[error("{0} bytes follow the signature")]
    TrailingBytes(usize),
    /// A UTF-16 description of an odd number of bytes.
    #[error("the description length {0} is odd (UTF-16 needs an even length)")]
    OddDescription(u32),
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], ParseError> {
        let end = self.pos.checked_add(n).ok_or(ParseError::Truncated(what))?;
        let s = self
            .b
            .get(self.pos..end)
            .ok_or(ParseError::Truncated(what))?;
        self.pos = end;
        Ok(s)
    }
    fn u32(&mut self, what: &'static str) -> Result<u32, ParseError> {
        let s = self.take(4, what)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn guid(&mut self, what: &'static str) -> Result<[u8; 16], ParseError> {
        Ok(self.take(16, what)?.try_into().expect("16 bytes"))
    }
    fn sized(&mut self, what: &'static str) -> Result<Vec<u8>, ParseError> {
        let n = self.u32(what)? as usize;
        Ok(self.take(n, what)?.to_vec())
    }
}

impl Blob {
    /// Whether `bytes` start like a DPAPI blob (Windows or Wine).
    pub fn has_magic(bytes: &[u8]) -> bool {
        bytes.len() >= 20
            && bytes[..4] == [1, 0, 0, 0]
            && (bytes[4..20] == WINDOWS_PROVIDER || bytes[4..20] == WINE_MAGIC)
    }

    /// Parses exactly one blob that fills `bytes`.
    pub fn parse(bytes: &[u8]) -> Result<Blob, ParseError> {
        if !Blob::has_magic(bytes) {
            return Err(ParseError::NoMagic);
        }
        let mut r = Reader { b: bytes, pos: 0 };
        let version = r.u32("version")?;
        let provider = r.guid("provider")?;
        let master_key_version = r.u32("master-key version")?;
        let master_key = r.guid("master-key GUID")?;
        let flags = r.u32("flags")?;
        let desc_len = r.u32("description length")?;
        if !desc_len.is_multiple_of(2) {
            return Err(ParseError::OddDescription(desc_len));
        }
        let description_raw = r.take(desc_len as usize, "description")?.to_vec();
        let blob = Blob {
            version,
            provider,
            master_key_version,
            master_key,
            flags,
            description_raw,
            cipher_alg: r.u32("cipher algorithm")?,
            cipher_bits: r.u32("cipher key bits")?,
            salt: r.sized("salt")?,
            hmac_key: r.sized("HMAC key")?,
            hash_alg: r.u32("hash algorithm")?,
            hash_bits: r.u32("hash bits")?,
            hmac2_key: r.sized("second HMAC key")?,
            data: r.sized("data")?,
            signature: r.sized("signature")?,
        };
        match bytes.len() - r.pos {
            0 => Ok(blob),
            n => Err(ParseError::TrailingBytes(n)),
        }
    }

    /// Length of the blob that starts `bytes`, if one parses there (for blobs inside larger
    /// binary files, where the end is not known in advance).
    pub fn parse_prefix(bytes: &[u8]) -> Option<(Blob, usize)> {
        // The signature length field ends the blob: try the structure and cut there.
        let mut r = Reader { b: bytes, pos: 0 };
        if !Blob::has_magic(bytes) {
            return None;
        }
        r.take(4 + 16 + 4 + 16 + 4, "header").ok()?;
        let d = r.u32("description length").ok()? as usize;
        r.take(d, "description").ok()?;
        r.take(8, "cipher").ok()?;
        r.sized("salt").ok()?;
        r.sized("HMAC key").ok()?;
        r.take(8, "hash").ok()?;
        r.sized("second HMAC key").ok()?;
        r.sized("data").ok()?;
        r.sized("signature").ok()?;
        Blob::parse(&bytes[..r.pos]).ok().map(|b| (b, r.pos))
    }

    /// The exact bytes this blob was parsed from.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::new();
        let sized = |v: &mut Vec<u8>, b: &[u8]| {
            v.extend_from_slice(&(b.len() as u32).to_le_bytes());
            v.extend_from_slice(b);
        };
        v.extend_from_slice(&self.version.to_le_bytes());
        v.extend_from_slice(&self.provider);
        v.extend_from_slice(&self.master_key_version.to_le_bytes());
        v.extend_from_slice(&self.master_key);
        v.extend_from_slice(&self.flags.to_le_bytes());
        sized(&mut v, &self.description_raw);
        v.extend_from_slice(&self.cipher_alg.to_le_bytes());
        v.extend_from_slice(&self.cipher_bits.to_le_bytes());
        sized(&mut v, &self.salt);
        sized(&mut v, &self.hmac_key);
        v.extend_from_slice(&self.hash_alg.to_le_bytes());
        v.extend_from_slice(&self.hash_bits.to_le_bytes());
        sized(&mut v, &self.hmac2_key);
        sized(&mut v, &self.data);
        sized(&mut v, &self.signature);
        v
    }

    /// Windows's or Wine's, by the provider GUID.
    pub fn variant(&self) -> Variant {
        if self.provider == WINE_MAGIC {
            Variant::Wine
        } else {
            Variant::Windows
        }
    }

    /// Machine scope when LOCAL_MACHINE is set; system when the SYSTEM flag is; else user.
    /// (Wine ignores scope flags: its blobs are bound to nothing.)
    pub fn scope(&self) -> Scope {
        if self.flags & FLAG_LOCAL_MACHINE != 0 {
            Scope::Machine
        } else if self.flags & FLAG_SYSTEM != 0 {
            Scope::System
        } else {
            Scope::User
        }
    }

    /// The description the writer gave, decoded from UTF-16 without its trailing NUL.
    pub fn description(&self) -> String {
        let units: Vec<u16> = self
            .description_raw
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        String::from_utf16_lossy(&units)
            .trim_end_matches('\0')
            .to_owned()
    }

    /// The master-key GUID in registry form, or the Wine text.
    pub fn master_key_text(&self) -> String {
        match self.variant() {
            Variant::Wine => "(none: Wine)".into(),
            Variant::Windows => guid_text(&self.master_key),
        }
    }
}

/// A GUID stored in Windows byte order, as `6557823a-346c-42bd-b107-f347e53e1f36`.
pub fn guid_text(g: &[u8; 16]) -> String {
    format!(
        "{:08x}-{:04x}-{:04x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
        u32::from_le_bytes([g[0], g[1], g[2], g[3]]),
        u16::from_le_bytes([g[4], g[5]]),
        u16::from_le_bytes([g[6], g[7]]),
        g[8],
        g[9],
        g[10],
        g[11],
        g[12],
        g[13],
        g[14],
        g[15]
    )
}

/// Name of a CryptoAPI ALG_ID.
pub fn alg_name(id: u32) -> &'static str {
    match id {
        0x6610 => "AES-256",
        0x660f => "AES-192",
        0x660e => "AES-128",
        0x6603 => "3DES",
        0x6601 => "DES",
        0x6801 => "RC4",
        0x800e => "SHA-512",
        0x800d => "SHA-384",
        0x800c => "SHA-256",
        0x8004 => "SHA-1",
        0x8009 => "HMAC",
        0x8003 => "MD5",
        _ => "unknown",
    }
}

/// How a blob was stored in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Encoding {
    /// The blob's bytes themselves.
    Raw,
    /// Base64 text.
    Base64,
    /// Hexadecimal text.
    Hex,
}

impl Encoding {
    /// The encoding's name in reports (`raw`, `base64`, `hex`).
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Raw => "raw",
            Encoding::Base64 => "base64",
            Encoding::Hex => "hex",
        }
    }
}

/// One blob found in a file.
#[derive(Debug, Clone)]
pub struct Found {
    /// How the blob was stored.
    pub encoding: Encoding,
    /// The file's text was UTF-16LE.
    pub utf16: bool,
    /// Offset of the blob's first character or byte in the file.
    pub offset: usize,
    /// Length in the file (characters of text count their bytes).
    pub len_in_file: usize,
    /// The blob fills the whole file (apart from surrounding white space).
    pub whole_file: bool,
    /// The blob, parsed.
    pub blob: Blob,
}

/// What a file holds, as far as DPAPI goes.
#[derive(Debug, Clone, Default)]
pub struct Classification {
    /// The DPAPI blobs found, in the order of the file.
    pub blobs: Vec<Found>,
    /// Offset of DPAPI-NG (CMS enveloped data with Microsoft's protection descriptor), if seen.
    pub dpapi_ng: Option<usize>,
}

impl Classification {
    /// Whether anything found binds the file to one machine or account.
    pub fn is_protected(&self) -> bool {
        !self.blobs.is_empty() || self.dpapi_ng.is_some()
    }
    /// The file is exactly one raw blob: the only case keyferry can decrypt in place.
    pub fn single_raw(&self) -> Option<&Blob> {
        match self.blobs.as_slice() {
            [f] if f.encoding == Encoding::Raw && f.whole_file && !f.utf16 => Some(&f.blob),
            _ => None,
        }
    }
}

/// Base64 of the Windows and Wine blob prefixes (version + first 16 bytes), cut where the
/// base64 alphabet stops depending on later bytes (20 bytes → 26 characters).
const B64_WINDOWS: &str = "AQAAANCMnd8BFdERjHoAwE/Cl+";
const B64_WINE: &str = "AQAAAFdpbmUgQ3J5cHQzMiBvaw";
const HEX_WINDOWS: &str = "01000000d08c9ddf0115d1118c7a00c04fc297eb";
const HEX_WINE: &str = "0100000057696e65204372797074333220";
/// DER OID 1.2.840.113549.1.7.3 (envelopedData) and 1.3.6.1.4.1.311.74.1 (DPAPI-NG descriptor).
const OID_ENVELOPED: &[u8] = &[
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x03,
];
const OID_DPAPI_NG: &[u8] = &[
    0x06, 0x09, 0x2b, 0x06, 0x01, 0x04, 0x01, 0x82, 0x37, 0x4a, 0x01,
];

/// Finds every DPAPI blob in a file, in every supported form.
pub fn classify(file: &[u8]) -> Classification {
    let mut c = Classification::default();
    // Raw blobs anywhere in binary content.
    let mut i = 0;
    while let Some(rel) = find(&file[i..], &[1, 0, 0, 0]) {
        let at = i + rel;
        if let Some((blob, len)) = Blob::parse_prefix(&file[at..]) {
            c.blobs.push(Found {
                encoding: Encoding::Raw,
                utf16: false,
                offset: at,
                len_in_file: len,
                whole_file: at == 0 && len == file.len(),
                blob,
            });
            i = at + len;
        } else {
            i = at + 1;
        }
    }
    if c.blobs.is_empty() {
        // Text forms, in UTF-16LE or UTF-8/ASCII. UTF-16LE goes first, recognised by its
        // shape (a NUL in most odd positions), with or without a byte-order mark: ASCII text
        // in UTF-16LE is also valid UTF-8, NULs and all, and would hide its blobs.
        if let Some(text) = as_utf16le(file) {
            scan_text(&text, true, file.len(), &mut c);
        } else if let Some(text) = as_text(file) {
            scan_text(&text, false, file.len(), &mut c);
        }
    }
    c.dpapi_ng = find_dpapi_ng(file);
    c
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn as_text(b: &[u8]) -> Option<String> {
    let b = b.strip_prefix(&[0xef, 0xbb, 0xbf]).unwrap_or(b);
    std::str::from_utf8(b).ok().map(str::to_owned)
}

fn as_utf16le(b: &[u8]) -> Option<String> {
    let body = b.strip_prefix(&[0xff, 0xfe]).unwrap_or(b);
    if !body.len().is_multiple_of(2) || body.len() < 4 {
        return None;
    }
    // Mostly-ASCII UTF-16LE text has a NUL in most odd positions.
    let nul_odd = body.iter().skip(1).step_by(2).filter(|&&x| x == 0).count();
    if nul_odd * 10 < (body.len() / 2) * 9 {
        return None;
    }
    let units: Vec<u16> = body
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    String::from_utf16(&units).ok()
}

fn scan_text(text: &str, utf16: bool, file_len: usize, c: &mut Classification) {
    let scale = if utf16 { 2 } else { 1 };
    let trimmed_len = text.trim().len();
    let lower = text.to_ascii_lowercase();
    for (needle, enc, hay) in [
        (B64_WINDOWS, Encoding::Base64, text),
        (B64_WINE, Encoding::Base64, text),
        (HEX_WINDOWS, Encoding::Hex, lower.as_str()),
        (HEX_WINE, Encoding::Hex, lower.as_str()),
    ] {
        let mut from = 0;
        while let Some(rel) = hay[from..].find(needle) {
            let start = from + rel;
            let run: usize = hay[start..]
                .bytes()
                .take_while(|&b| match enc {
                    Encoding::Base64 => {
                        b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'='
                    }
                    _ => b.is_ascii_hexdigit(),
                })
                .count();
            let s = &text[start..start + run];
            let bytes = match enc {
                Encoding::Base64 => BASE64_STANDARD.decode(s).ok(),
                _ => decode_hex(s),
            };
            if let Some(blob) = bytes.and_then(|b| Blob::parse(&b).ok()) {
                c.blobs.push(Found {
                    encoding: enc,
                    utf16,
                    offset: start * scale,
                    len_in_file: run * scale,
                    whole_file: run == trimmed_len && file_len > 0,
                    blob,
                });
            }
            from = start + run.max(1);
        }
    }
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

fn find_dpapi_ng(file: &[u8]) -> Option<usize> {
    let bytes: Vec<u8>;
    let der: &[u8] = if file.first() == Some(&0x30) {
        file
    } else if let Some(text) = as_text(file).filter(|t| t.trim_start().starts_with("MI")) {
        let compact: String = text.split_whitespace().collect();
        bytes = BASE64_STANDARD.decode(compact).ok()?;
        &bytes
    } else {
        return None;
    };
    let head = &der[..der.len().min(512)];
    (find(head, OID_ENVELOPED).is_some() && find(der, OID_DPAPI_NG).is_some()).then_some(0)
}

/// The inspect report of one blob (`keyferry dpapi inspect --json`).
#[derive(Debug, Clone, Serialize)]
pub struct BlobReport {
    /// How the blob was stored in the file.
    pub encoding: Encoding,
    /// The file's text was UTF-16LE.
    pub utf16: bool,
    /// Offset of the blob in the file.
    pub offset: usize,
    /// Its length in the file.
    pub length_in_file: usize,
    /// The blob fills the whole file.
    pub whole_file: bool,
    /// Windows's or Wine's.
    pub variant: Variant,
    /// Whose secret decrypts it.
    pub scope: Scope,
    /// The `CRYPTPROTECT_*` flags.
    pub flags: u32,
    /// The master key's GUID.
    pub master_key: String,
    /// The master key's format version.
    pub master_key_version: u32,
    /// The writer's description.
    pub description: String,
    /// The cipher's name (`AES-256`, ...).
    pub cipher: String,
    /// The cipher's ALG_ID.
    pub cipher_alg_id: u32,
    /// The cipher's key length in bits.
    pub cipher_key_bits: u32,
    /// The hash's name (`SHA-512`, ...).
    pub hash: String,
    /// The hash's ALG_ID.
    pub hash_alg_id: u32,
    /// The hash's length in bits.
    pub hash_bits: u32,
    /// The length of each part.
    pub lengths: FieldLengths,
}

/// The length in bytes of each part of a blob.
#[derive(Debug, Clone, Serialize)]
pub struct FieldLengths {
    /// The whole blob.
    pub blob: usize,
    /// The description.
    pub description: usize,
    /// The salt.
    pub salt: usize,
    /// The HMAC key.
    pub hmac_key: usize,
    /// The second HMAC key.
    pub hmac2_key: usize,
    /// The encrypted data.
    pub data: usize,
    /// The signature.
    pub signature: usize,
}

impl BlobReport {
    /// The report of one blob found.
    pub fn of(f: &Found) -> BlobReport {
        let b = &f.blob;
        BlobReport {
            encoding: f.encoding,
            utf16: f.utf16,
            offset: f.offset,
            length_in_file: f.len_in_file,
            whole_file: f.whole_file,
            variant: b.variant(),
            scope: b.scope(),
            flags: b.flags,
            master_key: b.master_key_text(),
            master_key_version: b.master_key_version,
            description: b.description(),
            cipher: alg_name(b.cipher_alg).into(),
            cipher_alg_id: b.cipher_alg,
            cipher_key_bits: b.cipher_bits,
            hash: alg_name(b.hash_alg).into(),
            hash_alg_id: b.hash_alg,
            hash_bits: b.hash_bits,
            lengths: FieldLengths {
                blob: b.to_bytes().len(),
                description: b.description_raw.len(),
                salt: b.salt.len(),
                hmac_key: b.hmac_key.len(),
                hmac2_key: b.hmac2_key.len(),
                data: b.data.len(),
                signature: b.signature.len(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &[u8] = include_bytes!("../../tests/fixtures/dpapi/windows-machine-aes256.bin");
    const SAMPLE_B64: &str = include_str!("../../tests/fixtures/dpapi/windows-machine-aes256.b64");

    #[test]
    fn parses_the_real_windows_sample() {
        let b = Blob::parse(SAMPLE).unwrap();
        assert_eq!(b.variant(), Variant::Windows);
        assert_eq!(b.scope(), Scope::Machine);
        assert_eq!(b.flags, 4);
        assert_eq!(b.master_key_text(), "6557823a-346c-42bd-b107-f347e53e1f36");
        assert_eq!(b.description(), "");
        assert_eq!((alg_name(b.cipher_alg), b.cipher_bits), ("AES-256", 256));
        assert_eq!((alg_name(b.hash_alg), b.hash_bits), ("SHA-512", 512));
        assert_eq!(
            (
                b.salt.len(),
                b.hmac_key.len(),
                b.hmac2_key.len(),
                b.data.len(),
                b.signature.len()
            ),
            (32, 0, 32, 240, 64)
        );
        assert_eq!(b.to_bytes(), SAMPLE);
    }

    #[test]
    fn every_truncation_and_any_trailing_byte_is_rejected() {
        for n in 0..SAMPLE.len() {
            assert!(Blob::parse(&SAMPLE[..n]).is_err(), "prefix {n}");
        }
        let mut v = SAMPLE.to_vec();
        v.push(0);
        assert_eq!(Blob::parse(&v), Err(ParseError::TrailingBytes(1)));
        let mut v = SAMPLE.to_vec();
        v[400] ^= 1; // inside the signature: structure still valid
        assert!(Blob::parse(&v).is_ok());
        let mut v = SAMPLE.to_vec();
        v[0x2c] = 0xff; // description length far too large
        assert!(matches!(
            Blob::parse(&v),
            Err(ParseError::OddDescription(_) | ParseError::Truncated(_))
        ));
    }

    #[test]
    fn finds_the_sample_in_every_form() {
        let raw = classify(SAMPLE);
        assert!(raw.single_raw().is_some());

        let b64 = classify(SAMPLE_B64.as_bytes());
        assert_eq!(b64.blobs.len(), 1);
        assert_eq!(b64.blobs[0].encoding, Encoding::Base64);
        assert!(b64.blobs[0].whole_file);
        assert!(b64.single_raw().is_none());

        let hex: String = SAMPLE.iter().map(|b| format!("{b:02X}")).collect();
        let h = classify(hex.as_bytes());
        assert_eq!(h.blobs[0].encoding, Encoding::Hex);

        let xml = format!(
            "<?xml version=\"1.0\"?>\r\n<key id=\"k\"><descriptor><encryptedKey>\r\n  <value>{}</value>\r\n</encryptedKey></descriptor></key>\r\n",
            SAMPLE_B64.trim()
        );
        let x = classify(xml.as_bytes());
        assert_eq!(x.blobs.len(), 1);
        assert!(!x.blobs[0].whole_file);
        assert!(x.blobs[0].offset > 0);

        let mut utf16 = vec![0xff, 0xfe];
        for u in xml.encode_utf16() {
            utf16.extend_from_slice(&u.to_le_bytes());
        }
        let u = classify(&utf16);
        assert_eq!(u.blobs.len(), 1);
        assert!(u.blobs[0].utf16);
        assert_eq!(u.blobs[0].offset, 2 * xml.find("AQAAANCM").unwrap());
        // The same text without a byte-order mark, as .NET's Encoding.Unicode writes it.
        let u = classify(&utf16[2..]);
        assert_eq!(u.blobs.len(), 1, "UTF-16LE without a BOM");
        assert!(u.blobs[0].utf16);

        let mut embedded = b"HEADER\x00\x07".to_vec();
        embedded.extend_from_slice(SAMPLE);
        embedded.extend_from_slice(b"TAIL");
        let e = classify(&embedded);
        assert_eq!(e.blobs.len(), 1);
        assert_eq!(e.blobs[0].offset, 8);
        assert!(!e.blobs[0].whole_file);
    }

    #[test]
    fn wine_variant_is_labelled() {
        let mut b = Blob::parse(SAMPLE).unwrap();
        b.provider = WINE_MAGIC;
        b.master_key = WINE_MAGIC;
        b.flags = 0;
        b.cipher_alg = 0x6603;
        b.cipher_bits = 168;
        let bytes = b.to_bytes();
        let c = classify(&bytes);
        let f = c.single_raw().unwrap();
        assert_eq!(f.variant(), Variant::Wine);
        assert_eq!(f.master_key_text(), "(none: Wine)");
        let b64 = BASE64_STANDARD.encode(&bytes);
        assert!(b64.starts_with(B64_WINE));
        assert_eq!(classify(b64.as_bytes()).blobs.len(), 1);
    }

    #[test]
    fn plain_files_are_not_protected_and_dpapi_ng_is_seen() {
        assert!(!classify(b"<configuration><appSettings/></configuration>").is_protected());
        assert!(!classify(&[0u8; 300]).is_protected());
        let mut cms = vec![0x30, 0x82, 0x01, 0x00];
        cms.extend_from_slice(OID_ENVELOPED);
        cms.extend_from_slice(&[0xa0, 0x10]);
        cms.extend_from_slice(OID_DPAPI_NG);
        let c = classify(&cms);
        assert_eq!(c.dpapi_ng, Some(0));
        assert!(c.blobs.is_empty());
        let b64 = BASE64_STANDARD.encode(&cms);
        assert!(classify(b64.as_bytes()).dpapi_ng.is_some());
    }
}

#[cfg(all(test, windows))]
mod windows_tests {
    //! Real CryptProtectData/CryptUnprotectData. Under Wine these make Wine-variant blobs
    //! (DOMAIN.md §4): the code path is real, the security claims are Windows'.
    use super::*;

    #[test]
    fn protect_then_unprotect_round_trips_and_parses() {
        let blob = crate::os::dpapi_protect(b"master key bytes", true).unwrap();
        let b = Blob::parse(&blob).expect("our parser reads what the OS wrote");
        assert_eq!(b.to_bytes(), blob);
        let plain = crate::dpapi::unprotect(&blob).unwrap();
        assert_eq!(plain.expose_secret(), b"master key bytes");
    }

    #[test]
    fn corrupt_blob_is_a_clear_error() {
        let blob = crate::os::dpapi_protect(b"k", true).unwrap();
        // A cut blob is refused by Windows and Wine alike (ERROR_INVALID_DATA). Flipped
        // ciphertext bits are refused by Windows (HMAC) but Wine does not check them, so
        // that case is for real Windows only.
        let Err(err) = crate::dpapi::unprotect(&blob[..blob.len() - 10]) else {
            panic!("a cut blob decrypted");
        };
        assert!(matches!(err, crate::os::DpapiError::Os(..)), "{err}");
        let real = include_bytes!("../../tests/fixtures/dpapi/windows-machine-aes256.bin");
        assert!(
            crate::dpapi::unprotect(real).is_err(),
            "a blob from another machine"
        );
        assert!(Blob::parse(&blob[..blob.len() - 10]).is_err());
    }
}
