//! `ha failover`: the replica promoted, the old primary fenced where it may still run.

use super::*;

/// What `ha failover` did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FailoverReport {
    /// The primary before.
    pub old_primary: String,
    /// The primary after.
    pub new_primary: String,
    /// A planned failover (the old primary answered and was stopped cleanly), not a lost one.
    pub planned: bool,
    /// Nothing was changed: the plan alone.
    pub dry_run: bool,
    /// The timeline before the promotion.
    pub timeline_before: Option<u32>,
    /// The timeline after it.
    pub timeline_after: Option<u32>,
    /// The old primary's data folder carries `standby.signal`: a start makes it a read-only
    /// standby, never a second writable primary.
    pub fenced: bool,
    /// With `--primary-lost`: what of the old primary still answered.
    pub signs_of_life: Vec<String>,
    /// Replication slots keyferry removed because nothing uses them any more.
    pub removed_slots: Vec<String>,
    /// What the run does, step by step.
    pub plan: Vec<String>,
    /// What the admin does next.
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
/// With `primary_lost`, run anywhere: see `failover_lost`.
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
            HaReason::FailoverOnReplica {
                primary: replica.name.clone(),
            },
        ));
    }
    let mut rc = conn.admin(replica).map_err(|e| {
        refused(
            format!("the replica {} does not answer: {e}", replica.name),
            HaReason::ReplicaDown,
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
            HaReason::NotStreaming,
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
            HaReason::WalNotReceived,
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
            HaReason::PromotionSlow,
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
    let (replica, primary) = in_recovery(conn, local)?;
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
            HaReason::PrimaryNotLost {
                primary: primary.name.clone(),
            },
        ));
    }
    let mut plan = Vec::new();
    let mut rc = conn.admin(replica)?;
    let before = timeline(&mut rc, replica)?;
    let fenced = fence_or_confirm(primary, opts, fencer, &signs, &mut plan)?;
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

/// The node in recovery, the replica, and its peer, the primary said to be lost.
fn in_recovery<'p>(conn: &Connector<'p>, local: &'p HaNode) -> Result<(&'p HaNode, &'p HaNode)> {
    let pair = conn.pair;
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
    found.ok_or_else(|| refused("no node answers as a replica".into(), HaReason::NoReplica))
}

/// Makes sure the lost primary cannot come back as a primary before the replica is
/// promoted: fenced over ssh where its access allows (said in `plan`), else nothing of it may
/// answer and the admin must confirm it off by its name. Returns whether it was fenced.
fn fence_or_confirm(
    primary: &HaNode,
    opts: &FailoverOptions,
    fencer: &dyn LostPrimary,
    signs: &[String],
    plan: &mut Vec<String>,
) -> Result<bool> {
    let fence_over_ssh = !opts.dry_run;
    let mut fenced = false;
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
                    HaReason::FenceOverSshFailed {
                        primary: primary.name.clone(),
                    },
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
            HaReason::PrimaryNotOff {
                primary: primary.name.clone(),
            },
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
                HaReason::LossUnconfirmed {
                    primary: primary.name.clone(),
                },
            ));
        }
        plan.push(format!(
            "{} is confirmed off by its name (nothing of it answers)",
            primary.name
        ));
    }
    Ok(fenced)
}

/// What `ha fence` did.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct FenceReport {
    /// The node fenced.
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
