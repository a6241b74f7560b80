//! `ha replica init` (the vendor's "Configure HA Secondary"), `ha failover` and `ha rejoin`.
//!
//! The replica's recovery settings are written by keyferry itself, never by
//! `pg_basebackup -R` (which would put a password from the environment into
//! `postgresql.auto.conf`): `primary_conninfo` names the password file, carries
//! `application_name=<node>`, and a replication slot on the primary keeps the WAL the replica
//! needs, bounded by `max_slot_wal_keep_size`. Files in a data folder are written through its
//! folder handle (a temp file, then a rename), owned like the folder.

use super::config::{HaNode, Pair};
use super::pg::{self, Connector};
use super::server::{self, sibling};
use crate::error::{Error, Result};
use crate::fs::Dir;
use serde::Serialize;
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
    let sslmode = match pair.sslmode {
        super::config::SslMode::Disable => "disable",
        super::config::SslMode::Prefer => "prefer",
        super::config::SslMode::Require => "require",
        super::config::SslMode::VerifyFull => "verify-full",
    };
    let mut s = format!(
        "host={} port={} user={} passfile={} application_name={} sslmode={sslmode}",
        primary.addr,
        primary.pg_port,
        conn_value(&pair.repuser),
        conn_value(&pair.passfile.to_string_lossy()),
        conn_value(&replica.name),
    );
    if let Some(ca) = &pair.sslrootcert {
        s.push_str(&format!(
            " sslrootcert={}",
            conn_value(&ca.to_string_lossy())
        ));
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
    /// folder (Debian keeps them in /etc/postgresql, where a copy does not reach).
    pub files: Vec<(String, Vec<u8>)>,
}

/// Collects the node-local settings of `node`: from its running server when it runs,
/// else from the cluster file and the data folder's files.
pub fn node_local(conn: &Connector<'_>, node: &HaNode, data: &Path) -> Result<NodeLocal> {
    let mut local = NodeLocal {
        port: node.pg_port,
        ..NodeLocal::default()
    };
    if let Ok(mut c) = conn.admin(node) {
        let row = pg::query_one(
            &mut c,
            node,
            "SELECT current_setting('listen_addresses')",
            &[],
        )?;
        local.listen_addresses = Some(row.get(0));
    }
    if let Ok(dir) = Dir::open(data) {
        for name in ["postgresql.conf", "pg_hba.conf", "pg_ident.conf"] {
            if let Some(bytes) = get_file(&dir, name)? {
                local.files.push((name.to_owned(), bytes));
            }
        }
    }
    Ok(local)
}

/// Writes the replica's settings into `data` (a fresh copy from the primary, or a rewound
/// folder): `standby.signal`, `primary_conninfo`, `primary_slot_name`, and this node's own
/// `port`, `listen_addresses`, `pg_hba.conf` and `pg_ident.conf` put back.
pub fn write_replica_settings(
    pair: &Pair,
    primary: &HaNode,
    replica: &HaNode,
    data: &Path,
    local: &NodeLocal,
) -> Result<()> {
    let dir = Dir::open(data)?;
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
    let c_rep = super::hba::Connection {
        replication: true,
        user: Some(conn.pair.repuser.clone()),
        addr: replica.addr,
    };
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

/// Waits until `replica` streams from `primary` (both sides say so).
pub fn wait_streaming(conn: &Connector<'_>, primary: &HaNode, replica: &HaNode) -> Result<bool> {
    server::wait_for(STREAM_WAIT, || {
        let Ok(mut r) = conn.admin(replica) else {
            return Ok(false);
        };
        let rows = pg::query(
            &mut r,
            replica,
            "SELECT status FROM pg_stat_wal_receiver",
            &[],
        )?;
        if rows.first().map(|r| r.get::<_, String>(0)).as_deref() != Some("streaming") {
            return Ok(false);
        }
        let Ok(mut p) = conn.admin(primary) else {
            return Ok(false);
        };
        let rows = pg::query(
            &mut p,
            primary,
            "SELECT 1 FROM pg_stat_replication WHERE application_name = $1 AND state = 'streaming'",
            &[&replica.name],
        )?;
        Ok(!rows.is_empty())
    })
}

/// What `ha replica init` did.
#[derive(Debug, Clone, Serialize)]
pub struct InitReport {
    pub node: String,
    pub primary: String,
    pub data: PathBuf,
    pub slot: String,
    pub bytes: i64,
    pub seconds: f64,
    /// Seconds per phase: preflight, stop, copy, settings (and the swap), start, streaming,
    /// cleanup (removing the old folder).
    pub phases: Vec<(String, f64)>,
    pub old_folder: Option<PathBuf>,
}

/// Makes `replica` (this machine's node) a streaming replica of its peer.
pub fn init(conn: &Connector<'_>, replica: &HaNode, keep_old: bool) -> Result<InitReport> {
    let started = Instant::now();
    let pair = conn.pair;
    let primary = pair.peer_of(replica);
    let data = replica.data_dir()?.to_owned();
    let new = sibling(&data, ".keyferry-new");
    let old = sibling(&data, ".keyferry-old");
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
    for p in [&new, &old] {
        if std::fs::symlink_metadata(p).is_ok() {
            return Err(refused(
                format!("{} is left from an earlier run", p.display()),
                "look at it, remove it when it is not needed, then run again",
            ));
        }
    }
    let mut pc = check_primary(conn, primary, replica)?;
    let bytes: i64 = pg::query_one(
        &mut pc,
        primary,
        "SELECT sum(pg_database_size(oid))::bigint FROM pg_database",
        &[],
    )?
    .get(0);
    check_space(&data, bytes)?;
    let running = server::is_running(replica, &data)?;
    let local = node_local(conn, replica, &data)?;
    let mut phases = Vec::new();
    let mut mark = Instant::now();
    let mut phase = |name: &str| {
        phases.push((name.to_owned(), mark.elapsed().as_secs_f64()));
        mark = Instant::now();
    };
    phase("preflight");
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
    let parent = Dir::open(data.parent().unwrap_or(Path::new("/")))?;
    let name = |p: &Path| p.file_name().unwrap_or_default().to_os_string();
    let (data_n, old_n, new_n) = (name(&data), name(&old), name(&new));
    // The local server stops while the copy is taken: neither touches the other's folder.
    // When the old server is a replica streaming through this node's slot, the copy takes
    // a temporary slot of its own (pg_basebackup's default) and the node's slot, which holds
    // WAL from before the copy began, is taken over once the old server is gone.
    let slot_busy = slot_active(&mut pc, primary, replica)?;
    let takeover = slot_busy && running;
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
                match parent.mkdir_like(&new_n, &data) {
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
    // when it is ours.
    let undo_slot = |e: Error| -> Error {
        if created {
            drop_slot(conn, primary, replica);
        }
        restart_old(e)
    };
    let undo = |e: Error| -> Error {
        if made {
            let _ = std::fs::remove_dir_all(&new);
        }
        undo_slot(e)
    };
    if let Some(Err(e)) = stopped {
        // The old server did not stop: it is not started again, only the copy is undone.
        if made {
            let _ = std::fs::remove_dir_all(&new);
        }
        if created {
            drop_slot(conn, primary, replica);
        }
        return Err(e);
    }
    copied.map_err(&undo)?;
    phase("copy");
    write_replica_settings(pair, primary, replica, &new, &local).map_err(&undo)?;
    // Swap the folders through their parent's handle; the old one stays until the replica
    // streams.
    parent.rename(&data_n, &old_n).map_err(&undo)?;
    if let Err(e) = parent.rename(&new_n, &data_n) {
        let _ = parent.rename(&old_n, &data_n);
        return Err(undo(e));
    }
    phase("settings");
    let streaming = server::start(replica, &data).and_then(|_| {
        phase("start");
        wait_streaming(conn, primary, replica)
    });
    match streaming {
        Ok(true) => {}
        other => {
            let why = match other {
                Err(e) => e.to_string(),
                _ => format!(
                    "the new replica did not stream within {}s",
                    STREAM_WAIT.as_secs()
                ),
            };
            let _ = server::stop(replica, &data);
            let failed_dir = sibling(&data, ".keyferry-failed");
            let _ = std::fs::remove_dir_all(&failed_dir);
            let _ = parent.rename(&data_n, &name(&failed_dir));
            let _ = parent.rename(&old_n, &data_n);
            return Err(undo(failed(
                format!(
                    "{why}; the old data folder is back in place and the new copy is kept in {} \
                     for a look",
                    failed_dir.display()
                ),
                &format!(
                    "read the new server's log ({}), fix the cause, remove the kept copy, run again",
                    server::start_log(&data).display()
                ),
            )));
        }
    }
    phase("streaming");
    let old_folder = if keep_old {
        Some(old)
    } else {
        crate::fs::tree::remove_tree(&old, crate::parallel::threads(4))?;
        None
    };
    phase("cleanup");
    Ok(InitReport {
        node: replica.name.clone(),
        primary: primary.name.clone(),
        data,
        slot: replica.slot(),
        bytes,
        seconds: started.elapsed().as_secs_f64(),
        phases,
        old_folder,
    })
}

/// Refuses when the data folder's file system has no room for a copy of `bytes` (plus a
/// tenth and 64 MiB of WAL), the old folder staying until the replica streams.
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
                 data folder",
                parent.display(),
                free >> 20,
                need >> 20
            ),
            "free space there, then run again",
        ));
    }
    Ok(())
}

/// What `ha failover` did.
#[derive(Debug, Clone, Serialize)]
pub struct FailoverReport {
    pub old_primary: String,
    pub new_primary: String,
    pub planned: bool,
    pub timeline_before: Option<u32>,
    pub timeline_after: Option<u32>,
    /// The old primary's data folder carries `standby.signal`: a start makes it a read-only
    /// standby, never a second writable primary.
    pub fenced: bool,
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

/// Planned switchover, run on the current primary (`local`): stop it cleanly, make sure
/// the replica has every byte of its WAL, fence it, promote the replica, checkpoint.
/// With `primary_lost`, run anywhere: the primary must not answer; the replica is promoted.
pub fn failover(
    conn: &Connector<'_>,
    local: &HaNode,
    primary_lost: bool,
) -> Result<FailoverReport> {
    let pair = conn.pair;
    if primary_lost {
        return failover_lost(conn, local);
    }
    let primary = local;
    let replica = pair.peer_of(primary);
    let data = primary.data_dir()?.to_owned();
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
    let dir = Dir::open(&data)?;
    put_file(&dir, "standby.signal", b"")?;
    // 4. Promote and checkpoint, so the new timeline is on disk.
    pg::query_one(
        &mut rc,
        replica,
        "SELECT pg_promote(wait => true, wait_seconds => 60)",
        &[],
    )
    .and_then(|r| {
        if r.get::<_, bool>(0) {
            Ok(())
        } else {
            Err(failed(
                format!("{} did not finish promotion within 60 s", replica.name),
                "look at its log; SELECT pg_is_in_recovery() says when it is done",
            ))
        }
    })?;
    pg::execute(&mut rc, replica, "CHECKPOINT")?;
    let after = timeline(&mut rc, replica)?;
    Ok(FailoverReport {
        old_primary: primary.name.clone(),
        new_primary: replica.name.clone(),
        planned: true,
        timeline_before: before,
        timeline_after: after,
        fenced: true,
        next: vec![
            format!("{} is the primary now: point the application at it", replica.name),
            format!(
                "{} is stopped and fenced (standby.signal); to make it a replica of {}: keyferry ha rejoin on {}",
                primary.name, replica.name, primary.name
            ),
        ],
    })
}

fn failover_lost(conn: &Connector<'_>, local: &HaNode) -> Result<FailoverReport> {
    let pair = conn.pair;
    // The replica is whichever node is in recovery; the other must not answer.
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
    if conn.admin(primary).is_ok() {
        return Err(refused(
            format!(
                "the primary {} still answers: promoting {} now would make two writable primaries",
                primary.name, replica.name
            ),
            &format!(
                "for a planned failover run keyferry ha failover on {} without --primary-lost",
                primary.name
            ),
        ));
    }
    let mut rc = conn.admin(replica)?;
    let before = timeline(&mut rc, replica)?;
    let ok: bool = pg::query_one(
        &mut rc,
        replica,
        "SELECT pg_promote(wait => true, wait_seconds => 60)",
        &[],
    )?
    .get(0);
    if !ok {
        return Err(failed(
            format!("{} did not finish promotion within 60 s", replica.name),
            "look at its log; SELECT pg_is_in_recovery() says when it is done",
        ));
    }
    pg::execute(&mut rc, replica, "CHECKPOINT")?;
    let after = timeline(&mut rc, replica)?;
    Ok(FailoverReport {
        old_primary: primary.name.clone(),
        new_primary: replica.name.clone(),
        planned: false,
        timeline_before: before,
        timeline_after: after,
        fenced: false,
        next: vec![
            format!(
                "before {} comes back, make sure it cannot start as a primary: on {}, create an \
                 empty standby.signal in its data folder (or keep its service disabled)",
                primary.name, primary.name
            ),
            format!(
                "then run keyferry ha rejoin on {} to make it a replica of {}",
                primary.name, replica.name
            ),
            "committed transactions the old primary had not yet sent are not on the new primary"
                .into(),
        ],
    })
}

/// What `ha rejoin` did.
#[derive(Debug, Clone, Serialize)]
pub struct RejoinReport {
    pub node: String,
    pub primary: String,
    /// "rewind" or "base-backup".
    pub method: String,
    pub why_not_rewind: Option<String>,
    pub seconds: f64,
}

/// Makes this machine's node (an old primary) a replica of its peer: `pg_rewind` when it
/// can work, else a fresh `replica init`.
pub fn rejoin(conn: &Connector<'_>, node: &HaNode) -> Result<RejoinReport> {
    let started = Instant::now();
    let pair = conn.pair;
    let primary = pair.peer_of(node);
    let data = node.data_dir()?.to_owned();
    drop(check_primary(conn, primary, node)?);
    if !pg::is_local_address(node.addr) {
        return Err(refused(
            format!(
                "{} is not an address of this machine, so this is not node {}",
                node.addr, node.name
            ),
            "run keyferry ha rejoin on the node that becomes the replica (or fix --node)",
        ));
    }
    let running = server::is_running(node, &data)?;
    if running {
        let mut c = conn.admin(node)?;
        let rec: bool = pg::query_one(&mut c, node, "SELECT pg_is_in_recovery()", &[])?.get(0);
        if !rec {
            return Err(refused(
                format!(
                    "{} runs as a primary too (split brain): rejoining it throws away its writes since the failover",
                    node.name
                ),
                "stop it first (pg_ctl stop, or its service) once you are sure its writes are not needed, then run again",
            ));
        }
    }
    let local = node_local(conn, node, &data)?;
    if running {
        server::stop(node, &data)?;
    }
    let ctl = server::control(node, &data)?;
    if !ctl.rewindable() {
        let why = "neither wal_log_hints nor data checksums are on".to_owned();
        let r = init(conn, node, false).map_err(|e| copy_failed(e, node, &why))?;
        return Ok(RejoinReport {
            node: node.name.clone(),
            primary: primary.name.clone(),
            method: "base-backup".into(),
            why_not_rewind: Some(why),
            seconds: r.seconds,
        });
    }
    let mut pc = conn.admin(primary)?;
    ensure_slot(&mut pc, pair, primary, node)?;
    drop(pc);
    // After a crash (the --primary-lost case) pg_rewind first finishes the crash recovery in
    // single-user mode, which refuses to run with standby.signal: the fence is set aside for
    // the rewind and put back if it fails (a successful rewind gets the replica's settings,
    // standby.signal among them).
    let dir = Dir::open(&data)?;
    let clean = ctl.state().starts_with("shut down");
    let fence_aside = !clean && get_file(&dir, "standby.signal")?.is_some();
    if fence_aside {
        dir.unlink(OsStr::new("standby.signal"))?;
    }
    let source = format!(
        "host={} port={} user={} dbname={} passfile={} sslmode=prefer",
        primary.addr,
        primary.pg_port,
        conn_value(&pair.admin_user),
        conn_value(&pair.database),
        conn_value(&pair.passfile.to_string_lossy())
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
        let why = format!("pg_rewind failed: {e}");
        let r = init(conn, node, false).map_err(|e| copy_failed(e, node, &why))?;
        return Ok(RejoinReport {
            node: node.name.clone(),
            primary: primary.name.clone(),
            method: "base-backup".into(),
            why_not_rewind: Some(why),
            seconds: r.seconds,
        });
    }
    // pg_rewind copied the new primary's configuration: put this node's back.
    write_replica_settings(pair, primary, node, &data, &local)?;
    server::start(node, &data)?;
    if !wait_streaming(conn, primary, node)? {
        return Err(failed(
            format!(
                "{} was rewound and started but does not stream from {} within {}s",
                node.name,
                primary.name,
                STREAM_WAIT.as_secs()
            ),
            &format!(
                "read its log ({}); keyferry ha replica init on {} makes a fresh copy",
                server::start_log(&data).display(),
                node.name
            ),
        ));
    }
    Ok(RejoinReport {
        node: node.name.clone(),
        primary: primary.name.clone(),
        method: "rewind".into(),
        why_not_rewind: None,
        seconds: started.elapsed().as_secs_f64(),
    })
}
