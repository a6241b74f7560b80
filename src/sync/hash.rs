//! Hashing many files fast, for `sync verify`, the check a sync makes before it swaps, and
//! the audit's binaries check: BLAKE3 (a cryptographic hash, SIMD inside each file), files
//! spread over every core, largest first so one big DLL does not finish last. Each file is
//! opened once, no-follow, and read as a stream through a fixed buffer: memory stays a few
//! hundred KiB per thread whatever the file sizes. Files are read, never memory-mapped: a
//! file truncated by someone else while mapped would crash the process.

use crate::error::{Error, Result};
use crate::fingerprint::FileHash;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Read buffer per thread: large enough for BLAKE3's widest SIMD batches.
const BUF: usize = 256 * 1024;

/// Outcome of hashing one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hashed {
    Hash(FileHash),
    /// Not there any more.
    Missing,
    /// A link or special file where a regular file was listed.
    NotAFile(&'static str),
}

/// BLAKE3 of one file, streamed through `buf`, opened once without following a link.
pub fn hash_file_with(path: &Path, buf: &mut [u8]) -> Result<Hashed> {
    let mut opened = match crate::fs::open_regular(path) {
        Ok(Some(o)) => o,
        Ok(None) => return Ok(Hashed::Missing),
        Err(Error::NotAFile { what, .. }) => return Ok(Hashed::NotAFile(what)),
        Err(e) => return Err(e),
    };
    let mut h = blake3::Hasher::new();
    loop {
        let n = match opened.file.read(buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::io(path, e)),
        };
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(Hashed::Hash(FileHash(*h.finalize().as_bytes())))
}

/// BLAKE3 of one file.
pub fn hash_file(path: &Path) -> Result<Hashed> {
    hash_file_with(path, &mut vec![0u8; BUF])
}

/// Hashes every path of `files` (with its expected size, for ordering and progress) on up
/// to `jobs` threads ([`crate::parallel`]). `done(bytes)` is called after each file. The
/// result is in the order of `files`; the first I/O error stops the work and is returned.
pub fn hash_many(
    files: &[(PathBuf, u64)],
    jobs: usize,
    done: &(dyn Fn(u64) + Sync),
) -> Result<Vec<Hashed>> {
    let order = crate::parallel::largest_first(files.iter().map(|f| f.1));
    crate::parallel::try_map(
        &order,
        crate::parallel::threads(jobs),
        || vec![0u8; BUF],
        |buf, i| {
            let (path, len) = &files[i];
            let h = hash_file_with(path, buf)?;
            done(*len);
            Ok(h)
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_match_blake3_in_order_and_links_are_not_followed() {
        let d = tempfile::tempdir().unwrap();
        let mut files = Vec::new();
        for (i, size) in [0usize, 10, 300_000, 1_000_000, 5].iter().enumerate() {
            let p = d.path().join(format!("f{i}"));
            let bytes: Vec<u8> = (0..*size).map(|x| (x * 7 + i) as u8).collect();
            std::fs::write(&p, &bytes).unwrap();
            files.push((p, *size as u64, blake3::hash(&bytes)));
        }
        let list: Vec<(PathBuf, u64)> = files.iter().map(|f| (f.0.clone(), f.1)).collect();
        let total = std::sync::atomic::AtomicUsize::new(0);
        let got = hash_many(&list, 4, &|n| {
            total.fetch_add(n as usize, std::sync::atomic::Ordering::Relaxed);
        })
        .unwrap();
        for (g, f) in got.iter().zip(&files) {
            assert_eq!(*g, Hashed::Hash(FileHash(*f.2.as_bytes())));
        }
        assert_eq!(total.into_inner(), 1_300_015);
        assert_eq!(hash_file(&d.path().join("gone")).unwrap(), Hashed::Missing);
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(&files[2].0, d.path().join("link")).unwrap();
            assert!(matches!(
                hash_file(&d.path().join("link")).unwrap(),
                Hashed::NotAFile(_)
            ));
        }
    }
}
