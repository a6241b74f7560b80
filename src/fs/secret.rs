//! Secrets read through the file layer: a key file into [`KeyBytes`] (opened once without
//! links, one exact allocation, bounded), and the check that a passphrase file is its
//! owner's alone.

use crate::error::{Error, Result};
use crate::secret::KeyBytes;
use std::io::Read;
use std::path::Path;

/// Reads a whole key file into [`KeyBytes`]: opened once without following links, then read
/// through the handle with one exact allocation (no growth, so no stray copies), refusing
/// files over `max` bytes.
pub fn read_key_file(path: &Path, max: u64) -> Result<KeyBytes> {
    match super::open_regular(path)? {
        Some(opened) => read_opened(opened, max),
        None => Err(Error::missing(path, "file")),
    }
}

/// Reads a file opened through the file layer into [`KeyBytes`] (see [`read_key_file`]).
pub fn read_opened(mut opened: super::Opened, max: u64) -> Result<KeyBytes> {
    let path = opened.path.clone();
    let len = opened.meta.len;
    if len > max {
        return Err(Error::KeyFileTooLarge { path, len, max });
    }
    let mut buf = KeyBytes::new(vec![0u8; len as usize]);
    opened
        .file
        .read_exact(buf.expose_secret_mut())
        .map_err(|e| Error::io(&path, e))?;
    let mut probe = [0u8; 1];
    if opened
        .file
        .read(&mut probe)
        .map_err(|e| Error::io(&path, e))?
        != 0
    {
        return Err(Error::Changed { path });
    }
    Ok(buf)
}

/// A passphrase file must be the admin's alone: owned by the account running keyferry (or
/// root), with no permission at all for group or others (Unix); on Windows a DACL that grants
/// nobody but the owner, SYSTEM and Administrators. A file others may write could have its
/// content replaced; one others may read has leaked. Checked on the open handle, so the file
/// checked is the file read.
pub fn check_passphrase_file(opened: &super::Opened) -> Result<()> {
    let path = opened.path.display();
    #[cfg(unix)]
    {
        let (owner, _, mode) = opened.meta.unix.unwrap_or((u32::MAX, 0, 0o777));
        let me = rustix::process::geteuid().as_raw();
        if owner != me && owner != 0 {
            return Err(Error::Passphrase(format!(
                "{path} belongs to user {owner}, not to you ({me}) or root; someone else could \
                 change it"
            )));
        }
        if mode & 0o077 != 0 {
            let who = if mode & 0o007 != 0 {
                "other users"
            } else {
                "its group"
            };
            return Err(Error::Passphrase(format!(
                "{path} gives {who} access (mode {:04o}); it must be readable and writable by \
                 its owner only",
                mode & 0o7777
            )));
        }
    }
    #[cfg(windows)]
    {
        let sddl = crate::os::security_of(&opened.file).map_err(|e| Error::io(&opened.path, e))?;
        let me = crate::os::current_user_sid().map_err(|e| Error::io(&opened.path, e))?;
        let allowed = ["SY", "BA", "S-1-5-18", "S-1-5-32-544", me.as_str()];
        let foreign = crate::os::foreign_grants(&sddl, &allowed);
        if !foreign.is_empty() {
            return Err(Error::Passphrase(format!(
                "{path} is open to {} (its ACL grants access); only you, SYSTEM and \
                 Administrators may have access",
                foreign.join(", ")
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_key_file_refuses_large_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        std::fs::write(&p, [7u8; 100]).unwrap();
        assert_eq!(read_key_file(&p, 100).unwrap().expose_secret(), &[7u8; 100]);
        assert!(matches!(
            read_key_file(&p, 99),
            Err(Error::KeyFileTooLarge { len: 100, .. })
        ));
    }
}
