//! Comparing collected node reports with the primary's: a pure function of what was
//! collected, so it can be tested without any node.

use crate::audit::appdigest::differing_paths;
use crate::audit::collect::Collected;
use crate::audit::report::NodeReport;
use crate::cluster::ClusterFile;
use crate::fingerprint::Fingerprint;
use crate::keys::keyset::Protection;
use crate::profile::{Profile, Role};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// A node's state in the audit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NodeStatus {
    /// The node holds the primary's key set.
    Match,
    /// A key file differs from the primary's.
    Differs,
    /// The role's key files are all missing.
    Missing,
    /// Some of the role's key files are missing.
    Partial,
    /// A file differs and one side looks DPAPI-protected: compare after decrypting on that node.
    DpapiSuspected,
    /// Nothing comparable (Privilege Secure's `keys.exp` is temporary): not counted as a
    /// difference.
    NotVerifiable,
    /// The role holds no keys (a proxy).
    NotNeeded,
    /// No report came back from the node.
    Unreachable,
    /// The node's report was not one keyferry accepts.
    Rejected,
    /// The primary's report is unusable, so nothing can be compared.
    NoReference,
}

impl NodeStatus {
    /// The status as the JSON and the tables write it.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeStatus::Match => "match",
            NodeStatus::Differs => "differs",
            NodeStatus::Missing => "missing",
            NodeStatus::Partial => "partial",
            NodeStatus::DpapiSuspected => "dpapi-suspected",
            NodeStatus::NotVerifiable => "not-verifiable",
            NodeStatus::NotNeeded => "not-needed",
            NodeStatus::Unreachable => "unreachable",
            NodeStatus::Rejected => "rejected",
            NodeStatus::NoReference => "no-reference",
        }
    }

    /// Whether this status makes the audit answer "no".
    pub fn fails(self) -> bool {
        !matches!(
            self,
            NodeStatus::Match | NodeStatus::NotVerifiable | NodeStatus::NotNeeded
        )
    }
}

/// Whether a node runs the reference node's binaries (the application folder's digest).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Binaries {
    /// The same digest.
    Same,
    /// A different digest: "Version does not match".
    Differs,
    /// Not compared (no digest on one side, or the role runs no application).
    Unknown,
}

/// One node's line of the audit.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeResult {
    /// The node's name.
    pub node: String,
    /// Its role.
    pub role: Role,
    /// How its report came (`path`, `ssh` or `report`); `None` when none came.
    pub via: Option<String>,
    /// Its state.
    pub status: NodeStatus,
    /// Why, where it failed or was not compared.
    pub reason: Option<String>,
    /// The fingerprint of its key set, where it has one.
    pub fingerprint: Option<Fingerprint>,
    /// The reference's fingerprint for its role.
    pub expected: Option<Fingerprint>,
    /// Whether it runs the reference's binaries.
    pub binaries: Binaries,
    /// The files whose digests differ from the reference's (up to ten).
    pub differing_paths: Vec<String>,
    /// Its clock minus this machine's, in seconds, where its report came over ssh.
    pub clock_skew_seconds: Option<i64>,
    /// Its clock differs from this machine's by more than the allowed skew (the same
    /// threshold as the upgrade preflight's): the audit fails.
    pub clock_flagged: bool,
    /// Temporary vendor export files still on the node (`keys.exp`): the vendor says to
    /// delete them everywhere once imported (`keyferry keys cleanup` on that node).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub export_files_left: Vec<PathBuf>,
    /// Node-local files the node lacks (`database.config`: its database connection was never
    /// set up; the product's connection reset on that node writes it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing_local: Vec<String>,
}

/// `keyferry audit --json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditReport {
    /// [`crate::JSON_VERSION`].
    pub version: u32,
    /// Read back as the envelope's tag ([`crate::report::StepReport`]).
    #[serde(default)]
    pub kind: String,
    /// The cluster's name.
    pub cluster: String,
    /// Its product profile.
    pub profile: crate::profile::ProfileId,
    /// The node compared against (the primary).
    pub reference: String,
    /// The primary's key-set fingerprint.
    pub reference_fingerprint: Option<Fingerprint>,
    /// Every node that needs keys holds the primary's, with the same binaries, clocks and no export
    /// files left.
    pub ok: bool,
    /// Each node's result, in the cluster file's order.
    pub nodes: Vec<NodeResult>,
}

/// Compares collected reports with the primary's.
pub fn compare(file: &ClusterFile, collected: &[Collected], max_skew: Duration) -> AuditReport {
    let profile = file
        .profile_table()
        .unwrap_or_else(|_| Profile::custom(vec![], vec![], None, None, vec![]));
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
            export_files_left: Vec::new(),
            missing_local: Vec::new(),
        };
        match c {
            Collected::Unreachable(why) => {
                r.status = if profile.role_needs_keys(spec.role) {
                    NodeStatus::Unreachable
                } else {
                    NodeStatus::NotNeeded
                };
                r.reason = Some(crate::text::one_line(why).into_owned());
            }
            Collected::Rejected(why) => {
                r.status = NodeStatus::Rejected;
                r.reason = Some(crate::text::one_line(why).into_owned());
            }
            Collected::Report {
                report,
                via,
                app_files,
                received,
                path_skew,
            } => {
                r.via = Some(via.to_string());
                r.fingerprint = report.fingerprint;
                r.export_files_left = report
                    .files
                    .iter()
                    .filter(|f| f.transient && f.present)
                    .map(|f| f.path.clone())
                    .collect();
                r.missing_local = report.missing_local.clone();
                let skew = match (received, path_skew) {
                    (Some(at), _) => Some(report.time.unix() as i64 - at.unix() as i64),
                    (None, skew) => *skew,
                };
                if let Some(skew) = skew {
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
                        // Binaries matter where the application runs: the nodes that need
                        // keys (a proxy host does not run it).
                        let runs_app = profile.role_needs_keys(spec.role);
                        match (&primary.app, &report.app) {
                            _ if !runs_app => {}
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
        ok: reference.is_some() && !nodes.iter().any(NodeResult::fails),
        nodes,
    }
}

impl NodeResult {
    /// Whether this node makes the audit answer "no": its keys, or its binaries.
    pub fn fails(&self) -> bool {
        self.status.fails()
            || self.binaries == Binaries::Differs
            || !self.export_files_left.is_empty()
            || !self.missing_local.is_empty()
            || self.clock_flagged
    }
}

impl AuditReport {
    /// What is wrong, grouped by kind, each naming its nodes: a node that could not be
    /// reached is reported as that, never as a disagreement. Empty when all is well.
    pub fn problems(&self) -> Vec<String> {
        let group = |what: &str, pick: &dyn Fn(&NodeResult) -> bool| -> Option<String> {
            let names: Vec<&str> = self
                .nodes
                .iter()
                .filter(|n| pick(n))
                .map(|n| n.node.as_str())
                .collect();
            (!names.is_empty()).then(|| format!("{what}: {}", names.join(", ")))
        };
        [
            group("different keys", &|n| n.status == NodeStatus::Differs),
            group("different keys, DPAPI suspected", &|n| {
                n.status == NodeStatus::DpapiSuspected
            }),
            group("keys missing", &|n| {
                matches!(n.status, NodeStatus::Missing | NodeStatus::Partial)
            }),
            group("different binaries", &|n| n.binaries == Binaries::Differs),
            group(
                "export files left (the vendor says to delete them everywhere: keyferry keys \
                 cleanup on the node)",
                &|n| !n.export_files_left.is_empty(),
            ),
            group(
                "node-local files missing (database.config: set up the node's database \
                 connection there, the product's connection reset writes it)",
                &|n| !n.missing_local.is_empty(),
            ),
            group(
                "clocks off by more than the allowed skew (the vendor says the servers' dates \
                 must match; set the time right: w32tm /resync)",
                &|n| n.clock_flagged,
            ),
            group("not reached, so not checked", &|n| {
                n.status == NodeStatus::Unreachable
            }),
            group("report rejected", &|n| n.status == NodeStatus::Rejected),
            group(
                "nothing to compare with (the primary's report is missing)",
                &|n| n.status == NodeStatus::NoReference,
            ),
        ]
        .into_iter()
        .flatten()
        .collect()
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
                    let prot = |f: &Option<crate::audit::report::FileEntry>| {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_names_are_their_json_names() {
        for s in [
            NodeStatus::Match,
            NodeStatus::Differs,
            NodeStatus::Missing,
            NodeStatus::Partial,
            NodeStatus::DpapiSuspected,
            NodeStatus::NotVerifiable,
            NodeStatus::NotNeeded,
            NodeStatus::Unreachable,
            NodeStatus::Rejected,
            NodeStatus::NoReference,
        ] {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
    }
}
