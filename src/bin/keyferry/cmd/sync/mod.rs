//! `keyferry sync`: copy the application folder to the other nodes (the default action),
//! `sync verify` and `sync rollback`. This file resolves what to sync from where: the local
//! node's folders to each other node's (through its `reach` paths), or `--from` to `--root`.

pub mod rollback;
pub mod run;
pub mod verify;

use crate::cmd::CmdResult;
use crate::failure::{Code, Failure};
use crate::ui::Ui;
use clap::Subcommand;
use keyferry::cluster::{host_name, ClusterFile, Node};
use keyferry::profile::{Profile, ProfileId};
use keyferry::Error;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
#[command(
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    after_help = "With a cluster file, the local node's application folder (paths.app) is copied to every \
other node that has one, reached through that node's reach.app (a share or UNC path) or paths.app. \
Protected files (encryption.config, database.config, or a custom profile's keys and node-local files) \
are never read from the source and never touched on a target, in any letter case. Logs and temp folders \
are neither copied nor deleted.\n\n\
Exit status: 0 every target synced (or already the same); 2 error, no target changed (a target \
failed or was refused: the others still ran); 3 some targets changed and others failed (the \
table says which)."
)]
pub struct Args {
    #[command(subcommand)]
    pub command: Option<SyncCommand>,
    #[command(flatten)]
    pub run: run::RunArgs,
}

#[derive(Debug, Subcommand)]
pub enum SyncCommand {
    /// Compare each target with the source by content (exit 0 same, 1 different)
    Verify(verify::Args),
    /// Put back the folder a sync replaced (kept beside it as <folder>.keyferry-prev)
    Rollback(rollback::Args),
}

pub fn run(args: Args, ui: &Ui) -> CmdResult {
    match args.command {
        Some(SyncCommand::Verify(a)) => verify::run(a, ui),
        Some(SyncCommand::Rollback(a)) => rollback::run(a, ui),
        None => run::run(args.run, ui),
    }
}

/// Where to copy from and to: a cluster file, or a profile with two folders.
#[derive(Debug, Clone, clap::Args)]
pub struct Endpoints {
    /// Cluster file describing the nodes (docs/cluster-file.md) [env: KEYFERRY_CLUSTER, unless
    /// --profile is given]
    #[arg(long, short = 'c', value_name = "FILE")]
    pub cluster: Option<PathBuf>,
    // This machine's node: the source.
    #[command(flatten)]
    pub node: crate::node_args::NodeName,
    /// Only this target node (repeat for several) [default: every other node with the folder]
    #[arg(long = "to", value_name = "NODE")]
    pub to: Vec<String>,
    /// Without a cluster file: the product profile [secret-server, privilege-secure]
    #[arg(
        long,
        value_name = "PROFILE",
        conflicts_with = "cluster",
        requires = "root"
    )]
    pub profile: Option<ProfileId>,
    /// Without a cluster file: the source application folder (local, share or UNC path)
    #[arg(long, value_name = "DIR", requires = "profile")]
    pub from: Option<PathBuf>,
    /// Without a cluster file: the target application folder
    #[arg(long, value_name = "DIR", requires = "profile")]
    pub root: Option<PathBuf>,
    #[command(flatten)]
    pub state_dir: crate::node_args::StateDir,
}

/// One folder to sync: the source, the target, and the target node's name.
#[derive(Debug, Clone)]
pub struct Pair {
    pub node: String,
    pub slot: String,
    pub source: PathBuf,
    pub target: PathBuf,
    /// The target node's role in the cluster file (none without one).
    pub role: Option<keyferry::profile::Role>,
}

/// Everything a sync command needs, resolved.
pub struct Resolved {
    /// The source node and its role in the cluster file (none without one).
    pub source_node: Option<(String, keyferry::profile::Role)>,
    pub profile: Profile,
    pub state_dir: PathBuf,
    pub pairs: Vec<Pair>,
    /// Folders not synced, and why (shown, not fatal).
    pub skipped: Vec<String>,
    /// The source node as the cluster file gives it (none without one).
    pub local: Option<Node>,
    /// The cluster file, as read (none without one).
    pub file: Option<ClusterFile>,
}

impl Resolved {
    /// Whatever an earlier command left cut off on the source node is finished or rolled back
    /// first ([`crate::cmd::recover::first`]), but for the syncs of these targets, which the
    /// sync or rollback finishes itself and reports in its rows. Without a cluster file there
    /// is no node: each target's own journal is all there is to finish.
    pub fn recover_first(&self, ui: &Ui, wait: std::time::Duration) -> Result<(), Failure> {
        let Some(node) = &self.local else {
            return Ok(());
        };
        let targets: Vec<PathBuf> = self
            .pairs
            .iter()
            .filter_map(|p| target_path(&p.target).ok())
            .collect();
        let own = keyferry::recover::Own::Syncs(&targets);
        crate::cmd::recover::first_in(ui, self.file.as_ref(), node, wait, own)
    }
}

impl Endpoints {
    /// The cluster file: `--cluster`, else `KEYFERRY_CLUSTER` unless the folders are given
    /// without one (`--profile`, `--from`, `--root`): an exported variable must not turn a
    /// two-folder sync into an error.
    pub fn cluster_file(&self) -> Option<PathBuf> {
        self.cluster.clone().or_else(|| {
            if self.profile.is_some() {
                None
            } else {
                std::env::var_os("KEYFERRY_CLUSTER")
                    .filter(|v| !v.is_empty())
                    .map(PathBuf::from)
            }
        })
    }

    pub fn resolve(&self) -> Result<Resolved, Failure> {
        self.resolve_for(true)
    }

    /// As [`Endpoints::resolve`]; `need_source` false for `sync rollback`, which puts back
    /// each target's kept folder and reads no source (`--from` is not needed).
    pub fn resolve_for(&self, need_source: bool) -> Result<Resolved, Failure> {
        if let (Some(_), None, Some(_), true) = (self.profile, &self.from, &self.root, need_source)
        {
            return Err(Failure::new(
                Code::Usage,
                "--profile and --root name the target; the source folder is missing",
                Some("pass --from SRC (the upgraded node's application folder)"),
            ));
        }
        if self.profile.is_some() && (self.node.name.is_some() || !self.to.is_empty()) {
            return Err(Failure::new(
                Code::Usage,
                "--node and --to name nodes of a cluster file; --profile, --from and --root sync \
                 two folders without one",
                Some("pass --cluster FILE with --node/--to, or leave them out"),
            ));
        }
        if let (Some(profile), Some(root)) = (self.profile, &self.root) {
            return self.two_folders(profile, root);
        }
        match self.cluster_file() {
            Some(path) => self.in_cluster(&path),
            None => Err(Failure::new(
                Code::Usage,
                "nothing to sync",
                Some("pass --cluster FILE (the local node is the source), or --profile PROFILE --from SRC --root DST"),
            )),
        }
    }

    /// Two folders without a cluster file: `--from` onto `--root`, as `profile` says.
    fn two_folders(&self, profile: ProfileId, root: &std::path::Path) -> Result<Resolved, Failure> {
        let from = self.from.clone().unwrap_or_default();
        let profile = Profile::builtin(profile).ok_or_else(|| {
            Failure::new(
                Code::Usage,
                "profile custom needs a cluster file ([custom] section)",
                Some("pass --cluster FILE"),
            )
        })?;
        Ok(Resolved {
            source_node: None,
            profile,
            state_dir: self
                .state_dir
                .dir
                .clone()
                .unwrap_or_else(keyferry::cluster::default_state_dir),
            pairs: vec![Pair {
                node: host_name(),
                slot: "app".into(),
                source: from,
                target: root.to_owned(),
                role: None,
            }],
            skipped: Vec::new(),
            local: None,
            file: None,
        })
    }

    /// The cluster file at `path`: this machine's node the source, the others (or `--to`)
    /// the targets, each folder the profile syncs that both have.
    fn in_cluster(&self, path: &std::path::Path) -> Result<Resolved, Failure> {
        let file = ClusterFile::load(path)?;
        let spec = self.node.select(&file)?;
        let local = Node::from_cluster(&file, spec, self.state_dir.dir.clone())?;
        let profile = local.profile.clone();
        let Some(app) = profile.app_folder.clone() else {
            return Err(Failure::new(
                Code::Usage,
                format!(
                    "profile {} has no application folder to sync",
                    profile.id
                ),
                Some("for a custom profile, name it with app_folder = \"SLOT\" in [custom] (docs/cluster-file.md)"),
            ));
        };
        let Some(source) = local.folders.get(&app).cloned() else {
            return Err(Failure::new(
                Code::Usage,
                format!("node {} (the source) has no paths.{app}", local.name),
                Some("give the source node its application folder in the cluster file"),
            ));
        };
        for want in &self.to {
            if !file.nodes.iter().any(|n| n.name.eq_ignore_ascii_case(want)) {
                return Err(Failure::library(
                    Error::NodeNotFound,
                    format!("cluster {} has no node {want:?}", file.name),
                    Some("name target nodes with --to as the cluster file does"),
                ));
            }
            if want.eq_ignore_ascii_case(&local.name) {
                return Err(Failure::new(
                    Code::Usage,
                    format!("{want} is the source node"),
                    Some("sync runs on the upgraded node and copies to the others; pick other nodes with --to"),
                ));
            }
        }
        let mut pairs = Vec::new();
        let mut skipped = Vec::new();
        for n in &file.nodes {
            if n.name.eq_ignore_ascii_case(&local.name)
                || (!self.to.is_empty() && !self.to.iter().any(|t| t.eq_ignore_ascii_case(&n.name)))
            {
                continue;
            }
            let reach = |slot: &str| n.reach.get(slot).or_else(|| n.paths.get(slot)).cloned();
            match reach(&app) {
                Some(target) => pairs.push(Pair {
                    node: n.name.clone(),
                    slot: app.clone(),
                    source: source.clone(),
                    target,
                    role: Some(n.role),
                }),
                None if !self.to.is_empty() => {
                    return Err(Failure::new(
                        Code::Usage,
                        format!("node {} has no paths.{app} to sync to", n.name),
                        Some("give it paths.app (and reach.app, how this node reaches it) in the cluster file"),
                    ))
                }
                None => continue,
            }
            for extra in &profile.sync_extra {
                let Some(src) = local.folders.get(extra).filter(|p| p.is_dir()) else {
                    continue;
                };
                match reach(extra) {
                    Some(target) => pairs.push(Pair {
                        node: n.name.clone(),
                        slot: extra.clone(),
                        source: src.clone(),
                        target,
                        role: Some(n.role),
                    }),
                    None => skipped.push(format!(
                        "node {} has no paths.{extra}: its {} folder is not synced",
                        n.name,
                        extra.to_uppercase()
                    )),
                }
            }
        }
        if pairs.is_empty() {
            return Err(Failure::new(
                Code::Usage,
                format!(
                    "no other node of cluster {} has paths.{app}: nothing to sync to",
                    file.name
                ),
                Some("give each web node its paths.app (and reach.app) in the cluster file"),
            ));
        }
        Ok(Resolved {
            source_node: Some((local.name.clone(), spec.role)),
            profile,
            state_dir: local.state_dir.clone(),
            pairs,
            skipped,
            local: Some(local),
            file: Some(file),
        })
    }
}

/// Runs `f` for every pair, `jobs` at a time, keeping the results in order.
pub fn for_each_pair<T: Send>(
    pairs: &[Pair],
    jobs: usize,
    f: impl Fn(&Pair) -> T + Sync,
) -> Vec<T> {
    keyferry::parallel::map(pairs.len(), jobs, |i| f(&pairs[i]))
}

/// One result line's node label: `web2` or `web2 (tms)`.
pub fn label(node: &str, slot: &str) -> String {
    if slot == "app" {
        node.to_owned()
    } else {
        format!("{node} ({slot})")
    }
}

/// The target's full path, found through its parent: a sync interrupted between the two
/// renames of a swap (not Linux) leaves the folder briefly absent, and its journal, keyed by
/// this path, must still be found to finish it.
pub fn target_path(target: &std::path::Path) -> keyferry::Result<PathBuf> {
    if let Ok(p) = std::fs::canonicalize(target) {
        return Ok(p);
    }
    let (parent, name) = keyferry::fs::split(target)?;
    let parent = std::fs::canonicalize(&parent).map_err(|e| keyferry::Error::io(&parent, e))?;
    Ok(parent.join(name))
}
