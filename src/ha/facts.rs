//! What a step is about to stop, replace or promote, and whether it may. Before `ha replica
//! init` replaces a data folder (and before `rejoin` rewinds or copies over one), keyferry
//! reads both servers' identity (the system identifier a base backup carries over), role,
//! size, last write and user data, and holds them against the cluster file: a data folder is
//! replaced only when everything says it is the pair's replica side, or the admin names the
//! node in `--replace-database-of`.

use super::config::HaNode;
use super::datadir::DataDir;
use super::pg::{self, Connector};
use super::server;
use crate::error::Result;
use crate::profile::Role;
use serde::Serialize;
use std::ffi::OsStr;

/// One server, as far as keyferry could see it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ServerFacts {
    pub node: String,
    /// The node's role in the cluster file.
    pub cluster_role: String,
    /// "primary", "replica" (running or stopped as such), "stopped primary", "fenced" (a
    /// stopped former primary with standby.signal), or "unknown".
    pub role: String,
    pub running: bool,
    pub system_identifier: Option<String>,
    /// PostgreSQL's major version (of the running server, else of the data folder).
    pub major: Option<u32>,
    pub bytes: Option<i64>,
    /// When it last wrote WAL (its newest WAL file), or its last checkpoint when stopped.
    pub last_write: Option<String>,
    /// Whether it holds data beyond a fresh install: databases besides postgres and the
    /// templates, or tables in the admin database. `None`: could not be looked at.
    pub user_data: Option<bool>,
    pub databases: Vec<String>,
    /// What could not be read, and why.
    pub notes: Vec<String>,
}

impl ServerFacts {
    /// Whether it acts as a primary: runs as one, or stopped as one without a fence.
    pub fn acts_as_primary(&self) -> bool {
        matches!(self.role.as_str(), "primary" | "stopped primary")
    }

    /// One line for a refusal.
    pub fn line(&self) -> String {
        let or_q = |v: &Option<String>| v.clone().unwrap_or_else(|| "?".into());
        format!(
            "{} ({} in the cluster file): {}{}, system identifier {}, {}, last write {}, {}",
            self.node,
            self.cluster_role,
            self.role,
            if self.running { ", running" } else { "" },
            or_q(&self.system_identifier),
            self.bytes
                .map(crate::text::size_i64)
                .unwrap_or_else(|| "size ?".into()),
            or_q(&self.last_write),
            match (self.user_data, self.databases.is_empty()) {
                (Some(false), _) => "no user data".to_owned(),
                (Some(true), false) => format!("user data ({})", self.databases.join(", ")),
                (Some(true), true) => "user tables in the admin database".to_owned(),
                (None, _) => "user data not known".to_owned(),
            }
        )
    }
}

const FACTS_SQL: &str = "SELECT pg_is_in_recovery(), \
   (SELECT system_identifier FROM pg_control_system())::text, \
   (SELECT sum(pg_database_size(oid)) FROM pg_database)::bigint, \
   (SELECT max(modification) FROM pg_ls_waldir())::text, \
   current_setting('server_version_num')::int, \
   ARRAY(SELECT datname::text FROM pg_database \
         WHERE datname NOT IN ('template0', 'template1', 'postgres') ORDER BY 1), \
   (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
    WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
      AND n.nspname NOT LIKE 'pg_toast%')::bigint";

fn base(node: &HaNode) -> ServerFacts {
    ServerFacts {
        node: node.name.clone(),
        cluster_role: node.role.as_str().to_owned(),
        role: "unknown".into(),
        ..ServerFacts::default()
    }
}

/// Fills `f` from a logged-in connection.
fn from_sql(c: &mut pg::Client, f: &mut ServerFacts) -> Result<()> {
    let row = c.query_one(FACTS_SQL, &[])?;
    let recovery: bool = row.get(0);
    f.running = true;
    f.role = if recovery { "replica" } else { "primary" }.into();
    f.system_identifier = row.get(1);
    f.bytes = row.get(2);
    f.last_write = row.get(3);
    let num: i32 = row.get(4);
    f.major = Some((num / 10000) as u32);
    f.databases = row.get(5);
    let tables: i64 = row.get(6);
    f.user_data = Some(!f.databases.is_empty() || tables > 0);
    Ok(())
}

/// A node through a connection already made.
pub fn remote_with(c: &mut pg::Client, node: &HaNode) -> Result<ServerFacts> {
    let mut f = base(node);
    from_sql(c, &mut f)?;
    Ok(f)
}

/// This machine's node: its data folder's control file first (no login needed: a fresh
/// server that takes only local connections, or a password that changed, still shows what
/// it is), then what a login adds.
/// Returns the control file's fields too, for the step that goes on with them.
pub fn local(
    conn: &Connector<'_>,
    node: &HaNode,
    dd: &DataDir,
) -> Result<(ServerFacts, server::Control)> {
    let mut f = base(node);
    let data = dd.data()?;
    let ctl = server::control(node, dd.path())?;
    f.system_identifier = ctl.get("Database system identifier").map(str::to_owned);
    f.last_write = ctl.get("Time of latest checkpoint").map(str::to_owned);
    if let Some(mut v) = data.open_file(OsStr::new("PG_VERSION"), false)? {
        let bytes = v.read_to_end_bounded(64, "PG_VERSION")?;
        f.major = String::from_utf8_lossy(&bytes).trim().parse().ok();
    }
    let fenced = data
        .open_file(OsStr::new("standby.signal"), false)?
        .is_some();
    f.running = server::is_running(node, dd.path())?;
    let state = ctl.state().to_owned();
    f.role = match state.as_str() {
        "in archive recovery" | "shut down in recovery" => "replica".into(),
        _ if fenced => "fenced".into(),
        "in production" if f.running => "primary".into(),
        "shut down" | "in production" | "in crash recovery" => "stopped primary".into(),
        other => other.to_owned(),
    };
    if f.running {
        match conn.try_admin(node) {
            Ok(mut c) => {
                let sysid = f.system_identifier.clone();
                from_sql(&mut c, &mut f)?;
                // The control file is the truth about this folder; the login could have
                // reached another server on the port.
                if sysid.is_some() && sysid != f.system_identifier {
                    f.notes.push(format!(
                        "the server answering on {} has system identifier {}, the data folder {}",
                        pg::label(node),
                        f.system_identifier.clone().unwrap_or_default(),
                        sysid.clone().unwrap_or_default()
                    ));
                    f.system_identifier = sysid;
                    f.user_data = None;
                }
            }
            Err(e) => f.notes.push(format!("no login: {}", e.error)),
        }
    }
    Ok((f, ctl))
}

/// Why replacing `local`'s data folder with a copy of `peer` needs the admin's explicit
/// word, or `None` when everything says it is the pair's replica side.
pub fn replace_needs_consent(local: &ServerFacts, peer: &ServerFacts) -> Option<String> {
    let same =
        local.system_identifier.is_some() && local.system_identifier == peer.system_identifier;
    let replica_of_peer = same && matches!(local.role.as_str(), "replica" | "fenced");
    if local.cluster_role == Role::Primary.as_str() && !replica_of_peer {
        return Some(format!(
            "the cluster file names {} the primary, and it is not a replica of {}",
            local.node, peer.node
        ));
    }
    if local.acts_as_primary() {
        if same {
            return Some(format!(
                "{} is a primary of the same database as {} (split brain, or a former primary \
                 not fenced): its writes since they parted would be lost",
                local.node, peer.node
            ));
        }
        if local.user_data != Some(false) {
            return Some(format!(
                "{} is a primary of a database of its own ({}) and {}",
                local.node,
                if local.system_identifier.is_some() && peer.system_identifier.is_some() {
                    "its system identifier differs from the peer's"
                } else {
                    "its system identifier could not be compared"
                },
                match local.user_data {
                    Some(_) => "holds user data",
                    None => "keyferry could not see whether it holds user data",
                }
            ));
        }
    }
    None
}

/// Refuses a copy or a stream between different PostgreSQL major versions.
pub fn same_major(local: &ServerFacts, peer: &ServerFacts, what: &str) -> Option<String> {
    match (local.major, peer.major) {
        (Some(a), Some(b)) if a != b => Some(format!(
            "{} runs PostgreSQL {a} and {} runs PostgreSQL {b}: {what} across major versions \
             cannot work",
            local.node, peer.node
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(
        node: &str,
        cluster_role: &str,
        role: &str,
        sysid: &str,
        data: Option<bool>,
    ) -> ServerFacts {
        ServerFacts {
            node: node.into(),
            cluster_role: cluster_role.into(),
            role: role.into(),
            running: true,
            system_identifier: Some(sysid.into()),
            user_data: data,
            ..ServerFacts::default()
        }
    }

    #[test]
    fn only_the_replica_side_is_replaced_without_consent() {
        let peer = facts("nps1", "primary", "primary", "1", Some(true));
        let cases = [
            // A fresh secondary install: its own empty database.
            (
                facts("nps2", "secondary", "primary", "2", Some(false)),
                false,
            ),
            // A replica of the peer, made again.
            (
                facts("nps2", "secondary", "replica", "1", Some(true)),
                false,
            ),
            // The old primary after a planned failover (fenced), or a replica now.
            (facts("nps1", "primary", "fenced", "1", Some(true)), false),
            (facts("nps1", "primary", "replica", "1", Some(true)), false),
            // The cluster file's primary running as a primary: never without consent.
            (facts("nps1", "primary", "primary", "2", Some(false)), true),
            (facts("nps1", "primary", "primary", "1", Some(true)), true),
            // A secondary that is a primary with data of its own, or unknown data.
            (facts("nps2", "secondary", "primary", "2", Some(true)), true),
            (facts("nps2", "secondary", "primary", "2", None), true),
            (
                facts("nps2", "secondary", "stopped primary", "2", None),
                true,
            ),
            // Split brain: the same database, both primaries.
            (
                facts("nps2", "secondary", "primary", "1", Some(false)),
                true,
            ),
        ];
        for (local, refused) in cases {
            assert_eq!(
                replace_needs_consent(&local, &peer).is_some(),
                refused,
                "{}",
                local.line()
            );
        }
    }

    #[test]
    fn major_versions_must_match() {
        let mut a = facts("nps1", "primary", "primary", "1", None);
        let mut b = facts("nps2", "secondary", "replica", "1", None);
        a.major = Some(16);
        b.major = Some(12);
        assert!(same_major(&b, &a, "streaming")
            .unwrap()
            .contains("PostgreSQL 12"));
        b.major = Some(16);
        assert!(same_major(&b, &a, "streaming").is_none());
    }
}
