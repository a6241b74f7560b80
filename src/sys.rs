//! The one place that talks to the operating system below `std`: core dumps, memory locking,
//! file-system type and raw file descriptors. It is the only module allowed `unsafe`, and
//! each use says why it is sound.

#![allow(unsafe_code)]

use std::path::Path;

/// Outcome of hardening the process at start-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hardening {
    /// Core dumps are off (RLIMIT_CORE = 0 and, on Linux, not dumpable).
    pub core_dumps_disabled: bool,
}

/// Turns off core dumps so that key material cannot land in a crash file. On Linux the
/// process is also made non-dumpable, which stops other unprivileged processes of the same
/// user from reading its memory through ptrace or /proc.
pub fn harden_process() -> Hardening {
    #[cfg(unix)]
    {
        use rustix::process::{setrlimit, Resource, Rlimit};
        let limit = Rlimit {
            current: Some(0),
            maximum: Some(0),
        };
        let rlimit_ok = setrlimit(Resource::Core, limit).is_ok();
        #[cfg(target_os = "linux")]
        let dumpable_ok =
            rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
                .is_ok();
        #[cfg(not(target_os = "linux"))]
        let dumpable_ok = true;
        Hardening {
            core_dumps_disabled: rlimit_ok && dumpable_ok,
        }
    }
    #[cfg(not(unix))]
    {
        // Windows writes no core files by default; Windows Error Reporting dumps are a
        // machine policy that a process cannot turn off for itself.
        Hardening {
            core_dumps_disabled: true,
        }
    }
}

/// Asks the OS to keep `buf`'s pages out of swap. Returns false when refused (e.g. a low
/// RLIMIT_MEMLOCK); callers carry on, the data is still wiped on drop.
pub fn lock_memory(buf: &[u8]) -> bool {
    if buf.is_empty() {
        return false;
    }
    #[cfg(unix)]
    {
        // SAFETY: mlock only changes the residency of pages of a live allocation that we
        // borrow for the duration of the call; it does not read or write through the pointer.
        unsafe { rustix::mm::mlock(buf.as_ptr() as *mut _, buf.len()).is_ok() }
    }
    #[cfg(not(unix))]
    {
        false
    }
}

/// Undoes [`lock_memory`].
pub fn unlock_memory(buf: &[u8]) {
    #[cfg(unix)]
    if !buf.is_empty() {
        // SAFETY: as for mlock: the range belongs to a live allocation we borrow.
        let _ = unsafe { rustix::mm::munlock(buf.as_ptr() as *mut _, buf.len()) };
    }
    #[cfg(not(unix))]
    let _ = buf;
}

/// Whether overwriting a file in place on this file system really replaces the old blocks.
/// Copy-on-write and log-structured file systems write new blocks instead, so overwriting
/// there is theatre. `None` means the type is not known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSystemInfo {
    pub name: String,
    pub overwrites_in_place: bool,
}

/// Looks up the file system that holds `path`.
pub fn file_system_info(path: &Path) -> Option<FileSystemInfo> {
    #[cfg(target_os = "linux")]
    {
        let st = rustix::fs::statfs(path).ok()?;
        // Magic numbers from linux/magic.h.
        let (name, in_place) = match st.f_type as u64 {
            0xEF53 => ("ext2/3/4", true),
            0x5846_5342 => ("xfs", true),
            0x0102_1994 => ("tmpfs", true),
            0x4d44 => ("vfat", true),
            0x5346_544e => ("ntfs", true),
            0x7366_746e => ("ntfs3", true),
            0x9123_683E => ("btrfs", false),
            0x2FC1_2FC1 => ("zfs", false),
            0xF2F5_2010 => ("f2fs", false),
            0x794c_7630 => ("overlayfs", false),
            0x6969 => ("nfs", false),
            0xFF53_4D42 | 0xFE53_4D42 => ("cifs/smb", false),
            0x6573_5546 => ("fuse", false),
            other => {
                return Some(FileSystemInfo {
                    name: format!("unknown (0x{other:x})"),
                    overwrites_in_place: false,
                })
            }
        };
        Some(FileSystemInfo {
            name: name.to_string(),
            overwrites_in_place: in_place,
        })
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = path;
        None
    }
}

/// Reads everything (up to `max` bytes) from an inherited file descriptor, then closes it.
/// Descriptor 0 is standard input on every platform; others are Unix only.
pub fn read_fd(fd: i32, max: usize) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut out = Vec::with_capacity(max.min(4096));
    if fd == 0 {
        std::io::stdin()
            .lock()
            .take(max as u64 + 1)
            .read_to_end(&mut out)?;
    } else {
        #[cfg(unix)]
        {
            if fd < 0 || fd == 1 || fd == 2 {
                return Err(std::io::Error::other(format!(
                    "descriptor {fd} cannot carry a passphrase"
                )));
            }
            // Opening /dev/fd/N gives a new handle on the same pipe or file without taking
            // ownership of the inherited descriptor, and needs no unsafe code.
            std::fs::File::open(format!("/dev/fd/{fd}"))
                .map_err(|e| std::io::Error::other(format!("descriptor {fd} is not open ({e})")))?
                .take(max as u64 + 1)
                .read_to_end(&mut out)?;
        }
        #[cfg(not(unix))]
        {
            return Err(std::io::Error::other(
                "only descriptor 0 (standard input) is supported on this system",
            ));
        }
    }
    if out.len() > max {
        use zeroize::Zeroize;
        out.zeroize();
        return Err(std::io::Error::other(format!("more than {max} bytes")));
    }
    Ok(out)
}
