//! `ha rejoin`: a former primary becomes a replica of the new one again (pg_rewind, or a
//! fresh copy through `init`).

use super::*;

/// How `ha rejoin` is to go.
#[derive(Debug, Clone, Default)]
pub struct RejoinOptions {
    /// Plan only; change nothing.
    pub dry_run: bool,
    /// When rejoin falls back to a fresh copy: remove the old folder once it streams.
    pub remove_old: bool,
}

/// How `ha rejoin` brings a former primary back: `pg_rewind`, or a fresh copy when it
/// cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RejoinMethod {
    /// `pg_rewind` from the primary: only what differs is copied.
    Rewind,
    /// A fresh base backup (as `ha replica init`), the old data folder kept.
    BaseBackup,
}

impl std::fmt::Display for RejoinMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RejoinMethod::Rewind => "rewind",
            RejoinMethod::BaseBackup => "base-backup",
        })
    }
}

/// What `ha rejoin` did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RejoinReport {
    /// The node rejoined.
    pub node: String,
    /// The primary it follows.
    pub primary: String,
    /// Nothing was changed: the plan alone.
    pub dry_run: bool,
    /// How the node was made a replica again.
    pub method: RejoinMethod,
    /// Why `pg_rewind` could not be used, when it could not.
    pub why_not_rewind: Option<String>,
    /// Seconds it took.
    pub seconds: f64,
    /// A fresh copy's kept old data folder.
    pub old_folder: Option<PathBuf>,
    /// Replication slots keyferry removed because nothing uses them any more.
    pub removed_slots: Vec<String>,
    /// Server settings keyferry changed (or would change), each with how to put it back.
    pub settings_changed: Vec<String>,
    /// What the run does, step by step.
    pub plan: Vec<String>,
    /// What the admin should know.
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
    check_here(node, "ha rejoin")?;
    let dd = DataDir::open(&data)?;
    let (local_facts, ctl) = facts::local(conn, node, &dd)?;
    let setting = check_rejoin(conn, node, &local_facts)?;
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
    let report =
        |method: RejoinMethod, why: Option<String>, seconds, old_folder, warnings| RejoinReport {
            node: node.name.clone(),
            primary: primary.name.clone(),
            dry_run: opts.dry_run,
            method,
            why_not_rewind: why,
            seconds,
            old_folder,
            removed_slots: Vec::new(),
            settings_changed: setting.iter().cloned().collect(),
            plan: plan.clone(),
            warnings,
        };
    let method = if no_rewind.is_some() {
        RejoinMethod::BaseBackup
    } else {
        RejoinMethod::Rewind
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
            RejoinMethod::BaseBackup,
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
            HaReason::RewoundNotStreaming {
                node: node.name.clone(),
                log: server::start_log(&data),
            },
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
        RejoinMethod::Rewind,
        None,
        started.elapsed().as_secs_f64(),
        None,
        warnings,
    );
    r.removed_slots = removed;
    Ok(r)
}

/// Refuses a rejoin the facts do not allow, before anything changes: this node the running
/// primary (nothing to rejoin, or split brain), a database that is not the peer's, another
/// major version. Returns the server setting the rejoin changes on the primary, if any.
fn check_rejoin(
    conn: &Connector<'_>,
    node: &HaNode,
    local_facts: &ServerFacts,
) -> Result<Option<String>> {
    let (pair, primary) = (conn.pair, conn.pair.peer_of(node));
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
                HaReason::NothingToRejoin {
                    node: node.name.clone(),
                },
            ));
        }
        return Err(refused(
            format!(
                "{} runs as a primary too (split brain): rejoining it throws away its writes since the failover",
                node.name
            ),
            HaReason::SplitBrain,
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
            HaReason::DifferentDatabases {
                node: node.name.clone(),
            },
        ));
    }
    let mut programs = local_facts.clone();
    programs.major = server::bin_major(node)?;
    for (l, what) in [(local_facts, "a rewind"), (&programs, "a replica")] {
        if let Some(why) = facts::same_major(l, &source, what) {
            return Err(refused(
                why,
                HaReason::RejoinNeedsCopy {
                    node: node.name.clone(),
                    major: source.major.unwrap_or(0),
                },
            ));
        }
    }
    Ok(setting)
}
