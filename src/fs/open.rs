//! Opening a file another user could have touched, once: relative to a pinned folder handle,
//! never through a link (Unix `O_NOFOLLOW`; Windows opens the reparse point itself), never
//! blocking on a FIFO (`O_NONBLOCK`), then `fstat` on the handle: a regular file, and still
//! the one the name points to. Everything after that goes through the handle.

use crate::error::{Error, Result};
use crate::os::FileId;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

/// What a name in a folder is, looked at without following it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// Nothing has that name.
    Missing,
    /// A regular file.
    File {
        /// Its identity.
        id: FileId,
        /// Its size in bytes.
        len: u64,
    },
    /// A symbolic link (or a Windows reparse point), not followed.
    Symlink,
    /// A folder, FIFO, socket or device.
    Other(&'static str),
}

/// What names an open file independently of its path (see [`FileId`]), from its handle.
pub fn id_of(file: &File, path: &Path) -> Result<FileId> {
    #[cfg(unix)]
    {
        let st = rustix::fs::fstat(file).map_err(|e| Error::io(path, e.into()))?;
        Ok(FileId {
            device: st.st_dev,
            index: st.st_ino,
        })
    }
    #[cfg(windows)]
    {
        crate::os::handle_info(file)
            .map(|i| i.id)
            .map_err(|e| Error::io(path, e))
    }
}

/// What tells one file from another that later took its path, even its inode number (which
/// Unix file systems reuse at once): identity, size, modification time to the nanosecond,
/// and on Unix the owner. Read from a handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileStamp {
    /// Its identity (device and inode, or volume and index).
    pub id: FileId,
    /// Its size in bytes.
    pub len: u64,
    /// Nanoseconds since 1970 (negative before).
    pub modified_ns: i128,
    /// The Unix owner's uid (`None` on Windows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<u32>,
}

/// The [`FileStamp`] of an open file.
pub fn stamp_of(file: &File, path: &Path) -> Result<FileStamp> {
    let m = file.metadata().map_err(|e| Error::io(path, e))?;
    let modified_ns = match m
        .modified()
        .map_err(|e| Error::io(path, e))?
        .duration_since(std::time::UNIX_EPOCH)
    {
        Ok(d) => d.as_nanos() as i128,
        Err(e) => -(e.duration().as_nanos() as i128),
    };
    #[cfg(unix)]
    let owner = Some(std::os::unix::fs::MetadataExt::uid(&m));
    #[cfg(windows)]
    let owner = None;
    Ok(FileStamp {
        id: id_of(file, path)?,
        len: m.len(),
        modified_ns,
        owner,
    })
}

/// Facts about an open regular file, from its handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    /// Its identity.
    pub id: FileId,
    /// Its size in bytes.
    pub len: u64,
    /// How many names it has (hard links).
    pub links: u64,
    /// Unix owner, group and permission bits (`None` on Windows).
    pub unix: Option<(u32, u32, u32)>,
}

/// A regular file opened through [`Dir::open_file`].
pub struct Opened {
    /// The open file.
    pub file: File,
    /// What its handle says of it.
    pub meta: Meta,
    /// The path it was opened by, for messages.
    pub path: PathBuf,
}

impl Opened {
    /// Reads the whole file through the handle, refusing more than `limit` bytes however
    /// large the file claims to be (`take(limit + 1)`).
    pub fn read_to_end_bounded(&mut self, limit: u64, what: &'static str) -> Result<Vec<u8>> {
        if self.meta.len > limit {
            return Err(too_large(&self.path, what, limit));
        }
        let mut out = Vec::with_capacity(self.meta.len as usize);
        (&mut self.file)
            .take(limit + 1)
            .read_to_end(&mut out)
            .map_err(|e| Error::io(&self.path, e))?;
        if out.len() as u64 > limit {
            zeroize::Zeroize::zeroize(&mut out);
            return Err(too_large(&self.path, what, limit));
        }
        Ok(out)
    }
}

fn too_large(path: &Path, what: &'static str, limit: u64) -> Error {
    Error::TooLarge {
        path: path.to_owned(),
        what,
        limit,
    }
}

/// Splits a path into its folder and last component; the last component must be a plain
/// name (not `..`, `.` or a root).
pub fn split(path: &Path) -> Result<(PathBuf, OsString)> {
    let name = match path.components().next_back() {
        Some(Component::Normal(n)) => n.to_owned(),
        _ => {
            return Err(Error::InvalidInput(format!(
                "{} does not end in a file name",
                path.display()
            )))
        }
    };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    Ok((dir, name))
}

/// A folder pinned by a handle so that later lookups, renames and removals in it cannot be
/// redirected by swapping a folder in its path.
///
/// - Unix: every operation is relative to the handle (`openat`, `renameat`, `unlinkat`).
/// - Windows: the handle is opened without `FILE_SHARE_DELETE`, so while it is held nobody
///   (this process included) can rename or remove the folder, nor, NTFS refusing to rename a
///   folder with open handles inside, any folder above it: the path keeps naming this very
///   folder, and operations by path inside it stay inside it. A subfolder is opened with
///   `FILE_FLAG_OPEN_REPARSE_POINT` and refused if it is a junction or link. Not equivalent:
///   names inside the folder are still resolved by path (the last component opened
///   no-follow and checked), and a `Dir` must be dropped before this process renames or
///   removes its folder (docs/security.md).
pub struct Dir {
    path: PathBuf,
    #[cfg(unix)]
    fd: std::os::fd::OwnedFd,
    #[cfg(windows)]
    _pin: File,
}

impl Dir {
    /// Opens a folder. Links in the folder's own path are followed: they belong to whoever
    /// configured the path; only the last component of file paths is never followed.
    pub fn open(path: &Path) -> Result<Dir> {
        #[cfg(unix)]
        {
            use rustix::fs::{Mode, OFlags};
            let fd = rustix::fs::open(
                path,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| dir_error(path, e.into()))?;
            Ok(Dir {
                path: path.to_owned(),
                fd,
            })
        }
        #[cfg(windows)]
        {
            let pin = win_pin_dir(path, true).map_err(|e| dir_error(path, e))?;
            let info = crate::os::handle_info(&pin).map_err(|e| Error::io(path, e))?;
            if !info.directory {
                return Err(Error::FolderMissing {
                    path: path.to_owned(),
                });
            }
            Ok(Dir {
                path: path.to_owned(),
                _pin: pin,
            })
        }
    }

    /// The path the folder was opened by, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What names this folder independently of its path, from its handle.
    pub fn id(&self) -> Result<FileId> {
        #[cfg(unix)]
        {
            let st = rustix::fs::fstat(&self.fd).map_err(|e| Error::io(&self.path, e.into()))?;
            Ok(FileId {
                device: st.st_dev,
                index: st.st_ino,
            })
        }
        #[cfg(windows)]
        {
            id_of(&self._pin, &self.path)
        }
    }

    /// The path of `name` in this folder, for messages (never to open it by).
    pub fn join(&self, name: &OsStr) -> PathBuf {
        self.path.join(name)
    }

    /// What `name` is, without following it.
    pub fn entry(&self, name: &OsStr) -> Result<Entry> {
        #[cfg(unix)]
        {
            use rustix::fs::{AtFlags, FileType};
            match rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => Ok(match FileType::from_raw_mode(st.st_mode) {
                    FileType::RegularFile => Entry::File {
                        id: FileId {
                            device: st.st_dev,
                            index: st.st_ino,
                        },
                        len: st.st_size as u64,
                    },
                    FileType::Symlink => Entry::Symlink,
                    other => Entry::Other(kind_name(other)),
                }),
                Err(rustix::io::Errno::NOENT) => Ok(Entry::Missing),
                Err(e) => Err(Error::io(self.join(name), e.into())),
            }
        }
        #[cfg(windows)]
        {
            let path = self.join(name);
            match std::fs::symlink_metadata(&path) {
                Ok(m) if m.file_type().is_symlink() => Ok(Entry::Symlink),
                Ok(m) if m.is_file() => {
                    let f = win_open(&path, false)?;
                    let info = crate::os::handle_info(&f).map_err(|e| Error::io(&path, e))?;
                    if info.reparse_point {
                        return Ok(Entry::Symlink);
                    }
                    Ok(Entry::File {
                        id: info.id,
                        len: m.len(),
                    })
                }
                Ok(m) if m.is_dir() => Ok(Entry::Other("folder")),
                Ok(_) => Ok(Entry::Other("special file")),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Entry::Missing),
                Err(e) => Err(Error::io(path, e)),
            }
        }
    }

    /// Opens `name` once, no-follow and non-blocking, and checks the handle: a regular file,
    /// the same one the name points to now. `Ok(None)` when nothing is there.
    pub fn open_file(&self, name: &OsStr, write: bool) -> Result<Option<Opened>> {
        let opened = self.open_handle(name, write)?;
        #[cfg(unix)]
        if let Some(o) = &opened {
            self.require_same(name, o)?;
        }
        Ok(opened)
    }

    /// Opens `name` once, no-follow and non-blocking, and checks the handle is a regular file;
    /// for reading and copying, where only what the handle holds matters (the folder is pinned,
    /// so the name cannot have led anywhere else). `Ok(None)` when nothing is there.
    pub fn open_handle(&self, name: &OsStr, write: bool) -> Result<Option<Opened>> {
        let path = self.join(name);
        #[cfg(unix)]
        {
            use rustix::fs::{Mode, OFlags};
            let access = if write { OFlags::RDWR } else { OFlags::RDONLY };
            let fd = match rustix::fs::openat(
                &self.fd,
                name,
                access | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY,
                Mode::empty(),
            ) {
                Ok(fd) => fd,
                Err(rustix::io::Errno::NOENT) => return Ok(None),
                Err(rustix::io::Errno::LOOP) | Err(rustix::io::Errno::MLINK) => {
                    return Err(Error::NotAFile {
                        path,
                        what: "a symbolic link",
                    })
                }
                Err(rustix::io::Errno::NXIO) => {
                    return Err(Error::NotAFile {
                        path,
                        what: "a socket or FIFO",
                    })
                }
                Err(e) => return Err(Error::io(path, e.into())),
            };
            let st = rustix::fs::fstat(&fd).map_err(|e| Error::io(&path, e.into()))?;
            let kind = rustix::fs::FileType::from_raw_mode(st.st_mode);
            if kind != rustix::fs::FileType::RegularFile {
                return Err(Error::NotAFile {
                    path,
                    what: kind_name(kind),
                });
            }
            let meta = Meta {
                id: FileId {
                    device: st.st_dev,
                    index: st.st_ino,
                },
                len: st.st_size as u64,
                links: st.st_nlink,
                unix: Some((st.st_uid, st.st_gid, st.st_mode & 0o7777)),
            };
            Ok(Some(Opened {
                file: File::from(fd),
                meta,
                path,
            }))
        }
        #[cfg(windows)]
        {
            let file = match win_open(&path, write) {
                Ok(f) => f,
                Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                    return Ok(None)
                }
                Err(e) => return Err(e),
            };
            let info = crate::os::handle_info(&file).map_err(|e| Error::io(&path, e))?;
            let m = file.metadata().map_err(|e| Error::io(&path, e))?;
            if info.reparse_point {
                return Err(Error::NotAFile {
                    path,
                    what: "a symbolic link or junction",
                });
            }
            if info.directory || !m.is_file() {
                return Err(Error::NotAFile {
                    path,
                    what: if info.directory {
                        "a folder"
                    } else {
                        "a device or pipe"
                    },
                });
            }
            Ok(Some(Opened {
                file,
                meta: Meta {
                    id: info.id,
                    len: m.len(),
                    links: info.links,
                    unix: None,
                },
                path,
            }))
        }
    }

    /// Fails unless `name` still names the file behind `opened`.
    pub fn require_same(&self, name: &OsStr, opened: &Opened) -> Result<()> {
        match self.entry(name)? {
            Entry::File { id, .. } if id == opened.meta.id => Ok(()),
            _ => Err(Error::Changed {
                path: self.join(name),
            }),
        }
    }

    /// Renames `from` to `to` within this folder, replacing `to`.
    pub fn rename(&self, from: &OsStr, to: &OsStr) -> Result<()> {
        #[cfg(unix)]
        {
            rustix::fs::renameat(&self.fd, from, &self.fd, to)
                .map_err(|e| Error::io(self.join(to), e.into()))
        }
        #[cfg(not(unix))]
        {
            std::fs::rename(self.join(from), self.join(to)).map_err(|e| Error::io(self.join(to), e))
        }
    }

    /// Removes `name` if it is still the file `id` (a check as close to the removal as the OS
    /// allows without a handle-based unlink). Returns false if something else is there now.
    pub fn remove_if_same(&self, name: &OsStr, id: FileId) -> Result<bool> {
        match self.entry(name)? {
            Entry::File { id: now, .. } if now == id => {}
            _ => return Ok(false),
        }
        self.unlink(name)?;
        Ok(true)
    }

    /// Removes a name (a file or a symbolic link, never what a link points to).
    pub fn unlink(&self, name: &OsStr) -> Result<()> {
        #[cfg(unix)]
        {
            rustix::fs::unlinkat(&self.fd, name, rustix::fs::AtFlags::empty())
                .map_err(|e| Error::io(self.join(name), e.into()))
        }
        #[cfg(not(unix))]
        {
            let p = self.join(name);
            std::fs::remove_file(&p).map_err(|e| Error::io(p, e))
        }
    }

    /// fsync the folder so renames and removals in it survive a crash (Unix).
    pub fn sync(&self) -> Result<()> {
        #[cfg(unix)]
        {
            rustix::fs::fsync(&self.fd).map_err(|e| Error::io(&self.path, e.into()))
        }
        #[cfg(not(unix))]
        {
            Ok(())
        }
    }

    /// Flushes everything written on this folder's volume (Linux `syncfs`): one call for a
    /// whole tree of new files, instead of an fsync per file.
    #[cfg(target_os = "linux")]
    pub fn sync_fs(&self) -> Result<()> {
        rustix::fs::syncfs(&self.fd).map_err(|e| Error::io(&self.path, e.into()))
    }

    /// Swaps two names in this folder in one atomic step (Linux `renameat2` with
    /// `RENAME_EXCHANGE`): at no moment is either name missing.
    #[cfg(target_os = "linux")]
    pub fn exchange(&self, a: &OsStr, b: &OsStr) -> Result<()> {
        rustix::fs::renameat_with(&self.fd, a, &self.fd, b, rustix::fs::RenameFlags::EXCHANGE)
            .map_err(|e| Error::io(self.join(a), e.into()))?;
        self.sync()
    }

    /// The names in the folder (read through the handle on Unix).
    pub fn names(&self) -> Result<Vec<OsString>> {
        #[cfg(unix)]
        {
            use std::os::unix::ffi::OsStrExt;
            let mut out = Vec::new();
            let rd = rustix::fs::Dir::read_from(&self.fd)
                .map_err(|e| Error::io(&self.path, e.into()))?;
            for e in rd {
                let e = e.map_err(|e| Error::io(&self.path, e.into()))?;
                let name = e.file_name().to_bytes();
                if name != b"." && name != b".." {
                    out.push(OsStr::from_bytes(name).to_owned());
                }
            }
            Ok(out)
        }
        #[cfg(not(unix))]
        {
            std::fs::read_dir(&self.path)
                .and_then(|rd| rd.map(|e| e.map(|e| e.file_name())).collect())
                .map_err(|e| Error::io(&self.path, e))
        }
    }

    /// Opens the subfolder `name` without following a link: `Ok(None)` if nothing is there,
    /// [`Error::Changed`] if a link or anything but a folder is (a tree's listing said folder).
    pub fn sub(&self, name: &OsStr) -> Result<Option<Dir>> {
        let path = self.join(name);
        #[cfg(unix)]
        {
            use rustix::fs::{Mode, OFlags};
            match rustix::fs::openat(
                &self.fd,
                name,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            ) {
                Ok(fd) => Ok(Some(Dir { path, fd })),
                Err(rustix::io::Errno::NOENT) => Ok(None),
                Err(rustix::io::Errno::LOOP) | Err(rustix::io::Errno::NOTDIR) => {
                    Err(Error::Changed { path })
                }
                Err(e) => Err(Error::io(path, e.into())),
            }
        }
        #[cfg(windows)]
        {
            let pin = match win_pin_dir(&path, false) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(Error::io(path, e)),
            };
            let info = crate::os::handle_info(&pin).map_err(|e| Error::io(&path, e))?;
            if info.reparse_point || !info.directory {
                return Err(Error::Changed { path });
            }
            Ok(Some(Dir { path, _pin: pin }))
        }
    }

    /// Creates the subfolder `name` (Unix: with `mode`, before the umask). False if something
    /// is there already (never followed).
    pub fn mkdir(&self, name: &OsStr, mode: u32) -> Result<bool> {
        #[cfg(unix)]
        let made = rustix::fs::mkdirat(&self.fd, name, rustix::fs::Mode::from_raw_mode(mode))
            .map_err(std::io::Error::from);
        #[cfg(not(unix))]
        let made = {
            let _ = mode;
            std::fs::create_dir(self.join(name))
        };
        match made {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(Error::io(self.join(name), e)),
        }
    }

    /// Creates the subfolder `name` to take `model`'s place later (a data folder's fresh
    /// copy): with `model`'s owner, group and mode (Unix) or its security descriptor (Windows:
    /// its DACL, whose inheritable entries then reach every file created inside, and its
    /// owner where this account may assign it). False if something is there already.
    pub fn mkdir_like(&self, name: &OsStr, model: &Path) -> Result<bool> {
        #[cfg(unix)]
        {
            use rustix::fs::{Gid, Mode, Uid};
            let (uid, gid, mode) = Dir::open(model)?.unix_owner()?;
            if !self.mkdir(name, 0o700)? {
                return Ok(false);
            }
            let path = self.join(name);
            let set = self.sub(name).and_then(|d| {
                let d = d.ok_or(Error::Changed { path: path.clone() })?;
                rustix::fs::fchown(&d.fd, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))
                    .and_then(|_| rustix::fs::fchmod(&d.fd, Mode::from_raw_mode(mode)))
                    .map_err(|e| Error::io(&path, e.into()))
            });
            if let Err(e) = set {
                let _ = self.rmdir(name);
                return Err(e);
            }
            Ok(true)
        }
        #[cfg(windows)]
        {
            let sd = crate::os::security_of(&win_open_dir(model, false)?)
                .map_err(|e| Error::io(model, e))?;
            if !self.mkdir(name, 0o700)? {
                return Ok(false);
            }
            let path = self.join(name);
            let set = self.sub(name).and_then(|d| {
                d.ok_or(Error::Changed { path: path.clone() })?;
                crate::os::set_security(&win_open_dir(&path, true)?, &sd)
                    .map_err(|e| Error::io(&path, e))
            });
            if let Err(e) = set {
                let _ = self.rmdir(name);
                return Err(e);
            }
            Ok(true)
        }
    }

    /// Removes the subfolder `name` if it is there and empty; false if not (missing, not
    /// empty, or not a folder: a link is never followed).
    pub fn rmdir(&self, name: &OsStr) -> Result<bool> {
        #[cfg(unix)]
        let r = rustix::fs::unlinkat(&self.fd, name, rustix::fs::AtFlags::REMOVEDIR)
            .map_err(std::io::Error::from);
        #[cfg(not(unix))]
        let r = match self.sub(name) {
            // Its pin goes first (a folder this process holds cannot be removed).
            Ok(Some(pinned)) => {
                drop(pinned);
                std::fs::remove_dir(self.join(name))
            }
            _ => return Ok(false),
        };
        match r {
            Ok(()) => Ok(true),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound
                        | std::io::ErrorKind::DirectoryNotEmpty
                        | std::io::ErrorKind::NotADirectory
                ) || e.raw_os_error() == Some(145) =>
            {
                Ok(false)
            }
            Err(e) => Err(Error::io(self.join(name), e)),
        }
    }

    /// Creates the new file `name` for writing and reading back (never through a link: it
    /// must not exist). Unix: with `mode`; Windows: also with the rights to set its owner and
    /// ACL afterwards.
    pub fn create_new(&self, name: &OsStr, mode: u32) -> Result<File> {
        #[cfg(unix)]
        {
            use rustix::fs::{Mode, OFlags};
            rustix::fs::openat(
                &self.fd,
                name,
                OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(mode),
            )
            .map(File::from)
            .map_err(|e| Error::io(self.join(name), e.into()))
        }
        #[cfg(windows)]
        {
            use std::os::windows::fs::OpenOptionsExt;
            let _ = mode;
            // GENERIC_READ | GENERIC_WRITE | WRITE_DAC | WRITE_OWNER | READ_CONTROL
            let path = self.join(name);
            std::fs::File::options()
                .write(true)
                .create_new(true)
                .access_mode(0x8000_0000 | 0x4000_0000 | 0x0004_0000 | 0x0008_0000 | 0x0002_0000)
                .open(&path)
                .map_err(|e| Error::io(path, e))
        }
    }

    /// Moves `from` in this folder to `to` in `dir` (the name itself: a link is moved, not
    /// followed), replacing a file there.
    pub fn rename_to(&self, from: &OsStr, dir: &Dir, to: &OsStr) -> Result<()> {
        #[cfg(unix)]
        {
            rustix::fs::renameat(&self.fd, from, &dir.fd, to)
                .map_err(|e| Error::io(self.join(from), e.into()))
        }
        #[cfg(not(unix))]
        {
            std::fs::rename(self.join(from), dir.join(to))
                .map_err(|e| Error::io(self.join(from), e))
        }
    }

    /// Gives the file (or link) `from` in this folder a second name `to` in `dir`, never
    /// following a link (Windows cannot give a link a second name: refused).
    pub fn link_to(&self, from: &OsStr, dir: &Dir, to: &OsStr) -> Result<()> {
        #[cfg(unix)]
        {
            rustix::fs::linkat(&self.fd, from, &dir.fd, to, rustix::fs::AtFlags::empty())
                .map_err(|e| Error::io(dir.join(to), e.into()))
        }
        #[cfg(windows)]
        {
            if let Entry::Symlink = self.entry(from)? {
                return Err(Error::Unsupported(format!(
                    "{} is a link; Windows cannot give a link a second name",
                    self.join(from).display()
                )));
            }
            std::fs::hard_link(self.join(from), dir.join(to))
                .map_err(|e| Error::io(dir.join(to), e))
        }
    }

    /// Gives the folder itself an owner, group and mode, through its handle.
    #[cfg(unix)]
    pub fn set_unix_owner(&self, (uid, gid, mode): (u32, u32, u32)) -> Result<()> {
        use rustix::fs::{Gid, Mode, Uid};
        rustix::fs::fchown(&self.fd, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))
            .map_err(|e| Error::io(&self.path, e.into()))?;
        rustix::fs::fchmod(&self.fd, Mode::from_raw_mode(mode))
            .map_err(|e| Error::io(&self.path, e.into()))
    }

    /// The folder's own Unix owner, group and mode.
    #[cfg(unix)]
    pub fn unix_owner(&self) -> Result<(u32, u32, u32)> {
        let st = rustix::fs::fstat(&self.fd).map_err(|e| Error::io(&self.path, e.into()))?;
        Ok((st.st_uid, st.st_gid, st.st_mode & 0o7777))
    }

    #[cfg(unix)]
    pub(crate) fn fd(&self) -> &std::os::fd::OwnedFd {
        &self.fd
    }
}

fn dir_error(path: &Path, e: std::io::Error) -> Error {
    match e.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory => Error::FolderMissing {
            path: path.to_owned(),
        },
        _ => Error::io(path, e),
    }
}

#[cfg(unix)]
fn kind_name(kind: rustix::fs::FileType) -> &'static str {
    use rustix::fs::FileType;
    match kind {
        FileType::Directory => "a folder",
        FileType::Fifo => "a FIFO",
        FileType::CharacterDevice | FileType::BlockDevice => "a device",
        FileType::Socket => "a socket",
        FileType::Symlink => "a symbolic link",
        _ => "not a regular file",
    }
}

/// Opens the reparse point itself, never its target; DELETE access so that removal can go
/// through the handle.
#[cfg(windows)]
pub(crate) fn win_open(path: &Path, write: bool) -> Result<File> {
    use std::os::windows::fs::OpenOptionsExt;
    const FILE_FLAG_OPEN_REPARSE_POINT: u32 = 0x0020_0000;
    const GENERIC_READ: u32 = 0x8000_0000;
    const GENERIC_WRITE: u32 = 0x4000_0000;
    const DELETE: u32 = 0x0001_0000;
    let access = GENERIC_READ | if write { GENERIC_WRITE | DELETE } else { 0 };
    std::fs::OpenOptions::new()
        .access_mode(access)
        .custom_flags(FILE_FLAG_OPEN_REPARSE_POINT)
        .open(path)
        .map_err(|e| Error::io(path, e))
}

/// Opens a folder to pin it (see [`Dir`]): listing and attribute rights, shared for reading
/// and writing but not for deletion, so it cannot be renamed or removed while held; `follow`
/// false opens a reparse point itself (the caller refuses it).
#[cfg(windows)]
fn win_pin_dir(path: &Path, follow: bool) -> std::io::Result<File> {
    use std::os::windows::fs::OpenOptionsExt;
    const FILE_LIST_DIRECTORY: u32 = 0x0001;
    const FILE_READ_ATTRIBUTES: u32 = 0x0080;
    const SYNCHRONIZE: u32 = 0x0010_0000;
    const FILE_SHARE_READ: u32 = 0x1;
    const FILE_SHARE_WRITE: u32 = 0x2;
    const FILE_FLAG_BACKUP_SEMANTICS: u32 = 0x0200_0000;
    const FILE_FLAG_OPEN_REPARSE_POINT: u32 = 0x0020_0000;
    std::fs::OpenOptions::new()
        .access_mode(FILE_LIST_DIRECTORY | FILE_READ_ATTRIBUTES | SYNCHRONIZE)
        .share_mode(FILE_SHARE_READ | FILE_SHARE_WRITE)
        .custom_flags(
            FILE_FLAG_BACKUP_SEMANTICS
                | if follow {
                    0
                } else {
                    FILE_FLAG_OPEN_REPARSE_POINT
                },
        )
        .open(path)
}

/// Opens a folder itself (never a reparse point's target) for its security descriptor:
/// reading it, or with `write` setting its DACL and owner.
#[cfg(windows)]
pub(crate) fn win_open_dir(path: &Path, write: bool) -> Result<File> {
    use std::os::windows::fs::OpenOptionsExt;
    const FILE_FLAG_OPEN_REPARSE_POINT: u32 = 0x0020_0000;
    const FILE_FLAG_BACKUP_SEMANTICS: u32 = 0x0200_0000;
    const READ_CONTROL: u32 = 0x0002_0000;
    const WRITE_DAC: u32 = 0x0004_0000;
    const WRITE_OWNER: u32 = 0x0008_0000;
    let access = READ_CONTROL | if write { WRITE_DAC | WRITE_OWNER } else { 0 };
    std::fs::OpenOptions::new()
        .access_mode(access)
        .custom_flags(FILE_FLAG_OPEN_REPARSE_POINT | FILE_FLAG_BACKUP_SEMANTICS)
        .open(path)
        .map_err(|e| Error::io(path, e))
}

/// Removes the file or link `path` names, if anything is there (never a folder, never what
/// a link points to), through its folder's handle, and syncs the folder. False if nothing was
/// there (its folder included).
pub fn remove_if_present(path: &Path) -> Result<bool> {
    let (dir, name) = split(path)?;
    let dir = match Dir::open(&dir) {
        Ok(d) => d,
        Err(Error::FolderMissing { .. }) => return Ok(false),
        Err(e) => return Err(e),
    };
    match dir.entry(&name)? {
        Entry::Missing => Ok(false),
        Entry::Other(what) => Err(Error::NotAFile {
            path: path.to_owned(),
            what,
        }),
        Entry::File { .. } | Entry::Symlink => {
            dir.unlink(&name)?;
            dir.sync()?;
            Ok(true)
        }
    }
}

/// Opens a file by path (its folder pinned, its name never followed) for reading. A file
/// whose folder does not exist is missing like any other.
pub fn open_regular(path: &Path) -> Result<Option<Opened>> {
    let (dir, name) = split(path)?;
    match Dir::open(&dir) {
        Ok(d) => d.open_file(&name, false),
        Err(Error::FolderMissing { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The one way keyferry reads a file someone else may control: open once (no-follow,
/// non-blocking, `fstat`: a regular file), then read at most `limit` bytes through the
/// handle. FIFOs, devices, folders and links are refused with [`Error::NotAFile`].
pub fn read_bounded(path: &Path, limit: u64, what: &'static str) -> Result<Vec<u8>> {
    match open_regular(path)? {
        Some(mut f) => f.read_to_end_bounded(limit, what),
        None => Err(Error::missing(path, what)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Windows: a folder keyferry holds cannot be renamed or removed, by anyone, until its
    /// handle goes (the pin that stands in for handle-relative operations); a subfolder that
    /// is a junction is refused, never entered. Runs under Wine.
    #[cfg(windows)]
    #[test]
    fn a_held_folder_cannot_be_renamed_or_removed_and_junctions_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let app = d.path().join("app");
        std::fs::create_dir_all(app.join("bin")).unwrap();
        std::fs::write(app.join("bin").join("a.dll"), b"a").unwrap();
        let root = Dir::open(&app).unwrap();
        let bin = root.sub(OsStr::new("bin")).unwrap().unwrap();
        assert!(std::fs::rename(app.join("bin"), app.join("moved")).is_err());
        assert!(std::fs::remove_dir(app.join("bin")).is_err());
        assert!(std::fs::rename(&app, d.path().join("app-moved")).is_err());
        // Inside the held folder, files come and go as usual.
        assert!(bin.open_file(OsStr::new("a.dll"), false).unwrap().is_some());
        bin.unlink(OsStr::new("a.dll")).unwrap();
        drop(bin);
        // Its handle gone, the folder can be removed (by this process too).
        assert!(root.rmdir(OsStr::new("bin")).unwrap());
        drop(root);
        std::fs::rename(&app, d.path().join("app-moved")).unwrap();
        // A link (a junction where mklink makes one) where a folder is expected: refused.
        let j = d.path().join("app-moved").join("junction");
        let _ = std::process::Command::new("cmd")
            .args(["/c", "mklink", "/J"])
            .arg(&j)
            .arg(d.path())
            .output();
        if std::fs::symlink_metadata(&j).is_err() {
            let _ = std::os::windows::fs::symlink_dir(d.path(), &j);
        }
        let made = std::fs::symlink_metadata(&j).is_ok();
        if made {
            let root = Dir::open(&d.path().join("app-moved")).unwrap();
            let got = root.sub(OsStr::new("junction"));
            let meta = std::fs::symlink_metadata(&j);
            assert!(
                matches!(got, Err(Error::Changed { .. })),
                "{:?} {:?}",
                got.map(|d| d.map(|d| d.path().to_owned())),
                meta.map(|m| (
                    m.file_type(),
                    std::os::windows::fs::MetadataExt::file_attributes(&m)
                ))
            );
        } else {
            eprintln!(
                "SKIPPED (link part): neither mklink /J nor a directory symlink could be made here"
            );
        }
    }

    /// A data folder's fresh copy gets the old folder's owner, group and mode, never the
    /// defaults of the account keyferry runs as; a name already there is left alone.
    #[cfg(unix)]
    #[test]
    fn a_folder_made_like_another_takes_its_owner_and_mode() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let d = tempfile::tempdir().unwrap();
        let model = d.path().join("data");
        std::fs::create_dir(&model).unwrap();
        std::fs::set_permissions(&model, std::fs::Permissions::from_mode(0o750)).unwrap();
        let root = rustix::process::geteuid().is_root();
        let (uid, gid) = if root {
            (65534, 65534)
        } else {
            let m = std::fs::metadata(&model).unwrap();
            (m.uid(), m.gid())
        };
        std::os::unix::fs::chown(&model, Some(uid), Some(gid)).unwrap();
        let parent = Dir::open(d.path()).unwrap();
        assert!(parent.mkdir_like(OsStr::new("data.new"), &model).unwrap());
        let m = std::fs::metadata(d.path().join("data.new")).unwrap();
        assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (uid, gid, 0o750));
        assert!(!parent.mkdir_like(OsStr::new("data.new"), &model).unwrap());
    }

    /// The copy carries the old folder's DACL, whose inheritable entry for the service
    /// account (NETWORK SERVICE here) must reach what is created inside. Wine does not keep
    /// a DACL set on a folder here (it reports one made from the Unix mode), so under Wine
    /// this shows only that the copy's DACL equals the model's; real Windows shows the rest.
    #[cfg(windows)]
    #[test]
    fn a_folder_made_like_another_takes_its_dacl() {
        let d = tempfile::tempdir().unwrap();
        let model = d.path().join("data");
        std::fs::create_dir(&model).unwrap();
        let sddl = "D:(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)(A;OICI;0x1301bf;;;NS)";
        crate::os::set_security(&win_open_dir(&model, true).unwrap(), sddl).unwrap();
        let wine = std::env::var_os("WINEPREFIX").is_some();
        let model_dacl = crate::os::dacl_sddl(&model).unwrap();
        assert!(wine || model_dacl.contains(";;;NS)"), "{model_dacl}");
        let parent = Dir::open(d.path()).unwrap();
        assert!(parent.mkdir_like(OsStr::new("data.new"), &model).unwrap());
        let made = crate::os::dacl_sddl(&d.path().join("data.new")).unwrap();
        assert_eq!(made, model_dacl);
        if !wine {
            let f = d.path().join("data.new").join("PG_VERSION");
            std::fs::write(&f, b"15\n").unwrap();
            let inner = crate::os::dacl_sddl(&f).unwrap();
            assert!(inner.contains("ID;0x1301bf;;;NS)"), "{inner}");
        }
        assert!(!parent.mkdir_like(OsStr::new("data.new"), &model).unwrap());
    }

    #[test]
    fn reads_regular_files_within_the_bound() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("r");
        std::fs::write(&p, b"hello").unwrap();
        assert_eq!(read_bounded(&p, 5, "report").unwrap(), b"hello");
        assert!(matches!(
            read_bounded(&p, 4, "report"),
            Err(Error::TooLarge { limit: 4, .. })
        ));
    }

    #[cfg(unix)]
    #[test]
    fn refuses_links_fifos_and_devices_without_blocking() {
        let d = tempfile::tempdir().unwrap();
        let link = d.path().join("link");
        std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
        let e = read_bounded(&link, 1 << 20, "report").unwrap_err();
        assert!(
            matches!(
                e,
                Error::NotAFile {
                    what: "a symbolic link",
                    ..
                }
            ),
            "{e}"
        );
        let fifo = d.path().join("fifo");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        // Without O_NONBLOCK this open would wait for a writer forever.
        let e = read_bounded(&fifo, 1 << 20, "report").unwrap_err();
        assert!(matches!(e, Error::NotAFile { what: "a FIFO", .. }), "{e}");
        let e = read_bounded(Path::new("/dev/zero"), 1 << 20, "log").unwrap_err();
        assert!(
            matches!(
                e,
                Error::NotAFile {
                    what: "a device",
                    ..
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn split_needs_a_file_name() {
        assert!(split(Path::new("a/..")).is_err());
        let (d, n) = split(Path::new("k")).unwrap();
        assert_eq!(
            (d.as_path(), n.as_os_str()),
            (Path::new("."), OsStr::new("k"))
        );
    }
}
