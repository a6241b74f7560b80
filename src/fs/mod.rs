//! The safe file layer: every path keyferry opens that another user could have touched goes
//! through here. Files are opened once, never through a link, checked on their handle and
//! read through a bound (`open`); replaced atomically with the attributes the product
//! needs (`atomic`, `attrs`); removed through handles (`shred`). keyferry's own files
//! and folders are private (`private`).

pub(crate) mod atomic;
pub(crate) mod attrs;
pub(crate) mod name;
pub(crate) mod open;
pub(crate) mod private;
pub(crate) mod record;
pub(crate) mod secret;
pub(crate) mod shred;
pub(crate) mod tree;
pub(crate) mod walk;

/// The largest key file keyferry reads, carries or writes (the vendor's key and export files
/// are well below it): every read of one is bounded by it.
pub const MAX_KEY_FILE: u64 = 16 * 1024 * 1024;

pub use atomic::{is_temp_name, sweep, TempFile};
pub use attrs::{AttrSource, Attrs};
pub use name::shown;
pub use open::{
    id_of, open_regular, read_bounded, remove_if_present, split, stamp_of, Dir, Entry, FileStamp,
    Meta, Opened,
};
pub use private::{
    create_private_dir, create_unique_private_dir, write_new_private, write_private,
};
pub use secret::{check_passphrase_file, read_key_file, read_opened};
pub use shred::{shred_file, Removal, RemovalMethod};
pub use tree::Tree;
pub use walk::walk;

/// The time of the file system behind `dir`: a private temp file is created there, written
/// and read back through its handle, then removed. On a share the time is the file server's.
/// Proves too that keyferry can create files in `dir`.
pub fn probe_time(dir: &std::path::Path) -> crate::Result<std::time::SystemTime> {
    use std::io::Write;
    let d = Dir::open(dir)?;
    let mut t = TempFile::create(&d)?;
    let written = t
        .file()
        .write_all(b"keyferry clock probe")
        .and_then(|_| t.file().metadata())
        .and_then(|m| m.modified());
    t.discard(&d);
    written.map_err(|e| crate::Error::io(dir, e))
}

/// Seconds the file system behind `dir` is ahead of this machine (negative: behind), from a
/// file written there ([`probe_time`]), measured against the middle of the round trip.
pub fn clock_skew_of(dir: &std::path::Path) -> crate::Result<i64> {
    let before = std::time::SystemTime::now();
    let theirs = probe_time(dir)?;
    let after = std::time::SystemTime::now();
    let mid = before + after.duration_since(before).unwrap_or_default() / 2;
    Ok(skew_seconds(theirs, mid))
}

/// Seconds `theirs` is ahead of `ours` (negative: behind).
pub fn skew_seconds(theirs: std::time::SystemTime, ours: std::time::SystemTime) -> i64 {
    match theirs.duration_since(ours) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    }
}
