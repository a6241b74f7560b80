//! `keyferry audit`: collect every node's report (by path, ssh or saved file), then compare
//! key sets, binaries and clocks against the primary. Collection is bounded-parallel with a
//! per-node timeout; comparison is a pure function of the collected reports.

use crate::appdigest::differing_paths;
use crate::cluster::{ClusterFile, Node, NodeSpec};
use crate::fingerprint::Fingerprint;
use crate::keyset::Protection;
use crate::profile::{Profile, Role};
use crate::progress::Progress;
use crate::report::{node_report_with_app_files, NodeReport};
use crate::time::Timestamp;
use serde::Serialize;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How the auditing machine reaches a node (`access` in the cluster file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// Read the node's `paths` as written (local folders or UNC shares).
    Paths,
    /// Read this folder as the node's application folder (single-folder profiles).
    Path(PathBuf),
    /// Run `keyferry fingerprint --json` on the node over the system OpenSSH client.
    Ssh {
        user: Option<String>,
        host: String,
        port: Option<u16>,
    },
    /// A report saved earlier (PowerShell remoting, Ansible, a copy by hand).
    Report(PathBuf),
}

/// Parses `access`; relative report paths are relative to the cluster file's folder.
pub fn parse_access(access: Option<&str>, base: &Path) -> Result<Access, String> {
    let Some(a) = access.map(str::trim).filter(|a| !a.is_empty()) else {
        return Ok(Access::Paths);
    };
    if a == "paths" || a == "local" {
        return Ok(Access::Paths);
    }
    if let Some(rest) = a.strip_prefix("ssh://") {
        let (user, hostport) = match rest.rsplit_once('@') {
            Some((u, h)) if !u.is_empty() => (Some(u.to_owned()), h),
            Some(_) => return Err(format!("bad ssh access {a:?}: empty user")),
            None => (None, rest),
        };
        let hostport = hostport.trim_end_matches('/');
        let (host, port) = if let Some(h) = hostport.strip_prefix('[') {
            let (h, p) = h
                .split_once(']')
                .ok_or_else(|| format!("bad ssh access {a:?}"))?;
            (h.to_owned(), p.strip_prefix(':'))
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h.to_owned(), Some(p)),
                None => (hostport.to_owned(), None),
            }
        };
        if host.is_empty() || host.starts_with('-') || host.contains(char::is_whitespace) {
            return Err(format!("bad ssh host in {a:?}"));
        }
        if user
            .as_deref()
            .is_some_and(|u| u.starts_with('-') || u.contains(char::is_whitespace))
        {
            return Err(format!("bad ssh user in {a:?}"));
        }
        let port = match port {
            Some(p) => Some(
                p.parse::<u16>()
                    .map_err(|_| format!("bad ssh port in {a:?}"))?,
            ),
            None => None,
        };
        return Ok(Access::Ssh { user, host, port });
    }
    if let Some(p) = a.strip_prefix("report:") {
        let p = PathBuf::from(p);
        return Ok(Access::Report(if p.is_absolute() {
            p
        } else {
            base.join(p)
        }));
    }
    Ok(Access::Path(PathBuf::from(a)))
}

/// Settings of one audit.
#[derive(Debug, Clone)]
pub struct AuditOptions {
    pub jobs: usize,
    pub timeout: Duration,
    /// The ssh program (default `ssh`) and an optional `-F` config file.
    pub ssh_program: String,
    pub ssh_config: Option<PathBuf>,
    /// Clock difference above which a node is flagged.
    pub max_skew: Duration,
    /// The cluster file as given locally (passed to remote nodes unless `remote_cluster`).
    pub cluster_path: PathBuf,
}

/// What collecting one node gave.
#[derive(Debug, Clone)]
pub enum Collected {
    Report {
        report: Box<NodeReport>,
        via: &'static str,
        /// Per-file hashes of the application folder, when it was read directly.
        app_files: Option<crate::report::AppFiles>,
        /// Local time when the report arrived, for ssh (clock comparison).
        received: Option<Timestamp>,
    },
    Unreachable(String),
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
        Err(e) => return Collected::Rejected(e),
    };
    let result = match &access {
        Access::Paths | Access::Path(_) => read_by_path(file, spec, &access, opts.timeout),
        Access::Ssh { user, host, port } => {
            read_by_ssh(spec, user.as_deref(), host, *port, opts).map(|r| (r, "ssh", None))
        }
        Access::Report(p) => read_saved(p).map(|r| (r, "report", None)),
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
    Collected::Report {
        report: Box::new(report),
        via,
        app_files,
        received,
    }
}

enum Failure {
    Unreachable(String),
    Rejected(String),
}

type PathRead = (NodeReport, &'static str, Option<crate::report::AppFiles>);

fn read_by_path(
    file: &ClusterFile,
    spec: &NodeSpec,
    access: &Access,
    timeout: Duration,
) -> Result<PathRead, Failure> {
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
    if node.role != Role::Proxy {
        if let Some(dir) = node.folders.values().find(|d| !d.is_dir()) {
            return Err(Failure::Unreachable(format!(
                "cannot read {}",
                dir.display()
            )));
        }
    }
    // A share that hangs must not hang the audit: read in a thread, wait at most `timeout`.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let r = node_report_with_app_files(&node, "(read by path)", Timestamp::now());
        let _ = tx.send(r);
    });
    match rx.recv_timeout(timeout) {
        Ok(Ok((rep, files))) => Ok((rep, "path", files)),
        Ok(Err(e)) => Err(Failure::Unreachable(e.to_string())),
        Err(_) => Err(Failure::Unreachable(format!(
            "no answer within {}s",
            timeout.as_secs()
        ))),
    }
}

fn read_saved(path: &Path) -> Result<NodeReport, Failure> {
    let meta = std::fs::metadata(path)
        .map_err(|e| Failure::Unreachable(format!("saved report {}: {e}", path.display())))?;
    if meta.len() > crate::report::MAX_REPORT_BYTES as u64 {
        return Err(Failure::Rejected(format!(
            "saved report {} is too large",
            path.display()
        )));
    }
    let bytes = std::fs::read(path)
        .map_err(|e| Failure::Unreachable(format!("saved report {}: {e}", path.display())))?;
    NodeReport::parse(&bytes).map_err(Failure::Rejected)
}

/// Quotes one word for a POSIX remote shell.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn read_by_ssh(
    spec: &NodeSpec,
    user: Option<&str>,
    host: &str,
    port: Option<u16>,
    opts: &AuditOptions,
) -> Result<NodeReport, Failure> {
    let mut cmd = Command::new(&opts.ssh_program);
    cmd.args(["-o", "BatchMode=yes"]);
    cmd.args([
        "-o",
        &format!("ConnectTimeout={}", opts.timeout.as_secs().max(1)),
    ]);
    if let Some(cfg) = &opts.ssh_config {
        cmd.arg("-F").arg(cfg);
    }
    if let Some(p) = port {
        cmd.args(["-p", &p.to_string()]);
    }
    let target = match user {
        Some(u) => format!("{u}@{host}"),
        None => host.to_owned(),
    };
    let remote_bin = spec
        .remote_keyferry
        .clone()
        .unwrap_or_else(|| "keyferry".into());
    let remote_cluster = spec
        .remote_cluster
        .clone()
        .unwrap_or_else(|| opts.cluster_path.display().to_string());
    let remote = [
        sh_quote(&remote_bin),
        "fingerprint".into(),
        "--json".into(),
        "--batch".into(),
        "--cluster".into(),
        sh_quote(&remote_cluster),
        "--node".into(),
        sh_quote(&spec.name),
    ]
    .join(" ");
    cmd.arg("--").arg(&target).arg(remote);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| Failure::Unreachable(format!("cannot run {}: {e}", opts.ssh_program)))?;
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let out_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = (&mut stdout)
            .take(crate::report::MAX_REPORT_BYTES as u64 + 1)
            .read_to_end(&mut v);
        v
    });
    let err_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = (&mut stderr).take(64 * 1024).read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + opts.timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(Failure::Unreachable(format!(
                    "no answer within {}s over ssh",
                    opts.timeout.as_secs()
                )));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(Failure::Unreachable(e.to_string())),
        }
    };
    let out = out_t.join().unwrap_or_default();
    let err = err_t.join().unwrap_or_default();
    if !status.success() {
        let last = String::from_utf8_lossy(&err)
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .chars()
            .take(300)
            .collect::<String>();
        return Err(Failure::Unreachable(format!(
            "ssh {target} exited with {}: {last}",
            status
                .code()
                .map(|c| c.to_string())
                .unwrap_or_else(|| "a signal".into())
        )));
    }
    NodeReport::parse(&out).map_err(Failure::Rejected)
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

/// A node's state in the audit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum NodeStatus {
    Match,
    Differs,
    Missing,
    Partial,
    DpapiSuspected,
    NotVerifiable,
    NotNeeded,
    Unreachable,
    Rejected,
    /// The primary's report is unusable, so nothing can be compared.
    NoReference,
}

impl NodeStatus {
    /// Whether this status makes the audit answer "no".
    pub fn fails(self) -> bool {
        !matches!(
            self,
            NodeStatus::Match | NodeStatus::NotVerifiable | NodeStatus::NotNeeded
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Binaries {
    Same,
    Differs,
    Unknown,
}

#[derive(Debug, Clone, Serialize)]
pub struct NodeResult {
    pub node: String,
    pub role: Role,
    pub via: Option<String>,
    pub status: NodeStatus,
    pub reason: Option<String>,
    pub fingerprint: Option<Fingerprint>,
    pub expected: Option<Fingerprint>,
    pub binaries: Binaries,
    pub differing_paths: Vec<String>,
    pub clock_skew_seconds: Option<i64>,
    pub clock_flagged: bool,
}

/// `keyferry audit --json`.
#[derive(Debug, Clone, Serialize)]
pub struct AuditReport {
    pub version: u32,
    pub kind: String,
    pub cluster: String,
    pub profile: crate::profile::ProfileId,
    pub reference: String,
    pub reference_fingerprint: Option<Fingerprint>,
    pub ok: bool,
    pub nodes: Vec<NodeResult>,
}

/// Compares collected reports with the primary's.
pub fn compare(file: &ClusterFile, collected: &[Collected], max_skew: Duration) -> AuditReport {
    let profile = file
        .profile_table()
        .unwrap_or_else(|_| Profile::custom(vec![], vec![]));
    let primary_idx = file
        .nodes
        .iter()
        .position(|n| n.role == Role::Primary)
        .unwrap_or(0);
    let reference = match &collected[primary_idx] {
        Collected::Report {
            report, app_files, ..
        } => Some((report.as_ref(), app_files.as_ref())),
        _ => None,
    };
    let mut nodes = Vec::new();
    for (spec, c) in file.nodes.iter().zip(collected) {
        let mut r = NodeResult {
            node: spec.name.clone(),
            role: spec.role,
            via: None,
            status: NodeStatus::NoReference,
            reason: None,
            fingerprint: None,
            expected: None,
            binaries: Binaries::Unknown,
            differing_paths: Vec::new(),
            clock_skew_seconds: None,
            clock_flagged: false,
        };
        match c {
            Collected::Unreachable(why) => {
                r.status = if profile.role_needs_keys(spec.role) {
                    NodeStatus::Unreachable
                } else {
                    NodeStatus::NotNeeded
                };
                r.reason = Some(why.clone());
            }
            Collected::Rejected(why) => {
                r.status = NodeStatus::Rejected;
                r.reason = Some(why.clone());
            }
            Collected::Report {
                report,
                via,
                app_files,
                received,
            } => {
                r.via = Some(via.to_string());
                r.fingerprint = report.fingerprint;
                if let Some(at) = received {
                    let skew = report.time.unix() as i64 - at.unix() as i64;
                    r.clock_skew_seconds = Some(skew);
                    r.clock_flagged = skew.unsigned_abs() > max_skew.as_secs();
                }
                match reference {
                    None => {
                        r.status = if profile.role_needs_keys(spec.role) {
                            NodeStatus::NoReference
                        } else {
                            NodeStatus::NotNeeded
                        };
                        r.reason = Some("the primary's report is not available".into());
                    }
                    Some((primary, primary_files)) => {
                        let (status, expected, reason) =
                            key_status(&profile, spec.role, primary, report);
                        r.status = status;
                        r.expected = expected;
                        r.reason = reason;
                        match (&primary.app, &report.app) {
                            (Some(a), Some(b)) if a == b => r.binaries = Binaries::Same,
                            (Some(_), Some(_)) => {
                                r.binaries = Binaries::Differs;
                                if let (Some(pa), Some(na)) = (primary_files, app_files) {
                                    r.differing_paths =
                                        differing_paths(pa, na).into_iter().take(10).collect();
                                }
                            }
                            _ => {}
                        }
                    }
                }
            }
        }
        nodes.push(r);
    }
    let reference_fingerprint = reference.and_then(|(p, _)| p.fingerprint);
    AuditReport {
        version: crate::JSON_VERSION,
        kind: "audit".into(),
        cluster: file.name.clone(),
        profile: file.profile,
        reference: file.nodes[primary_idx].name.clone(),
        reference_fingerprint,
        ok: reference.is_some() && !nodes.iter().any(|n| n.status.fails()),
        nodes,
    }
}

/// Compares one node's key files with the primary's, file by file, for the node's role.
fn key_status(
    profile: &Profile,
    role: Role,
    primary: &NodeReport,
    node: &NodeReport,
) -> (NodeStatus, Option<Fingerprint>, Option<String>) {
    let held = profile.keys_held_by(role);
    if held.is_empty() {
        return (NodeStatus::NotNeeded, None, None);
    }
    let file = |r: &NodeReport, name: &str| r.files.iter().find(|f| f.name == name).cloned();
    let mut compared = 0;
    let mut differs = Vec::new();
    let mut missing = Vec::new();
    let mut unverifiable = Vec::new();
    let mut dpapi = false;
    let mut expected_parts = Vec::new();
    for spec in &held {
        let p = file(primary, &spec.name);
        let n = file(node, &spec.name);
        let p_hash = p.as_ref().and_then(|f| f.sha256);
        let n_hash = n.as_ref().and_then(|f| f.sha256);
        if let Some(h) = p_hash {
            expected_parts.push((spec.name.clone(), h));
        }
        match (p_hash, n_hash) {
            (Some(a), Some(b)) => {
                compared += 1;
                if !a.ct_eq(&b) {
                    differs.push(spec.name.clone());
                    let prot = |f: &Option<crate::report::FileEntry>| {
                        f.as_ref().is_some_and(|f| {
                            !matches!(
                                f.protection,
                                Protection::None
                                    | Protection::Dpapi {
                                        decrypted: true,
                                        ..
                                    }
                            )
                        })
                    };
                    dpapi |= prot(&n) || prot(&p);
                }
            }
            _ if spec.transient => unverifiable.push(spec.name.clone()),
            (None, _) => unverifiable.push(spec.name.clone()),
            (Some(_), None) => missing.push(spec.name.clone()),
        }
    }
    let expected = (!expected_parts.is_empty())
        .then(|| Fingerprint::of(expected_parts.iter().map(|(n, h)| (n.as_str(), h))));
    if !differs.is_empty() {
        let why = format!("differs from {}: {}", primary.node, differs.join(", "));
        return if dpapi {
            (
                NodeStatus::DpapiSuspected,
                expected,
                Some(format!(
                    "{why} (looks DPAPI-protected: compare after decrypting on that node)"
                )),
            )
        } else {
            (NodeStatus::Differs, expected, Some(why))
        };
    }
    if !missing.is_empty() {
        let status = if compared == 0 {
            NodeStatus::Missing
        } else {
            NodeStatus::Partial
        };
        return (
            status,
            expected,
            Some(format!("missing {}", missing.join(", "))),
        );
    }
    if compared == 0 {
        return (
            NodeStatus::NotVerifiable,
            expected,
            Some(format!(
                "not verifiable from files: {} (the product holds the keys once imported)",
                unverifiable.join(", ")
            )),
        );
    }
    let reason = (!unverifiable.is_empty())
        .then(|| format!("not verifiable from files: {}", unverifiable.join(", ")));
    (NodeStatus::Match, expected, reason)
}
