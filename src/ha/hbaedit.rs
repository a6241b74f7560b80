//! `ha hba`: the pair's lines put into a `pg_hba.conf` through the transaction engine
//! (backup, atomic replace keeping the file's owner, mode and ACL). On a running server the
//! file is the one `SHOW hba_file` names, and the new file is checked by PostgreSQL itself
//! (`pg_hba_file_rules.error`) before the reload: `pg_reload_conf()` returns true even for a
//! broken file, and the server then silently keeps its old rules. A file PostgreSQL rejects
//! is put back from the backup, and the server is not reloaded.

use super::config::{HaNode, Pair};
use super::hba::{self, Connection, Edit, PeerRules};
use super::pg;
use crate::error::{Error, Result};
use crate::reason::HaReason;
use crate::txn::{Before, Change};
use serde::Serialize;
use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Largest `pg_hba.conf` read.
pub const MAX_HBA: u64 = 1024 * 1024;

/// How one of the pair's connections is decided before and after.
#[derive(Debug, Clone, Serialize)]
pub struct DecisionRow {
    pub connection: String,
    pub before: String,
    pub after: String,
    /// The same as fields: the deciding line, its method, the lines that might decide first.
    pub before_decided: hba::Decided,
    pub after_decided: hba::Decided,
}

/// What `ha hba` did (or, with `--dry-run`, would do).
#[derive(Debug, Clone, Serialize)]
pub struct HbaReport {
    /// The `pg_hba.conf` edited.
    pub path: PathBuf,
    /// The file was changed (or would be).
    pub changed: bool,
    /// Nothing was changed: the plan alone.
    pub dry_run: bool,
    /// How each of the pair's connections is decided, before and after.
    pub decisions: Vec<DecisionRow>,
    /// The new file's text (only with `--dry-run`, for review).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_text: Option<String>,
    /// Where the previous file was backed up.
    pub backup: Option<PathBuf>,
    /// Checked by PostgreSQL (`pg_hba_file_rules`) and reloaded.
    pub reloaded: bool,
    /// Edited in this node's data folder and reloaded with `pg_ctl` (keyferry could not log
    /// in over the network before the edit).
    pub local: bool,
}

/// The pair's wanted rules.
pub fn peer_rules(pair: &Pair, override_reject: bool, server: hba::Server) -> PeerRules {
    PeerRules {
        peers: pair.nodes.iter().map(|n| n.addr).collect(),
        repuser: pair.repuser.clone(),
        method: pair.hba_method.clone(),
        override_reject,
        server,
    }
}

/// Plans the edit of `text`, refusals worded for `path`.
pub fn plan(text: &str, path: &Path, want: &PeerRules) -> Result<Edit> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let files = hba::files_beside(dir);
    hba::plan_edit(text, want, Some(&files)).map_err(|r| Error::HaRefused {
        why: format!("{}: {r}", path.display()),
        reason: match r {
            hba::Refusal::Reject { .. } => HaReason::HbaReject,
            _ => HaReason::HbaUnplannable,
        },
    })
}

fn rows(edit: &Edit) -> Vec<DecisionRow> {
    edit.decisions
        .iter()
        .zip(&edit.verdicts)
        .map(|((c, b, a), (vb, va))| DecisionRow {
            connection: c.to_string(),
            before: b.clone(),
            after: a.clone(),
            before_decided: vb.clone(),
            after_decided: va.clone(),
        })
        .collect()
}

/// The file, its text and whether that text was Latin-1 (not UTF-8: written back so).
fn read_text(path: &Path) -> Result<(crate::txn::Looked, String, bool)> {
    let mut looked = crate::txn::look(path, MAX_HBA, &[])?;
    let Some(bytes) = looked.bytes.take() else {
        return Err(Error::missing(path, "pg_hba.conf"));
    };
    let (text, latin1) = hba::decode(bytes.expose_secret());
    Ok((looked, text, latin1))
}

/// Edits a `pg_hba.conf` on its own (no server): plan, and unless `dry_run`, write.
pub fn edit_file(
    pair: &Pair,
    node: &HaNode,
    path: &Path,
    override_reject: bool,
    dry_run: bool,
) -> Result<HbaReport> {
    edit(
        &peer_rules(pair, override_reject, hba::Server::here()),
        node,
        path,
        dry_run,
        &|| Ok(()),
        "",
    )
}

fn edit(
    want: &PeerRules,
    node: &HaNode,
    path: &Path,
    dry_run: bool,
    validate: &dyn Fn() -> Result<()>,
    put_back: &str,
) -> Result<HbaReport> {
    // Refusals first, without the lock: they leave everything as it was.
    let (_, text, _) = read_text(path)?;
    let edit = plan(&text, path, want)?;
    let mut report = HbaReport {
        path: path.to_owned(),
        changed: edit.changed,
        dry_run,
        decisions: rows(&edit),
        new_text: dry_run.then(|| edit.text.clone()),
        backup: None,
        reloaded: false,
        local: false,
    };
    if dry_run || !edit.changed {
        return Ok(report);
    }
    let (_lock, _recovered) =
        crate::txn::begin(&node.state_dir, &node.name, crate::txn::DEFAULT_WAIT)?;
    let (looked, text, latin1) = read_text(path)?;
    let edit = plan(&text, path, want)?;
    report.decisions = rows(&edit);
    if !edit.changed {
        report.changed = false;
        return Ok(report);
    }
    debug_assert!(matches!(looked.before, Before::File { .. }));
    let ctx = crate::txn::Context {
        state_dir: &node.state_dir,
        backup_root: node
            .state_dir
            .join("backups")
            .join(&node.name)
            .join("pg_hba"),
        node: &node.name,
        command: "ha hba",
    };
    let change = Change {
        path: path.to_owned(),
        label: "pg_hba.conf".into(),
        before: looked.before,
        content: crate::secret::KeyBytes::copy_from(&hba::encode(&edit.text, latin1)),
        attrs: looked.attrs,
        attr_source: looked.attr_source,
        transient: false,
    };
    let failure: RefCell<Option<Error>> = RefCell::new(None);
    let verify = || {
        // The file is written, PostgreSQL has not looked at it yet (a test changes it here,
        // as another account could).
        crate::failpoint::hit("ha:hba-written");
        validate().inspect_err(|e| {
            *failure.borrow_mut() = Some(match e {
                Error::HaFailed { why, reason } => Error::ha_failed(why.clone(), reason.clone()),
                other => Error::ha_failed(other.to_string(), HaReason::HbaCheckFailed),
            })
        })
    };
    match crate::txn::apply(&ctx, vec![change], &verify) {
        Ok(applied) => {
            report.backup = applied.backup_dir.map(|d| d.join("pg_hba.conf"));
            Ok(report)
        }
        // A file that could not be put back (another account changed it after keyferry's
        // write) is said as it is, never as "put back".
        Err(Error::RecoveryConflict(c)) => Err(Error::HaFailed {
            why: format!(
                "{}; and {} could not be put back: {c}",
                failure
                    .into_inner()
                    .map(|f| f.to_string())
                    .unwrap_or_else(|| "the edit failed".into()),
                path.display()
            ),
            reason: HaReason::HbaChangedAfterWrite,
        }),
        // Put back: said so, with what follows for the server (`put_back`).
        Err(e) => Err(match failure.into_inner() {
            Some(Error::HaFailed { why, reason }) => Error::HaFailed {
                why: format!("{why}; the file was put back as it was{put_back}"),
                reason,
            },
            Some(other) => other,
            None => e,
        }),
    }
}

/// Errors PostgreSQL reports for the `pg_hba.conf` on disk, as `line N: error`. A line it
/// refuses without a word there (PostgreSQL 15 does for some RADIUS options: the row has no
/// type and no error, and the file is not loaded) counts too.
fn file_errors(client: &mut pg::Client, node: &HaNode) -> Result<Vec<String>> {
    let rows = pg::query(
        client,
        node,
        "SELECT line_number, coalesce(error, 'refused (see the server log)') \
         FROM pg_hba_file_rules WHERE error IS NOT NULL OR type IS NULL ORDER BY 1",
        &[],
    )?;
    Ok(rows
        .iter()
        .map(|r| {
            let line: Option<i32> = r.get(0);
            let err: String = r.get(1);
            match line {
                Some(l) => format!("line {l}: {err}"),
                None => err,
            }
        })
        .collect())
}

/// `ha hba` on the local running server: finds the file, edits it, has PostgreSQL check it,
/// reloads and confirms the reload.
pub fn edit_server(
    conn: &pg::Connector<'_>,
    node: &HaNode,
    override_reject: bool,
    dry_run: bool,
) -> Result<HbaReport> {
    let mut client = match conn.try_admin(node) {
        Ok(c) => c,
        // A fresh install takes only local connections, so keyferry's network login is
        // refused (or the server is down): on its own node keyferry knows the data folder,
        // edits the file there and has the server reload it without a login.
        Err(e)
            if matches!(e.kind, pg::Failure::LoginRefused | pg::Failure::NoAnswer)
                && node.data.is_some()
                && pg::is_local_address(node.addr) =>
        {
            return edit_local(conn, node, override_reject, dry_run, e.error);
        }
        Err(e) => return Err(e.error),
    };
    let row = pg::query_one(&mut client, node, "SHOW hba_file", &[])?;
    let path = PathBuf::from(row.get::<_, String>(0));
    // The file is read as this server reads it.
    let version = pg::query_one(&mut client, node, "SHOW server_version_num", &[])?;
    let server = hba::Server::version(
        version
            .get::<_, String>(0)
            .parse::<u32>()
            .map_or(15, |n| n / 10_000),
    );
    let errors = file_errors(&mut client, node)?;
    if !errors.is_empty() {
        return Err(Error::HaRefused {
            why: format!(
                "PostgreSQL already rejects {} as it is ({}): the server runs on older rules",
                path.display(),
                errors.join("; ")
            ),
            reason: HaReason::HbaAlreadyRejected,
        });
    }
    let client = RefCell::new(client);
    let validate = || -> Result<()> {
        let errors = file_errors(&mut client.borrow_mut(), node)?;
        if errors.is_empty() {
            Ok(())
        } else {
            Err(Error::HaFailed {
                why: format!(
                    "PostgreSQL rejects the edited {} ({})",
                    path.display(),
                    errors.join("; ")
                ),
                reason: HaReason::HbaEditRejected,
            })
        }
    };
    let mut report = edit(
        &peer_rules(conn.pair, override_reject, server),
        node,
        &path,
        dry_run,
        &validate,
        " and the server was not reloaded: it keeps its rules",
    )?;
    if dry_run || !report.changed {
        return Ok(report);
    }
    let mut client = client.into_inner();
    let before: std::time::SystemTime =
        pg::query_one(&mut client, node, "SELECT pg_conf_load_time()", &[])?.get(0);
    pg::query_one(&mut client, node, "SELECT pg_reload_conf()", &[])?;
    let reloaded = super::server::wait_for(Duration::from_secs(15), || {
        let mut c = conn.admin(node)?;
        let t: std::time::SystemTime =
            pg::query_one(&mut c, node, "SELECT pg_conf_load_time()", &[])?.get(0);
        Ok(t > before)
    })?;
    if !reloaded {
        return Err(Error::HaFailed {
            why: format!(
                "{} was written (backup {}) but the server did not reload within 15 s",
                path.display(),
                report
                    .backup
                    .as_deref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            ),
            reason: HaReason::HbaNotReloaded,
        });
    }
    report.reloaded = true;
    Ok(report)
}

/// `ha hba` on this node's server without a network login: `<data>/pg_hba.conf` edited
/// through the transaction engine, then `pg_ctl reload` as the service account; the edit
/// stands once keyferry's login goes through and PostgreSQL reports no error in the file
/// (`pg_hba_file_rules`), else the file is put back and reloaded again. A server that does
/// not run gets the file for its next start.
fn edit_local(
    conn: &pg::Connector<'_>,
    node: &HaNode,
    override_reject: bool,
    dry_run: bool,
    refused: Error,
) -> Result<HbaReport> {
    let data = node.data_dir()?.to_owned();
    let path = data.join("pg_hba.conf");
    if !path.exists() {
        return Err(Error::HaRefused {
            why: format!(
                "keyferry cannot log in to {} ({refused}) and {} has no pg_hba.conf (the \
                 server's file is elsewhere, as on Debian's /etc/postgresql)",
                node.name,
                data.display()
            ),
            reason: HaReason::HbaElsewhere,
        });
    }
    let running = super::server::is_running(node, &data)?;
    let validate = || -> Result<()> {
        if !running {
            return Ok(());
        }
        super::server::reload(node, &data)?;
        let mut last = String::new();
        // The postmaster reads the file at the reload signal; a login still refused five
        // seconds later is a file PostgreSQL did not take, or a login failing for another reason.
        let ok = super::server::wait_for(Duration::from_secs(5), || match conn.try_admin(node) {
            Ok(mut c) => {
                let errors = file_errors(&mut c, node)?;
                if errors.is_empty() {
                    return Ok(true);
                }
                last = errors.join("; ");
                Err(Error::HaFailed {
                    why: format!("PostgreSQL rejects the edited {} ({last})", path.display()),
                    reason: HaReason::HbaEditRejected,
                })
            }
            Err(e) => {
                last = e.error.to_string();
                Ok(false)
            }
        });
        match ok {
            Ok(true) => Ok(()),
            Ok(false) | Err(_) => {
                let why = match ok {
                    Err(e) => e.to_string(),
                    _ => format!(
                        "after the edit and a reload keyferry still cannot log in ({last}): \
                         PostgreSQL did not take the file, or the login fails for another reason"
                    ),
                };
                Err(Error::HaFailed {
                    why,
                    reason: HaReason::HbaLoginRefused,
                })
            }
        }
    };
    // The server's version from its data folder (it cannot be asked).
    let server = hba::Server::version(
        crate::fs::read_bounded(&data.join("PG_VERSION"), 64, "PG_VERSION")
            .ok()
            .and_then(|b| String::from_utf8_lossy(&b).trim().parse().ok())
            .unwrap_or(15),
    );
    let result = edit(
        &peer_rules(conn.pair, override_reject, server),
        node,
        &path,
        dry_run,
        &validate,
        " and the server reloaded with it",
    );
    match result {
        Ok(mut report) => {
            report.reloaded = running && report.changed && !dry_run;
            report.local = true;
            Ok(report)
        }
        Err(e) => {
            // The file is back as it was: the server reads it again.
            if running && !dry_run {
                let _ = super::server::reload(node, &data);
            }
            Err(e)
        }
    }
}

/// Whether the text lets `c` in (for checks).
pub fn admits(text: &str, c: &Connection) -> bool {
    hba::parse(text).admits(c)
}
