//! File names as keyferry's relative paths (`/`-separated `String`s), losslessly. A name the
//! OS gives as valid Unicode is itself. On Unix a name is bytes, and may not be UTF-8: each
//! byte that is not part of valid UTF-8 is kept as one character of a reserved range,
//! U+10FF00 + the byte (Plane 16, private use), and turned back into that byte whenever the
//! name goes back to the OS. A real name holding a character of that range is refused, so
//! the mapping is one to one. On Windows a name is UTF-16; one that is not valid (an unpaired
//! surrogate) is refused. Names are shown with those bytes escaped (`\xNN`), never lossily.

use std::borrow::Cow;
use std::ffi::{OsStr, OsString};
use std::path::PathBuf;

const BASE: u32 = 0x10_FF00;

fn reserved(c: char) -> bool {
    (BASE..=BASE + 0xFF).contains(&(c as u32))
}

/// A name from the OS as a path component; `None` for a name keyferry cannot represent
/// one to one (see the module).
pub fn to_rel(name: &OsStr) -> Option<String> {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        let mut out = String::with_capacity(name.len());
        for chunk in name.as_bytes().utf8_chunks() {
            if chunk.valid().chars().any(reserved) {
                return None;
            }
            out.push_str(chunk.valid());
            for &b in chunk.invalid() {
                out.push(char::from_u32(BASE + u32::from(b)).expect("a valid scalar"));
            }
        }
        Some(out)
    }
    #[cfg(not(unix))]
    {
        name.to_str()
            .filter(|s| !s.chars().any(reserved))
            .map(str::to_owned)
    }
}

/// As [`to_rel`], a name that cannot be represented an error naming `path` (never a name
/// dropped or left behind).
pub fn to_rel_or_refuse(name: &OsStr, path: &std::path::Path) -> crate::error::Result<String> {
    to_rel(name).ok_or_else(|| {
        crate::error::Error::Unsupported(format!(
            "{path:?} has a name keyferry cannot represent one to one (an invalid UTF-16 name, \
             or characters U+10FF00 to U+10FFFF); rename it"
        ))
    })
}

/// A path component back as the OS name it came from.
pub fn to_os(component: &str) -> Cow<'_, OsStr> {
    if !component.chars().any(reserved) {
        return Cow::Borrowed(OsStr::new(component));
    }
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStringExt;
        let mut bytes = Vec::with_capacity(component.len());
        let mut buf = [0u8; 4];
        for c in component.chars() {
            if reserved(c) {
                bytes.push((c as u32 - BASE) as u8);
            } else {
                bytes.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
        Cow::Owned(OsString::from_vec(bytes))
    }
    #[cfg(not(unix))]
    {
        Cow::Owned(OsString::from(component))
    }
}

/// A `/`-separated relative path as an OS path (each component through [`to_os`]).
pub fn to_path(rel: &str) -> PathBuf {
    rel.split('/').map(to_os).fold(PathBuf::new(), |mut p, c| {
        p.push(&*c);
        p
    })
}

/// A relative path for people: the bytes that are not UTF-8 written as `\xNN`.
pub fn shown(rel: &str) -> Cow<'_, str> {
    if !rel.chars().any(reserved) {
        return Cow::Borrowed(rel);
    }
    Cow::Owned(
        rel.chars()
            .map(|c| {
                if reserved(c) {
                    format!("\\x{:02x}", c as u32 - BASE)
                } else {
                    c.to_string()
                }
            })
            .collect(),
    )
}

/// Serializes a relative path as [`shown`] (for reports and `--json`).
pub fn serialize_shown<S: serde::Serializer>(rel: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&shown(rel))
}

/// As [`serialize_shown`], for a list.
pub fn serialize_all_shown<S: serde::Serializer>(rels: &[String], s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeSeq;
    let mut seq = s.serialize_seq(Some(rels.len()))?;
    for r in rels {
        seq.serialize_element(&shown(r))?;
    }
    seq.end()
}

/// Windows device names that cannot be file names on any drive.
const RESERVED: &[&str] = &[
    "con", "prn", "aux", "nul", "com1", "com2", "com3", "com4", "com5", "com6", "com7", "com8",
    "com9", "lpt1", "lpt2", "lpt3", "lpt4", "lpt5", "lpt6", "lpt7", "lpt8", "lpt9",
];

/// A plain file name: no separators, no `..`, not absolute, no drive or stream syntax, no
/// control characters, not a Windows device name, at most 128 bytes.
pub fn check_plain_name(name: &str) -> crate::error::Result<()> {
    let bad = |why| {
        Err(crate::error::Error::BadEntryName {
            name: name.to_owned(),
            why,
        })
    };
    if name.is_empty() {
        return bad("it is empty");
    }
    if name.len() > 128 {
        return bad("it is longer than 128 bytes");
    }
    if name.contains(['/', '\\']) {
        return bad("it contains a path separator");
    }
    if name.contains("..") || name == "." {
        return bad("it contains '..' or is '.'");
    }
    if name.contains(':') {
        return bad("it contains ':' (drive or stream syntax)");
    }
    if name.chars().any(|c| c.is_control()) {
        return bad("it contains a control character");
    }
    if name.ends_with([' ', '.']) || name.starts_with(' ') {
        return bad("it starts with a space or ends with a space or dot");
    }
    let stem = name.split('.').next().unwrap_or("").to_ascii_lowercase();
    if RESERVED.contains(&stem.as_str()) {
        return bad("it is a Windows device name");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_shown_escaped() {
        for name in ["plain.dll", "Ünïcödé ß.txt", "", "a b"] {
            let rel = to_rel(OsStr::new(name)).unwrap();
            assert_eq!(rel, name);
            assert_eq!(&*to_os(&rel), OsStr::new(name));
            assert_eq!(shown(&rel), name);
        }
        #[cfg(unix)]
        {
            use std::os::unix::ffi::OsStrExt;
            for bytes in [
                &b"caf\xe9.txt"[..],
                b"\xff\xfe",
                b"ok\xc3",
                b"\x80abc\xc3\xa9",
            ] {
                let os = OsStr::from_bytes(bytes);
                let rel = to_rel(os).unwrap();
                assert_eq!(to_os(&rel).as_bytes(), bytes);
                assert!(!shown(&rel).contains('\u{fffd}'));
            }
            assert_eq!(
                shown(&to_rel(OsStr::from_bytes(b"caf\xe9.txt")).unwrap()),
                "caf\\xe9.txt"
            );
            // Two names that differ only in their non-UTF-8 bytes stay two names.
            assert_ne!(
                to_rel(OsStr::from_bytes(b"a\xe9")),
                to_rel(OsStr::from_bytes(b"a\xe8"))
            );
            assert_eq!(
                to_path(&to_rel(OsStr::from_bytes(b"d\xff")).unwrap())
                    .as_os_str()
                    .as_bytes(),
                b"d\xff"
            );
        }
        // A real name in the reserved range: refused, so the mapping stays one to one.
        assert_eq!(to_rel(OsStr::new("x\u{10ff41}")), None);
    }
}
