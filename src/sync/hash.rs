//! Hashing many files fast, for `sync verify`, the check a sync makes before it swaps, and
//! the audit's binaries check: BLAKE3 (a cryptographic hash, SIMD inside each file), files
//! spread over every core, largest first so one big DLL does not finish last. Each file is
//! opened once, no-follow, through its folder's handle in a [`Tree`], and read as a stream
//! through a fixed buffer: memory stays a few hundred KiB per thread whatever the file
//! sizes. Files are read, never memory-mapped: a file truncated by someone else while mapped
//! would crash the process.

use crate::error::{Error, Result};
use crate::fingerprint::FileHash;
use crate::fs::{Opened, Tree};
use std::io::Read;
use std::time::SystemTime;

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

/// BLAKE3 of what an open file holds, streamed through `buf`.
pub fn hash_opened(opened: &mut Opened, buf: &mut [u8]) -> Result<FileHash> {
    let mut h = blake3::Hasher::new();
    loop {
        let n = match opened.file.read(buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::io(&opened.path, e)),
        };
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(FileHash(*h.finalize().as_bytes()))
}

fn hashed(opened: Result<Option<Opened>>, buf: &mut [u8]) -> Result<Hashed> {
    match opened {
        Ok(Some(mut o)) => hash_opened(&mut o, buf).map(Hashed::Hash),
        Ok(None) => Ok(Hashed::Missing),
        Err(Error::NotAFile { what, .. }) => Ok(Hashed::NotAFile(what)),
        Err(Error::Changed { .. }) => Ok(Hashed::NotAFile("under a link")),
        Err(e) => Err(e),
    }
}

/// One file to hash: its tree, relative path and expected size (for ordering and progress).
pub type Item<'a> = (&'a Tree, &'a str, u64);

/// The source's digests, shared by every target of one run (`sync --checksum` to three
/// targets reads the source once, not three times). An entry holds for the file's size and
/// modification time when it was hashed; a file listed with another size or time is hashed
/// again. Each file is hashed by one thread while the others asking for it wait.
#[derive(Default)]
pub struct DigestCache {
    #[allow(clippy::type_complexity)]
    slots: std::sync::Mutex<
        std::collections::HashMap<
            std::path::PathBuf,
            std::sync::Arc<std::sync::Mutex<Option<(u64, SystemTime, FileHash)>>>,
        >,
    >,
}

impl std::fmt::Debug for DigestCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DigestCache")
    }
}

impl DigestCache {
    /// The digest of `rel` in `tree`, listed with `len` and `stamp`: cached, or hashed now.
    fn get(
        &self,
        tree: &Tree,
        rel: &str,
        len: u64,
        stamp: SystemTime,
        buf: &mut [u8],
    ) -> Result<Hashed> {
        let slot = self
            .slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(tree.join(rel))
            .or_default()
            .clone();
        let mut held = slot.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((l, t, h)) = &*held {
            if *l == len && *t == stamp {
                return Ok(Hashed::Hash(*h));
            }
        }
        let h = hashed(tree.open_file(rel), buf)?;
        if let Hashed::Hash(d) = &h {
            *held = Some((len, stamp, *d));
        }
        Ok(h)
    }
}

/// As [`hash_many`]; a file with a time in `stamps` (same order as `files`; empty: none) is
/// looked up in `cache` first and added to it.
pub fn hash_many_cached(
    files: &[Item<'_>],
    stamps: &[Option<SystemTime>],
    cache: Option<&DigestCache>,
    jobs: usize,
    done: &(dyn Fn(u64) + Sync),
) -> Result<Vec<Hashed>> {
    let order = crate::parallel::largest_first(files.iter().map(|f| f.2));
    crate::parallel::try_map(
        &order,
        crate::parallel::threads(jobs),
        || vec![0u8; BUF],
        |buf, i| {
            let (tree, rel, len) = files[i];
            let h = match (cache, stamps.get(i).copied().flatten()) {
                (Some(c), Some(stamp)) => c.get(tree, rel, len, stamp, buf)?,
                _ => hashed(tree.open_file(rel), buf)?,
            };
            done(len);
            Ok(h)
        },
    )
}

/// Hashes every file of `files` on up to `jobs` threads ([`crate::parallel`]). `done(bytes)`
/// is called after each file. The result is in the order of `files`; the first I/O error
/// stops the work and is returned.
pub fn hash_many(
    files: &[Item<'_>],
    jobs: usize,
    done: &(dyn Fn(u64) + Sync),
) -> Result<Vec<Hashed>> {
    hash_many_cached(files, &[], None, jobs, done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_match_blake3_in_order_and_links_are_not_followed() {
        let d = tempfile::tempdir().unwrap();
        let mut files = Vec::new();
        std::fs::create_dir(d.path().join("sub")).unwrap();
        for (i, size) in [0usize, 10, 300_000, 1_000_000, 5].iter().enumerate() {
            let rel = format!("sub/f{i}");
            let bytes: Vec<u8> = (0..*size).map(|x| (x * 7 + i) as u8).collect();
            std::fs::write(d.path().join(&rel), &bytes).unwrap();
            files.push((rel, *size as u64, blake3::hash(&bytes)));
        }
        let tree = Tree::open(d.path()).unwrap();
        let list: Vec<Item> = files.iter().map(|f| (&tree, f.0.as_str(), f.1)).collect();
        let total = std::sync::atomic::AtomicUsize::new(0);
        let got = hash_many(&list, 4, &|n| {
            total.fetch_add(n as usize, std::sync::atomic::Ordering::Relaxed);
        })
        .unwrap();
        for (g, f) in got.iter().zip(&files) {
            assert_eq!(*g, Hashed::Hash(FileHash(*f.2.as_bytes())));
        }
        assert_eq!(total.into_inner(), 1_300_015);
        let mut buf = vec![0u8; BUF];
        assert_eq!(
            hashed(tree.open_file("gone"), &mut buf).unwrap(),
            Hashed::Missing
        );
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(d.path().join(&files[2].0), d.path().join("link")).unwrap();
            assert!(matches!(
                hashed(tree.open_file("link"), &mut buf).unwrap(),
                Hashed::NotAFile(_)
            ));
        }
    }

    #[test]
    fn the_digest_cache_holds_for_one_size_and_time_only() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.dll");
        std::fs::write(&p, b"first").unwrap();
        let when = std::fs::metadata(&p).unwrap().modified().unwrap();
        let tree = Tree::open(d.path()).unwrap();
        let cache = DigestCache::default();
        let list: Vec<Item> = vec![(&tree, "a.dll", 5); 3];
        let first = hash_many_cached(&list, &[Some(when); 3], Some(&cache), 3, &|_| {}).unwrap();
        assert_eq!(
            first[0],
            Hashed::Hash(FileHash(*blake3::hash(b"first").as_bytes()))
        );
        assert!(first.iter().all(|h| *h == first[0]));
        // Same size, same time, other bytes: the cache answers (it was not read again).
        std::fs::write(&p, b"FIRST").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&p)
            .unwrap()
            .set_modified(when)
            .unwrap();
        let again = hash_many_cached(&list[..1], &[Some(when)], Some(&cache), 1, &|_| {}).unwrap();
        assert_eq!(again[0], first[0]);
        // Another time: hashed again.
        let later = when + std::time::Duration::from_secs(1);
        let fresh = hash_many_cached(&list[..1], &[Some(later)], Some(&cache), 1, &|_| {}).unwrap();
        assert_eq!(
            fresh[0],
            Hashed::Hash(FileHash(*blake3::hash(b"FIRST").as_bytes()))
        );
        // No cache, no time: always read.
        assert_eq!(hash_many(&list[..1], 1, &|_| {}).unwrap()[0], fresh[0]);
    }
}
