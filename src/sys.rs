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
/// [`KeyBytes`](crate::secret::KeyBytes); the OS buffer is wiped before it is freed.
pub fn dpapi_unprotect(blob: &[u8]) -> Result<crate::secret::KeyBytes, DpapiError> {
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

/// The broad group an SDDL DACL grants access to, if any: Everyone, Users, Authenticated
/// Users, Interactive, Guests, Anonymous. A NULL DACL (`D:NO_ACCESS_CONTROL`) counts as
/// Everyone.
pub fn broad_ace(sddl: &str) -> Option<&'static str> {
    if sddl.contains("NO_ACCESS_CONTROL") {
        return Some("everyone (no DACL)");
    }
    let groups = [
        ("WD", "Everyone"),
        ("BU", "Users"),
        ("AU", "Authenticated Users"),
        ("IU", "Interactive"),
        ("BG", "Guests"),
        ("AN", "Anonymous"),
        ("S-1-1-0", "Everyone"),
        ("S-1-5-32-545", "Users"),
        ("S-1-5-11", "Authenticated Users"),
    ];
    sddl.split('(')
        .filter(|ace| ace.starts_with("A;"))
        .find_map(|ace| {
            let trustee = ace.trim_end_matches(')').rsplit(';').next()?;
            groups
                .iter()
                .find(|(id, _)| *id == trustee)
                .map(|(_, n)| *n)
        })
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

#[cfg(test)]
mod tests {
    use super::broad_ace;

    #[test]
    fn broad_aces_are_found_and_private_dacls_pass() {
        assert_eq!(
            broad_ace("D:PAI(A;;FA;;;SY)(A;;0x1200a9;;;BU)"),
            Some("Users")
        );
        assert_eq!(broad_ace("D:(A;;FR;;;WD)"), Some("Everyone"));
        assert_eq!(broad_ace("D:NO_ACCESS_CONTROL"), Some("everyone (no DACL)"));
        assert_eq!(
            broad_ace("D:P(A;;FA;;;S-1-5-21-1-2-3-1000)(A;;FA;;;SY)(A;;FA;;;BA)"),
            None
        );
        // A deny ACE for Everyone is not access.
        assert_eq!(broad_ace("D:P(D;;FA;;;WD)(A;;FA;;;SY)"), None);
    }
}

#[cfg(windows)]
mod win {
    use super::DpapiError;
    use crate::secret::KeyBytes;
    use std::os::windows::ffi::OsStrExt;
    use std::path::Path;
    use std::ptr::{null, null_mut};
    use windows_sys::Win32::Foundation::{CloseHandle, LocalFree, HANDLE};
    use windows_sys::Win32::Security::Authorization::{
        ConvertSecurityDescriptorToStringSecurityDescriptorW, ConvertSidToStringSidW,
        ConvertStringSecurityDescriptorToSecurityDescriptorW, SDDL_REVISION_1,
    };
    use windows_sys::Win32::Security::Cryptography::{
        CryptProtectData, CryptUnprotectData, CRYPTPROTECT_LOCAL_MACHINE,
        CRYPTPROTECT_UI_FORBIDDEN, CRYPT_INTEGER_BLOB,
    };
    use windows_sys::Win32::Security::{
        GetFileSecurityW, GetTokenInformation, SetFileSecurityW, TokenUser,
        DACL_SECURITY_INFORMATION, PROTECTED_DACL_SECURITY_INFORMATION, PSECURITY_DESCRIPTOR,
        TOKEN_QUERY, TOKEN_USER,
    };
    use windows_sys::Win32::System::Threading::{GetCurrentProcess, OpenProcessToken};

    fn last_error() -> DpapiError {
        let e = std::io::Error::last_os_error();
        DpapiError::Os(e.raw_os_error().unwrap_or(0), e.to_string())
    }

    /// Copies an OS-allocated blob out, wipes it and frees it.
    ///
    /// SAFETY: `out` must come from a successful CryptProtectData/CryptUnprotectData call.
    unsafe fn take(out: &CRYPT_INTEGER_BLOB) -> Vec<u8> {
        let s = std::slice::from_raw_parts_mut(out.pbData, out.cbData as usize);
        let v = s.to_vec();
        zeroize::Zeroize::zeroize(s);
        LocalFree(out.pbData as _);
        v
    }

    pub fn unprotect(blob: &[u8]) -> Result<KeyBytes, DpapiError> {
        let input = CRYPT_INTEGER_BLOB {
            cbData: blob.len() as u32,
            pbData: blob.as_ptr() as *mut u8,
        };
        let mut out = CRYPT_INTEGER_BLOB::default();
        // SAFETY: input points at `blob` for the call; out is written by the OS on success.
        let ok = unsafe {
            CryptUnprotectData(
                &input,
                null_mut(),
                null(),
                null(),
                null(),
                CRYPTPROTECT_UI_FORBIDDEN,
                &mut out,
            )
        };
        if ok == 0 {
            return Err(last_error());
        }
        // SAFETY: the call succeeded.
        Ok(KeyBytes::new(unsafe { take(&out) }))
    }

    pub fn protect(plain: &[u8], machine: bool) -> Result<Vec<u8>, DpapiError> {
        let input = CRYPT_INTEGER_BLOB {
            cbData: plain.len() as u32,
            pbData: plain.as_ptr() as *mut u8,
        };
        let mut out = CRYPT_INTEGER_BLOB::default();
        let flags = CRYPTPROTECT_UI_FORBIDDEN
            | if machine {
                CRYPTPROTECT_LOCAL_MACHINE
            } else {
                0
            };
        // SAFETY: as above.
        let ok =
            unsafe { CryptProtectData(&input, null(), null(), null(), null(), flags, &mut out) };
        if ok == 0 {
            return Err(last_error());
        }
        // SAFETY: the call succeeded.
        Ok(unsafe { take(&out) })
    }

    fn wide(s: &std::ffi::OsStr) -> Vec<u16> {
        s.encode_wide().chain(std::iter::once(0)).collect()
    }

    fn current_user_sid() -> std::io::Result<String> {
        // SAFETY: standard token query; every handle and buffer is released below.
        unsafe {
            let mut token: HANDLE = null_mut();
            if OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &mut token) == 0 {
                return Err(std::io::Error::last_os_error());
            }
            let mut len = 0u32;
            GetTokenInformation(token, TokenUser, null_mut(), 0, &mut len);
            let mut buf = vec![0u8; len as usize];
            let ok = GetTokenInformation(token, TokenUser, buf.as_mut_ptr() as _, len, &mut len);
            CloseHandle(token);
            if ok == 0 {
                return Err(std::io::Error::last_os_error());
            }
            let user = &*(buf.as_ptr() as *const TOKEN_USER);
            let mut s: *mut u16 = null_mut();
            if ConvertSidToStringSidW(user.User.Sid, &mut s) == 0 {
                return Err(std::io::Error::last_os_error());
            }
            let text = from_wide_ptr(s);
            LocalFree(s as _);
            Ok(text)
        }
    }

    /// SAFETY: `p` must be a NUL-terminated UTF-16 string.
    unsafe fn from_wide_ptr(p: *const u16) -> String {
        let mut n = 0;
        while *p.add(n) != 0 {
            n += 1;
        }
        String::from_utf16_lossy(std::slice::from_raw_parts(p, n))
    }

    pub fn restrict_to_owner(path: &Path) -> std::io::Result<()> {
        let sid = current_user_sid()?;
        let sddl = wide(format!("D:P(A;;FA;;;{sid})(A;;FA;;;SY)(A;;FA;;;BA)").as_ref());
        let file = wide(path.as_os_str());
        // SAFETY: the SDDL and path are NUL-terminated; the descriptor is freed after use.
        unsafe {
            let mut sd: PSECURITY_DESCRIPTOR = null_mut();
            if ConvertStringSecurityDescriptorToSecurityDescriptorW(
                sddl.as_ptr(),
                SDDL_REVISION_1,
                &mut sd,
                null_mut(),
            ) == 0
            {
                return Err(std::io::Error::last_os_error());
            }
            let ok = SetFileSecurityW(
                file.as_ptr(),
                DACL_SECURITY_INFORMATION | PROTECTED_DACL_SECURITY_INFORMATION,
                sd,
            );
            LocalFree(sd as _);
            if ok == 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(())
    }

    pub fn dacl_sddl(path: &Path) -> std::io::Result<String> {
        let file = wide(path.as_os_str());
        // SAFETY: two-call size query into a buffer we own; the string is freed after copying.
        unsafe {
            let mut len = 0u32;
            GetFileSecurityW(
                file.as_ptr(),
                DACL_SECURITY_INFORMATION,
                null_mut(),
                0,
                &mut len,
            );
            let mut buf = vec![0u8; len.max(1) as usize];
            if GetFileSecurityW(
                file.as_ptr(),
                DACL_SECURITY_INFORMATION,
                buf.as_mut_ptr() as _,
                len,
                &mut len,
            ) == 0
            {
                return Err(std::io::Error::last_os_error());
            }
            let mut s: *mut u16 = null_mut();
            if ConvertSecurityDescriptorToStringSecurityDescriptorW(
                buf.as_mut_ptr() as _,
                SDDL_REVISION_1,
                DACL_SECURITY_INFORMATION,
                &mut s,
                null_mut(),
            ) == 0
            {
                return Err(std::io::Error::last_os_error());
            }
            let text = from_wide_ptr(s);
            LocalFree(s as _);
            Ok(text)
        }
    }
}
