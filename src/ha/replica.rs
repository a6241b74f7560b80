//! `ha replica init` (the vendor's "Configure HA Secondary"), `ha failover` and `ha rejoin`.
//!
//! The replica's recovery settings are written by keyferry itself, never by
//! `pg_basebackup -R` (which would put a password from the environment into
//! `postgresql.auto.conf`): `primary_conninfo` names the password file, carries
//! `application_name=<node>`, and a replication slot on the primary keeps the WAL the replica
//! needs, bounded by `max_slot_wal_keep_size`. Files in a data folder are written through its
//! folder handle (a temp file, then a rename), owned like the folder.

use super::config::{HaNode, Pair, SslMode};
use super::datadir::DataDir;
use super::facts::{self, ServerFacts};
use super::pg::{self, Connector};
use super::server;
use crate::error::{Error, Result};
use crate::fs::Dir;
use serde::{Deserialize, Serialize};
use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long a new replica may take to start streaming.
const STREAM_WAIT: Duration = Duration::from_secs(90);

fn refused(why: String, hint: &str) -> Error {
    Error::HaRefused {
        why,
        hint: hint.into(),
    }
}

/// A rejoin's fresh copy (its fallback from a rewind) failed after the node's server was
/// stopped: say so, beside the copy's own reason.
fn copy_failed(e: Error, node: &HaNode, no_rewind: &str) -> Error {
    let hint = match &e {
        Error::HaRefused { hint, .. } | Error::HaFailed { hint, .. } => hint.clone(),
        _ => "fix the cause".into(),
    };
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
        &format!(
            "{hint}; then keyferry ha rejoin (or ha replica init) on {}; until then it serves \
             nothing",
            node.name
        ),
    )
}

fn failed(why: String, hint: &str) -> Error {
    Error::HaFailed {
        why,
        hint: hint.into(),
    }
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
    pub port: u16,
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
            "start it, or check the address and port (keyferry ha check)",
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
            "run it against the running primary (keyferry ha status shows which node that is)",
        ));
    }
    let wal_level: String = row.get(1);
    if wal_level == "minimal" {
        return Err(refused(
            format!(
                "{} has wal_level = minimal: it cannot feed a replica",
                primary.name
            ),
            "set wal_level = replica on the primary and restart it",
        ));
    }
    let free: i32 = row.get(2);
    if free < 1 {
        return Err(refused(
            format!(
                "{} has no free WAL sender (max_wal_senders is used up)",
                primary.name
            ),
            "raise max_wal_senders on the primary and restart it",
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
            &format!(
                "run keyferry ha hba on {} first (keyferry ha hba --dry-run shows what it adds)",
                primary.name
            ),
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
    let created =
        match rows.first() {
            Some(r) if r.get::<_, bool>(0) => return Err(refused(
                format!(
                    "slot {slot} on {} is in use by a running replica",
                    primary.name
                ),
                "stop the server that uses it (it may be this node's old server), then run again",
            )),
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

/// How `ha replica init` is to go.
#[derive(Debug, Clone, Default)]
pub struct InitOptions {
    /// Remove the old data folder once the replica streams; by default it is kept as
    /// `<data>.keyferry-old-<time>`, the way back.
    pub remove_old: bool,
    /// The node the admin named in `--replace-database-of`: its database may be replaced
    /// although the facts say it is not the pair's replica side.
    pub replace_database_of: Option<String>,
    /// Every check, then the plan; nothing changed.
    pub dry_run: bool,
    /// Empty this node's Archive folder first (the vendor's step before configuring HA),
    /// its entries moved aside as a backup.
    pub empty_archive: bool,
    /// Called by `rejoin`, which checked the node itself (a stopped former primary of the
    /// same database, whose writes since the failover are given up by running rejoin).
    by_rejoin: bool,
}

impl InitOptions {
    pub fn new(remove_old: bool, replace_database_of: Option<String>, dry_run: bool) -> Self {
        InitOptions {
            remove_old,
            replace_database_of,
            dry_run,
            empty_archive: false,
            by_rejoin: false,
        }
    }
}

/// What `ha replica init` did (or, with `--dry-run`, would do).
#[derive(Debug, Clone, Serialize)]
pub struct InitReport {
    pub node: String,
    pub primary: String,
    pub dry_run: bool,
    pub data: PathBuf,
    pub slot: String,
    pub bytes: i64,
    pub seconds: f64,
    /// Seconds per phase: preflight, stop, copy, settings (and the swap), start, streaming,
    /// cleanup (removing the old folder).
    pub phases: Vec<(String, f64)>,
    /// The old data folder, kept (the way back) unless `--remove-old`.
    pub old_folder: Option<PathBuf>,
    /// The server whose data folder is replaced, and the one copied, as seen before.
    pub replaced: ServerFacts,
    pub source: ServerFacts,
    /// Server settings keyferry changed (or, in a dry run, would change), each with how to
    /// put it back.
    pub settings_changed: Vec<String>,
    /// Where the Archive folder's entries were moved (`--empty-archive`).
    pub archive_backup: Option<PathBuf>,
    /// What the run does, step by step (the whole report of a dry run).
    pub plan: Vec<String>,
    pub warnings: Vec<String>,
}

/// Makes `replica` (this machine's node) a streaming replica of its peer. `say` gets a line
/// once the checks passed, before anything is stopped.
pub fn init(
    conn: &Connector<'_>,
    replica: &HaNode,
    opts: &InitOptions,
    say: &dyn Fn(&str),
) -> Result<InitReport> {
    let started = Instant::now();
    let pair = conn.pair;
    let primary = pair.peer_of(replica);
    let data = replica.data_dir()?.to_owned();
    // One change on the node at a time; an earlier swap that was cut off is rolled back
    // first (a dry run changes nothing, so it only says so).
    let _lock = if opts.dry_run {
        if let Some(j) = super::swap::SwapJournal::load(&replica.state_dir)? {
            return Err(refused(
                format!(
                    "a replica init begun {} on {} was cut off {}",
                    j.started,
                    j.node,
                    j.stage.words()
                ),
                "run keyferry recover (or this command without --dry-run): it puts the old \
                 data folder back first",
            ));
        }
        None
    } else {
        let lock = crate::txn::NodeLock::acquire(
            &replica.state_dir,
            &replica.name,
            crate::txn::DEFAULT_WAIT,
        )?;
        if let Some(done) = super::swap::recover(replica)? {
            say(&done);
        }
        Some(lock)
    };
    // Preflight: nothing changes until all of it holds.
    if !pg::is_local_address(replica.addr) {
        return Err(refused(
            format!(
                "{} is not an address of this machine, so this is not node {}",
                replica.addr, replica.name
            ),
            "run keyferry ha replica init on the node that becomes the replica (or fix --node)",
        ));
    }
    if let Some(named) = &opts.replace_database_of {
        if !named.eq_ignore_ascii_case(&replica.name) {
            return Err(refused(
                format!(
                    "--replace-database-of names {named}, but this is node {} (the node whose \
                     database is replaced)",
                    replica.name
                ),
                "name this node, or run on the node you meant",
            ));
        }
    }
    let dd = DataDir::open(&data)?;
    let (new_n, failed_n) = (dd.sibling(".keyferry-new"), dd.sibling(".keyferry-failed"));
    for n in [&new_n, &failed_n] {
        if dd.present(n)? {
            return Err(refused(
                format!("{} is left from an earlier run", dd.join(n).display()),
                "look at it, remove it when it is not needed, then run again",
            ));
        }
    }
    let mut pc = check_primary(conn, primary, replica)?;
    let source = facts::remote_with(&mut pc, primary)?;
    let (local_facts, _) = facts::local(conn, replica, &dd)?;
    let bin_major = server::bin_major(replica)?;
    let mut programs = local_facts.clone();
    programs.major = bin_major;
    if let Some(why) = facts::same_major(&programs, &source, "a replica") {
        return Err(refused(
            why,
            &format!(
                "install PostgreSQL {} on {} (and point the cluster file's [ha] bin and data at \
                 it), then run again",
                source.major.unwrap_or(0),
                replica.name
            ),
        ));
    }
    if !opts.by_rejoin {
        if let Some(why) = facts::replace_needs_consent(&local_facts, &source) {
            if opts.replace_database_of.is_none() {
                return Err(refused(
                    format!(
                        "replacing {}'s data folder with a copy of {} is not what the facts say \
                         to do: {why}.\n  {}\n  {}",
                        replica.name,
                        primary.name,
                        local_facts.line(),
                        source.line()
                    ),
                    &format!(
                        "run it on the node that becomes the replica (keyferry ha status shows \
                         which is which); if {} is the one to give up, say so with \
                         --replace-database-of {} (its folder is kept as \
                         <data>.keyferry-old-<time>)",
                        replica.name, replica.name
                    ),
                ));
            }
        }
    }
    let bytes = source.bytes.unwrap_or(0);
    check_space(&data, bytes)?;
    let running = local_facts.running;
    let mut warnings: Vec<String> = own_admin_password(conn, primary, replica)
        .into_iter()
        .collect();
    let slot_busy = slot_active(&mut pc, primary, replica)?;
    let takeover = slot_busy && running;
    let slot_exists = !pg::query(
        &mut pc,
        primary,
        "SELECT 1 FROM pg_replication_slots WHERE slot_name = $1",
        &[&replica.slot()],
    )?
    .is_empty();
    let setting = keep_size_change(&mut pc, pair, primary)?;
    let old_n = {
        let stamp = crate::time::Timestamp::now().compact();
        let mut n = dd.sibling(&format!(".keyferry-old-{stamp}"));
        let mut i = 1;
        while dd.present(&n)? {
            i += 1;
            n = dd.sibling(&format!(".keyferry-old-{stamp}-{i}"));
        }
        n
    };
    let mut plan = Vec::new();
    // The vendor empties the Archive folder on both nodes before configuring HA.
    let archive = match &replica.archive {
        Some(a) => match DataDir::open(a) {
            Ok(ad) => {
                let n = match ad.data() {
                    Ok(d) => d.names()?.len(),
                    Err(Error::FolderMissing { .. }) => 0,
                    Err(e) => return Err(e),
                };
                (n > 0).then_some((ad, n))
            }
            Err(Error::FolderMissing { .. }) => None,
            Err(e) => return Err(e),
        },
        None => None,
    };
    let archive_backup = archive.as_ref().map(|(ad, _)| {
        ad.sibling(&format!(
            ".keyferry-old-{}",
            crate::time::Timestamp::now().compact()
        ))
    });
    if let (Some((ad, n)), Some(b)) = (&archive, &archive_backup) {
        if opts.empty_archive {
            plan.push(format!(
                "empty the Archive folder {} (the vendor's step before configuring HA): its {n} \
                 entries moved to {} as a backup",
                ad.path().display(),
                ad.join(b).display()
            ));
        } else {
            warnings.push(format!(
                "the Archive folder {} holds {n} {}; the vendor's procedure empties it on both \
                 nodes before configuring HA: --empty-archive moves them aside (a backup) first",
                ad.path().display(),
                if *n == 1 { "entry" } else { "entries" }
            ));
        }
    }
    if running {
        plan.push(format!(
            "stop {}'s server ({}) at once; its data is about to be replaced",
            replica.name, local_facts.role
        ));
    }
    plan.push(format!(
        "copy {} ({} MB) with pg_basebackup into {}",
        primary.name,
        bytes / 1_000_000,
        dd.join(&new_n).display()
    ));
    plan.push(match (takeover, slot_exists) {
        (true, _) => format!(
            "take over replication slot {} on {} once the old server has let go of it",
            replica.slot(),
            primary.name
        ),
        (false, true) => format!(
            "use replication slot {} on {}",
            replica.slot(),
            primary.name
        ),
        (false, false) => format!(
            "create replication slot {} on {} (removed again if the run fails)",
            replica.slot(),
            primary.name
        ),
    });
    if let Some(what) = &setting {
        plan.push(format!("set {what}"));
    }
    plan.push(format!(
        "write standby.signal and primary_conninfo ({}) into the copy; put back {}'s own port, \
         listen_addresses and configuration files",
        tls_settings(pair).trim(),
        replica.name
    ));
    plan.push(if opts.remove_old {
        "swap the folders; remove the old data folder once the replica streams (--remove-old)"
            .to_owned()
    } else {
        format!(
            "swap the folders; keep the old data folder as {} (the way back)",
            dd.join(&old_n).display()
        )
    });
    plan.push(format!(
        "start {}'s server and wait up to {} s until it streams; if it does not, put the old \
         folder back and start it",
        replica.name,
        STREAM_WAIT.as_secs()
    ));
    let report = |dry: bool, phases, old_folder, seconds, warnings| InitReport {
        node: replica.name.clone(),
        primary: primary.name.clone(),
        dry_run: dry,
        data: data.clone(),
        slot: replica.slot(),
        bytes,
        seconds,
        phases,
        old_folder,
        replaced: local_facts.clone(),
        source: source.clone(),
        settings_changed: setting.iter().cloned().collect(),
        archive_backup: None,
        plan: plan.clone(),
        warnings,
    };
    if opts.dry_run {
        return Ok(report(
            true,
            Vec::new(),
            None,
            started.elapsed().as_secs_f64(),
            warnings,
        ));
    }
    say(&format!(
        "making {} a replica of {}: stopping its server and copying {} MB...",
        replica.name,
        primary.name,
        bytes / 1_000_000
    ));
    let mut moved_archive = None;
    if let (true, Some((ad, _)), Some(b)) = (opts.empty_archive, &archive, &archive_backup) {
        let name = ad.name().to_owned();
        ad.rename(&name, b)?;
        ad.parent().mkdir_like(&name, &ad.join(b))?;
        moved_archive = Some(ad.join(b));
    }
    let local = node_local(conn, replica, &dd)?;
    let mut phases = Vec::new();
    let mut mark = started;
    let mut phase = |name: &str| {
        phases.push((name.to_owned(), mark.elapsed().as_secs_f64()));
        mark = Instant::now();
    };
    phase("preflight");
    // From here every step is journaled; the journal goes when the run ends (done or
    // undone), and stays for `recover` when it is cut off.
    let mut journal = super::swap::SwapJournal {
        node: replica.name.clone(),
        data: data.clone(),
        old_suffix: old_n
            .to_str()
            .and_then(|n| n.strip_prefix(dd.name().to_str().unwrap_or("\u{0}")))
            .ok_or_else(|| {
                refused(
                    format!("the data folder's name {} is not text", data.display()),
                    "give the data folder a name in plain text",
                )
            })?
            .to_owned(),
        old_id: dd.data()?.id()?,
        was_running: running,
        stage: super::swap::Stage::Copying,
        started: crate::time::Timestamp::now().to_string(),
    };
    journal.save(&replica.state_dir)?;
    let _ended = super::swap::Ended(&replica.state_dir);
    crate::failpoint::hit("ha:replica-journaled");
    let restart_old = |why: Error| -> Error {
        if running {
            if let Err(e) = server::start(replica, &data) {
                return failed(
                    format!("{why}; starting the old server again also failed: {e}"),
                    "start it by hand (pg_ctl start) and look at its log",
                );
            }
        }
        why
    };
    let data_n = dd.name().to_owned();
    let new = dd.join(&new_n);
    // The local server stops while the copy is taken: neither touches the other's folder.
    // When the old server is a replica streaming through this node's slot, the copy takes
    // a temporary slot of its own (pg_basebackup's default) and the node's slot, which holds
    // WAL from before the copy began, is taken over once the old server is gone.
    let (mut created, mut made) = (false, false);
    let mut stopped: Option<Result<()>> = None;
    let copied: Result<()> = std::thread::scope(|s| {
        let stopper = running.then(|| s.spawn(|| server::stop_for_replacement(replica, &data)));
        let r =
            'copy: {
                if !takeover {
                    // Made, or found free (a slot in use by another server is refused).
                    created = match ensure_slot(&mut pc, pair, primary, replica) {
                        Ok(c) => c,
                        Err(e) => break 'copy Err(e),
                    };
                }
                // The copy's folder is made here, like the data folder it replaces: its owner,
                // group and mode (Unix), its DACL (Windows: the service account's inheritable
                // grant then reaches every file pg_basebackup writes, which it would not in a
                // folder this account made). Something there now is not ours to remove.
                match dd.parent().mkdir_like(&new_n, &data) {
                    Ok(true) => made = true,
                    Ok(false) => break 'copy Err(refused(
                        format!("{} appeared during the run", new.display()),
                        "another keyferry or pg_basebackup may be running here; look, then run \
                         again",
                    )),
                    Err(e) => break 'copy Err(e),
                }
                let mut args = vec![
                    OsString::from("-d"),
                    OsString::from(primary_conninfo(pair, primary, replica)),
                    OsString::from("-D"),
                    new.clone().into(),
                    OsString::from("-X"),
                    OsString::from("stream"),
                    OsString::from("--checkpoint=fast"),
                    OsString::from("--no-password"),
                ];
                if !takeover {
                    args.extend([OsString::from("-S"), OsString::from(replica.slot())]);
                }
                server::run_ok(
                    replica,
                    "pg_basebackup",
                    &args,
                    Duration::from_secs(24 * 3600),
                )
                .map(|_| ())
            };
        if let Some(h) = stopper {
            stopped = Some(h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)));
        }
        r
    });
    // The node's slot, once its old server is gone: free within a moment, or someone else
    // uses it.
    let copied = copied.and_then(|()| {
        if !takeover || !matches!(stopped, Some(Ok(()))) {
            return Ok(());
        }
        let free = server::wait_for(Duration::from_secs(10), || {
            slot_active(&mut pc, primary, replica).map(|a| !a)
        })?;
        if !free {
            return Err(refused(
                format!(
                    "slot {} on {} is still in use after this node's server stopped: another \
                     server streams through it",
                    replica.slot(),
                    primary.name
                ),
                "find the server using it (pg_stat_replication on the primary), then run again",
            ));
        }
        ensure_slot(&mut pc, pair, primary, replica).map(|_| ())
    });
    drop(pc);
    // Undoes the slot and restarts the old server; `undo` also removes the copy's folder
    // when it is ours (through the parent's handle: never a link put in its place).
    let undo_slot = |e: Error| -> Error {
        if created {
            drop_slot(conn, primary, replica);
        }
        restart_old(e)
    };
    let undo = |e: Error| -> Error {
        if made {
            let _ = dd.remove(&new_n);
        }
        undo_slot(e)
    };
    if let Some(Err(e)) = stopped {
        // The old server did not stop: it is not started again, only the copy is undone.
        if made {
            let _ = dd.remove(&new_n);
        }
        if created {
            drop_slot(conn, primary, replica);
        }
        return Err(e);
    }
    copied.map_err(&undo)?;
    phase("copy");
    write_replica_settings(pair, primary, replica, &dd, &new_n, &local).map_err(&undo)?;
    crate::failpoint::hit("ha:replica-copied");
    // Swap the folders through their parent's handle.
    journal
        .reach(super::swap::Stage::MovingOld, &replica.state_dir)
        .map_err(&undo)?;
    dd.rename(&data_n, &old_n).map_err(&undo)?;
    crate::failpoint::hit("ha:replica-old-moved");
    let moved = journal.reach(super::swap::Stage::MovingNew, &replica.state_dir);
    if let Err(e) = moved.and_then(|()| dd.rename(&new_n, &data_n)) {
        let _ = dd.rename(&old_n, &data_n);
        return Err(undo(e));
    }
    crate::failpoint::hit("ha:replica-swapped");
    phase("settings");
    let streaming = journal
        .reach(super::swap::Stage::Starting, &replica.state_dir)
        .and_then(|()| server::start(replica, &data))
        .and_then(|_| {
            crate::failpoint::hit("ha:replica-started");
            phase("start");
            wait_streaming(conn, primary, replica)
        });
    match streaming {
        Ok(w) if w.streaming => warnings.extend(w.warnings),
        other => {
            let why = match other {
                Err(e) => e.to_string(),
                Ok(w) => {
                    let mut why = format!(
                        "the new replica did not stream within {}s",
                        STREAM_WAIT.as_secs()
                    );
                    for x in w.warnings {
                        why.push_str("; ");
                        why.push_str(&x);
                    }
                    why
                }
            };
            let _ = server::stop(replica, &data);
            let _ = dd.rename(&data_n, &failed_n);
            let _ = dd.rename(&old_n, &data_n);
            return Err(undo(failed(
                format!(
                    "{why}; the old data folder is back in place and the new copy is kept in {} \
                     for a look",
                    dd.join(&failed_n).display()
                ),
                &format!(
                    "read the new server's log ({}), fix the cause, remove the kept copy, run again",
                    server::start_log(&data).display()
                ),
            )));
        }
    }
    phase("streaming");
    // Done: the new folder streams. The journal goes before the old folder may be removed
    // (a removal cut off is not a swap to roll back).
    super::swap::SwapJournal::remove(&replica.state_dir)?;
    let old_folder = if opts.remove_old {
        if let Err(e) = dd.remove(&old_n) {
            warnings.push(format!(
                "the old data folder {} was not removed: {e}",
                dd.join(&old_n).display()
            ));
            Some(dd.join(&old_n))
        } else {
            None
        }
    } else {
        Some(dd.join(&old_n))
    };
    phase("cleanup");
    let mut r = report(
        false,
        phases,
        old_folder,
        started.elapsed().as_secs_f64(),
        warnings,
    );
    r.archive_backup = moved_archive;
    Ok(r)
}

/// Refuses when the data folder's file system has no room for a copy of `bytes` (plus a
/// tenth and 64 MiB of WAL) beside the old data folder, which stays (kept by default, and
/// until the replica streams in any case).
fn check_space(data: &Path, bytes: i64) -> Result<()> {
    let parent = data.parent().unwrap_or(Path::new("/"));
    let free = crate::os::free_space(parent).map_err(|e| Error::io(parent, e))?;
    let need = (bytes.max(0) as u64)
        .saturating_add(bytes.max(0) as u64 / 10)
        .saturating_add(64 << 20);
    if free < need {
        return Err(refused(
            format!(
                "{} has {} MiB free; a copy of the primary needs about {} MiB beside the old \
                 data folder, which is kept",
                parent.display(),
                free >> 20,
                need >> 20
            ),
            "free space there (an old <data>.keyferry-old-<time> folder you no longer need, for \
             example), then run again",
        ));
    }
    Ok(())
}

/// What `ha failover` did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FailoverReport {
    pub old_primary: String,
    pub new_primary: String,
    pub planned: bool,
    pub dry_run: bool,
    pub timeline_before: Option<u32>,
    pub timeline_after: Option<u32>,
    /// The old primary's data folder carries `standby.signal`: a start makes it a read-only
    /// standby, never a second writable primary.
    pub fenced: bool,
    /// With `--primary-lost`: what of the old primary still answered.
    pub signs_of_life: Vec<String>,
    /// Replication slots keyferry removed because nothing uses them any more.
    pub removed_slots: Vec<String>,
    pub plan: Vec<String>,
    pub next: Vec<String>,
}

fn timeline(c: &mut pg::Client, node: &HaNode) -> Result<Option<u32>> {
    let row = pg::query_one(
        c,
        node,
        "SELECT CASE WHEN pg_is_in_recovery() THEN \
           coalesce((SELECT received_tli FROM pg_stat_wal_receiver), \
                    (SELECT timeline_id FROM pg_control_checkpoint()))::text \
         ELSE substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8) END, pg_is_in_recovery()",
        &[],
    )?;
    let t: Option<String> = row.get(0);
    let rec: bool = row.get(1);
    Ok(t.and_then(|t| {
        if rec {
            t.parse().ok()
        } else {
            u32::from_str_radix(&t, 16).ok()
        }
    }))
}

/// How `ha failover` is to go.
#[derive(Debug, Clone, Default)]
pub struct FailoverOptions {
    /// The primary is gone: promote the replica without stopping the primary cleanly.
    pub primary_lost: bool,
    /// Every check, then the plan; nothing changed.
    pub dry_run: bool,
    /// With `primary_lost`, when nothing of the old primary answers: the admin typed (or
    /// gave with `--confirm-lost`) its name, saying the machine is off.
    pub confirmed_off: Option<String>,
}

/// What `--primary-lost` needs from outside the library: the old primary's own keyferry
/// (through its `access`), and the admin.
pub trait LostPrimary {
    /// Runs `keyferry ha fence` on `node`: `Ok(None)` when the node has no ssh access,
    /// `Ok(Some(what))` when it fenced, `Err` when it has ssh access and the run failed.
    fn fence(&self, node: &HaNode) -> Result<Option<String>>;
    /// Asks the admin to type `node`'s name to confirm the machine is off; false when no
    /// one can be asked.
    fn confirm_off(&self, node: &HaNode) -> bool;
}

/// Planned switchover, run on the current primary (`local`): stop it cleanly, make sure
/// the replica has every byte of its WAL, fence it, promote the replica, checkpoint.
/// With `primary_lost`, run anywhere: see [`failover_lost`].
pub fn failover(
    conn: &Connector<'_>,
    local: &HaNode,
    opts: &FailoverOptions,
    fencer: &dyn LostPrimary,
) -> Result<FailoverReport> {
    let pair = conn.pair;
    if opts.primary_lost {
        return failover_lost(conn, local, opts, fencer);
    }
    let primary = local;
    let replica = pair.peer_of(primary);
    let data = primary.data_dir()?.to_owned();
    let dd = DataDir::open(&data)?;
    let mut pc = conn.admin(primary)?;
    let is_rec: bool = pg::query_one(&mut pc, primary, "SELECT pg_is_in_recovery()", &[])?.get(0);
    if is_rec {
        return Err(refused(
            format!("{} (this node) is a replica, not the primary", primary.name),
            &format!(
                "run the planned failover on the primary ({}), or use --primary-lost when it is gone",
                replica.name
            ),
        ));
    }
    let mut rc = conn.admin(replica).map_err(|e| {
        refused(
            format!("the replica {} does not answer: {e}", replica.name),
            "a planned failover needs a streaming replica (keyferry ha status)",
        )
    })?;
    let streaming = pg::query(
        &mut pc,
        primary,
        "SELECT 1 FROM pg_stat_replication WHERE application_name = $1 AND state = 'streaming'",
        &[&replica.name],
    )?;
    if streaming.is_empty() {
        return Err(refused(
            format!("{} does not stream from {}", replica.name, primary.name),
            "fix replication first (keyferry ha status; keyferry ha replica init on the replica)",
        ));
    }
    let before = timeline(&mut pc, primary)?;
    let plan = vec![
        format!(
            "stop {} cleanly (its last WAL goes to {})",
            primary.name, replica.name
        ),
        format!(
            "wait up to 60 s until {} has received that WAL; if not, start {} again as the \
             primary and stop",
            replica.name, primary.name
        ),
        format!(
            "fence {}: standby.signal in {} (a start makes a read-only standby)",
            primary.name,
            data.display()
        ),
        format!("promote {} and checkpoint", replica.name),
    ];
    if opts.dry_run {
        return Ok(FailoverReport {
            old_primary: primary.name.clone(),
            new_primary: replica.name.clone(),
            planned: true,
            dry_run: true,
            timeline_before: before,
            timeline_after: None,
            fenced: false,
            signs_of_life: Vec::new(),
            removed_slots: Vec::new(),
            plan,
            next: Vec::new(),
        });
    }
    drop(pc);
    // 1. Stop the primary cleanly: its shutdown checkpoint goes to the replica before it exits.
    server::stop(primary, &data)?;
    let ctl = server::control(primary, &data)?;
    let ckpt = ctl
        .get("Latest checkpoint location")
        .unwrap_or("")
        .to_owned();
    // 2. The replica must have received everything up to that checkpoint.
    let caught_up = server::wait_for(Duration::from_secs(60), || {
        let row = pg::query_one(
            &mut rc,
            replica,
            "SELECT pg_wal_lsn_diff(pg_last_wal_receive_lsn(), $1::text::pg_lsn) >= 0",
            &[&ckpt],
        )?;
        Ok(row.get::<_, Option<bool>>(0).unwrap_or(false))
    })?;
    if !caught_up {
        let _ = server::start(primary, &data);
        return Err(failed(
            format!(
                "{} did not receive the old primary's last WAL ({ckpt}) within 60 s; {} was \
                 started again as the primary",
                replica.name, primary.name
            ),
            "check replication (keyferry ha status) and try again",
        ));
    }
    // 3. Fence: a start of the old primary now makes a read-only standby.
    put_file(&dd.data()?, "standby.signal", b"")?;
    // 4. Promote and checkpoint, so the new timeline is on disk.
    promote(&mut rc, replica)?;
    let after = timeline(&mut rc, replica)?;
    let removed_slots = if drop_stale_slot(&mut rc, &replica.slot())? {
        vec![format!("{} on {}", replica.slot(), replica.name)]
    } else {
        Vec::new()
    };
    Ok(FailoverReport {
        old_primary: primary.name.clone(),
        new_primary: replica.name.clone(),
        planned: true,
        dry_run: false,
        timeline_before: before,
        timeline_after: after,
        fenced: true,
        signs_of_life: Vec::new(),
        removed_slots,
        plan,
        next: vec![
            format!("{} is the primary now: point the application at it", replica.name),
            format!(
                "{} is stopped and fenced (standby.signal); to make it a replica of {}: keyferry ha rejoin on {}",
                primary.name, replica.name, primary.name
            ),
        ],
    })
}

/// `pg_promote`, waiting up to 60 s, then a checkpoint so the new timeline is on disk.
fn promote(rc: &mut pg::Client, replica: &HaNode) -> Result<()> {
    let rows = rc.query_within(
        "SELECT pg_promote(wait => true, wait_seconds => 60)",
        &[],
        Duration::from_secs(90),
    )?;
    if !rows.first().is_some_and(|r| r.get::<_, bool>(0)) {
        return Err(failed(
            format!("{} did not finish promotion within 60 s", replica.name),
            "look at its log; SELECT pg_is_in_recovery() says when it is done",
        ));
    }
    rc.execute_within("CHECKPOINT", Duration::from_secs(600))
}

/// What answers of a node keyferry is told is lost: its PostgreSQL (any answer in the
/// protocol, a refused login included, proves the server runs), anything on its PostgreSQL
/// port, and the product's port.
pub fn signs_of_life(conn: &Connector<'_>, node: &HaNode) -> Vec<String> {
    let mut signs = Vec::new();
    match conn.try_admin(node) {
        Ok(mut c) => {
            let role = c
                .query_one("SELECT pg_is_in_recovery()", &[])
                .map(|r| {
                    if r.get::<_, bool>(0) {
                        "a replica"
                    } else {
                        "a primary"
                    }
                })
                .unwrap_or("a server");
            signs.push(format!(
                "PostgreSQL on {} answers keyferry's login and runs as {role}",
                pg::label(node)
            ));
        }
        Err(e) if e.kind.server_answered() => signs.push(format!(
            "PostgreSQL on {} answers, though it refuses keyferry's login ({})",
            pg::label(node),
            e.error
        )),
        Err(_) => {
            if pg::probe(node.addr, node.pg_port, conn.pair.timeout) == pg::Reach::Open {
                signs.push(format!(
                    "something accepts connections on {}",
                    pg::label(node)
                ));
            }
        }
    }
    if pg::probe(node.addr, node.web_port, conn.pair.timeout) == pg::Reach::Open {
        signs.push(format!(
            "the product's port {}:{} accepts connections",
            node.addr, node.web_port
        ));
    }
    signs
}

/// `--primary-lost`: promote the replica while the primary is gone. Fencing comes before
/// promotion: a primary that still runs, or comes back, next to a promoted replica makes
/// two primaries that both take writes, a split that loses one side's data. So: while the
/// old primary's PostgreSQL answers in any way (a refused login proves it runs), the
/// promotion is refused; where its keyferry can be reached over ssh, it is stopped and
/// fenced there first; where nothing of it answers, the admin confirms by its name that the
/// machine is off.
fn failover_lost(
    conn: &Connector<'_>,
    local: &HaNode,
    opts: &FailoverOptions,
    fencer: &dyn LostPrimary,
) -> Result<FailoverReport> {
    let pair = conn.pair;
    // The replica is whichever node is in recovery.
    let (replica, primary) = {
        let other = pair.peer_of(local);
        let mut found = None;
        for (r, p) in [(local, other), (other, local)] {
            if let Ok(mut c) = conn.admin(r) {
                if pg::query_one(&mut c, r, "SELECT pg_is_in_recovery()", &[])?.get::<_, bool>(0) {
                    found = Some((r, p));
                    break;
                }
            }
        }
        found.ok_or_else(|| {
            refused(
                "no node answers as a replica".into(),
                "keyferry ha status shows the state of both nodes",
            )
        })?
    };
    let signs = signs_of_life(conn, primary);
    let pg_answers = signs
        .iter()
        .any(|s| s.starts_with("PostgreSQL") || s.starts_with("something"));
    if pg_answers {
        return Err(refused(
            format!(
                "{} is not lost: {}; promoting {} now would make two writable primaries",
                primary.name,
                signs.join("; "),
                replica.name
            ),
            &format!(
                "run the planned failover on {p} (keyferry ha failover, no rows lost); if its \
                 database must go, stop its server there first (keyferry ha fence on {p})",
                p = primary.name
            ),
        ));
    }
    let mut plan = Vec::new();
    let fence_over_ssh = !opts.dry_run;
    let mut fenced = false;
    let mut rc = conn.admin(replica)?;
    let before = timeline(&mut rc, replica)?;
    if fence_over_ssh {
        match fencer.fence(primary) {
            Ok(Some(what)) => {
                fenced = true;
                plan.push(format!("fenced {} over ssh: {what}", primary.name));
            }
            Ok(None) => {}
            Err(e) => {
                return Err(refused(
                    format!(
                        "{} answers over ssh, but fencing it there failed: {e}",
                        primary.name
                    ),
                    &format!(
                        "on {p}: stop PostgreSQL and create an empty standby.signal in its data \
                         folder (keyferry ha fence does both), then run again",
                        p = primary.name
                    ),
                ))
            }
        }
    } else {
        plan.push(format!(
            "fence {} over ssh first where its access is ssh:// (keyferry ha fence there)",
            primary.name
        ));
    }
    if !fenced && !signs.is_empty() {
        // The product answers: the machine runs, whatever the admin believes.
        return Err(refused(
            format!(
                "{} is not off: {}; its PostgreSQL may start again as a primary",
                primary.name,
                signs.join("; ")
            ),
            &format!(
                "on {p}: run keyferry ha fence (or stop PostgreSQL and create an empty                  standby.signal in its data folder), or give it ssh access in the cluster file                  so keyferry fences it; then run again",
                p = primary.name
            ),
        ));
    }
    if !fenced {
        let up = signs.join("; ");
        let confirmed = opts
            .confirmed_off
            .as_deref()
            .is_some_and(|n| n.eq_ignore_ascii_case(&primary.name))
            || (!opts.dry_run && opts.confirmed_off.is_none() && fencer.confirm_off(primary));
        if !opts.dry_run && !confirmed {
            return Err(refused(
                format!(
                    "nothing shows that {} cannot come back as a primary: {}",
                    primary.name,
                    if up.is_empty() {
                        "it does not answer, but a machine that is only cut off from here keeps \
                         taking writes"
                            .to_owned()
                    } else {
                        up
                    }
                ),
                &format!(
                    "make sure {p} is off (or its PostgreSQL stopped and fenced), then confirm by \
                     its name: --confirm-lost {p}",
                    p = primary.name
                ),
            ));
        }
        plan.push(format!(
            "{} is confirmed off by its name (nothing of it answers)",
            primary.name
        ));
    }
    plan.push(format!("promote {} and checkpoint", replica.name));
    if opts.dry_run {
        return Ok(FailoverReport {
            old_primary: primary.name.clone(),
            new_primary: replica.name.clone(),
            planned: false,
            dry_run: true,
            timeline_before: before,
            timeline_after: None,
            fenced: false,
            signs_of_life: signs,
            removed_slots: Vec::new(),
            plan,
            next: Vec::new(),
        });
    }
    promote(&mut rc, replica)?;
    let after = timeline(&mut rc, replica)?;
    let removed_slots = if drop_stale_slot(&mut rc, &replica.slot())? {
        vec![format!("{} on {}", replica.slot(), replica.name)]
    } else {
        Vec::new()
    };
    let mut next = Vec::new();
    if !fenced {
        next.push(format!(
            "before {} comes back, make sure it cannot start as a primary: on {}, run keyferry \
             ha fence (an empty standby.signal in its data folder), or keep its service disabled",
            primary.name, primary.name
        ));
    }
    next.push(format!(
        "then run keyferry ha rejoin on {} to make it a replica of {}",
        primary.name, replica.name
    ));
    next.push(
        "committed transactions the old primary had not yet sent are not on the new primary".into(),
    );
    Ok(FailoverReport {
        old_primary: primary.name.clone(),
        new_primary: replica.name.clone(),
        planned: false,
        dry_run: false,
        timeline_before: before,
        timeline_after: after,
        fenced,
        signs_of_life: signs,
        removed_slots,
        plan,
        next,
    })
}

/// What `ha fence` did.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct FenceReport {
    pub node: String,
    /// standby.signal was written (false: it was there already).
    pub signal_written: bool,
    /// The server was running and was stopped.
    pub stopped: bool,
}

/// Fences this machine's node: `standby.signal` in its data folder first (so that any start,
/// by keyferry, an admin or the service manager, makes a read-only standby), then its server
/// stopped if it runs.
pub fn fence(node: &HaNode) -> Result<FenceReport> {
    let data = node.data_dir()?.to_owned();
    let dd = DataDir::open(&data)?;
    let dir = dd.data()?;
    let signal_written = get_file(&dir, "standby.signal")?.is_none();
    if signal_written {
        put_file(&dir, "standby.signal", b"")?;
    }
    let running = server::is_running(node, &data)?;
    if running {
        server::stop(node, &data)?;
    }
    Ok(FenceReport {
        node: node.name.clone(),
        signal_written,
        stopped: running,
    })
}

/// How `ha rejoin` is to go.
#[derive(Debug, Clone, Default)]
pub struct RejoinOptions {
    pub dry_run: bool,
    /// When rejoin falls back to a fresh copy: remove the old folder once it streams.
    pub remove_old: bool,
}

/// What `ha rejoin` did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RejoinReport {
    pub node: String,
    pub primary: String,
    pub dry_run: bool,
    /// "rewind" or "base-backup".
    pub method: String,
    pub why_not_rewind: Option<String>,
    pub seconds: f64,
    /// A fresh copy's kept old data folder.
    pub old_folder: Option<PathBuf>,
    /// Replication slots keyferry removed because nothing uses them any more.
    pub removed_slots: Vec<String>,
    /// Server settings keyferry changed (or would change), each with how to put it back.
    pub settings_changed: Vec<String>,
    pub plan: Vec<String>,
    pub warnings: Vec<String>,
}

/// Makes this machine's node (an old primary) a replica of its peer: `pg_rewind` when it
/// can work, else a fresh `replica init`. Refused when this node runs as the primary, when
/// it is not the same database as the peer (rejoin never replaces a database of its own),
/// and across PostgreSQL major versions.
pub fn rejoin(
    conn: &Connector<'_>,
    node: &HaNode,
    opts: &RejoinOptions,
    say: &dyn Fn(&str),
) -> Result<RejoinReport> {
    let started = Instant::now();
    let pair = conn.pair;
    let primary = pair.peer_of(node);
    let data = node.data_dir()?.to_owned();
    if !pg::is_local_address(node.addr) {
        return Err(refused(
            format!(
                "{} is not an address of this machine, so this is not node {}",
                node.addr, node.name
            ),
            "run keyferry ha rejoin on the node that becomes the replica (or fix --node)",
        ));
    }
    let dd = DataDir::open(&data)?;
    let (local_facts, ctl) = facts::local(conn, node, &dd)?;
    if local_facts.role == "primary" {
        let peer_is_replica = conn
            .admin(primary)
            .and_then(|mut c| c.query_one("SELECT pg_is_in_recovery()", &[]))
            .map(|r| r.get::<_, bool>(0))
            .unwrap_or(false);
        if peer_is_replica {
            return Err(refused(
                format!(
                    "{} (this node) is the running primary and {} is its replica: there is \
                     nothing to rejoin",
                    node.name, primary.name
                ),
                &format!(
                    "rejoin is for the old primary after a failover; to switch roles, run \
                     keyferry ha failover on {}",
                    node.name
                ),
            ));
        }
        return Err(refused(
            format!(
                "{} runs as a primary too (split brain): rejoining it throws away its writes since the failover",
                node.name
            ),
            "stop it first (keyferry ha fence, or pg_ctl stop) once you are sure its writes are not needed, then run again",
        ));
    }
    let mut pc = check_primary(conn, primary, node)?;
    let source = facts::remote_with(&mut pc, primary)?;
    let setting = keep_size_change(&mut pc, pair, primary)?;
    drop(pc);
    if local_facts.system_identifier.is_some()
        && source.system_identifier.is_some()
        && local_facts.system_identifier != source.system_identifier
    {
        return Err(refused(
            format!(
                "{} and {} are different databases, not a pair that parted: rejoin would replace \
                 a database of its own.\n  {}\n  {}",
                node.name,
                primary.name,
                local_facts.line(),
                source.line()
            ),
            &format!(
                "if {} is the one to give up, keyferry ha replica init --replace-database-of {} \
                 (its folder is kept)",
                node.name, node.name
            ),
        ));
    }
    let mut programs = local_facts.clone();
    programs.major = server::bin_major(node)?;
    for (l, what) in [(&local_facts, "a rewind"), (&programs, "a replica")] {
        if let Some(why) = facts::same_major(l, &source, what) {
            return Err(refused(
                why,
                &format!(
                    "make {} a replica with a fresh copy from the new primary: install \
                     PostgreSQL {} there, point the cluster file's [ha] bin and data at it, and \
                     run keyferry ha replica init on {}",
                    node.name,
                    source.major.unwrap_or(0),
                    node.name
                ),
            ));
        }
    }
    let local = node_local(conn, node, &dd)?;
    let running = local_facts.running;
    let no_rewind =
        (!ctl.rewindable()).then(|| "neither wal_log_hints nor data checksums are on".to_owned());
    let mut plan = Vec::new();
    if running {
        plan.push(format!(
            "stop {}'s server ({})",
            node.name, local_facts.role
        ));
    }
    plan.push(match &no_rewind {
        None => format!(
            "pg_rewind {} from {} (a fresh copy if that fails; the old folder kept)",
            data.display(),
            primary.name
        ),
        Some(why) => format!(
            "a fresh copy from {} ({why}), the old folder kept",
            primary.name
        ),
    });
    if let Some(what) = &setting {
        plan.push(format!("set {what}"));
    }
    plan.push(format!(
        "put back {}'s own settings, write the replica's, start, wait until it streams",
        node.name
    ));
    let report = |method: &str, why: Option<String>, seconds, old_folder, warnings| RejoinReport {
        node: node.name.clone(),
        primary: primary.name.clone(),
        dry_run: opts.dry_run,
        method: method.into(),
        why_not_rewind: why,
        seconds,
        old_folder,
        removed_slots: Vec::new(),
        settings_changed: setting.iter().cloned().collect(),
        plan: plan.clone(),
        warnings,
    };
    let method = if no_rewind.is_some() {
        "base-backup"
    } else {
        "rewind"
    };
    if opts.dry_run {
        return Ok(report(method, no_rewind, 0.0, None, Vec::new()));
    }
    say(&format!(
        "making {} a replica of {} ({method})...",
        node.name, primary.name
    ));
    // The control file as the stop left it (the state the rewind goes by).
    let ctl = if running {
        server::stop(node, &data)?;
        server::control(node, &data)?
    } else {
        ctl
    };
    let copy = |why: String| -> Result<RejoinReport> {
        let r = init(
            conn,
            node,
            &InitOptions {
                remove_old: opts.remove_old,
                by_rejoin: true,
                ..InitOptions::default()
            },
            &|_| {},
        )
        .map_err(|e| copy_failed(e, node, &why))?;
        Ok(report(
            "base-backup",
            Some(why),
            r.seconds,
            r.old_folder,
            r.warnings,
        ))
    };
    if let Some(why) = no_rewind {
        return copy(why);
    }
    let mut pc = conn.admin(primary)?;
    ensure_slot(&mut pc, pair, primary, node)?;
    drop(pc);
    // After a crash (the --primary-lost case) pg_rewind first finishes the crash recovery in
    // single-user mode, which refuses to run with standby.signal: the fence is set aside for
    // the rewind and put back if it fails (a successful rewind gets the replica's settings,
    // standby.signal among them).
    let dir = dd.data()?;
    let clean = ctl.state().starts_with("shut down");
    let fence_aside = !clean && get_file(&dir, "standby.signal")?.is_some();
    if fence_aside {
        dir.unlink(OsStr::new("standby.signal"))?;
    }
    let source = format!(
        "host={} port={} user={} dbname={} passfile={}{}",
        primary.addr,
        primary.pg_port,
        conn_value(&pair.admin_user),
        conn_value(&pair.database),
        conn_value(&pair.passfile.to_string_lossy()),
        tls_settings(pair)
    );
    let rewound = server::run_ok(
        node,
        "pg_rewind",
        &[
            OsString::from("-D"),
            data.clone().into(),
            OsString::from(format!("--source-server={source}")),
        ],
        Duration::from_secs(6 * 3600),
    );
    if let Err(e) = rewound {
        if fence_aside {
            put_file(&dir, "standby.signal", b"")?;
        }
        drop(dir);
        return copy(format!("pg_rewind failed: {e}"));
    }
    drop(dir);
    // pg_rewind copied the new primary's configuration: put this node's back.
    let data_n = dd.name().to_owned();
    write_replica_settings(pair, primary, node, &dd, &data_n, &local)?;
    server::start(node, &data)?;
    let w = wait_streaming(conn, primary, node)?;
    if !w.streaming {
        return Err(failed(
            format!(
                "{} was rewound and started but does not stream from {} within {}s{}",
                node.name,
                primary.name,
                STREAM_WAIT.as_secs(),
                w.warnings
                    .iter()
                    .map(|x| format!("; {x}"))
                    .collect::<String>()
            ),
            &format!(
                "read its log ({}); keyferry ha replica init on {} makes a fresh copy",
                server::start_log(&data).display(),
                node.name
            ),
        ));
    }
    // The rewound folder kept this node's slots from when it was the primary (pg_rewind
    // leaves pg_replslot alone); the one its peer used then serves nobody now.
    let mut warnings = w.warnings;
    let mut removed = Vec::new();
    match conn
        .admin(node)
        .and_then(|mut c| drop_stale_slot(&mut c, &primary.slot()))
    {
        Ok(true) => removed.push(format!("{} on {}", primary.slot(), node.name)),
        Ok(false) => {}
        Err(e) => warnings.push(format!(
            "could not look for a slot {} left on {}: {e}",
            primary.slot(),
            node.name
        )),
    }
    let mut r = report(
        "rewind",
        None,
        started.elapsed().as_secs_f64(),
        None,
        warnings,
    );
    r.removed_slots = removed;
    Ok(r)
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
