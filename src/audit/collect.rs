//! Collecting every node's report for the audit (by path, ssh or saved file), bounded in
//! parallel, each node within the time limit whichever way it is read.

use crate::audit::report::{node_report_with_app_files, NodeReport, MAX_REPORT_BYTES};
use crate::cluster::access::{parse_access, Access};
use crate::cluster::{ClusterFile, Node, NodeSpec};
use crate::progress::Progress;
use crate::remote::ssh::{SshClient, SshTarget};
use crate::time::Timestamp;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Settings of one audit.
#[derive(Debug, Clone)]
pub struct AuditOptions {
    /// How many nodes are collected at once.
    pub jobs: usize,
    /// How long one node may take.
    pub timeout: Duration,
    /// The ssh program (default `ssh`) and an optional `-F` config file.
    pub ssh_program: String,
    /// The ssh `-F` config file.
    pub ssh_config: Option<PathBuf>,
    /// Clock difference above which a node is flagged.
    pub max_skew: Duration,
    /// The cluster file as given locally (passed to remote nodes unless `remote_cluster`).
    pub cluster_path: PathBuf,
}

/// What collecting one node gave.
#[derive(Debug, Clone)]
pub enum Collected {
    /// A node report arrived.
    Report {
        /// The report.
        report: Box<NodeReport>,
        /// How it came: `path`, `ssh` or `report` (a saved one).
        via: &'static str,
        /// Per-file hashes of the application folder, when it was read directly.
        app_files: Option<crate::audit::report::AppFiles>,
        /// Local time when the report arrived, for ssh (clock comparison).
        received: Option<Timestamp>,
        /// A node reached by path: how far its file system's clock is from this machine's,
        /// from a file written there and removed at once.
        path_skew: Option<i64>,
    },
    /// No report came: why.
    Unreachable(String),
    /// A report came that keyferry does not accept: why.
    Rejected(String),
}

/// Collects every node's report, `jobs` at a time.
pub fn collect(file: &ClusterFile, opts: &AuditOptions, progress: &dyn Progress) -> Vec<Collected> {
    let base = opts
        .cluster_path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let n = file.nodes.len();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let (tx, rx) = std::sync::mpsc::channel::<(usize, Collected)>();
    let mut out: Vec<Option<Collected>> = vec![None; n];
    progress.items(n as u64);
    std::thread::scope(|s| {
        for _ in 0..opts.jobs.clamp(1, 64).min(n.max(1)) {
            let tx = tx.clone();
            let next = &next;
            let base = &base;
            s.spawn(move || loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if i >= n {
                    break;
                }
                let c = collect_one(file, &file.nodes[i], base, opts);
                if tx.send((i, c)).is_err() {
                    break;
                }
            });
        }
        drop(tx);
        for (i, c) in rx {
            out[i] = Some(c);
            progress.item_done();
        }
    });
    progress.items_finished();
    out.into_iter()
        .map(|c| c.unwrap_or_else(|| Collected::Unreachable("not collected".into())))
        .collect()
}

fn collect_one(file: &ClusterFile, spec: &NodeSpec, base: &Path, opts: &AuditOptions) -> Collected {
    let access = match parse_access(spec.access.as_deref(), base) {
        Ok(a) => a,
        Err(e) => return Collected::Rejected(e.to_string()),
    };
    let result = match &access {
        Access::Ssh { user, host, port } => {
            let target = SshTarget {
                user: user.clone(),
                host: host.clone(),
                port: *port,
                launch: spec.launch(),
            };
            read_by_ssh(spec, &target, opts).map(|r| (r, "ssh", None))
        }
        // Paths and saved files are read in a thread so that a hung share, a FIFO or a
        // slow disk cannot hold the audit past the node's time limit.
        Access::Paths | Access::Path(_) | Access::Report(_) => {
            let (file, spec, access) = (file.clone(), spec.clone(), access.clone());
            within(opts.timeout, move || match &access {
                Access::Report(p) => read_saved(p).map(|r| (r, "report", None)),
                _ => read_by_path(&file, &spec, &access),
            })
        }
    };
    let (report, via, app_files) = match result {
        Ok(x) => x,
        Err(Failure::Unreachable(e)) => return Collected::Unreachable(e),
        Err(Failure::Rejected(e)) => return Collected::Rejected(e),
    };
    if let Err(e) = validate(&report, file, spec) {
        return Collected::Rejected(e);
    }
    let received = matches!(access, Access::Ssh { .. }).then(Timestamp::now);
    // A node reached by path has a clock too: its file system's, where keyferry writes.
    let path_skew = match &access {
        Access::Path(dir) => Some(dir.clone()),
        Access::Paths => spec.first_folder(base),
        _ => None,
    }
    .and_then(|dir| {
        let d = dir.clone();
        within(opts.timeout, move || {
            crate::fs::clock_skew_of(&d).map_err(|e| Failure::Unreachable(e.to_string()))
        })
        .ok()
    });
    Collected::Report {
        report: Box::new(report),
        via,
        app_files,
        received,
        path_skew,
    }
}

enum Failure {
    Unreachable(String),
    Rejected(String),
}

type Read = (
    NodeReport,
    &'static str,
    Option<crate::audit::report::AppFiles>,
);

/// Runs `f` in a thread and waits at most `timeout` for it.
fn within<T: Send + 'static>(
    timeout: Duration,
    f: impl FnOnce() -> Result<T, Failure> + Send + 'static,
) -> Result<T, Failure> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(timeout) {
        Ok(r) => r,
        Err(_) => Err(Failure::Unreachable(format!(
            "no answer within {}s",
            timeout.as_secs()
        ))),
    }
}

fn read_by_path(file: &ClusterFile, spec: &NodeSpec, access: &Access) -> Result<Read, Failure> {
    let mut node = Node::from_cluster(file, spec, Some(std::env::temp_dir()))
        .map_err(|e| Failure::Rejected(e.to_string()))?;
    if let Access::Path(p) = access {
        if node.profile.folders.len() != 1 {
            return Err(Failure::Rejected(format!(
                "access is a single path but profile {} has folders {}; use access = \"paths\"",
                node.profile.id,
                node.profile.folders.join(", ")
            )));
        }
        node.folders
            .insert(node.profile.folders[0].clone(), p.clone());
    }
    if node.profile.role_needs_keys(node.role) {
        if let Some(dir) = node.folders.values().find(|d| !d.is_dir()) {
            return Err(Failure::Unreachable(format!(
                "cannot read {}",
                dir.display()
            )));
        }
    }
    node_report_with_app_files(&node, "(read by path)", Timestamp::now())
        .map(|(rep, files)| (rep, "path", files))
        .map_err(|e| Failure::Unreachable(e.to_string()))
}

fn read_saved(path: &Path) -> Result<NodeReport, Failure> {
    let what = "saved node report";
    let bytes =
        crate::fs::read_bounded(path, MAX_REPORT_BYTES as u64, what).map_err(|e| match e {
            e if e.is_missing() || matches!(e, crate::Error::Io { .. }) => {
                Failure::Unreachable(e.to_string())
            }
            e => Failure::Rejected(e.to_string()),
        })?;
    NodeReport::parse(&bytes).map_err(|e| Failure::Rejected(e.to_string()))
}

fn read_by_ssh(
    spec: &NodeSpec,
    target: &SshTarget,
    opts: &AuditOptions,
) -> Result<NodeReport, Failure> {
    let client = SshClient::new(opts.ssh_program.clone(), opts.ssh_config.clone());
    let words = spec.remote_command(&opts.cluster_path, &["fingerprint"]);
    let done = client
        .run(target, &words, opts.timeout, MAX_REPORT_BYTES as u64 + 1)
        .map_err(|e| match e {
            crate::remote::ssh::SshError::Run(crate::remote::process::RunError::Spawn(e)) => {
                Failure::Unreachable(format!("cannot run {}: {e}", opts.ssh_program))
            }
            crate::remote::ssh::SshError::Shell(why) => Failure::Rejected(why),
            e => Failure::Unreachable(format!("{e} over ssh")),
        })?;
    if !done.success {
        return Err(Failure::Unreachable(format!(
            "ssh {} exited with {}: {}",
            target.destination(),
            done.code
                .map(|c| c.to_string())
                .unwrap_or_else(|| "a signal".into()),
            done.last_error_line()
        )));
    }
    NodeReport::parse(&done.stdout).map_err(|e| Failure::Rejected(e.to_string()))
}

/// A report must be about the node it was collected for.
fn validate(r: &NodeReport, file: &ClusterFile, spec: &NodeSpec) -> Result<(), String> {
    if !r.node.eq_ignore_ascii_case(&spec.name) {
        return Err(format!(
            "the report is for node {:?}, not {:?}",
            r.node, spec.name
        ));
    }
    if r.role != spec.role {
        return Err(format!(
            "the report says role {}, the cluster file says {}",
            r.role, spec.role
        ));
    }
    if r.profile != file.profile {
        return Err(format!(
            "the report is for profile {}, the cluster uses {}",
            r.profile, file.profile
        ));
    }
    if let Some(c) = &r.cluster {
        if c != &file.name {
            return Err(format!(
                "the report is for cluster {c:?}, not {:?}",
                file.name
            ));
        }
    }
    Ok(())
}
