//! Who may read a file: its owner, group and mode on Unix, its security descriptor on
//! Windows. A product's files keep theirs when keyferry replaces them (the service account
//! must still read its key); a new product file gets what the product's own files there
//! have; what keyferry makes for itself (bundles, backups, ledgers, journals) is private.

use crate::error::{Error, Result};
use crate::fs::open::{Dir, Opened};
use serde::{Deserialize, Serialize};
use std::fs::File;

/// Mode of a new product file when no sibling shows what the product uses: owner read and
/// write, the folder's group read (the service account's group), nothing for others.
#[cfg(unix)]
pub const NEW_FILE_MODE: u32 = 0o640;
/// The most a new key file copies from a sibling's mode: read and write for owner and group.
pub const NEW_FILE_MAX_MODE: u32 = 0o660;

/// Attributes carried from one file to another. Unix fields on Unix, `acl` on Windows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attrs {
    /// Unix owner's uid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<u32>,
    /// Unix group's gid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<u32>,
    /// Unix permission bits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
    /// Owner, group and DACL as SDDL (Windows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acl: Option<String>,
    /// Windows: no explicit ACL; take what the folder passes on.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub inherit: bool,
}

/// Where an installed file's attributes came from (reported by import and restore).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "from", content = "name")]
pub enum AttrSource {
    /// The file it replaced.
    Replaced,
    /// Another file of the product in the same folder.
    Sibling(String),
    /// The folder (Unix: its owner and group, mode 0640; Windows: its inherited ACL).
    Folder,
    /// Recorded when the file was backed up.
    Backup,
    /// keyferry's own file: owner only.
    Private,
}

/// What a file ended up with, for reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    #[serde(flatten)]
    pub source: AttrSource,
    #[serde(flatten)]
    pub attrs: Attrs,
    /// Windows: the owner could not be carried (needs a privilege); keyferry's account owns it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub owner_not_kept: bool,
}

impl Applied {
    /// One line for people: `owner 65534, group 65534, mode 0640 (kept from the replaced file)`.
    pub fn describe(&self) -> String {
        let from = match &self.source {
            AttrSource::Replaced => "kept from the replaced file".to_string(),
            AttrSource::Sibling(n) => format!("as {n} beside it"),
            AttrSource::Folder => "from the folder".to_string(),
            AttrSource::Backup => "as recorded in the backup".to_string(),
            AttrSource::Private => "private to keyferry's account".to_string(),
        };
        let a = &self.attrs;
        let what = match (a.owner, a.group, a.mode, &a.acl, a.inherit) {
            (Some(o), Some(g), Some(m), _, _) => format!("owner {o}, group {g}, mode {m:04o}"),
            (_, _, _, Some(_), _) if self.owner_not_kept => {
                "the ACL (owner is keyferry's account)".to_string()
            }
            (_, _, _, Some(_), _) => "owner, group and ACL".to_string(),
            (_, _, _, _, true) => "the folder's inherited ACL".to_string(),
            _ => "private".to_string(),
        };
        format!("{what} ({from})")
    }
}

impl Attrs {
    /// Whether every user of the machine may read a file with these attributes (Unix mode).
    pub fn readable_by_everyone(&self) -> bool {
        self.mode.is_some_and(|m| m & 0o004 != 0)
    }

    /// keyferry's own files: owner only.
    pub fn private() -> Attrs {
        Attrs {
            owner: None,
            group: None,
            mode: Some(0o600),
            acl: None,
            inherit: false,
        }
    }

    /// The attributes of an open file.
    pub fn of(opened: &Opened) -> Result<Attrs> {
        #[cfg(unix)]
        {
            let (owner, group, mode) = opened.meta.unix.expect("unix metadata");
            Ok(Attrs {
                owner: Some(owner),
                group: Some(group),
                mode: Some(mode),
                acl: None,
                inherit: false,
            })
        }
        #[cfg(windows)]
        {
            let acl =
                crate::os::security_of(&opened.file).map_err(|e| Error::io(&opened.path, e))?;
            Ok(Attrs {
                owner: None,
                group: None,
                mode: None,
                acl: Some(acl),
                inherit: false,
            })
        }
    }

    /// What a product file created in `dir` gets: the first sibling's attributes if one of
    /// `siblings` exists there, else the folder's (Unix: owner and group, mode 0640;
    /// Windows: inherited).
    pub fn for_new_file(dir: &Dir, siblings: &[String]) -> Result<(Attrs, AttrSource)> {
        for s in siblings {
            if let Ok(Some(f)) = dir.open_file(std::ffi::OsStr::new(s), false) {
                let mut a = Attrs::of(&f)?;
                // The sibling's owner and group, but a key is never for everyone: no bits
                // for others, no execute, whatever the sibling has.
                a.mode = a.mode.map(|m| m & NEW_FILE_MAX_MODE);
                return Ok((a, AttrSource::Sibling(s.clone())));
            }
        }
        #[cfg(unix)]
        {
            let (owner, group, _) = dir.unix_owner()?;
            Ok((
                Attrs {
                    owner: Some(owner),
                    group: Some(group),
                    mode: Some(NEW_FILE_MODE),
                    acl: None,
                    inherit: false,
                },
                AttrSource::Folder,
            ))
        }
        #[cfg(windows)]
        {
            Ok((
                Attrs {
                    owner: None,
                    group: None,
                    mode: None,
                    acl: None,
                    inherit: true,
                },
                AttrSource::Folder,
            ))
        }
    }

    /// Gives an open file (a temp file not yet in place) these attributes. Returns false when
    /// the Windows owner could not be carried.
    pub fn apply(&self, file: &File, path: &std::path::Path) -> Result<bool> {
        #[cfg(unix)]
        {
            use rustix::fs::{Gid, Mode, Uid};
            if self.owner.is_some() || self.group.is_some() {
                // Ownership first: chown clears set-id bits, chmod then sets the mode.
                rustix::fs::fchown(
                    file,
                    self.owner.map(Uid::from_raw),
                    self.group.map(Gid::from_raw),
                )
                .map_err(|e| {
                    Error::io(
                        path,
                        std::io::Error::other(format!(
                            "cannot give it owner {:?} and group {:?} like the file it replaces \
                             ({e}); run keyferry as root or as the file's owner",
                            self.owner, self.group
                        )),
                    )
                })?;
            }
            let mode = self.mode.unwrap_or(0o600);
            rustix::fs::fchmod(file, Mode::from_raw_mode(mode))
                .map_err(|e| Error::io(path, e.into()))?;
            Ok(true)
        }
        #[cfg(windows)]
        {
            if let Some(acl) = &self.acl {
                return crate::os::set_security(file, acl).map_err(|e| Error::io(path, e));
            }
            Ok(true)
        }
    }

    /// Takes the folder's inherited ACL (Windows; `inherit` attributes), by path: only the
    /// path tells Windows which folder's entries to inherit. Called on keyferry's own temp
    /// file with no handle open. A no-op elsewhere.
    pub fn apply_by_path(&self, path: &std::path::Path) -> Result<()> {
        if self.inherit {
            crate::os::inherit_from_folder(path).map_err(|e| Error::io(path, e))?;
        }
        Ok(())
    }
}
