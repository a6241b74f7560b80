//! The node keyferry is acting on, with everything resolved: its role, profile, folders and
//! the state folder where keyferry keeps its ledger, journal, lock and backups.

use crate::cluster::file::{ClusterFile, NodeSpec};
use crate::error::{Error, Result};
use crate::profile::{KeySpec, Profile, ProfileId, Role};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The node keyferry is acting on, with everything resolved.
#[derive(Debug, Clone)]
pub struct Node {
    /// The cluster's name, if a cluster file named it.
    pub cluster: Option<String>,
    /// The node's name.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// Its product profile.
    pub profile: Profile,
    /// Its folders, by the profile's slot names.
    pub folders: BTreeMap<String, PathBuf>,
    /// keyferry's state folder on it (journal, lock, backups).
    pub state_dir: PathBuf,
}

impl Node {
    /// The node described by a cluster file.
    pub fn from_cluster(
        file: &ClusterFile,
        spec: &NodeSpec,
        state_dir: Option<PathBuf>,
    ) -> Result<Node> {
        let profile = file.profile_table()?;
        Ok(Node {
            cluster: Some(file.name.clone()),
            name: spec.name.clone(),
            role: spec.role,
            profile,
            folders: spec.paths.clone(),
            state_dir: state_dir
                .or_else(|| spec.state_dir.clone())
                .unwrap_or_else(default_state_dir),
        })
    }

    /// A node without a cluster file: every folder slot of a built-in profile is `root`.
    pub fn from_root(
        profile: ProfileId,
        root: &Path,
        role: Role,
        name: &str,
        state_dir: Option<PathBuf>,
    ) -> Result<Node> {
        let profile = Profile::builtin(profile).ok_or_else(|| {
            Error::InvalidInput("profile custom needs a cluster file ([custom] section)".into())
        })?;
        check_plain_name(name, "node")?;
        // Every slot is `root`, except the extra folders a sync may carry (TMS): those are
        // separate folders a node without a cluster file does not have.
        let folders = profile
            .folders
            .iter()
            .filter(|f| !profile.sync_extra.contains(f))
            .map(|f| (f.clone(), root.to_owned()))
            .collect();
        Ok(Node {
            cluster: None,
            name: name.to_owned(),
            role,
            profile,
            folders,
            state_dir: state_dir.unwrap_or_else(default_state_dir),
        })
    }

    /// Where a key file of this profile lives on this node.
    pub fn key_path(&self, key: &KeySpec) -> Result<PathBuf> {
        self.folders
            .get(&key.folder)
            .map(|dir| dir.join(&key.name))
            .ok_or_else(|| {
                Error::InvalidInput(format!(
                    "node {} has no paths.{} for {}",
                    self.name, key.folder, key.name
                ))
            })
    }

    /// The per-node backup folder: `<state_dir>/backups/<node>/`.
    pub fn backup_root(&self) -> PathBuf {
        self.state_dir.join("backups").join(&self.name)
    }
}

/// Refuses a name that would not be a single plain path component (node names and backup
/// ids become folder names under the state folder).
pub fn check_plain_name(name: &str, what: &str) -> Result<()> {
    match crate::fs::name::check_plain_name(name) {
        Ok(()) => Ok(()),
        Err(Error::BadEntryName { why, .. }) => Err(Error::InvalidInput(format!(
            "{what} name {name:?} is not a plain name: {why}"
        ))),
        Err(e) => Err(e),
    }
}

/// Default state folder: `%ProgramData%\keyferry` on Windows; `/var/lib/keyferry` for root on
/// Unix; otherwise `$XDG_STATE_HOME/keyferry` or `~/.local/state/keyferry`.
pub fn default_state_dir() -> PathBuf {
    #[cfg(windows)]
    {
        let base = std::env::var_os("ProgramData").unwrap_or_else(|| "C:\\ProgramData".into());
        PathBuf::from(base).join("keyferry")
    }
    #[cfg(unix)]
    {
        if rustix::process::geteuid().is_root() {
            return PathBuf::from("/var/lib/keyferry");
        }
        if let Some(x) = std::env::var_os("XDG_STATE_HOME").filter(|x| !x.is_empty()) {
            return PathBuf::from(x).join("keyferry");
        }
        let home = std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into());
        PathBuf::from(home).join(".local/state/keyferry")
    }
}

/// This machine's host name.
pub fn host_name() -> String {
    gethostname::gethostname().to_string_lossy().into_owned()
}
