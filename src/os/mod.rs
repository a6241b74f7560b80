//! The one place that talks to the operating system below `std`: process hardening, memory
//! locking, file-system type, inherited descriptors, and on Windows DPAPI, ACLs and
//! handle-level file calls (`win.rs`). It is the only module allowed `unsafe`, and each use
//! says why it is sound. Unix file calls go through `rustix`, which needs no `unsafe` here.

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
    /// The file system's type name.
    pub name: String,
    /// Whether overwriting in place replaces the old blocks.
    pub overwrites_in_place: bool,
}

/// Asks the OS to start writing a file's data to disk now, without waiting (Linux
/// `sync_file_range(SYNC_FILE_RANGE_WRITE)`; nothing elsewhere). Only a hint: whoever needs
/// the data durable still flushes; an error here changes nothing.
pub fn start_writeback(file: &std::fs::File) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: a valid open descriptor for the duration of the call; no memory is passed.
        let _ =
            unsafe { libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE) };
    }
    #[cfg(not(target_os = "linux"))]
    let _ = file;
}

/// Milliseconds since Windows started.
#[cfg(windows)]
pub fn tick_count() -> u64 {
    win::tick_count()
}

/// Bytes an unprivileged writer may still use on the file system that holds `path` (a folder;
/// on Windows a share path works too).
pub fn free_space(path: &Path) -> std::io::Result<u64> {
    #[cfg(unix)]
    {
        let st = rustix::fs::statvfs(path)?;
        Ok(st.f_bavail.saturating_mul(st.f_frsize))
    }
    #[cfg(windows)]
    {
        win::free_space(path)
    }
}

/// Looks up the file system that holds `path`.
pub fn file_system_info(path: &Path) -> Option<FileSystemInfo> {
    #[cfg(target_os = "linux")]
    {
        fs_type_name(rustix::fs::statfs(path).ok()?.f_type as u64)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = path;
        None
    }
}

/// Looks up the file system that holds an open file (no second lookup by name).
pub fn file_system_info_of(file: &std::fs::File) -> Option<FileSystemInfo> {
    #[cfg(target_os = "linux")]
    {
        fs_type_name(rustix::fs::fstatfs(file).ok()?.f_type as u64)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = file;
        None
    }
}

#[cfg(target_os = "linux")]
fn fs_type_name(f_type: u64) -> Option<FileSystemInfo> {
    {
        // Magic numbers from linux/magic.h.
        let (name, in_place) = match f_type {
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

/// Why a DPAPI call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DpapiError {
    /// Not a Windows build.
    Unsupported,
    /// The OS refused; the Windows error code and its text.
    Os(i32, String),
}

impl std::fmt::Display for DpapiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DpapiError::Unsupported => f.write_str("DPAPI exists only on Windows"),
            DpapiError::Os(_, text) => f.write_str(text),
        }
    }
}

/// Decrypts a DPAPI blob with `CryptUnprotectData` (no UI). The plaintext goes straight into
/// one exact allocation, wiped on drop (`crate::dpapi::unprotect` hands it to a `KeyBytes`
/// without a copy); the OS buffer is wiped before it is freed.
pub fn dpapi_unprotect(blob: &[u8]) -> Result<zeroize::Zeroizing<Vec<u8>>, DpapiError> {
    #[cfg(windows)]
    {
        win::unprotect(blob)
    }
    #[cfg(not(windows))]
    {
        let _ = blob;
        Err(DpapiError::Unsupported)
    }
}

/// Encrypts with `CryptProtectData`, machine scope when `machine` (any account on this
/// machine can decrypt; the file ACL then decides who reads it), user scope otherwise.
pub fn dpapi_protect(plain: &[u8], machine: bool) -> Result<Vec<u8>, DpapiError> {
    #[cfg(windows)]
    {
        win::protect(plain, machine)
    }
    #[cfg(not(windows))]
    {
        let _ = (plain, machine);
        Err(DpapiError::Unsupported)
    }
}

/// Gives a file an owner-only ACL on Windows: full control for the account running keyferry,
/// SYSTEM and Administrators, inheritance cut (the Windows twin of mode 0600). A no-op
/// elsewhere, where the file was created 0600.
pub fn restrict_to_owner(path: &Path) -> std::io::Result<()> {
    #[cfg(windows)]
    {
        win::restrict_to_owner(path)
    }
    #[cfg(not(windows))]
    {
        let _ = path;
        Ok(())
    }
}

/// The SID of the account running keyferry, as text (Windows).
#[cfg(windows)]
pub fn current_user_sid() -> std::io::Result<String> {
    win::current_user_sid()
}

/// The trustees an SDDL's DACL grants access to that are not in `allowed` (SIDs or SDDL
/// aliases; `OW` and the descriptor's own `O:` owner always count as allowed). Deny entries
/// and inherit-only entries (which do not apply to the file itself) are not grants. A NULL
/// DACL grants everyone.
pub fn foreign_grants(sddl: &str, allowed: &[&str]) -> Vec<String> {
    if sddl.contains("NO_ACCESS_CONTROL") {
        return vec!["everyone (no DACL)".into()];
    }
    let owner = sddl
        .strip_prefix("O:")
        .and_then(|s| s.split(['G', 'D']).next())
        .unwrap_or("");
    let dacl = sddl.split_once("D:").map(|(_, d)| d).unwrap_or("");
    let mut out = Vec::new();
    for ace in dacl.split('(').skip(1) {
        let f: Vec<&str> = ace.trim_end_matches(')').split(';').collect();
        if f.len() < 6 || f[0] != "A" || f[1].contains("IO") {
            continue;
        }
        let who = f[5];
        if who == "OW" || who == owner || allowed.contains(&who) {
            continue;
        }
        if !out.iter().any(|o| o == who) {
            out.push(who.to_string());
        }
    }
    out
}

/// The file's DACL in SDDL form (Windows), for tests and diagnostics.
pub fn dacl_sddl(path: &Path) -> std::io::Result<String> {
    #[cfg(windows)]
    {
        win::dacl_sddl(path)
    }
    #[cfg(not(windows))]
    {
        let _ = path;
        Err(std::io::Error::other("no ACLs here"))
    }
}

/// What names a file independently of its path: device and inode on Unix, volume serial
/// number and file index on Windows. Two handles with the same id are the same file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct FileId {
    /// The device (Unix) or volume serial number (Windows).
    pub device: u64,
    /// The inode (Unix) or file index (Windows).
    pub index: u64,
}

/// What the handle-level calls of Windows say about an open file.
#[cfg(windows)]
#[derive(Debug, Clone, Copy)]
pub struct HandleInfo {
    /// Its volume serial number and file index.
    pub id: FileId,
    /// How many names it has (hard links).
    pub links: u64,
    /// It is a reparse point (a symbolic link, a junction, a mount point).
    pub reparse_point: bool,
    /// It is a folder.
    pub directory: bool,
}

/// Identity, link count and kind of an open file (Windows: `GetFileInformationByHandle`).
#[cfg(windows)]
pub fn handle_info(file: &std::fs::File) -> std::io::Result<HandleInfo> {
    win::handle_info(file)
}

/// Marks an open file for deletion through its handle: it goes when the handle closes, and
/// no name is looked up again (Windows: `FileDispositionInfo`; the handle needs DELETE).
#[cfg(windows)]
pub fn delete_by_handle(file: &std::fs::File) -> std::io::Result<()> {
    win::delete_by_handle(file)
}

/// The owner, group and DACL of an open file as SDDL (Windows); an error elsewhere.
pub fn security_of(file: &std::fs::File) -> std::io::Result<String> {
    #[cfg(windows)]
    {
        win::security_of(file)
    }
    #[cfg(not(windows))]
    {
        let _ = file;
        Err(std::io::Error::other("no ACLs here"))
    }
}

/// Gives an open file the owner, group and DACL (with its protection) of an SDDL string.
/// Returns whether the owner could be set too: assigning another account as owner needs a
/// privilege an administrator may not have enabled, and then only group and DACL are set.
pub fn set_security(file: &std::fs::File, sddl: &str) -> std::io::Result<bool> {
    #[cfg(windows)]
    {
        win::set_security(file, sddl)
    }
    #[cfg(not(windows))]
    {
        let _ = (file, sddl);
        Err(std::io::Error::other("no ACLs here"))
    }
}

/// Replaces a file's DACL with what it inherits from its folder (no explicit entries), as a
/// file the product created there would have (Windows; a no-op elsewhere).
pub fn inherit_from_folder(path: &Path) -> std::io::Result<()> {
    #[cfg(windows)]
    {
        win::inherit_from_folder(path)
    }
    #[cfg(not(windows))]
    {
        let _ = path;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::foreign_grants;

    #[test]
    fn only_owner_system_and_administrators_may_hold_a_private_file() {
        let me = "S-1-5-21-1-2-3-1000";
        let ok = ["SY", "BA", "S-1-5-18", "S-1-5-32-544", me];
        let private = format!("O:{me}G:SYD:P(A;;FA;;;{me})(A;;FA;;;SY)(A;;FA;;;BA)");
        assert!(foreign_grants(&private, &ok).is_empty());
        // Domain Users (a deny-list of broad groups let this through).
        let domain_users = format!("O:{me}G:SYD:(A;;FA;;;{me})(A;;FR;;;S-1-5-21-9-9-9-513)");
        assert_eq!(foreign_grants(&domain_users, &ok), ["S-1-5-21-9-9-9-513"]);
        assert_eq!(foreign_grants("O:BAD:(A;;FR;;;WD)", &ok), ["WD"]);
        // Denials and inherit-only entries grant nothing on the file.
        let other = "S-1-5-21-7-7-7-1001";
        let s = format!("O:{me}D:(D;;FA;;;WD)(A;OICIIO;FA;;;{other})(A;;FA;;;OW)");
        assert!(foreign_grants(&s, &ok).is_empty());
        assert_eq!(foreign_grants("D:NO_ACCESS_CONTROL", &ok).len(), 1);
    }
}

#[cfg(windows)]
mod win;
