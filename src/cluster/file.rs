//! The cluster file (TOML, `docs/cluster-file.md`): one file describes one cluster and is
//! copied unchanged to every node. Read through a bound, validated strictly (unknown fields,
//! one primary, real IP addresses, plain node names, the folders each role needs).

use crate::error::{Error, Result};
use crate::profile::{KeySpec, LocalSpec, Profile, ProfileId, Role};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// Largest cluster file read (a thousand nodes fit in a fraction of it).
pub const MAX_CLUSTER_FILE: u64 = 4 * 1024 * 1024;

/// The cluster file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterFile {
    /// The cluster's name (bundles and reports carry it).
    pub name: String,
    /// The product profile.
    pub profile: ProfileId,
    /// `[custom]`: the files of a custom profile.
    #[serde(default)]
    pub custom: Option<CustomSection>,
    /// Every `[[node]]`, in order.
    #[serde(rename = "node", default)]
    pub nodes: Vec<NodeSpec>,
    /// `[ha]`: the PostgreSQL HA pair (`keyferry ha`, docs/ha.md).
    #[serde(default)]
    pub ha: Option<super::ha::HaSection>,
    /// `[upgrade]`: what the upgrade procedures need that the nodes do not say
    /// (docs/upgrade.md).
    #[serde(default)]
    pub upgrade: UpgradeSection,
    /// Where it was read from (for messages).
    #[serde(skip)]
    pub path: PathBuf,
}

/// `[upgrade]`: facts about the installation that change the upgrade procedure.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpgradeSection {
    /// Secret Server: the SQL Server instance and database the cluster uses (they fill in
    /// the DR and mirroring steps' commands).
    pub sql_instance: Option<String>,
    pub database: Option<String>,
    /// Secret Server DR: the DR site's SQL Server instance.
    pub dr_sql_instance: Option<String>,
    /// Secret Server: the database is mirrored (SQL Server database mirroring): the steps
    /// of "Upgrading Database Mirroring".
    #[serde(default)]
    pub mirroring: bool,
    /// Privilege Secure: the version upgraded from and to (`3.6`, `3.7CU1`, `3.7.1250`,
    /// `4.1`): from 3.6 or later to 3.7 CU1 or later the key export and import are left out,
    /// as the vendor says.
    pub from_version: Option<String>,
    pub to_version: Option<String>,
    /// Privilege Secure HA: whose order the pair is upgraded in (`keyferry`, the default, or
    /// `vendor`; docs/upgrade.md says how they differ).
    #[serde(default)]
    pub ha_order: HaOrder,
}

/// The order a Privilege Secure HA pair is upgraded in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HaOrder {
    /// The secondary upgraded, the old primary made its replica and failed back to, then
    /// the primary upgraded as the writable database.
    #[default]
    Keyferry,
    /// The vendor's: both servers upgraded (the secondary, then the primary while fenced),
    /// then keys, then HA re-established.
    Vendor,
}

/// `[custom]`: the key and node-local files of a layout keyferry has no built-in profile for.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomSection {
    /// Its key files (`[[custom.key]]`).
    #[serde(rename = "key", default)]
    pub keys: Vec<KeySpec>,
    /// Its node-local files (`[[custom.node_local]]`).
    #[serde(rename = "node_local", default)]
    pub node_local: Vec<LocalSpec>,
    /// The folder slot `keyferry sync` copies (one of the slots the keys and node-local files
    /// use, or a new one nodes fill in their `paths`).
    #[serde(default)]
    pub app_folder: Option<String>,
    /// A file every copy of the application folder has (`web.config`), so sync recognises a
    /// wrong folder before touching it. Without one, sync only refuses empty folders.
    #[serde(default)]
    pub app_marker: Option<String>,
    /// First-level folders of the application folder that sync neither copies nor deletes
    /// (caches, uploads), besides logs and temp.
    #[serde(default)]
    pub volatile: Vec<String>,
}

/// One `[[node]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSpec {
    /// The node's name (a plain word: reports and commands carry it).
    pub name: String,
    /// Its role.
    pub role: Role,
    /// IP address (the vendor HA tools take addresses only).
    #[serde(deserialize_with = "ip_literal")]
    pub address: IpAddr,
    /// Folder slots of the profile (`app`; `keytools` and `ha`; or the custom folders).
    #[serde(default)]
    pub paths: BTreeMap<String, PathBuf>,
    /// How other machines reach this node: its folders by `paths` and `reach` (default), a
    /// folder, `ssh://...` (keyferry run there), or a saved report file.
    #[serde(default)]
    pub access: Option<String>,
    /// Where this node keeps keyferry's ledger and backups (default: see `default_state_dir`).
    #[serde(default)]
    pub state_dir: Option<PathBuf>,
    /// For ssh access: the keyferry binary on the node (default `keyferry`).
    #[serde(default)]
    pub remote_keyferry: Option<String>,
    /// For ssh access: the cluster file's path on the node (default: the path given locally).
    #[serde(default)]
    pub remote_cluster: Option<String>,
    /// For ssh access: the shell the node's OpenSSH runs commands with (`cmd`, `powershell`
    /// or `sh`); found out with a harmless probe when not given.
    #[serde(default)]
    pub shell: Option<crate::remote::invoke::Shell>,
    /// For ssh access: the name of the `Subsystem` line in the node's `sshd_config` that
    /// runs `keyferry request` (then no shell is involved at all).
    #[serde(default)]
    pub ssh_subsystem: Option<String>,
    /// How another node reaches this node's folders, by slot (a mounted share or a UNC path
    /// like `\\web2\c$\inetpub\wwwroot\SecretServer`), for `keyferry sync`; a slot not
    /// listed is reached by its `paths` entry.
    #[serde(default)]
    pub reach: BTreeMap<String, PathBuf>,
    /// This node's `pg_hba.conf`, if readable from here (for `diagnose --check pg-hba`).
    #[serde(default)]
    pub pg_hba: Option<PathBuf>,
    /// The node's IIS application pool (Secret Server), as IIS Manager names it: the upgrade
    /// stops and starts it (`keyferry host pool`).
    #[serde(default)]
    pub app_pool: Option<String>,
    /// The product's Windows services on the node, by service name, in the order they start
    /// (`keyferry host service`; stopped in the reverse order).
    #[serde(default)]
    pub services: Vec<String>,
    /// The node's site, for "confirm it works" (`keyferry host check-site`): an https:// URL
    /// that answers with success when the node works.
    #[serde(default)]
    pub site_url: Option<String>,
    /// A PEM file of the CA that signed the site's certificate, if the system does not trust
    /// it already (relative to the cluster file's folder).
    #[serde(default)]
    pub site_ca: Option<PathBuf>,
    /// This node's PostgreSQL, where it differs from the cluster's `[ha]` (`keyferry ha`).
    #[serde(default)]
    pub ha: Option<super::ha::NodeHa>,
}

impl NodeSpec {
    /// The node's first folder (its slots in name order, `reach` before `paths`, relative
    /// ones under `base`) that exists here: where keyferry writes on a node reached by path.
    pub fn first_folder(&self, base: &Path) -> Option<std::path::PathBuf> {
        let mut slots: Vec<&String> = self.paths.keys().chain(self.reach.keys()).collect();
        slots.sort();
        slots.dedup();
        slots
            .into_iter()
            .filter_map(|slot| self.reach.get(slot).or_else(|| self.paths.get(slot)))
            .map(|p| {
                if p.is_absolute() {
                    p.clone()
                } else {
                    base.join(p)
                }
            })
            .find(|p| p.is_dir())
    }

    /// How keyferry is started on this node over ssh: its subsystem, its declared shell, or
    /// the shell found out by a probe.
    pub fn launch(&self) -> crate::remote::invoke::Launch {
        use crate::remote::invoke::Launch;
        match (&self.ssh_subsystem, self.shell) {
            (Some(name), _) => Launch::Subsystem(name.clone()),
            (None, Some(shell)) => Launch::Shell(shell),
            (None, None) => Launch::Detect,
        }
    }

    /// `keyferry <words> --json --batch --cluster <file> --node <name>` as run on this node
    /// over ssh: its `remote_keyferry` (default `keyferry`), and its `remote_cluster` (default
    /// `cluster`, the path given here, made absolute).
    pub fn remote_command(&self, cluster: &std::path::Path, words: &[&str]) -> Vec<String> {
        let mut v = vec![self
            .remote_keyferry
            .clone()
            .unwrap_or_else(|| "keyferry".into())];
        v.extend(words.iter().map(|w| (*w).to_owned()));
        v.extend([
            "--json".into(),
            "--batch".into(),
            "--cluster".into(),
            // The path given here, made absolute: a relative `-c cluster.toml` would be
            // looked for in the login's home folder there.
            self.remote_cluster.clone().unwrap_or_else(|| {
                std::path::absolute(cluster)
                    .unwrap_or_else(|_| cluster.to_owned())
                    .display()
                    .to_string()
            }),
            "--node".into(),
            self.name.clone(),
        ]);
        v
    }
}

/// An IP address written as such: a host name or `localhost` is refused with the reason
/// (the vendor HA tools take addresses only, and a name can resolve differently per node).
fn ip_literal<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<IpAddr, D::Error> {
    let text = String::deserialize(d)?;
    text.trim().parse::<IpAddr>().map_err(|_| {
        serde::de::Error::custom(format!(
            "address {text:?} is not an IP address: write the node's IP address (the vendor HA \
             tools take IP addresses only, no host names, FQDNs or localhost)"
        ))
    })
}

impl ClusterFile {
    /// Reads and checks the cluster file at `path` (bounded, UTF-8).
    pub fn load(path: &Path) -> Result<ClusterFile> {
        let bytes = crate::fs::read_bounded(path, MAX_CLUSTER_FILE, "cluster file")?;
        let text = String::from_utf8(bytes).map_err(|_| Error::ClusterFile {
            path: path.to_owned(),
            why: "it is not UTF-8 text".into(),
        })?;
        ClusterFile::parse(&text, path)
    }

    /// Parses and checks `text`, read from `path`.
    pub fn parse(text: &str, path: &Path) -> Result<ClusterFile> {
        let bad = |why: String| Error::ClusterFile {
            path: path.to_owned(),
            why,
        };
        let mut file: ClusterFile = toml::from_str(text).map_err(|e| bad(e.to_string()))?;
        file.path = path.to_owned();
        let profile = file.profile_table()?;
        if file.nodes.is_empty() {
            return Err(bad("it lists no [[node]]".into()));
        }
        let mut names = std::collections::HashSet::new();
        let mut primaries = 0;
        for n in &file.nodes {
            if n.name.is_empty() {
                return Err(bad("a node has an empty name".into()));
            }
            // Node names become folder names (backups/<node>/): plain names only.
            if let Err(Error::BadEntryName { why, .. }) = crate::fs::name::check_plain_name(&n.name)
            {
                return Err(bad(format!(
                    "node name {:?} is not a plain name: {why}",
                    n.name
                )));
            }
            if !names.insert(n.name.to_ascii_lowercase()) {
                return Err(bad(format!("node name {:?} appears twice", n.name)));
            }
            if n.role == Role::Primary {
                primaries += 1;
            }
            if n.address.is_loopback() || n.address.is_unspecified() {
                return Err(bad(format!(
                    "node {}: address {} is not a real node address (the vendor HA tools refuse it)",
                    n.name, n.address
                )));
            }
            if let Some(p) = &n.remote_keyferry {
                crate::remote::invoke::check_program(p)
                    .map_err(|why| bad(format!("node {}: {why}", n.name)))?;
            }
            if let Some(s) = &n.ssh_subsystem {
                crate::remote::invoke::check_subsystem(s)
                    .map_err(|why| bad(format!("node {}: {why}", n.name)))?;
                if n.shell.is_some() {
                    return Err(bad(format!(
                        "node {}: give ssh_subsystem or shell, not both (a subsystem runs no shell)",
                        n.name
                    )));
                }
            }
            for name in n.app_pool.iter().chain(&n.services) {
                super::access::check_service_name(name)
                    .map_err(|why| bad(format!("node {}: {why}", n.name)))?;
            }
            if let Some(url) = &n.site_url {
                super::access::check_site_url(url)
                    .map_err(|why| bad(format!("node {}: {why}", n.name)))?;
            }
            for slot in n.reach.keys() {
                if !n.paths.contains_key(slot) {
                    return Err(bad(format!(
                        "node {}: reach.{slot} has no paths.{slot} beside it",
                        n.name
                    )));
                }
            }
            for slot in n.paths.keys() {
                if !profile.folders.contains(slot) {
                    return Err(bad(format!(
                        "node {}: unknown folder {slot:?} in paths (profile {} has {})",
                        n.name,
                        profile.id,
                        profile.folders.join(", ")
                    )));
                }
            }
            for key in profile.keys_held_by(n.role) {
                if !n.paths.contains_key(&key.folder) {
                    return Err(bad(format!(
                        "node {}: paths.{} is missing (role {} holds {})",
                        n.name, key.folder, n.role, key.name
                    )));
                }
            }
        }
        if primaries != 1 {
            return Err(bad(format!(
                "it must have exactly one primary node, it has {primaries}"
            )));
        }
        Ok(file)
    }

    /// The resolved profile table for this cluster.
    pub fn profile_table(&self) -> Result<Profile> {
        self.profile_rows().map_err(|why| Error::ClusterFile {
            path: self.path.clone(),
            why,
        })
    }

    fn profile_rows(&self) -> std::result::Result<Profile, String> {
        match (self.profile, &self.custom) {
            (ProfileId::Custom, Some(c)) => {
                if c.keys.is_empty() {
                    return Err("[custom] lists no [[custom.key]]".into());
                }
                let mut seen = std::collections::HashSet::new();
                for k in &c.keys {
                    crate::fs::name::check_plain_name(&k.name).map_err(|e| e.to_string())?;
                    if !seen.insert(k.name.clone()) {
                        return Err(format!("custom key {:?} appears twice", k.name));
                    }
                }
                for l in &c.node_local {
                    if seen.contains(&l.name) {
                        return Err(format!("{:?} cannot be both a key and node-local", l.name));
                    }
                }
                for name in c.app_marker.iter().chain(&c.volatile) {
                    crate::fs::name::check_plain_name(name).map_err(|e| e.to_string())?;
                }
                if let Some(slot) = &c.app_folder {
                    crate::fs::name::check_plain_name(slot).map_err(|e| e.to_string())?;
                }
                Ok(Profile::custom(
                    c.keys.clone(),
                    c.node_local.clone(),
                    c.app_folder.clone(),
                    c.app_marker.clone(),
                    c.volatile.clone(),
                ))
            }
            (ProfileId::Custom, None) => Err("profile \"custom\" needs a [custom] section".into()),
            (id, Some(_)) => Err(format!(
                "a [custom] section is only for profile \"custom\", not {id}"
            )),
            (id, None) => Profile::builtin(id).ok_or_else(|| format!("no built-in profile {id}")),
        }
    }

    /// Picks the local node: by name if given, else the node whose name is this host's name
    /// (case-insensitive, with or without the domain).
    pub fn select(&self, name: Option<&str>, host: &str) -> Result<&NodeSpec> {
        if let Some(name) = name {
            return self
                .nodes
                .iter()
                .find(|n| n.name.eq_ignore_ascii_case(name))
                .ok_or_else(|| {
                    Error::NodeNotFound(format!(
                        "cluster {} has no node {name:?} (nodes: {})",
                        self.name,
                        self.node_names()
                    ))
                });
        }
        let short = host.split('.').next().unwrap_or(host);
        self.nodes
            .iter()
            .find(|n| n.name.eq_ignore_ascii_case(host) || n.name.eq_ignore_ascii_case(short))
            .ok_or_else(|| {
                Error::NodeNotFound(format!(
                    "no node of cluster {} is named after this host {host:?} (nodes: {})",
                    self.name,
                    self.node_names()
                ))
            })
    }

    fn node_names(&self) -> String {
        self.nodes
            .iter()
            .map(|n| n.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    /// A relative `-c cluster.toml` reaches an ssh node as an absolute path (there it would
    /// be looked for in the login's home folder); a node's own `remote_cluster` wins.
    #[test]
    fn the_cluster_path_sent_to_a_node_is_absolute() {
        let mut spec: NodeSpec =
            toml::from_str("name = \"web3\"\nrole = \"secondary\"\naddress = \"10.0.0.13\"")
                .unwrap();
        let words = spec.remote_command(std::path::Path::new("cluster.toml"), &["fingerprint"]);
        let sent = std::path::PathBuf::from(&words[words.len() - 3]);
        assert!(sent.is_absolute(), "{words:?}");
        assert!(sent.ends_with("cluster.toml"), "{words:?}");
        spec.remote_cluster = Some(r"C:\keyferry\cluster.toml".into());
        let words = spec.remote_command(std::path::Path::new("cluster.toml"), &["fingerprint"]);
        assert_eq!(words[words.len() - 3], r"C:\keyferry\cluster.toml");
    }

    use super::*;
    use crate::cluster::Node;

    const SS: &str = r#"
name = "ss-prod"
profile = "secret-server"

[[node]]
name = "web1"
role = "primary"
address = "10.0.0.11"
paths = { app = 'C:\inetpub\wwwroot\SecretServer' }

[[node]]
name = "web2"
role = "secondary"
address = "10.0.0.12"
access = '\\web2\c$\inetpub\wwwroot\SecretServer'
paths = { app = 'D:\Secret Server' }

[[node]]
name = "proxy1"
role = "proxy"
address = "10.0.0.20"
"#;

    fn parse(s: &str) -> Result<ClusterFile> {
        ClusterFile::parse(s, Path::new("c.toml"))
    }

    #[test]
    fn parses_and_selects_by_name_or_host() {
        let c = parse(SS).unwrap();
        assert_eq!(c.nodes.len(), 3);
        assert_eq!(c.select(Some("WEB2"), "x").unwrap().name, "web2");
        assert_eq!(c.select(None, "web1.corp.example").unwrap().name, "web1");
        assert!(matches!(
            c.select(None, "other"),
            Err(Error::NodeNotFound(_))
        ));
        let spec = c.select(Some("web2"), "").unwrap();
        let node = Node::from_cluster(&c, spec, Some("/s".into())).unwrap();
        let key = node.profile.key("encryption.config").unwrap();
        assert_eq!(
            node.key_path(key).unwrap(),
            Path::new("D:\\Secret Server").join("encryption.config")
        );
    }

    #[test]
    fn rejects_mistakes_with_reasons() {
        let cases = [
            (
                SS.replace("10.0.0.12", "127.0.0.1"),
                "not a real node address",
            ),
            (SS.replace("10.0.0.12", "web2.corp"), "not an IP address"),
            (SS.replace("10.0.0.12", "localhost"), "no host names"),
            (
                SS.replace("name = \"web2\"", "name = \"/tmp/t/x\""),
                "not a plain name",
            ),
            (
                SS.replace("role = \"secondary\"", "role = \"primary\""),
                "exactly one primary",
            ),
            (
                SS.replace("name = \"proxy1\"", "name = \"WEB1\""),
                "appears twice",
            ),
            (
                SS.replace("paths = { app = 'D:\\Secret Server' }", ""),
                "paths.app is missing",
            ),
            (SS.replace("access =", "acess ="), "unknown field"),
            (
                SS.replace("secret-server", "secretserver"),
                "unknown variant",
            ),
            (SS.replace("{ app =", "{ ha ="), "unknown folder"),
        ];
        for (text, want) in cases {
            let err = parse(&text).unwrap_err().to_string();
            assert!(err.contains(want), "{want:?} not in {err:?}");
        }
    }

    #[test]
    fn unc_share_and_drive_paths_are_kept_verbatim() {
        let c = parse(SS).unwrap();
        let web2 = c.select(Some("web2"), "").unwrap();
        assert_eq!(
            web2.access.as_deref(),
            Some(r"\\web2\c$\inetpub\wwwroot\SecretServer")
        );
        let text = SS.replace(
            r"'D:\Secret Server'",
            r"'\\web2\c$\inetpub\wwwroot\Secret Server'",
        );
        let c = parse(&text).unwrap();
        let spec = c.select(Some("web2"), "").unwrap();
        let node = Node::from_cluster(&c, spec, None).unwrap();
        let p = node
            .key_path(node.profile.key("encryption.config").unwrap())
            .unwrap();
        #[cfg(windows)]
        assert_eq!(
            p.display().to_string(),
            r"\\web2\c$\inetpub\wwwroot\Secret Server\encryption.config"
        );
        assert!(p.starts_with(r"\\web2\c$\inetpub\wwwroot\Secret Server"));
    }

    #[test]
    fn custom_profile() {
        let text = r#"
name = "c"
profile = "custom"
[custom]
key = [{ name = "master.key", folder = "conf", roles = ["secondary"] }]
node_local = [{ name = "db.ini", folder = "conf" }]
[[node]]
name = "a"
role = "primary"
address = "10.1.1.1"
paths = { conf = "/etc/app" }
"#;
        let c = parse(text).unwrap();
        let p = c.profile_table().unwrap();
        assert_eq!(p.folders, ["conf"]);
        assert!(p.is_node_local("db.ini"));
        let bad = text.replace("master.key", "../master.key");
        assert!(parse(&bad).is_err());
        let bad = text.replace("profile = \"custom\"", "profile = \"secret-server\"");
        assert!(parse(&bad)
            .unwrap_err()
            .to_string()
            .contains("only for profile"));
    }
}
