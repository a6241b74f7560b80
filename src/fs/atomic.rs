//! New file contents put in place atomically: a temp file in the destination's own folder,
//! private while it is written, fsynced, given its final attributes, then renamed over the
//! destination (or linked to a new name), and the folder fsynced. A crash leaves the old file
//! or the new one, never half of either.
//!
//! On Linux the temp file is unnamed (`O_TMPFILE`) where the file system allows, so a crash
//! while writing leaves nothing behind; elsewhere it is named `.keyferry-<pid>-<n>.tmp`, and
//! [`sweep`] removes such leftovers (overwriting them first where that works).

use crate::error::{Error, Result};
use crate::fs::attrs::Attrs;
use crate::fs::open::{Dir, Entry};
use crate::os::FileId;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// Every temp file keyferry names starts with this and ends with [`TEMP_SUFFIX`].
pub const TEMP_PREFIX: &str = ".keyferry-";
pub const TEMP_SUFFIX: &str = ".tmp";

/// Whether a file name is one of keyferry's temp files.
pub fn is_temp_name(name: &OsStr) -> bool {
    name.to_str()
        .is_some_and(|n| n.starts_with(TEMP_PREFIX) && n.ends_with(TEMP_SUFFIX) && n.len() > 14)
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A fresh temp file name for this process.
pub fn temp_name() -> OsString {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let r: u32 = rand::random();
    OsString::from(format!(
        "{TEMP_PREFIX}{}-{n}-{r:08x}{TEMP_SUFFIX}",
        std::process::id()
    ))
}

/// A file being written in a folder; not in place until [`TempFile::install_new`] or
/// [`TempFile::replace`].
pub struct TempFile {
    /// `None` once closed (Windows closes before renaming).
    file: Option<File>,
    /// The folder, for removing a named temp file that was never put in place.
    dir_path: std::path::PathBuf,
    /// The name it has on disk, if it has one (not for `O_TMPFILE`).
    named: Option<OsString>,
    /// The name it will be linked under (`O_TMPFILE`) or has.
    name: OsString,
}

impl TempFile {
    /// Creates a private (0600 / owner-only) temp file in `dir`.
    pub fn create(dir: &Dir) -> Result<TempFile> {
        let name = temp_name();
        #[cfg(target_os = "linux")]
        {
            use rustix::fs::{Mode, OFlags};
            if let Ok(fd) = rustix::fs::openat(
                dir.fd(),
                ".",
                OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            ) {
                return Ok(TempFile {
                    file: Some(File::from(fd)),
                    dir_path: dir.path().to_owned(),
                    named: None,
                    name,
                });
            }
        }
        let file = create_named(dir, &name)?;
        Ok(TempFile {
            file: Some(file),
            dir_path: dir.path().to_owned(),
            named: Some(name.clone()),
            name,
        })
    }

    /// The temporary file, to write to.
    pub fn file(&mut self) -> &mut File {
        self.file
            .as_mut()
            .expect("temp file is open until it is put in place")
    }

    /// Writes `bytes`, flushes them to disk and sets the final attributes. Returns false
    /// when a Windows owner could not be carried.
    pub fn finish(&mut self, dir: &Dir, bytes: &[u8], attrs: &Attrs) -> Result<bool> {
        let path = dir.join(&self.name);
        self.file()
            .write_all(bytes)
            .map_err(|e| Error::io(&path, e))?;
        self.seal(dir, attrs)
    }

    /// Flushes what was written and sets the final attributes.
    pub fn seal(&mut self, dir: &Dir, attrs: &Attrs) -> Result<bool> {
        let path = dir.join(&self.name);
        self.file().sync_all().map_err(|e| Error::io(&path, e))?;
        if attrs.inherit {
            // Windows works out inherited entries from the path, with no handle of ours
            // open on the file; the bytes are on disk, so close it first.
            self.file = None;
            attrs.apply_by_path(&path)?;
            return Ok(true);
        }
        let file = self.file();
        let owner_kept = attrs.apply(file, &path)?;
        file.sync_all().map_err(|e| Error::io(&path, e))?;
        Ok(owner_kept)
    }

    /// Puts the file in place under a name that must not exist yet.
    pub fn install_new(mut self, dir: &Dir, name: &OsStr) -> Result<()> {
        #[cfg(target_os = "linux")]
        if self.named.is_none() {
            use std::os::fd::AsRawFd;
            let proc_path = format!("/proc/self/fd/{}", self.file().as_raw_fd());
            match rustix::fs::linkat(
                rustix::fs::CWD,
                proc_path.as_str(),
                dir.fd(),
                name,
                rustix::fs::AtFlags::SYMLINK_FOLLOW,
            ) {
                Ok(()) => return dir.sync(),
                Err(rustix::io::Errno::EXIST) => {
                    return Err(Error::Changed {
                        path: dir.join(name),
                    })
                }
                Err(_) => self.give_name(dir)?,
            }
        }
        let tmp = self.named.clone().expect("named temp file");
        // A hard link fails if the name exists; then the temp name goes.
        #[cfg(unix)]
        let linked = rustix::fs::linkat(
            dir.fd(),
            &*tmp,
            dir.fd(),
            name,
            rustix::fs::AtFlags::empty(),
        )
        .map_err(std::io::Error::from);
        #[cfg(not(unix))]
        let linked = {
            self.file = None;
            std::fs::hard_link(dir.join(&tmp), dir.join(name))
        };
        let r = match linked {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(Error::Changed {
                path: dir.join(name),
            }),
            Err(e) => Err(Error::io(dir.join(name), e)),
        };
        let _ = dir.unlink(&tmp);
        self.named = None;
        r?;
        dir.sync()
    }

    /// Renames the file over `name`, after checking that `name` is still the file the plan
    /// saw (`expect`); if not, nothing is replaced and the temp file goes.
    pub fn replace(mut self, dir: &Dir, name: &OsStr, expect: FileId) -> Result<()> {
        if self.named.is_none() {
            self.give_name(dir)?;
        }
        let tmp = self.named.clone().expect("named");
        match dir.entry(name)? {
            Entry::File { id, .. } if id == expect => {}
            _ => {
                let _ = dir.unlink(&tmp);
                self.named = None;
                return Err(Error::Changed {
                    path: dir.join(name),
                });
            }
        }
        // Windows renames a closed file more reliably; the bytes are already on disk.
        #[cfg(windows)]
        {
            self.file = None;
        }
        crate::failpoint::hit("fs:before-rename");
        let r = dir.rename(&tmp, name);
        if r.is_err() {
            let _ = dir.unlink(&tmp);
        }
        self.named = None;
        r?;
        dir.sync()
    }

    /// Links an unnamed temp file under its temp name (for a rename over an existing file).
    #[cfg(target_os = "linux")]
    fn give_name(&mut self, dir: &Dir) -> Result<()> {
        use std::os::fd::AsRawFd;
        if self.named.is_some() {
            return Ok(());
        }
        let proc_path = format!("/proc/self/fd/{}", self.file().as_raw_fd());
        rustix::fs::linkat(
            rustix::fs::CWD,
            proc_path.as_str(),
            dir.fd(),
            &*self.name,
            rustix::fs::AtFlags::SYMLINK_FOLLOW,
        )
        .map_err(|e| Error::io(dir.join(&self.name), e.into()))?;
        self.named = Some(self.name.clone());
        Ok(())
    }

    #[cfg(not(target_os = "linux"))]
    fn give_name(&mut self, _dir: &Dir) -> Result<()> {
        Ok(())
    }

    /// Drops the temp file, removing its name if it has one.
    pub fn discard(mut self, dir: &Dir) {
        if let Some(n) = self.named.take() {
            let _ = dir.unlink(&n);
        }
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        // A named temp file never put in place goes (an error path that did not `discard`);
        // unnamed ones vanish with the handle.
        if let Some(n) = self.named.take() {
            let _ = std::fs::remove_file(self.dir_path.join(n));
        }
    }
}

fn create_named(dir: &Dir, name: &OsStr) -> Result<File> {
    let path = dir.join(name);
    #[cfg(unix)]
    {
        use rustix::fs::{Mode, OFlags};
        let fd = rustix::fs::openat(
            dir.fd(),
            name,
            OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|e| Error::io(&path, e.into()))?;
        Ok(File::from(fd))
    }
    #[cfg(windows)]
    {
        use std::os::windows::fs::OpenOptionsExt;
        // Read and write, plus the rights to give it the replaced file's owner and ACL.
        const GENERIC_READ: u32 = 0x8000_0000;
        const GENERIC_WRITE: u32 = 0x4000_0000;
        const WRITE_DAC: u32 = 0x0004_0000;
        const WRITE_OWNER: u32 = 0x0008_0000;
        const READ_CONTROL: u32 = 0x0002_0000;
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .access_mode(GENERIC_READ | GENERIC_WRITE | WRITE_DAC | WRITE_OWNER | READ_CONTROL)
            .create_new(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        crate::os::restrict_to_owner(&path).map_err(|e| Error::io(&path, e))?;
        Ok(f)
    }
}

/// Removes keyferry's leftover temp files from a folder (a crash can leave one holding key
/// bytes): each is opened without following links, checked to be a regular file owned by
/// this account (or root), overwritten where that works, and removed.
pub fn sweep(dir: &Dir) -> Result<Vec<crate::fs::shred::Removal>> {
    let mut out = Vec::new();
    for name in dir.names()? {
        if !is_temp_name(&name) {
            continue;
        }
        let Ok(Some(opened)) = dir.open_file(&name, true) else {
            continue;
        };
        #[cfg(unix)]
        {
            let owner = opened.meta.unix.map(|u| u.0).unwrap_or(u32::MAX);
            let me = rustix::process::geteuid().as_raw();
            if owner != me && owner != 0 {
                continue;
            }
        }
        out.push(crate::fs::shred::shred_opened(dir, &name, opened)?);
    }
    Ok(out)
}
