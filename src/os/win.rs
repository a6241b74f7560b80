//! Windows calls: DPAPI, ACLs, file identity and deletion through a handle. Every `unsafe`
//! block says why it is sound.

use super::DpapiError;
use std::os::windows::ffi::OsStrExt;
use std::os::windows::io::AsRawHandle;
use std::path::Path;
use std::ptr::{null, null_mut};
use windows_sys::Win32::Foundation::{CloseHandle, LocalFree, HANDLE};
use windows_sys::Win32::Security::Authorization::{
    ConvertSecurityDescriptorToStringSecurityDescriptorW, ConvertSidToStringSidW,
    ConvertStringSecurityDescriptorToSecurityDescriptorW, GetSecurityInfo, SetNamedSecurityInfoW,
    SetSecurityInfo, SDDL_REVISION_1, SE_FILE_OBJECT,
};
use windows_sys::Win32::Security::Cryptography::{
    CryptProtectData, CryptUnprotectData, CRYPTPROTECT_LOCAL_MACHINE, CRYPTPROTECT_UI_FORBIDDEN,
    CRYPT_INTEGER_BLOB,
};
use windows_sys::Win32::Security::{
    GetFileSecurityW, GetSecurityDescriptorControl, GetSecurityDescriptorDacl,
    GetSecurityDescriptorGroup, GetSecurityDescriptorOwner, GetTokenInformation, InitializeAcl,
    SetFileSecurityW, TokenUser, ACL, ACL_REVISION, DACL_SECURITY_INFORMATION,
    GROUP_SECURITY_INFORMATION, OWNER_SECURITY_INFORMATION, PROTECTED_DACL_SECURITY_INFORMATION,
    PSECURITY_DESCRIPTOR, PSID, SE_DACL_PROTECTED, TOKEN_QUERY, TOKEN_USER,
    UNPROTECTED_DACL_SECURITY_INFORMATION,
};
use windows_sys::Win32::Storage::FileSystem::{
    FileDispositionInfo, GetDiskFreeSpaceExW, GetFileInformationByHandle,
    SetFileInformationByHandle, BY_HANDLE_FILE_INFORMATION, FILE_ATTRIBUTE_DIRECTORY,
    FILE_ATTRIBUTE_REPARSE_POINT, FILE_DISPOSITION_INFO,
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

pub fn unprotect(blob: &[u8]) -> Result<zeroize::Zeroizing<Vec<u8>>, DpapiError> {
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
    Ok(zeroize::Zeroizing::new(unsafe { take(&out) }))
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
    let ok = unsafe { CryptProtectData(&input, null(), null(), null(), null(), flags, &mut out) };
    if ok == 0 {
        return Err(last_error());
    }
    // SAFETY: the call succeeded.
    Ok(unsafe { take(&out) })
}

/// Milliseconds since Windows started.
pub fn tick_count() -> u64 {
    // SAFETY: GetTickCount64 takes no arguments, touches no memory of ours and cannot fail.
    unsafe { windows_sys::Win32::System::SystemInformation::GetTickCount64() }
}

fn wide(s: &std::ffi::OsStr) -> Vec<u16> {
    s.encode_wide().chain(std::iter::once(0)).collect()
}

pub fn current_user_sid() -> std::io::Result<String> {
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

fn raw(file: &std::fs::File) -> HANDLE {
    file.as_raw_handle() as HANDLE
}

pub fn handle_info(file: &std::fs::File) -> std::io::Result<super::HandleInfo> {
    let mut info: BY_HANDLE_FILE_INFORMATION = unsafe { std::mem::zeroed() };
    // SAFETY: the handle is open for the call; `info` is a plain struct the OS fills.
    if unsafe { GetFileInformationByHandle(raw(file), &mut info) } == 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(super::HandleInfo {
        id: super::FileId {
            device: u64::from(info.dwVolumeSerialNumber),
            index: (u64::from(info.nFileIndexHigh) << 32) | u64::from(info.nFileIndexLow),
        },
        links: u64::from(info.nNumberOfLinks),
        reparse_point: info.dwFileAttributes & FILE_ATTRIBUTE_REPARSE_POINT != 0,
        directory: info.dwFileAttributes & FILE_ATTRIBUTE_DIRECTORY != 0,
    })
}

pub fn delete_by_handle(file: &std::fs::File) -> std::io::Result<()> {
    let info = FILE_DISPOSITION_INFO { DeleteFile: true };
    // SAFETY: the handle is open; the buffer is a FILE_DISPOSITION_INFO of the size given.
    let ok = unsafe {
        SetFileInformationByHandle(
            raw(file),
            FileDispositionInfo,
            &info as *const _ as *const _,
            std::mem::size_of::<FILE_DISPOSITION_INFO>() as u32,
        )
    };
    if ok == 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

pub fn security_of(file: &std::fs::File) -> std::io::Result<String> {
    let what = OWNER_SECURITY_INFORMATION | GROUP_SECURITY_INFORMATION | DACL_SECURITY_INFORMATION;
    // SAFETY: GetSecurityInfo allocates the descriptor, which is freed after conversion; the
    // pointers into it are not used.
    unsafe {
        let mut sd: PSECURITY_DESCRIPTOR = null_mut();
        let rc = GetSecurityInfo(
            raw(file),
            SE_FILE_OBJECT,
            what,
            null_mut(),
            null_mut(),
            null_mut(),
            null_mut(),
            &mut sd,
        );
        if rc != 0 {
            return Err(std::io::Error::from_raw_os_error(rc as i32));
        }
        let mut s: *mut u16 = null_mut();
        let ok = ConvertSecurityDescriptorToStringSecurityDescriptorW(
            sd,
            SDDL_REVISION_1,
            what,
            &mut s,
            null_mut(),
        );
        LocalFree(sd as _);
        if ok == 0 {
            return Err(std::io::Error::last_os_error());
        }
        let text = from_wide_ptr(s);
        LocalFree(s as _);
        Ok(text)
    }
}

pub fn set_security(file: &std::fs::File, sddl: &str) -> std::io::Result<bool> {
    let wide_sddl = wide(sddl.as_ref());
    // SAFETY: the SDDL is NUL-terminated; the descriptor it becomes is freed at the end, and
    // the owner, group and DACL pointers point into it while it lives.
    unsafe {
        let mut sd: PSECURITY_DESCRIPTOR = null_mut();
        if ConvertStringSecurityDescriptorToSecurityDescriptorW(
            wide_sddl.as_ptr(),
            SDDL_REVISION_1,
            &mut sd,
            null_mut(),
        ) == 0
        {
            return Err(std::io::Error::last_os_error());
        }
        let mut owner: PSID = null_mut();
        let mut group: PSID = null_mut();
        let mut dacl: *mut ACL = null_mut();
        let (mut present, mut defaulted) = (0, 0);
        let mut control = 0u16;
        let mut revision = 0u32;
        GetSecurityDescriptorOwner(sd, &mut owner, &mut defaulted);
        GetSecurityDescriptorGroup(sd, &mut group, &mut defaulted);
        GetSecurityDescriptorDacl(sd, &mut present, &mut dacl, &mut defaulted);
        GetSecurityDescriptorControl(sd, &mut control, &mut revision);
        let protection = if control & SE_DACL_PROTECTED != 0 {
            PROTECTED_DACL_SECURITY_INFORMATION
        } else {
            UNPROTECTED_DACL_SECURITY_INFORMATION
        };
        let mut what = DACL_SECURITY_INFORMATION | protection;
        if !group.is_null() {
            what |= GROUP_SECURITY_INFORMATION;
        }
        let with_owner = !owner.is_null();
        let mut rc = SetSecurityInfo(
            raw(file),
            SE_FILE_OBJECT,
            what | if with_owner {
                OWNER_SECURITY_INFORMATION
            } else {
                0
            },
            owner,
            group,
            dacl,
            null(),
        );
        let mut owner_set = with_owner && rc == 0;
        if rc != 0 && with_owner {
            // Not allowed to assign that owner: keep ours, carry group and DACL.
            rc = SetSecurityInfo(
                raw(file),
                SE_FILE_OBJECT,
                what,
                null_mut(),
                group,
                dacl,
                null(),
            );
            owner_set = false;
        }
        LocalFree(sd as _);
        if rc != 0 {
            return Err(std::io::Error::from_raw_os_error(rc as i32));
        }
        Ok(owner_set)
    }
}

pub fn inherit_from_folder(path: &Path) -> std::io::Result<()> {
    let file = wide(path.as_os_str());
    // SAFETY: an empty ACL in a buffer we own, and a NUL-terminated path, for the call.
    unsafe {
        let mut buf = [0u64; 8];
        let acl = buf.as_mut_ptr() as *mut ACL;
        if InitializeAcl(acl, std::mem::size_of_val(&buf) as u32, ACL_REVISION) == 0 {
            return Err(std::io::Error::last_os_error());
        }
        let rc = SetNamedSecurityInfoW(
            file.as_ptr(),
            SE_FILE_OBJECT,
            DACL_SECURITY_INFORMATION | UNPROTECTED_DACL_SECURITY_INFORMATION,
            null_mut(),
            null_mut(),
            acl,
            null(),
        );
        if rc != 0 {
            return Err(std::io::Error::from_raw_os_error(rc as i32));
        }
    }
    Ok(())
}

pub fn free_space(path: &Path) -> std::io::Result<u64> {
    let dir = wide(path.as_os_str());
    let mut free = 0u64;
    // SAFETY: a NUL-terminated path we own and one out-parameter; the others may be null.
    let ok = unsafe { GetDiskFreeSpaceExW(dir.as_ptr(), &mut free, null_mut(), null_mut()) };
    if ok == 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(free)
}
