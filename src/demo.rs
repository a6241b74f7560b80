//! `keyferry demo`: the main job end to end on a throwaway cluster, with real bundles at the
//! real work factor and no prompts.
//!
//! Four Secret Server-style nodes in a temp folder: a primary, a secondary whose key differs,
//! a DR node with no key, and a proxy. `audit` shows they disagree; export from the primary;
//! import on the others (the secondary only with `--replace`, after the refusal an admin would
//! see); `audit` shows they agree; everything is removed.

use crate::audit::{collect, compare, AuditOptions, AuditReport};
use crate::cluster::{ClusterFile, Node};
use crate::error::{Error, Result};
use crate::keys::bundle::{Encoding, EXPORT_WORK_FACTOR, MAX_IMPORT_WORK_FACTOR};
use crate::keys::import::{import_file, ImportOptions, ImportOutcome};
use crate::progress::Progress;
use crate::secret::Passphrase;
use crate::time::Timestamp;
use rand::RngCore;
use serde::Serialize;
use std::path::Path;

/// What the demo found, for `--json` and for tests.
#[derive(Debug, Clone, Serialize)]
pub struct DemoReport {
    /// [`crate::JSON_VERSION`].
    pub version: u32,
    /// `demo`.
    pub kind: String,
    /// `keyferry audit` of the cluster before and after.
    pub before: AuditReport,
    /// The audit after the replace.
    pub after: AuditReport,
    /// The nodes agreed before.
    pub agreed_before: bool,
    /// The nodes agree after.
    pub agreed_after: bool,
    /// The refusal an import without `--replace` met.
    pub refused_without_replace: String,
    /// The scrypt work factor used.
    pub work_factor: u8,
}

const NODES: &[(&str, &str, &str)] = &[
    ("web1", "primary", "10.20.0.11"),
    ("web2", "secondary", "10.20.0.12"),
    ("dr1", "dr", "10.20.0.21"),
    ("proxy1", "proxy", "10.20.0.30"),
];

/// Runs the demo in a temp folder that is removed afterwards. `work_factor` is
/// [`EXPORT_WORK_FACTOR`] from the CLI; tests may pass less.
pub fn run(work_factor: u8, progress: &dyn Progress) -> Result<DemoReport> {
    let tmp = tempfile::Builder::new()
        .prefix("keyferry-demo-")
        .tempdir()
        .map_err(|e| Error::io(std::env::temp_dir(), e))?;
    let root = tmp.path();
    let cluster_path = root.join("cluster.toml");
    let cluster = write_cluster(&cluster_path)?;
    let host = "demo-host";
    let nodes: Vec<Node> = cluster
        .nodes
        .iter()
        .map(|n| Node::from_cluster(&cluster, n, None))
        .collect::<Result<_>>()?;

    progress.step(&format!(
        "A throwaway cluster in {}: {} nodes.",
        root.display(),
        nodes.len()
    ));
    let primary_key = random_key(320);
    write(&nodes[0], &primary_key)?;
    write(&nodes[1], &random_key(320))?;
    progress.step("web1 (primary) and web2 (secondary) hold different encryption.config files; dr1 has none; proxy1 needs none.");

    progress.step("keyferry audit:");
    let before = audit(&cluster, &cluster_path, progress);
    let agreed_before = before.ok;

    let passphrase = Passphrase::generate();
    let now = Timestamp::now();
    let (manifest, _) = crate::keys::export::build_manifest(
        &nodes[0],
        host,
        now,
        crate::keys::export::DEFAULT_TTL,
        false,
    )?;
    let bundle = root.join("keys.kfb");
    progress.step(&format!(
        "Export from web1: age bundle, scrypt work factor {work_factor}, generated 10-word passphrase (kept in memory)."
    ));
    crate::keys::export::export_to_file(
        &nodes[0],
        &manifest,
        &passphrase,
        work_factor,
        Encoding::Armored,
        &bundle,
        false,
        progress,
    )?;

    let opts = |replace| ImportOptions {
        protect: crate::keys::import::ProtectMode::Auto,
        replace,
        replace_primary: false,
        dry_run: false,
        allow_expired: false,
        now,
        max_work_factor: MAX_IMPORT_WORK_FACTOR,
        wait: crate::txn::DEFAULT_WAIT,
        leave_unprotected: false,
    };
    let refused = match import_file(
        &bundle,
        &passphrase,
        &nodes[1],
        &opts(false),
        false,
        progress,
    ) {
        Err(e @ Error::KeySetDiffers { .. }) => e.to_string(),
        Err(e) => return Err(e),
        Ok(_) => {
            return Err(Error::InvalidInput(
                "demo: web2 import was not refused".into(),
            ))
        }
    };
    progress.step(&format!(
        "Import on web2 without --replace is refused: {refused}"
    ));

    for (i, replace) in [(1, true), (2, false)] {
        let bundle_copy = root.join(format!("keys-{}.kfb", nodes[i].name));
        let sealed = crate::keys::bundle::Bundle::read_file(&bundle)?;
        crate::fs::write_private(&bundle_copy, &sealed)?;
        let r = import_file(
            &bundle_copy,
            &passphrase,
            &nodes[i],
            &opts(replace),
            false,
            progress,
        )?;
        debug_assert_eq!(r.outcome, ImportOutcome::Installed);
        let removal = r.bundle_removal.map(|r| r.to_string()).unwrap_or_default();
        progress.step(&format!(
            "Import on {}{}: installed; backup {}; bundle copy {}",
            nodes[i].name,
            if replace { " --replace" } else { "" },
            r.backup_dir
                .map(|d| d.display().to_string())
                .unwrap_or_else(|| "not needed".into()),
            removal
        ));
    }
    progress.step("proxy1 is a proxy: it needs no keys and gets none.");

    progress.step("keyferry audit:");
    let after = audit(&cluster, &cluster_path, progress);
    let agreed_after = after.ok;
    for removal in crate::fs::shred::shred_file(&bundle).into_iter() {
        progress.step(&format!("Bundle {removal}"));
    }
    drop(tmp);
    progress.step("Removed the throwaway cluster.");
    Ok(DemoReport {
        version: crate::JSON_VERSION,
        kind: "demo".into(),
        before,
        after,
        agreed_before,
        agreed_after,
        refused_without_replace: refused,
        work_factor,
    })
}

fn write_cluster(path: &Path) -> Result<ClusterFile> {
    let root = path
        .parent()
        .expect("the cluster file is in the demo folder");
    let mut text = String::from("name = \"demo\"\nprofile = \"secret-server\"\n");
    for (name, role, ip) in NODES {
        let app = root.join(name).join("SecretServer");
        std::fs::create_dir_all(&app).map_err(|e| Error::io(&app, e))?;
        crate::fs::write_private(
            &app.join("database.config"),
            format!("Server=sql1;Node={name}\n").as_bytes(),
        )?;
        let state = root.join(name).join("state");
        text.push_str(&format!(
            "\n[[node]]\nname = \"{name}\"\nrole = \"{role}\"\naddress = \"{ip}\"\nstate_dir = {state:?}\n"
        ));
        if *role != "proxy" {
            text.push_str(&format!("paths = {{ app = {app:?} }}\n"));
        }
    }
    crate::fs::write_private(path, text.as_bytes())?;
    ClusterFile::load(path)
}

fn random_key(len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    rand::rngs::OsRng.fill_bytes(&mut v);
    v
}

fn write(node: &Node, key: &[u8]) -> Result<()> {
    let spec = node
        .profile
        .key("encryption.config")
        .expect("secret-server profile");
    crate::fs::write_private(&node.key_path(spec)?, key)
}

/// The same audit `keyferry audit -c cluster.toml` runs, each node read by its paths, with
/// one line a node and the problems it found.
fn audit(cluster: &ClusterFile, path: &Path, progress: &dyn Progress) -> AuditReport {
    let opts = AuditOptions {
        jobs: 4,
        timeout: std::time::Duration::from_secs(20),
        ssh_program: "ssh".into(),
        ssh_config: None,
        max_skew: std::time::Duration::from_secs(60),
        cluster_path: path.to_owned(),
    };
    let report = compare(cluster, &collect(cluster, &opts, progress), opts.max_skew);
    for n in &report.nodes {
        let fp = n
            .fingerprint
            .map(|f| f.to_string())
            .unwrap_or_else(|| "-".into());
        progress.step(&format!(
            "  {:<7} {:<10} {:<11} {fp}",
            n.node,
            n.role.as_str(),
            n.status.as_str()
        ));
    }
    for p in report.problems() {
        progress.step(&format!("  problem: {p}"));
    }
    report
}

/// The demo at the shipped work factor.
pub fn run_default(progress: &dyn Progress) -> Result<DemoReport> {
    run(EXPORT_WORK_FACTOR, progress)
}
