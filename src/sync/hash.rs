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

/// Read buffer per thread: large enough for BLAKE3's widest SIMD batches.
pub(crate) const BUF: usize = 256 * 1024;

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

/// Whether two files hold the same bytes: each opened once, no-follow, through its folder's
/// handle, read side by side and compared, stopping at the first difference (cheaper than
/// hashing both: a sync checks a file it just wrote while the page cache holds both).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Same {
    Yes,
    No,
    /// One side is not there any more.
    Missing,
    /// A link or special file on one side.
    NotAFile,
}

fn same_bytes(
    a: &Tree,
    arel: &str,
    b: &Tree,
    brel: &str,
    bufs: &mut (Vec<u8>, Vec<u8>),
) -> Result<Same> {
    let open = |t: &Tree, rel: &str| match t.open_file(rel) {
        Ok(Some(o)) => Ok(Ok(o)),
        Ok(None) => Ok(Err(Same::Missing)),
        Err(Error::NotAFile { .. }) | Err(Error::Changed { .. }) => Ok(Err(Same::NotAFile)),
        Err(e) => Err(e),
    };
    let x = match open(a, arel)? {
        Ok(o) => o,
        Err(s) => return Ok(s),
    };
    let y = match open(b, brel)? {
        Ok(o) => o,
        Err(s) => return Ok(s),
    };
    if x.meta.len != y.meta.len {
        return Ok(Same::No);
    }
    Ok(
        if same_files((&x.file, &x.path), (&y.file, &y.path), bufs)? {
            Same::Yes
        } else {
            Same::No
        },
    )
}

/// Whether two open files hold the same bytes, read side by side from their starts by
/// position (their offsets do not matter) and compared, stopping at the first difference.
pub fn same_files(
    a: (&std::fs::File, &std::path::Path),
    b: (&std::fs::File, &std::path::Path),
    bufs: &mut (Vec<u8>, Vec<u8>),
) -> Result<bool> {
    let (bx, by) = (&mut bufs.0, &mut bufs.1);
    let mut at = 0u64;
    loop {
        let n = read_full_at(a, bx, at)?;
        let want = n.max(1).min(by.len());
        let m = read_full_at(b, &mut by[..want], at)?;
        if n != m || bx[..n] != by[..m] {
            return Ok(false);
        }
        if n == 0 {
            return Ok(true);
        }
        at += n as u64;
    }
}

/// Reads from `at` until `buf` is full or the file ends.
fn read_full_at(f: (&std::fs::File, &std::path::Path), buf: &mut [u8], at: u64) -> Result<usize> {
    #[cfg(unix)]
    use std::os::unix::fs::FileExt;
    #[cfg(windows)]
    use std::os::windows::fs::FileExt;
    let mut got = 0;
    while got < buf.len() {
        let pos = at + got as u64;
        #[cfg(unix)]
        let r = f.0.read_at(&mut buf[got..], pos);
        #[cfg(windows)]
        let r = f.0.seek_read(&mut buf[got..], pos);
        match r {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io(f.1, e)),
        }
    }
    Ok(got)
}

/// One source file and the files of other trees to compare with it (see [`same_across`]).
pub struct Across<'a> {
    pub rel: &'a str,
    pub len: u64,
    pub targets: Vec<(&'a Tree, &'a str)>,
}

/// Compares each source file with several trees' files in one pass, reading the source once
/// (a sync to several targets compares each with the same source): for each item, whether
/// each target file holds the source file's bytes, stopping for each at its first
/// difference. On up to `jobs` threads, largest first; the result is in the order of
/// `items`, each in the order of its targets.
pub fn same_across(source: &Tree, items: &[Across<'_>], jobs: usize) -> Result<Vec<Vec<bool>>> {
    let order = crate::parallel::largest_first(items.iter().map(|a| a.len));
    crate::parallel::try_map(
        &order,
        crate::parallel::threads(jobs),
        || (vec![0u8; BUF], vec![0u8; BUF]),
        |bufs, i| {
            let item = &items[i];
            let none = vec![false; item.targets.len()];
            let src = match source.open_file(item.rel) {
                Ok(Some(o)) => o,
                Ok(None) | Err(Error::NotAFile { .. }) | Err(Error::Changed { .. }) => {
                    return Ok(none)
                }
                Err(e) => return Err(e),
            };
            let mut open: Vec<Option<Opened>> = Vec::with_capacity(item.targets.len());
            for (tree, rel) in &item.targets {
                open.push(match tree.open_file(rel) {
                    Ok(Some(o)) if o.meta.len == src.meta.len => Some(o),
                    Ok(_) | Err(Error::NotAFile { .. }) | Err(Error::Changed { .. }) => None,
                    Err(e) => return Err(e),
                });
            }
            let (bx, by) = (&mut bufs.0, &mut bufs.1);
            let mut at = 0u64;
            while open.iter().any(Option::is_some) {
                let n = read_full_at((&src.file, &src.path), bx, at)?;
                for slot in open.iter_mut() {
                    let Some(t) = slot else { continue };
                    let want = n.max(1).min(by.len());
                    let m = read_full_at((&t.file, &t.path), &mut by[..want], at)?;
                    if n != m || bx[..n] != by[..m] {
                        *slot = None;
                    }
                }
                if n == 0 {
                    break;
                }
                at += n as u64;
            }
            Ok(open.iter().map(Option::is_some).collect())
        },
    )
}

/// Compares each pair of files byte for byte ([`Same`]) on up to `jobs` threads, largest
/// first; `done(bytes)` after each pair. The result is in the order of `pairs`.
pub fn same_many(
    pairs: &[(Item<'_>, Item<'_>)],
    jobs: usize,
    done: &(dyn Fn(u64) + Sync),
) -> Result<Vec<Same>> {
    let order = crate::parallel::largest_first(pairs.iter().map(|p| p.0 .2));
    crate::parallel::try_map(
        &order,
        crate::parallel::threads(jobs),
        || (vec![0u8; BUF], vec![0u8; BUF]),
        |bufs, i| {
            let ((a, arel, len), (b, brel, _)) = pairs[i];
            let s = same_bytes(a, arel, b, brel, bufs)?;
            done(2 * len);
            Ok(s)
        },
    )
}

pub fn hash_many(
    files: &[Item<'_>],
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
            let h = hashed(tree.open_file(rel), buf)?;
            done(len);
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
    fn files_are_compared_byte_for_byte_to_the_first_difference() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (d.path().join("a"), d.path().join("b"));
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        let big: Vec<u8> = (0..3 * BUF + 17).map(|i| (i * 31 % 251) as u8).collect();
        let mut last = big.clone();
        *last.last_mut().unwrap() ^= 1;
        let mut first = big.clone();
        first[0] ^= 1;
        for (name, x, y) in [
            ("same", &big[..], &big[..]),
            ("last", &big[..], &last[..]),
            ("first", &big[..], &first[..]),
            ("shorter", &big[..], &big[..big.len() - 1]),
            ("empty", &b""[..], &b""[..]),
        ] {
            std::fs::write(a.join(name), x).unwrap();
            std::fs::write(b.join(name), y).unwrap();
        }
        std::fs::write(a.join("gone"), b"x").unwrap();
        let (ta, tb) = (Tree::open(&a).unwrap(), Tree::open(&b).unwrap());
        let names = ["same", "last", "first", "shorter", "empty", "gone"];
        let pairs: Vec<(Item, Item)> = names
            .iter()
            .map(|n| ((&ta, *n, 1u64), (&tb, *n, 1u64)))
            .collect();
        let got = same_many(&pairs, 3, &|_| {}).unwrap();
        assert_eq!(
            got,
            [
                Same::Yes,
                Same::No,
                Same::No,
                Same::No,
                Same::Yes,
                Same::Missing
            ]
        );
    }
}
