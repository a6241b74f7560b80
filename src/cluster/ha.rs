//! The cluster file's `[ha]` section and each node's `ha` table, as written (their schema and
//! defaults). [`crate::ha::config`] resolves them into the pair `keyferry ha` works on; they
//! live here so that reading a cluster file needs nothing of the HA wing.

use serde::Deserialize;
use std::path::PathBuf;

/// `[ha]`: what both nodes share (each may override the server's own fields).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HaSection {
    /// The two nodes of the pair [default: the primary and the one secondary].
    #[serde(default)]
    pub nodes: Option<Vec<String>>,
    /// PostgreSQL's port [5432].
    #[serde(default = "default_pg_port")]
    pub pg_port: u16,
    /// The product's web-services port between the pair [6500].
    #[serde(default = "default_web_port")]
    pub web_port: u16,
    /// The replication role [repuser].
    #[serde(default = "default_repuser")]
    pub repuser: String,
    /// The role keyferry queries and administers the servers as [postgres].
    #[serde(default = "default_admin")]
    pub admin_user: String,
    /// The database it connects to [postgres].
    #[serde(default = "default_admin")]
    pub database: String,
    /// A password file in PostgreSQL's format (`host:port:database:user:password`) with the
    /// admin's and the replication role's lines. The servers' own replication connections
    /// read it too, so the account PostgreSQL runs as must be able to read it.
    pub passfile: PathBuf,
    /// The method of the pair's `pg_hba.conf` lines [scram-sha-256]; `md5` as the vendor
    /// documents also does SCRAM for SCRAM-stored passwords.
    #[serde(default = "default_method")]
    pub hba_method: String,
    /// TLS to the servers: disable, prefer, require (encrypted, certificate not checked, as
    /// libpq means them) or verify-full (checked against `sslrootcert`) [prefer].
    #[serde(default)]
    pub sslmode: SslMode,
    /// CA certificate (PEM) for `sslmode = "verify-full"`.
    #[serde(default)]
    pub sslrootcert: Option<PathBuf>,
    /// Seconds to wait for a server to answer [5].
    #[serde(default = "default_timeout")]
    pub connect_timeout: u64,
    /// The most WAL the primary keeps for an absent replica's slot [10GB]
    /// (`max_slot_wal_keep_size`: a long-absent replica cannot fill the primary's disk).
    #[serde(default = "default_keep")]
    pub max_slot_wal_keep_size: String,
    /// PostgreSQL's programs on both nodes (a node's `ha` table overrides this and the
    /// next four).
    #[serde(default)]
    pub bin: Option<PathBuf>,
    /// The data folder on both nodes.
    #[serde(default)]
    pub data: Option<PathBuf>,
    /// Windows: the servers' service name.
    #[serde(default)]
    pub service: Option<String>,
    /// The WAL archive folder the vendor says to empty before configuring HA.
    #[serde(default)]
    pub archive: Option<PathBuf>,
}

/// A node's `ha = { ... }`: where its PostgreSQL lives and how it runs.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeHa {
    /// PostgreSQL's programs (`pg_ctl`, `pg_basebackup`, `pg_rewind`, `pg_controldata`).
    #[serde(default)]
    pub bin: Option<PathBuf>,
    /// The data folder.
    #[serde(default)]
    pub data: Option<PathBuf>,
    /// Windows: the server's service name (started and stopped through the service manager).
    #[serde(default)]
    pub service: Option<String>,
    /// The WAL archive folder the vendor says to empty before configuring HA.
    #[serde(default)]
    pub archive: Option<PathBuf>,
    /// This node's PostgreSQL port, where it is not the pair's.
    #[serde(default)]
    pub pg_port: Option<u16>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SslMode {
    Disable,
    #[default]
    Prefer,
    Require,
    VerifyFull,
}

fn default_pg_port() -> u16 {
    5432
}
fn default_web_port() -> u16 {
    6500
}
fn default_repuser() -> String {
    "repuser".into()
}
fn default_admin() -> String {
    "postgres".into()
}
fn default_method() -> String {
    "scram-sha-256".into()
}
fn default_timeout() -> u64 {
    5
}
fn default_keep() -> String {
    "10GB".into()
}
