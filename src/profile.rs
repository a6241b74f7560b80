//! Product profiles as data: which files are keys, which are node-local, which roles need
//! which keys. Nothing else in keyferry branches on the product.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A node's job in the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// The source of truth: its keys encrypt the database.
    Primary,
    /// Another web or application node of the same cluster.
    Secondary,
    /// The disaster-recovery instance.
    Dr,
    /// A Privilege Secure remote Action service host.
    Action,
    /// A Privilege Secure remote Scheduler service host.
    Scheduler,
    /// A Privilege Secure Proxy service host: it holds no keys.
    Proxy,
}

impl Role {
    /// Every role, in the order the docs list them.
    pub const ALL: [Role; 6] = [
        Role::Primary,
        Role::Secondary,
        Role::Dr,
        Role::Action,
        Role::Scheduler,
        Role::Proxy,
    ];

    /// The role as the cluster file writes it (`primary`, `dr`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Secondary => "secondary",
            Role::Dr => "dr",
            Role::Action => "action",
            Role::Scheduler => "scheduler",
            Role::Proxy => "proxy",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                format!("unknown role {s:?} (expected primary, secondary, dr, action, scheduler or proxy)")
            })
    }
}

/// The built-in product profiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProfileId {
    /// Delinea Secret Server.
    SecretServer,
    /// Netwrix Privilege Secure.
    PrivilegeSecure,
    /// The cluster file's `[custom]` section.
    Custom,
}

impl ProfileId {
    /// The profile as the cluster file writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            ProfileId::SecretServer => "secret-server",
            ProfileId::PrivilegeSecure => "privilege-secure",
            ProfileId::Custom => "custom",
        }
    }
}

impl fmt::Display for ProfileId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ProfileId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        [
            ProfileId::SecretServer,
            ProfileId::PrivilegeSecure,
            ProfileId::Custom,
        ]
        .into_iter()
        .find(|p| p.as_str() == s)
        .ok_or_else(|| {
            format!("unknown profile {s:?} (expected secret-server, privilege-secure or custom)")
        })
    }
}

/// One key file: its logical name (also its file name), the node folder it lives in, and the
/// roles that need it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeySpec {
    /// Its logical name, which is also its file name.
    pub name: String,
    /// The folder slot it lives in (`app`, ...).
    pub folder: String,
    /// The roles that need it.
    pub roles: Vec<Role>,
    /// A temporary secret (the vendor's export file): removed by `keys cleanup`.
    #[serde(default)]
    pub transient: bool,
    /// The product's own way to turn DPAPI protection of this file off (shown when export
    /// refuses a protected file).
    #[serde(default)]
    pub dpapi_remedy: Option<String>,
    /// Size above which the file looks DPAPI-protected even when no blob is visible (the
    /// product wraps DPAPI in its own container): a labelled hint, never proof.
    #[serde(default)]
    pub dpapi_size_hint: Option<u64>,
    /// How the product makes this file when it is missing (a vendor tool's export), shown
    /// when export finds it missing.
    #[serde(default)]
    pub missing_remedy: Option<String>,
}

/// A file that belongs to one node and never travels (e.g. `database.config`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalSpec {
    /// Its file name.
    pub name: String,
    /// The folder slot it lives in.
    pub folder: String,
}

/// A resolved profile: the built-in table row, or the cluster file's `[custom]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    /// Which profile it is.
    pub id: ProfileId,
    /// Folder slots a node's `paths` table fills in, e.g. `app`.
    pub folders: Vec<String>,
    /// Its key files.
    pub keys: Vec<KeySpec>,
    /// Its node-local files, which never travel.
    pub node_local: Vec<LocalSpec>,
    /// What comes after `keys import` for this product, if anything (shown to the admin).
    pub after_import: Option<&'static str>,
    /// The folder slot holding the application binaries whose digest nodes compare
    /// ("Version does not match"), if the product keeps them in one of its slots.
    pub app_folder: Option<String>,
    /// TCP ports a node of each role must reach on the primary (`diagnose --check ports`).
    pub ports: Vec<(Role, Vec<u16>)>,
    /// A file every copy of the application folder has, so a wrong folder is recognised
    /// before a sync touches it.
    pub app_marker: Option<String>,
    /// Folders (first level of a synced folder, any case) a sync neither copies nor deletes:
    /// logs and temp files. Names ending `.log`/`.tmp` are always left alone too.
    pub volatile: Vec<String>,
    /// Further folder slots a sync copies along with the application folder when a node
    /// names them and the source folder exists (Secret Server's TMS folder).
    pub sync_extra: Vec<String>,
}

/// Volatile folders of every profile: what a web application writes at run time.
const VOLATILE: &[&str] = &["log", "logs", "app_data", "temp", "tmp"];

const KEY_ROLES_SS: &[Role] = &[
    Role::Primary,
    Role::Secondary,
    Role::Dr,
    Role::Action,
    Role::Scheduler,
];

/// One built-in key file (see [`KeySpec`] for what each field means).
struct BuiltInKey {
    name: &'static str,
    folder: &'static str,
    roles: &'static [Role],
    transient: bool,
    dpapi_remedy: Option<&'static str>,
    dpapi_size_hint: Option<u64>,
    missing_remedy: Option<&'static str>,
}

/// The TCP ports nodes of some roles must reach on the primary.
struct BuiltInPorts {
    roles: &'static [Role],
    ports: &'static [u16],
}

/// The built-in table. Secret Server: `encryption.config` for every role but proxy;
/// `database.config` node-local; a plain `encryption.config` of 10.4+ is a few hundred bytes, a
/// DPAPI-wrapped one well over a kilobyte (DOMAIN.md §2). Privilege Secure: the vendor export
/// `keys.exp` (opaque, temporary) for secondary, action and scheduler; the HA
/// `appsettings.json` for the secondary; ports 5432 and 6500 between the HA pair and 6500,
/// 6520, 6523, 6524 from remote services (DOMAIN.md §3).
struct BuiltIn {
    id: ProfileId,
    folders: &'static [&'static str],
    keys: &'static [BuiltInKey],
    node_local: &'static [(&'static str, &'static str)],
    after_import: Option<&'static str>,
    app_folder: Option<&'static str>,
    ports: &'static [BuiltInPorts],
    app_marker: Option<&'static str>,
    sync_extra: &'static [&'static str],
}

const BUILT_INS: &[BuiltIn] = &[
    BuiltIn {
        id: ProfileId::SecretServer,
        // `tms`: the TMS folder, copied to the other nodes along with the application folder
        // during upgrades if it exists (DOMAIN.md §2).
        folders: &["app", "tms"],
        keys: &[BuiltInKey {
            name: "encryption.config",
            folder: "app",
            roles: KEY_ROLES_SS,
            transient: false,
            dpapi_remedy: Some(
                "in Secret Server, Admin > Configuration > Security > Decrypt Key to not use DPAPI, \
                 then export again and turn DPAPI on again on each node",
            ),
            dpapi_size_hint: Some(1024),
            missing_remedy: None,
        }],
        node_local: &[("database.config", "app")],
        after_import: None,
        app_folder: Some("app"),
        // The web nodes serve the site: HTTPS and HTTP on the primary are worth checking.
        ports: &[BuiltInPorts {
            roles: &[Role::Secondary, Role::Dr],
            ports: &[443, 80],
        }],
        app_marker: Some("web.config"),
        sync_extra: &["tms"],
    },
    BuiltIn {
        id: ProfileId::PrivilegeSecure,
        folders: &["keytools", "ha"],
        keys: &[
            BuiltInKey {
                name: "keys.exp",
                folder: "keytools",
                roles: &[Role::Secondary, Role::Action, Role::Scheduler],
                transient: true,
                dpapi_remedy: None,
                dpapi_size_hint: None,
                missing_remedy: Some(
                    "run the vendor export first, in the KeyTools folder: SbPAM.RotateKey.exe export -n keys.exp",
                ),
            },
            BuiltInKey {
                name: "appsettings.json",
                folder: "ha",
                roles: &[Role::Secondary],
                transient: false,
                dpapi_remedy: None,
                dpapi_size_hint: None,
                missing_remedy: None,
            },
        ],
        node_local: &[],
        after_import: Some(
            "run the vendor import next, in the KeyTools folder: SbPAM.RotateKey.exe import -n keys.exp; \
             then remove keys.exp with: keyferry keys cleanup",
        ),
        app_folder: None,
        ports: &[
            BuiltInPorts {
                roles: &[Role::Secondary],
                ports: &[5432, 6500],
            },
            BuiltInPorts {
                roles: &[Role::Action, Role::Scheduler, Role::Proxy],
                ports: &[6500, 6520, 6523, 6524],
            },
        ],
        app_marker: None,
        sync_extra: &[],
    },
];

impl Profile {
    /// The built-in profile with this id. `Custom` has no built-in row: use [`Profile::custom`].
    pub fn builtin(id: ProfileId) -> Option<Profile> {
        BUILT_INS.iter().find(|b| b.id == id).map(|b| Profile {
            id: b.id,
            folders: b.folders.iter().map(|s| s.to_string()).collect(),
            keys: b
                .keys
                .iter()
                .map(|k| KeySpec {
                    name: k.name.to_string(),
                    folder: k.folder.to_string(),
                    roles: k.roles.to_vec(),
                    transient: k.transient,
                    dpapi_remedy: k.dpapi_remedy.map(str::to_owned),
                    dpapi_size_hint: k.dpapi_size_hint,
                    missing_remedy: k.missing_remedy.map(str::to_owned),
                })
                .collect(),
            node_local: b
                .node_local
                .iter()
                .map(|(name, folder)| LocalSpec {
                    name: name.to_string(),
                    folder: folder.to_string(),
                })
                .collect(),
            after_import: b.after_import,
            app_folder: b.app_folder.map(str::to_owned),
            ports: b
                .ports
                .iter()
                .flat_map(|p| p.roles.iter().map(|r| (*r, p.ports.to_vec())))
                .collect(),
            app_marker: b.app_marker.map(str::to_owned),
            volatile: VOLATILE.iter().map(|s| s.to_string()).collect(),
            sync_extra: b.sync_extra.iter().map(|s| s.to_string()).collect(),
        })
    }

    /// A profile from a cluster file's `[custom]` section: its keys and node-local files,
    /// and for `keyferry sync` the application folder's slot, marker file and volatile
    /// folders (added to the built-in logs and temp folders).
    pub fn custom(
        keys: Vec<KeySpec>,
        node_local: Vec<LocalSpec>,
        app_folder: Option<String>,
        app_marker: Option<String>,
        volatile: Vec<String>,
    ) -> Profile {
        let mut folders: Vec<String> = keys
            .iter()
            .map(|k| k.folder.clone())
            .chain(node_local.iter().map(|l| l.folder.clone()))
            .chain(app_folder.clone())
            .collect();
        folders.sort();
        folders.dedup();
        Profile {
            id: ProfileId::Custom,
            folders,
            keys,
            node_local,
            after_import: None,
            app_folder,
            ports: Vec::new(),
            app_marker,
            volatile: VOLATILE
                .iter()
                .map(|s| s.to_string())
                .chain(volatile.into_iter().map(|v| v.to_lowercase()))
                .collect(),
            sync_extra: Vec::new(),
        }
    }

    /// The ports a node of `role` must reach on the primary (none listed: nothing to test
    /// unless `--ports` names some).
    pub fn ports_needed(&self, role: Role) -> &[u16] {
        self.ports
            .iter()
            .find(|(r, _)| *r == role)
            .map(|(_, p)| p.as_slice())
            .unwrap_or(&[])
    }

    /// Key files a node of this role holds. The primary is the source of every key.
    pub fn keys_held_by(&self, role: Role) -> Vec<&KeySpec> {
        self.keys
            .iter()
            .filter(|k| role == Role::Primary || k.roles.contains(&role))
            .collect()
    }

    /// Whether a node of this role must hold keys at all (proxy hosts need none).
    pub fn role_needs_keys(&self, role: Role) -> bool {
        !self.keys_held_by(role).is_empty()
    }

    /// The key file named `name`, if the profile has one.
    pub fn key(&self, name: &str) -> Option<&KeySpec> {
        self.keys.iter().find(|k| k.name == name)
    }

    /// Whether `name` is a node-local file of this profile (never exported or overwritten).
    pub fn is_node_local(&self, name: &str) -> bool {
        self.node_local.iter().any(|l| l.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_server_proxy_needs_nothing_others_need_encryption_config() {
        let p = Profile::builtin(ProfileId::SecretServer).unwrap();
        assert!(!p.role_needs_keys(Role::Proxy));
        for r in [
            Role::Primary,
            Role::Secondary,
            Role::Dr,
            Role::Action,
            Role::Scheduler,
        ] {
            let names: Vec<_> = p.keys_held_by(r).iter().map(|k| k.name.as_str()).collect();
            assert_eq!(names, ["encryption.config"], "{r}");
        }
        assert!(p.is_node_local("database.config"));
        assert!(p.key("database.config").is_none());
    }

    #[test]
    fn privilege_secure_roles() {
        let p = Profile::builtin(ProfileId::PrivilegeSecure).unwrap();
        let names =
            |r| -> Vec<String> { p.keys_held_by(r).iter().map(|k| k.name.clone()).collect() };
        assert_eq!(names(Role::Secondary), ["keys.exp", "appsettings.json"]);
        assert_eq!(names(Role::Action), ["keys.exp"]);
        assert_eq!(names(Role::Scheduler), ["keys.exp"]);
        assert_eq!(names(Role::Primary), ["keys.exp", "appsettings.json"]);
        assert!(names(Role::Proxy).is_empty());
        assert!(names(Role::Dr).is_empty());
        assert!(p.key("keys.exp").unwrap().transient);
    }

    #[test]
    fn custom_has_no_builtin_row() {
        assert!(Profile::builtin(ProfileId::Custom).is_none());
    }

    #[test]
    fn role_and_profile_round_trip_through_strings() {
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>().unwrap(), r);
        }
        assert!("master".parse::<Role>().is_err());
        assert_eq!(
            "privilege-secure".parse::<ProfileId>().unwrap(),
            ProfileId::PrivilegeSecure
        );
    }
}
