//! `ha replica init`: this node becomes a streaming replica of its peer, its data folder
//! replaced by a copy through a journaled swap.

use super::*;

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
    pub(super) by_rejoin: bool,
}

impl InitOptions {
    /// The options of an init: keep the old data folder unless `remove_old`; replace the database
    /// only of the node named in `replace_database_of`; plan only with `dry_run`.
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
    /// The node made a replica.
    pub node: String,
    /// The primary it copies.
    pub primary: String,
    /// Nothing was changed: the plan alone.
    pub dry_run: bool,
    /// Its data folder.
    pub data: PathBuf,
    /// The replication slot it streams from.
    pub slot: String,
    /// Bytes copied.
    pub bytes: i64,
    /// Seconds the whole init took.
    pub seconds: f64,
    /// Seconds per phase: preflight, stop, copy, settings (and the swap), start, streaming,
    /// cleanup (removing the old folder).
    pub phases: Vec<(String, f64)>,
    /// The old data folder, kept (the way back) unless `--remove-old`.
    pub old_folder: Option<PathBuf>,
    /// The server whose data folder is replaced, and the one copied, as seen before.
    pub replaced: ServerFacts,
    /// The primary as seen before.
    pub source: ServerFacts,
    /// Server settings keyferry changed (or, in a dry run, would change), each with how to
    /// put it back.
    pub settings_changed: Vec<String>,
    /// Where the Archive folder's entries were moved (`--empty-archive`).
    pub archive_backup: Option<PathBuf>,
    /// What the run does, step by step (the whole report of a dry run).
    pub plan: Vec<String>,
    /// What the admin should know.
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
    let _lock = lock_for_init(replica, opts.dry_run, say)?;
    // Preflight: nothing changes until all of it holds.
    check_this_node(replica, opts)?;
    let dd = DataDir::open(&data)?;
    let (new_n, failed_n) = (dd.sibling(".keyferry-new"), dd.sibling(".keyferry-failed"));
    for n in [&new_n, &failed_n] {
        if dd.present(n)? {
            return Err(refused(
                format!("{} is left from an earlier run", dd.join(n).display()),
                HaReason::LeftOver,
            ));
        }
    }
    let (mut pc, source, local_facts) = check_facts(conn, replica, opts, &dd)?;
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
    let (old_suffix, old_n) = old_folder_name(&dd)?;
    let archive = archive_entries(replica)?;
    let archive_backup = archive.as_ref().map(|(ad, _)| {
        ad.sibling(&format!(
            ".keyferry-old-{}",
            crate::time::Timestamp::now().compact()
        ))
    });
    let plan = Steps {
        replica,
        opts,
        dd: &dd,
        new_n: &new_n,
        old_n: &old_n,
        bytes,
        role: running.then_some(local_facts.role.as_str()),
        takeover,
        slot_exists,
        setting: setting.as_deref(),
    }
    .words(
        pair,
        archive.as_ref(),
        archive_backup.as_deref(),
        &mut warnings,
    );
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
        "making {} a replica of {}: stopping its server and copying {}...",
        replica.name,
        primary.name,
        crate::text::size_i64(bytes)
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
    let now = crate::time::Timestamp::now();
    let mut journal = crate::ha::swap::SwapJournal {
        id: crate::fs::record::change_id(now),
        node: replica.name.clone(),
        data: data.clone(),
        old_suffix,
        old_id: dd.data()?.id()?,
        was_running: running,
        stage: crate::ha::swap::Stage::Copying,
        started: now.to_string(),
    };
    journal.save(&replica.state_dir)?;
    let _ended = crate::ha::swap::Ended(&replica.state_dir);
    crate::failpoint::hit("ha:replica-journaled");
    let restart_old = |why: Error| -> Error {
        if running {
            if let Err(e) = server::start(replica, &data) {
                return failed(
                    format!("{why}; starting the old server again also failed: {e}"),
                    HaReason::OldServerNotStarted,
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
        let r = 'copy: {
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
                Ok(false) => {
                    break 'copy Err(refused(
                        format!("{} appeared during the run", new.display()),
                        HaReason::AppearedDuringRun,
                    ))
                }
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
                HaReason::SlotStillInUse,
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
        .reach(crate::ha::swap::Stage::MovingOld, &replica.state_dir)
        .map_err(&undo)?;
    dd.rename(&data_n, &old_n).map_err(&undo)?;
    crate::failpoint::hit("ha:replica-old-moved");
    let moved = journal.reach(crate::ha::swap::Stage::MovingNew, &replica.state_dir);
    if let Err(e) = moved.and_then(|()| dd.rename(&new_n, &data_n)) {
        let _ = dd.rename(&old_n, &data_n);
        return Err(undo(e));
    }
    crate::failpoint::hit("ha:replica-swapped");
    phase("settings");
    let streaming = journal
        .reach(crate::ha::swap::Stage::Starting, &replica.state_dir)
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
                HaReason::CopyDidNotStart {
                    log: server::start_log(&data),
                },
            )));
        }
    }
    phase("streaming");
    // Done: the new folder streams. The journal goes before the old folder may be removed
    // (a removal cut off is not a swap to roll back).
    crate::ha::swap::SwapJournal::remove(&replica.state_dir)?;
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

/// What an init will do, as the preflight decided it: the words of its plan (the whole
/// report of a dry run).
struct Steps<'a> {
    replica: &'a HaNode,
    opts: &'a InitOptions,
    dd: &'a DataDir,
    new_n: &'a OsStr,
    old_n: &'a OsStr,
    /// The primary's size.
    bytes: i64,
    /// This node's server's role, when it runs (it is stopped first).
    role: Option<&'a str>,
    /// The node's slot is in use by its old server, and is taken over once that has stopped.
    takeover: bool,
    slot_exists: bool,
    /// A server setting the init changes on the primary, with how to put it back.
    setting: Option<&'a str>,
}

impl Steps<'_> {
    /// The plan, step by step; the Archive folder's entries are a step with
    /// `--empty-archive`, else a warning.
    fn words(
        &self,
        pair: &Pair,
        archive: Option<&(DataDir, usize)>,
        archive_backup: Option<&OsStr>,
        warnings: &mut Vec<String>,
    ) -> Vec<String> {
        let (replica, primary) = (self.replica, pair.peer_of(self.replica));
        let mut plan = Vec::new();
        if let (Some((ad, n)), Some(b)) = (archive, archive_backup) {
            if self.opts.empty_archive {
                plan.push(format!(
                    "empty the Archive folder {} (the vendor's step before configuring HA): its \
                     {n} entries moved to {} as a backup",
                    ad.path().display(),
                    ad.join(b).display()
                ));
            } else {
                warnings.push(format!(
                    "the Archive folder {} holds {n} {}; the vendor's procedure empties it on \
                     both nodes before configuring HA: --empty-archive moves them aside (a \
                     backup) first",
                    ad.path().display(),
                    if *n == 1 { "entry" } else { "entries" }
                ));
            }
        }
        if let Some(role) = self.role {
            plan.push(format!(
                "stop {}'s server ({role}) at once; its data is about to be replaced",
                replica.name
            ));
        }
        plan.push(format!(
            "copy {} ({}) with pg_basebackup into {}",
            primary.name,
            crate::text::size_i64(self.bytes),
            self.dd.join(self.new_n).display()
        ));
        let slot = replica.slot();
        plan.push(match (self.takeover, self.slot_exists) {
            (true, _) => format!(
                "take over replication slot {slot} on {} once the old server has let go of it",
                primary.name
            ),
            (false, true) => format!("use replication slot {slot} on {}", primary.name),
            (false, false) => format!(
                "create replication slot {slot} on {} (removed again if the run fails)",
                primary.name
            ),
        });
        if let Some(what) = self.setting {
            plan.push(format!("set {what}"));
        }
        plan.push(format!(
            "write standby.signal and primary_conninfo ({}) into the copy; put back {}'s own \
             port, listen_addresses and configuration files",
            tls_settings(pair).trim(),
            replica.name
        ));
        plan.push(if self.opts.remove_old {
            "swap the folders; remove the old data folder once the replica streams (--remove-old)"
                .to_owned()
        } else {
            format!(
                "swap the folders; keep the old data folder as {} (the way back)",
                self.dd.join(self.old_n).display()
            )
        });
        plan.push(format!(
            "start {}'s server and wait up to {} s until it streams; if it does not, put the \
             old folder back and start it",
            replica.name,
            STREAM_WAIT.as_secs()
        ));
        plan
    }
}

/// The preflight's facts: the primary (open, checked: `check_primary`), and this node's
/// server against it: the same major version here as there, and consent where the copy would
/// replace a database of its own (`--replace-database-of`; a rejoin has decided that).
fn check_facts(
    conn: &Connector<'_>,
    replica: &HaNode,
    opts: &InitOptions,
    dd: &DataDir,
) -> Result<(pg::Client, ServerFacts, ServerFacts)> {
    let primary = conn.pair.peer_of(replica);
    let mut pc = check_primary(conn, primary, replica)?;
    let source = facts::remote_with(&mut pc, primary)?;
    let (local_facts, _) = facts::local(conn, replica, dd)?;
    let bin_major = server::bin_major(replica)?;
    let mut programs = local_facts.clone();
    programs.major = bin_major;
    if let Some(why) = facts::same_major(&programs, &source, "a replica") {
        return Err(refused(
            why,
            HaReason::MajorVersion {
                major: source.major.unwrap_or(0),
                node: replica.name.clone(),
            },
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
                    HaReason::ReplaceNeedsConsent {
                        node: replica.name.clone(),
                    },
                ));
            }
        }
    }
    Ok((pc, source, local_facts))
}

/// The node's lock for an init, taken once an earlier swap cut off on the node is rolled
/// back (said through `say`). A dry run takes no lock and changes nothing: it refuses while
/// such a swap is there.
fn lock_for_init(
    replica: &HaNode,
    dry_run: bool,
    say: &dyn Fn(&str),
) -> Result<Option<crate::txn::NodeLock>> {
    if dry_run {
        if let Some(j) = crate::ha::swap::SwapJournal::load(&replica.state_dir)? {
            return Err(refused(
                format!(
                    "a replica init begun {} on {} was cut off {}",
                    j.started,
                    j.node,
                    j.stage.words()
                ),
                HaReason::SwapCutOff,
            ));
        }
        return Ok(None);
    }
    let lock =
        crate::txn::NodeLock::acquire(&replica.state_dir, &replica.name, crate::txn::DEFAULT_WAIT)?;
    if let Some(done) = crate::ha::swap::recover(replica)? {
        say(&done);
    }
    Ok(Some(lock))
}

/// Refuses to run anywhere but on the node that becomes the replica, and a
/// `--replace-database-of` that names another node.
fn check_this_node(replica: &HaNode, opts: &InitOptions) -> Result<()> {
    check_here(replica, "ha replica init")?;
    if let Some(named) = &opts.replace_database_of {
        if !named.eq_ignore_ascii_case(&replica.name) {
            return Err(refused(
                format!(
                    "--replace-database-of names {named}, but this is node {} (the node whose \
                     database is replaced)",
                    replica.name
                ),
                HaReason::WrongNodeNamed,
            ));
        }
    }
    Ok(())
}

/// The name beside the data folder that the old folder takes once moved aside: its suffix
/// (kept in the swap's journal) and the name, one no entry has yet.
fn old_folder_name(dd: &DataDir) -> Result<(String, OsString)> {
    let stamp = crate::time::Timestamp::now().compact();
    let mut suffix = format!(".keyferry-old-{stamp}");
    let mut i = 1;
    while dd.present(&dd.sibling(&suffix))? {
        i += 1;
        suffix = format!(".keyferry-old-{stamp}-{i}");
    }
    let name = dd.sibling(&suffix);
    Ok((suffix, name))
}

/// The node's Archive folder and how many entries it holds, when it holds any (the vendor
/// empties it on both nodes before configuring HA).
fn archive_entries(replica: &HaNode) -> Result<Option<(DataDir, usize)>> {
    let Some(a) = &replica.archive else {
        return Ok(None);
    };
    let ad = match DataDir::open(a) {
        Ok(ad) => ad,
        Err(Error::FolderMissing { .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    let n = match ad.data() {
        Ok(d) => d.names()?.len(),
        Err(Error::FolderMissing { .. }) => 0,
        Err(e) => return Err(e),
    };
    Ok((n > 0).then_some((ad, n)))
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
            HaReason::NoSpace,
        ));
    }
    Ok(())
}
