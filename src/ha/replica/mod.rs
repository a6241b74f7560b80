//! `ha replica init` (the vendor's "Configure HA Secondary"), `ha failover` and `ha rejoin`.
//!
//! The replica's recovery settings are written by keyferry itself, never by
//! `pg_basebackup -R` (which would put a password from the environment into
//! `postgresql.auto.conf`): `primary_conninfo` names the password file, carries
//! `application_name=<node>`, and a replication slot on the primary keeps the WAL the replica
//! needs, bounded by `max_slot_wal_keep_size`. Files in a data folder are written through its
//! folder handle (a temp file, then a rename), owned like the folder.
//!
//! Here: what the three share (connection strings, the replica's settings, slots, waiting
//! for streaming); [`init`] makes a replica (its data-folder swap journaled, `super::swap`),
//! [`failover`] promotes one and fences a lost primary, [`rejoin`] turns a former primary
//! into a replica again.

use super::config::{HaNode, Pair, SslMode};
use super::datadir::DataDir;
use super::facts::{self, ServerFacts};
use super::pg::{self, Connector};
use super::server;
use crate::error::{Error, Result};
use crate::fs::Dir;
use crate::reason::HaReason;
use serde::{Deserialize, Serialize};
use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

mod failover;
mod init;
mod rejoin;

pub use failover::{
    failover, fence, signs_of_life, FailoverOptions, FailoverReport, FenceReport, LostPrimary,
};
pub use init::{init, InitOptions, InitReport};
pub use rejoin::{rejoin, RejoinMethod, RejoinOptions, RejoinReport};

/// How long a new replica may take to start streaming.
const STREAM_WAIT: Duration = Duration::from_secs(90);

/// Refuses to run `command` anywhere but on `node`, the one that becomes the replica: its
/// address must be one of this machine's.
fn check_here(node: &HaNode, command: &str) -> Result<()> {
    if pg::is_local_address(node.addr) {
        return Ok(());
    }
    Err(refused(
        format!(
            "{} is not an address of this machine, so this is not node {}",
            node.addr, node.name
        ),
        HaReason::NotThisMachine {
            command: command.into(),
        },
    ))
}

fn refused(why: String, reason: HaReason) -> Error {
    Error::ha_refused(why, reason)
}

/// A rejoin's fresh copy (its fallback from a rewind) failed after the node's server was
/// stopped: say so, beside the copy's own reason.
fn copy_failed(e: Error, node: &HaNode, no_rewind: &str) -> Error {
    let inner = e.ha_reason().cloned().map(Box::new);
    let why = match &e {
        Error::HaRefused { why, .. } | Error::HaFailed { why, .. } => why.clone(),
        other => other.to_string(),
    };
    failed(
        format!(
            "{} could not be rewound ({no_rewind}) and the fresh copy that replaces a rewind \
             failed: {why}; {} is left stopped (its data folder as it was, fenced if it was)",
            node.name, node.name
        ),
        HaReason::RejoinCopyFailed {
            node: node.name.clone(),
            inner,
        },
    )
}

fn failed(why: String, reason: HaReason) -> Error {
    Error::ha_failed(why, reason)
}

/// A value in single quotes for a libpq connection string.
fn conn_value(v: &str) -> String {
    format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// A value in single quotes for postgresql.conf.
fn conf_value(v: &str) -> String {
    format!("'{}'", v.replace('\'', "''"))
}

/// The primary as the replica's connection string names it (no password: `passfile`).
pub fn primary_conninfo(pair: &Pair, primary: &HaNode, replica: &HaNode) -> String {
    format!(
        "host={} port={} user={} passfile={} application_name={}{}",
        primary.addr,
        primary.pg_port,
        conn_value(&pair.repuser),
        conn_value(&pair.passfile.to_string_lossy()),
        conn_value(&replica.name),
        tls_settings(pair)
    )
}

/// The TLS part of every connection string keyferry's children use (the replica's server,
/// `pg_basebackup`, `pg_rewind`): the cluster file's mode, its CA, and under TLS the SCRAM
/// channel binding keyferry itself insists on; never libpq's defaults, and nothing read from
/// the account's home folder.
pub fn tls_settings(pair: &Pair) -> String {
    let sslmode = match pair.sslmode {
        SslMode::Disable => "disable",
        SslMode::Prefer => "prefer",
        SslMode::Require => "require",
        SslMode::VerifyFull => "verify-full",
    };
    let mut s = format!(" sslmode={sslmode}");
    if let Some(ca) = &pair.sslrootcert {
        s.push_str(&format!(
            " sslrootcert={}",
            conn_value(&ca.to_string_lossy())
        ));
    }
    if matches!(pair.sslmode, SslMode::Require | SslMode::VerifyFull) && pair.hba_method != "md5" {
        s.push_str(" channel_binding=require");
    }
    s
}

/// Replaces `name` in `dir` with `bytes`: a new temp file, synced, owned like the folder,
/// renamed over it through the folder's handle.
fn put_file(dir: &Dir, name: &str, bytes: &[u8]) -> Result<()> {
    let tmp = OsString::from(format!(".keyferry-{name}.tmp"));
    let _ = dir.unlink(&tmp);
    let mut f = dir.create_new(&tmp, 0o600)?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(|e| Error::io(dir.join(&tmp), e))?;
    #[cfg(unix)]
    {
        let (uid, gid, _) = dir.unix_owner()?;
        use rustix::fs::{Gid, Uid};
        rustix::fs::fchown(&f, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))
            .map_err(|e| Error::io(dir.join(&tmp), e.into()))?;
    }
    drop(f);
    dir.rename(&tmp, OsStr::new(name))?;
    dir.sync()
}

/// Reads `name` in `dir` through the handle (bounded), `None` when it is missing.
fn get_file(dir: &Dir, name: &str) -> Result<Option<Vec<u8>>> {
    match dir.open_file(OsStr::new(name), false)? {
        Some(mut f) => Ok(Some(
            f.read_to_end_bounded(1024 * 1024, "configuration file")?,
        )),
        None => Ok(None),
    }
}

/// This node's own settings, which a base backup or a rewind overwrites with the primary's.
#[derive(Debug, Clone, Default)]
pub struct NodeLocal {
    /// Its `port`.
    pub port: u16,
    /// Its `listen_addresses`, where it sets one.
    pub listen_addresses: Option<String>,
    /// `postgresql.conf`, `pg_hba.conf` and `pg_ident.conf`, when they live in the data
    /// folder (Debian keeps them in /etc/postgresql, where a copy does not reach), and the
    /// node's own TLS certificate, key, CA and CRL files there (a copy would give it the
    /// primary's, which `verify-full` then rightly refuses). Wiped from memory when dropped.
    pub files: Vec<(String, zeroize::Zeroizing<Vec<u8>>)>,
}

/// The TLS files PostgreSQL reads from the data folder by default.
const TLS_DEFAULTS: [&str; 2] = ["server.crt", "server.key"];

/// Collects the node-local settings of `node`: from its running server when it runs,
/// else from the cluster file and the data folder's files.
pub fn node_local(conn: &Connector<'_>, node: &HaNode, dd: &DataDir) -> Result<NodeLocal> {
    let mut local = NodeLocal {
        port: node.pg_port,
        ..NodeLocal::default()
    };
    let mut names: Vec<String> = ["postgresql.conf", "pg_hba.conf", "pg_ident.conf"]
        .iter()
        .chain(TLS_DEFAULTS.iter())
        .map(|s| (*s).to_owned())
        .collect();
    if let Ok(mut c) = conn.admin(node) {
        let row = pg::query_one(
            &mut c,
            node,
            "SELECT current_setting('listen_addresses'), current_setting('ssl_cert_file'), \
               current_setting('ssl_key_file'), current_setting('ssl_ca_file'), \
               current_setting('ssl_crl_file')",
            &[],
        )?;
        local.listen_addresses = Some(row.get(0));
        // Files named relative to the data folder (a plain name: one inside it).
        for i in 1..5 {
            let f: String = row.get(i);
            if !f.is_empty() && !f.contains(['/', '\\']) && !names.contains(&f) {
                names.push(f);
            }
        }
    }
    if let Ok(dir) = dd.data() {
        for name in names {
            if let Some(bytes) = get_file(&dir, &name)? {
                local.files.push((name, zeroize::Zeroizing::new(bytes)));
            }
        }
    }
    Ok(local)
}

/// Writes the replica's settings into `data` (a fresh copy from the primary, or a rewound
/// folder): `standby.signal`, `primary_conninfo`, `primary_slot_name`, and this node's own
/// `port`, `listen_addresses`, `pg_hba.conf` and `pg_ident.conf` put back. `name` is the
/// folder in the data folder's parent (the fresh copy, or the data folder itself), opened
/// there without following a link and checked to be the data folder owner's.
pub fn write_replica_settings(
    pair: &Pair,
    primary: &HaNode,
    replica: &HaNode,
    dd: &DataDir,
    name: &OsStr,
    local: &NodeLocal,
) -> Result<()> {
    crate::failpoint::hit("replica-settings");
    let dir = dd.folder(name)?;
    put_file(&dir, "standby.signal", b"")?;
    let _ = dir.unlink(OsStr::new("recovery.signal"));
    let mut auto = get_file(&dir, "postgresql.auto.conf")?.unwrap_or_default();
    // Drop lines a previous run (or the source of a rewind) wrote for these settings.
    const OURS: [&str; 4] = [
        "primary_conninfo",
        "primary_slot_name",
        "port",
        "listen_addresses",
    ];
    let text = String::from_utf8_lossy(&auto).into_owned();
    let mut kept: String = text
        .lines()
        .filter(|l| {
            let key = l.split(['=', ' ', '\t']).next().unwrap_or("").trim();
            !OURS.contains(&key) && !l.starts_with("# keyferry ha:")
        })
        .map(|l| format!("{l}\n"))
        .collect();
    kept.push_str(&format!(
        "# keyferry ha: replica of {} (node {}); the password is in the passfile, not here\n",
        primary.name, replica.name
    ));
    kept.push_str(&format!(
        "primary_conninfo = {}\n",
        conf_value(&primary_conninfo(pair, primary, replica))
    ));
    kept.push_str(&format!(
        "primary_slot_name = {}\n",
        conf_value(&replica.slot())
    ));
    kept.push_str(&format!("port = {}\n", local.port));
    if let Some(l) = &local.listen_addresses {
        kept.push_str(&format!("listen_addresses = {}\n", conf_value(l)));
    }
    auto.clear();
    put_file(&dir, "postgresql.auto.conf", kept.as_bytes())?;
    for (name, bytes) in &local.files {
        let bytes: &[u8] = bytes;
        put_file(&dir, name, bytes)?;
    }
    Ok(())
}

/// Preflight facts about the primary for a replica.
fn check_primary(conn: &Connector<'_>, primary: &HaNode, replica: &HaNode) -> Result<pg::Client> {
    let mut c = conn.admin(primary).map_err(|e| {
        refused(
            format!("the primary {} does not answer: {e}", primary.name),
            HaReason::PrimaryDown,
        )
    })?;
    let row = pg::query_one(
        &mut c,
        primary,
        "SELECT pg_is_in_recovery(), current_setting('wal_level'), \
           current_setting('max_wal_senders')::int - (SELECT count(*) FROM pg_stat_replication)::int, \
           pg_read_file(current_setting('hba_file'))",
        &[],
    )?;
    let recovery: bool = row.get(0);
    if recovery {
        return Err(refused(
            format!("{} is a replica, not a primary", primary.name),
            HaReason::NotPrimary,
        ));
    }
    let wal_level: String = row.get(1);
    if wal_level == "minimal" {
        return Err(refused(
            format!(
                "{} has wal_level = minimal: it cannot feed a replica",
                primary.name
            ),
            HaReason::WalLevelMinimal,
        ));
    }
    let free: i32 = row.get(2);
    if free < 1 {
        return Err(refused(
            format!(
                "{} has no free WAL sender (max_wal_senders is used up)",
                primary.name
            ),
            HaReason::NoWalSender,
        ));
    }
    let hba: String = row.get(3);
    let c_rep = super::hba::Connection::new(true, Some(conn.pair.repuser.as_str()), replica.addr);
    if !super::hbaedit::admits(&hba, &c_rep) {
        return Err(refused(
            format!(
                "{}'s pg_hba.conf does not let {} in ({c_rep})",
                primary.name, replica.name
            ),
            HaReason::PrimaryHbaClosed {
                primary: primary.name.clone(),
            },
        ));
    }
    Ok(c)
}

/// Creates the replica's slot on the primary if missing (refused if another replica uses
/// it), and bounds the WAL slots may keep. Returns whether it created the slot.
fn ensure_slot(
    c: &mut pg::Client,
    pair: &Pair,
    primary: &HaNode,
    replica: &HaNode,
) -> Result<bool> {
    let slot = replica.slot();
    let rows = pg::query(
        c,
        primary,
        "SELECT active FROM pg_replication_slots WHERE slot_name = $1",
        &[&slot],
    )?;
    let created = match rows.first() {
        Some(r) if r.get::<_, bool>(0) => {
            return Err(refused(
                format!(
                    "slot {slot} on {} is in use by a running replica",
                    primary.name
                ),
                HaReason::SlotInUse,
            ))
        }
        Some(_) => false,
        None => {
            pg::query(
                c,
                primary,
                "SELECT pg_create_physical_replication_slot($1)",
                &[&slot],
            )?;
            true
        }
    };
    let current: String = pg::query_one(c, primary, "SHOW max_slot_wal_keep_size", &[])?.get(0);
    if current == "-1" {
        pg::execute(
            c,
            primary,
            &format!(
                "ALTER SYSTEM SET max_slot_wal_keep_size = {}",
                conf_value(&pair.max_slot_wal_keep_size)
            ),
        )?;
        pg::execute(c, primary, "SELECT pg_reload_conf()")?;
    }
    Ok(created)
}

/// The server setting [`ensure_slot`] will change on `primary`, described with how to put it
/// back, or `None` when it changes nothing (`max_slot_wal_keep_size` already bounded).
fn keep_size_change(c: &mut pg::Client, pair: &Pair, primary: &HaNode) -> Result<Option<String>> {
    let current: String = c.query_one("SHOW max_slot_wal_keep_size", &[])?.get(0);
    Ok((current == "-1").then(|| {
        format!(
            "max_slot_wal_keep_size = {} on {} (ALTER SYSTEM; it was -1, unbounded: an absent \
             replica could fill its disk); ALTER SYSTEM RESET max_slot_wal_keep_size and \
             SELECT pg_reload_conf() put it back",
            pair.max_slot_wal_keep_size, primary.name
        )
    }))
}

/// Whether `replica`'s slot on the primary is in use (by a running replica).
fn slot_active(c: &mut pg::Client, primary: &HaNode, replica: &HaNode) -> Result<bool> {
    let rows = pg::query(
        c,
        primary,
        "SELECT active FROM pg_replication_slots WHERE slot_name = $1",
        &[&replica.slot()],
    )?;
    Ok(rows.first().is_some_and(|r| r.get::<_, bool>(0)))
}

/// Drops `slot` on the server of `c` when it is there and unused: a slot named after a node
/// that is no longer that server's replica (the new primary's own, after a failover; the
/// peer's, left in a rewound folder) holds WAL up to `max_slot_wal_keep_size` for nobody.
/// Returns whether it dropped one.
fn drop_stale_slot(c: &mut pg::Client, slot: &str) -> Result<bool> {
    let rows = c.query(
        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots \
         WHERE slot_name = $1 AND NOT active",
        &[&slot],
    )?;
    Ok(!rows.is_empty())
}

fn drop_slot(conn: &Connector<'_>, primary: &HaNode, replica: &HaNode) {
    if let Ok(mut c) = conn.admin(primary) {
        let _ = pg::query(
            &mut c,
            primary,
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots \
             WHERE slot_name = $1 AND NOT active",
            &[&replica.slot()],
        );
    }
}

/// How a wait for streaming ended.
#[derive(Debug, Clone, Default)]
pub struct StreamWait {
    /// The replica streams.
    pub streaming: bool,
    /// Said along the way (a login the copy made wrong).
    pub warnings: Vec<String>,
}

/// Waits until `replica` streams from `primary`: the replica's WAL receiver says so, and
/// the primary's sender for it. Polls back off from 20 ms to 1 s. When the replica refuses
/// keyferry's login (after a copy it carries the primary's roles and passwords, so a
/// password-file line of the replica's own no longer works), keyferry does not try that
/// login again: the primary's side alone then decides, and the warning names the line.
pub fn wait_streaming(
    conn: &Connector<'_>,
    primary: &HaNode,
    replica: &HaNode,
) -> Result<StreamWait> {
    let mut out = StreamWait::default();
    let mut replica_login = true;
    let deadline = Instant::now() + STREAM_WAIT;
    let mut every = Duration::from_millis(20);
    loop {
        let receiving = if replica_login {
            match conn.try_admin(replica) {
                Ok(mut r) => {
                    let rows = r.query("SELECT status FROM pg_stat_wal_receiver", &[])?;
                    Some(
                        rows.first().map(|r| r.get::<_, String>(0)).as_deref() == Some("streaming"),
                    )
                }
                Err(e) if e.kind == pg::Failure::LoginRefused => {
                    replica_login = false;
                    out.warnings
                        .push(login_after_copy(conn, primary, replica, &e.error));
                    None
                }
                Err(_) => Some(false),
            }
        } else {
            None
        };
        if receiving != Some(false) {
            if let Ok(mut p) = conn.admin(primary) {
                let rows = p.query(
                    "SELECT 1 FROM pg_stat_replication WHERE application_name = $1 AND state = 'streaming'",
                    &[&replica.name],
                )?;
                if !rows.is_empty() {
                    out.streaming = true;
                    return Ok(out);
                }
            }
        }
        if Instant::now() >= deadline {
            return Ok(out);
        }
        std::thread::sleep(every);
        every = (every * 2).min(Duration::from_secs(1));
    }
}

/// The warning for a replica that refuses keyferry's login after a copy.
fn login_after_copy(conn: &Connector<'_>, primary: &HaNode, replica: &HaNode, e: &Error) -> String {
    let pf = conn.passfile;
    let pair = conn.pair;
    let line = |n: &HaNode| {
        pf.line_of(
            &n.addr.to_string(),
            n.pg_port,
            &pair.database,
            &pair.admin_user,
        )
    };
    let which = match (line(replica), line(primary)) {
        (Some((a, text)), Some((b, _))) if a != b => format!(
            "line {a} of {} ({text}) holds {}'s own password, which the copy replaced with {}'s \
             (line {b}): give both nodes {}'s password, or one line with * for the host",
            pair.passfile.display(),
            replica.name,
            primary.name,
            primary.name
        ),
        (Some((a, text)), _) => format!(
            "line {a} of {} ({text}) is the one keyferry used",
            pair.passfile.display()
        ),
        _ => format!("{} has no line for it", pair.passfile.display()),
    };
    format!(
        "{} refuses keyferry's login as {} after the copy ({e}); it now carries {}'s roles and \
         passwords, so {which}. keyferry did not try again; streaming was confirmed on {}",
        replica.name, pair.admin_user, primary.name, primary.name
    )
}

/// Whether the password file gives the replica an admin password of its own, which a copy
/// of the primary makes wrong.
fn own_admin_password(conn: &Connector<'_>, primary: &HaNode, replica: &HaNode) -> Option<String> {
    let pf = conn.passfile;
    let pair = conn.pair;
    let pw = |n: &HaNode| {
        pf.lookup(
            &n.addr.to_string(),
            n.pg_port,
            &pair.database,
            &pair.admin_user,
        )
    };
    let (Some(a), Some(b)) = (pw(replica), pw(primary)) else {
        return None;
    };
    if a.expose_secret() == b.expose_secret() {
        return None;
    }
    let (n, text) = pf.line_of(
        &replica.addr.to_string(),
        replica.pg_port,
        &pair.database,
        &pair.admin_user,
    )?;
    Some(format!(
        "line {n} of {} ({text}) gives {} an admin password of its own; after the copy {} has \
         {}'s roles and passwords, so that line will be wrong (keyferry then confirms streaming \
         on {} alone): change it to {}'s password afterwards",
        pair.passfile.display(),
        replica.name,
        replica.name,
        primary.name,
        primary.name,
        primary.name
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::ClusterFile;

    fn pair(extra: &str) -> Pair {
        let text = format!(
            "name = \"nps\"\nprofile = \"privilege-secure\"\n[ha]\npassfile = \"/p/pgpass\"\n{extra}\n\
             [[node]]\nname = \"nps1\"\nrole = \"primary\"\naddress = \"10.0.5.1\"\n\
             paths = {{ keytools = \"/k\", ha = \"/h\" }}\n\
             [[node]]\nname = \"nps2\"\nrole = \"secondary\"\naddress = \"10.0.5.2\"\n\
             paths = {{ keytools = \"/k\", ha = \"/h\" }}\n"
        );
        let file = ClusterFile::parse(&text, Path::new("c.toml")).unwrap();
        Pair::from_cluster(&file).unwrap()
    }

    /// Every connection string keyferry's children use (the replica's server, pg_basebackup,
    /// pg_rewind) carries the cluster file's TLS settings, never libpq's defaults.
    #[test]
    fn children_connect_with_the_cluster_files_tls_settings() {
        let p = pair("sslmode = \"verify-full\"\nsslrootcert = \"/etc/ca.pem\"");
        let t = tls_settings(&p);
        assert!(t.contains("sslmode=verify-full"), "{t}");
        assert!(t.contains("sslrootcert='/etc/ca.pem'"), "{t}");
        assert!(t.contains("channel_binding=require"), "{t}");
        let conninfo = primary_conninfo(&p, &p.nodes[0], &p.nodes[1]);
        assert!(conninfo.ends_with(&t), "{conninfo}");
        assert!(!conninfo.contains("password"), "{conninfo}");
        let md5 = pair("sslmode = \"require\"\nhba_method = \"md5\"");
        let t = tls_settings(&md5);
        assert!(
            t.contains("sslmode=require") && !t.contains("channel_binding"),
            "{t}"
        );
        let plain = pair("sslmode = \"disable\"");
        assert_eq!(tls_settings(&plain), " sslmode=disable");
    }
}
