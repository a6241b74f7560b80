//! The checks before an upgrade's first step (`keyferry upgrade preflight`): every node
//! reachable, room for what keyferry keeps (the previous application folder beside the new
//! one, replaced key files, the run's record), the clocks, and for an HA pair that the cluster
//! file's primary is the server running as primary. Each check is a row with an outcome; a
//! failed one stops the upgrade before it changes anything.

use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Duration;

pub use crate::finding::Severity;

/// The stable codes of the preflight's rows: what was checked.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    strum::IntoStaticStr,
    strum::Display,
)]
#[serde(rename_all = "kebab-case")]
#[strum(serialize_all = "kebab-case")]
pub enum Code {
    /// The node answers (locally, or its keyferry over ssh).
    Reach,
    /// Its key set against the primary's.
    Keys,
    /// Its application binaries against the primary's.
    Binaries,
    /// Its clock against this machine's.
    Clock,
    /// keyferry can write where a step writes.
    Write,
    /// Room for what a step writes and keeps.
    Room,
    /// The folder sync's plan.
    Sync,
    /// The node's state folder.
    State,
    /// The HA pair's roles against the cluster file.
    Roles,
}

/// One row of the preflight: the shared finding model, with what was checked as its code
/// and a message that says what to do when it fails.
pub type Check = crate::finding::Finding<Code>;

/// A row for `node`.
pub fn row(node: &str, code: Code, severity: Severity, message: impl Into<String>) -> Check {
    Check::new(code, severity, Some(node), message, None)
}

/// A row for `node` that says what to do (`fix`).
pub fn row_fix(
    node: &str,
    code: Code,
    severity: Severity,
    message: impl Into<String>,
    fix: impl Into<String>,
) -> Check {
    Check::new(code, severity, Some(node), message, Some(fix.into()))
}

/// Room kept free beyond the bytes a step writes (logs, journals, the file system's own).
pub const SLACK: u64 = 16 << 20;

pub use crate::fs::{probe_time, skew_seconds};

/// The clock check for a node whose clock is `skew` seconds off this machine's, measured
/// `how`.
pub fn clock(node: &str, skew: i64, max: Duration, how: &str) -> Check {
    if skew.unsigned_abs() > max.as_secs() {
        row_fix(
            node,
            Code::Clock,
            Severity::Error,
            format!(
                "{how} is {skew:+} s off this machine's (more than {} s): the vendor says the \
                 web servers' dates must match (Secret Server 8.9.300000 and earlier: \
                 \"Server dates don't match\", and audit records could be wrong), and a \
                 cluster's records are only in order when its clocks are",
                max.as_secs()
            ),
            "set the time right (Windows: w32tm /resync; Linux: chronyc makestep), then run again",
        )
    } else {
        row(
            node,
            Code::Clock,
            Severity::Ok,
            format!("{how}: {skew:+} s"),
        )
    }
}

/// What a target keeps beside it for rollback, for [`room`]: how many kept trees, the bytes
/// they hold of their own, and the bytes the next sync frees by retiring the oldest beyond
/// its `--keep`.
#[derive(Debug, Clone, Copy, Default)]
pub struct KeptRoom {
    /// How many trees are kept.
    pub trees: usize,
    /// The bytes they hold that nothing else shares.
    pub own_bytes: u64,
    /// The bytes the next sync frees, retiring the trees beyond its `--keep`.
    pub freed_by_sync: u64,
}

/// Whether `free` bytes (and what the sync frees by retiring old kept trees) hold a new copy
/// of `source` bytes (a tenth more, for a new version that is larger, and [`SLACK`]) beside
/// the folder `target`, which stays as the newest kept tree.
pub fn room(node: &str, target: &Path, free: u64, source: u64, kept: KeptRoom) -> Check {
    let need = source.saturating_add(source / 10).saturating_add(SLACK);
    let mib = |b: u64| b.div_ceil(1 << 20);
    let have = free.saturating_add(kept.freed_by_sync);
    let kept_note = if kept.trees == 0 {
        String::new()
    } else {
        format!(
            "; {} kept tree{} beside it hold{} {} MiB of their own{}",
            kept.trees,
            if kept.trees == 1 { "" } else { "s" },
            if kept.trees == 1 { "s" } else { "" },
            mib(kept.own_bytes),
            if kept.freed_by_sync > 0 {
                format!(
                    ", of which the sync retires {} MiB first",
                    mib(kept.freed_by_sync)
                )
            } else {
                String::new()
            }
        )
    };
    if have < need {
        row_fix(
            node,
            Code::Room,
            Severity::Error,
            format!(
                "{} MiB free beside {}{kept_note}; the sync builds the new folder there and \
                 keeps the old one for sync rollback: it needs about {} MiB ({} MiB of \
                 application folder, a tenth more for a larger version, {} MiB spare)",
                mib(free),
                target.display(),
                mib(need),
                mib(source),
                SLACK >> 20
            ),
            "free space there (fewer kept trees: keyferry sync --keep N), then run again",
        )
    } else {
        row(
            node,
            Code::Room,
            Severity::Ok,
            format!(
                "{} MiB free beside {} for the new folder (about {} MiB needed){kept_note}",
                mib(free),
                target.display(),
                mib(need)
            ),
        )
    }
}

/// The state folder `dir` (where keyferry keeps replaced key files, journals and the run's
/// record on this node): writable, with room. A folder not made yet is checked through the
/// nearest one that exists.
pub fn state_folder(node: &str, dir: &Path) -> Check {
    let mut at = dir;
    while !at.is_dir() {
        match at.parent() {
            Some(p) if !p.as_os_str().is_empty() => at = p,
            _ => {
                return row_fix(
                    node,
                    Code::State,
                    Severity::Error,
                    format!("no folder of {} exists", dir.display()),
                    "check the node's state_dir in the cluster file (or --state-dir)",
                )
            }
        }
    }
    let made = if at == dir {
        String::new()
    } else {
        format!(" (made in {} when first needed)", at.display())
    };
    if let Err(e) = probe_time(at) {
        return row_fix(
            node,
            Code::State,
            Severity::Error,
            format!(
                "keyferry cannot create files in {}: {e}; replaced key files, journals and the \
                 run's record go there",
                at.display()
            ),
            "give this account write access to it, or set state_dir in the cluster file",
        );
    }
    match crate::os::free_space(at) {
        Ok(free) if free < SLACK => row_fix(
            node,
            Code::State,
            Severity::Error,
            format!(
                "{}{made} has {} MiB free; keyferry keeps replaced key files, journals and the \
                 run's record there",
                dir.display(),
                free >> 20
            ),
            format!("free at least {} MiB there", SLACK >> 20),
        ),
        Ok(free) => row(
            node,
            Code::State,
            Severity::Ok,
            format!("{}{made}: writable, {} MiB free", dir.display(), free >> 20),
        ),
        Err(e) => row(
            node,
            Code::State,
            Severity::Warning,
            format!(
                "{}{made}: writable; free space unknown ({e})",
                dir.display()
            ),
        ),
    }
}

/// The HA roles check from the pair's status (`keyferry ha status`): the pair healthy and
/// the cluster file's primary `want` running as the primary (the upgrade starts with a
/// failover there).
pub fn roles(want: &str, status: &crate::ha::status::PairStatus) -> Check {
    use crate::ha::status::{Role, Verdict};
    let running = status
        .nodes
        .iter()
        .find(|n| n.role == Role::RunningPrimary)
        .map(|n| n.node.as_str());
    let majors: Vec<(&str, &str)> = status
        .nodes
        .iter()
        .filter_map(|n| {
            let v = n.version.as_deref()?;
            Some((n.node.as_str(), v.split(['.', ' ']).next()?))
        })
        .collect();
    if let [(a, va), (b, vb)] = majors.as_slice() {
        if va != vb {
            return row_fix(
                want,
                Code::Roles,
                Severity::Error,
                format!(
                    "{a} runs PostgreSQL {va} and {b} PostgreSQL {vb}: a replica cannot stream \
                     across major versions"
                ),
                "make the older node a replica of the newer afresh (keyferry ha replica init \
                 there, after installing the newer PostgreSQL and pointing the cluster file's \
                 [ha] bin and data at it)",
            );
        }
    }
    match running {
        Some(actual) if actual != want => row_fix(
            want,
            Code::Roles,
            Severity::Error,
            format!(
                "the cluster file's primary is {want} but {actual} runs as the primary (an \
                 earlier failover?)"
            ),
            format!(
                "make the cluster file say which node is the primary now (role = \"primary\"), \
                 or fail back first (keyferry ha failover on {actual})"
            ),
        ),
        _ if status.verdict != Verdict::Healthy => row_fix(
            want,
            Code::Roles,
            Severity::Error,
            format!(
                "the pair is {}{}",
                serde_json::to_value(status.verdict)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                if status.problems.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", status.problems.join("; "))
                }
            ),
            "keyferry ha status shows it; bring the pair back (keyferry ha rejoin, docs/ha.md) \
             before upgrading",
        ),
        _ => row(
            want,
            Code::Roles,
            Severity::Ok,
            format!("{want} runs as the primary, its replica streams (ha status: healthy)"),
        ),
    }
}

/// `keyferry upgrade preflight --json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Preflight {
    /// The cluster's name.
    pub cluster: String,
    /// The node it ran on.
    pub node: String,
    /// No check failed.
    pub ok: bool,
    /// Every check, node by node.
    pub checks: Vec<Check>,
}

impl Preflight {
    /// The report of `checks`, run on `node`.
    pub fn new(cluster: &str, node: &str, checks: Vec<Check>) -> Preflight {
        Preflight {
            cluster: cluster.to_owned(),
            node: node.to_owned(),
            ok: crate::finding::errors(&checks) == 0,
            checks,
        }
    }

    /// How many checks came out as `s`.
    pub fn count(&self, s: Severity) -> usize {
        self.checks.iter().filter(|c| c.severity == s).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::SystemTime;

    #[test]
    fn a_clock_fails_beyond_the_limit_either_way() {
        let max = Duration::from_secs(60);
        assert_eq!(clock("a", 60, max, "x").severity, Severity::Ok);
        assert_eq!(clock("a", -60, max, "x").severity, Severity::Ok);
        assert_eq!(clock("a", 61, max, "x").severity, Severity::Error);
        let c = clock("a", -600, max, "its report");
        assert_eq!(c.severity, Severity::Error);
        assert!(c.message.contains("-600 s"), "{}", c.message);
        let now = SystemTime::now();
        assert_eq!(skew_seconds(now + Duration::from_secs(5), now), 5);
        assert_eq!(skew_seconds(now - Duration::from_secs(5), now), -5);
    }

    #[test]
    fn room_counts_the_new_copy_a_tenth_and_the_slack() {
        let t = Path::new("/srv/app");
        let source = 100 << 20;
        let need = source + source / 10 + SLACK;
        let none = KeptRoom::default();
        assert_eq!(room("a", t, need, source, none).severity, Severity::Ok);
        let short = room("a", t, need - 1, source, none);
        assert_eq!(short.severity, Severity::Error);
        assert!(
            short.message.contains("needs about 126 MiB"),
            "{}",
            short.message
        );
        // The kept trees are counted: what the sync retires first makes up the shortfall.
        let kept = KeptRoom {
            trees: 3,
            own_bytes: 60 << 20,
            freed_by_sync: 1,
        };
        let ok = room("a", t, need - 1, source, kept);
        assert_eq!(ok.severity, Severity::Ok, "{}", ok.message);
        assert!(
            ok.message
                .contains("3 kept trees beside it hold 60 MiB of their own"),
            "{}",
            ok.message
        );
        let kept = KeptRoom {
            freed_by_sync: 0,
            ..kept
        };
        let short = room("a", t, need - 1, source, kept);
        assert_eq!(short.severity, Severity::Error);
        assert!(
            short
                .fix
                .as_deref()
                .unwrap_or_default()
                .contains("--keep N"),
            "{short:?}"
        );
    }

    #[test]
    fn the_probe_leaves_nothing_and_reads_this_file_systems_time() {
        let dir = tempfile::tempdir().unwrap();
        let before = SystemTime::now() - Duration::from_secs(2);
        let t = probe_time(dir.path()).unwrap();
        assert!(t >= before && t <= SystemTime::now() + Duration::from_secs(2));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        assert!(probe_time(&dir.path().join("absent")).is_err());
    }

    #[test]
    fn the_state_folder_is_checked_through_the_nearest_existing_one() {
        let dir = tempfile::tempdir().unwrap();
        let c = state_folder("a", &dir.path().join("state").join("deeper"));
        assert_eq!(c.severity, Severity::Ok, "{}", c.message);
        assert!(c.message.contains("made in"), "{}", c.message);
        assert!(!dir.path().join("state").exists());
    }

    /// A pair's status as `ha status --json` writes it, read through its type.
    fn status_of(mut v: serde_json::Value) -> crate::ha::status::PairStatus {
        for n in v["nodes"].as_array_mut().into_iter().flatten() {
            n["address"] = json!("10.0.0.1");
            n["port"] = json!(5432);
            n["replicas"] = json!([]);
            n["slots"] = json!([]);
        }
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn roles_need_the_files_primary_running_and_a_healthy_pair() {
        let mixed = json!({"verdict": "degraded", "problems": [], "nodes": [
            {"node": "nps1", "role": "running-primary", "version": "16.4"},
            {"node": "nps2", "role": "running-primary", "version": "12.19 (Ubuntu)"}]});
        let c = roles("nps1", &status_of(mixed));
        assert_eq!(c.severity, Severity::Error);
        assert!(
            c.message.contains("PostgreSQL 16 and nps2 PostgreSQL 12"),
            "{}",
            c.message
        );
        let status = |primary: &str, verdict: &str| {
            status_of(
                json!({"verdict": verdict, "problems": ["nps2 does not stream"], "nodes": [
                    {"node": "nps1", "role": if primary == "nps1" { "running-primary" } else { "running-replica" }},
                    {"node": "nps2", "role": if primary == "nps2" { "running-primary" } else { "running-replica" }},
                ]}),
            )
        };
        assert_eq!(
            roles("nps1", &status("nps1", "healthy")).severity,
            Severity::Ok
        );
        let swapped = roles("nps1", &status("nps2", "healthy"));
        assert_eq!(swapped.severity, Severity::Error);
        assert!(swapped.message.contains("nps2 runs as the primary"));
        let degraded = roles("nps1", &status("nps1", "degraded"));
        assert_eq!(degraded.severity, Severity::Error);
        assert!(degraded.message.contains("degraded (nps2 does not stream)"));
        let unknown = status_of(json!({"verdict": "unknown", "problems": [], "nodes": []}));
        assert_eq!(roles("nps1", &unknown).severity, Severity::Error);
    }
}
