//! `keyferry keys restore`: the way back after an import or a DPAPI rewrite that turned out
//! wrong. Every replace leaves a backup; this lists them and puts one back through the same
//! engine, which backs up what it replaces.

use crate::cmd::{success, CmdResult};
use crate::failure::{Code, Failure};
use crate::node_args::{NodeArgs, WaitArgs};
use crate::ui::Ui;
use keyferry::cluster::{ClusterFile, Node};
use keyferry::recover::Own;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "A replace keeps its backup in the state folder of the node that made it: the \
node's own, or, for a push that reached the node by path, the pushing node's \
(backups/<node>/). With a cluster file, --list shows both (\"kept by\" names the other node) \
and --backup restores from either, through the same folders the push wrote.\n\n\
Examples:\n  keyferry keys restore -c cluster.toml --list\n  keyferry keys restore -c cluster.toml --node web2 --list\n  keyferry keys restore -c cluster.toml --backup 20261124T031500Z"
)]
pub struct Args {
    #[command(flatten)]
    pub node: NodeArgs,
    /// List this node's backups (time, fingerprint, files) and change nothing
    #[arg(long, conflicts_with = "backup")]
    pub list: bool,
    /// The backup to put back (its name from --list)
    #[arg(long, value_name = "ID")]
    pub backup: Option<String>,
    #[command(flatten)]
    pub wait: WaitArgs,
}

/// Where backups of `node` may be kept besides its own state folder: every other state
/// folder the cluster file names (a push by path from that node kept them there), each with
/// the node as that push reached it (its folders through `reach`).
fn keepers(
    args: &Args,
    file: Option<&ClusterFile>,
    node: &Node,
) -> Result<Vec<(String, Node)>, Failure> {
    let (Some(path), Some(file)) = (&args.node.cluster.path, file) else {
        return Ok(Vec::new());
    };
    let Some(spec) = file.nodes.iter().find(|n| n.name == node.name) else {
        return Ok(Vec::new());
    };
    let base = path.parent().unwrap_or(std::path::Path::new("."));
    let mut seen = vec![node.state_dir.clone()];
    let mut out = Vec::new();
    for k in &file.nodes {
        let dir = k
            .state_dir
            .clone()
            .unwrap_or_else(keyferry::cluster::default_state_dir);
        if seen.contains(&dir) || !dir.join("backups").join(&node.name).is_dir() {
            continue;
        }
        seen.push(dir.clone());
        if let Ok(keyferry::keys::Route::Path(n)) = keyferry::keys::route(file, spec, base, &dir) {
            out.push((k.name.clone(), *n));
        }
    }
    Ok(out)
}

pub fn run(args: Args, ui: &Ui) -> CmdResult {
    let (own, file) = args.node.resolve_in()?;
    let keepers = keepers(&args, file.as_ref(), &own)?;
    let Some(id) = args.backup.as_deref() else {
        if !args.list {
            return Err(Failure::new(
                Code::Usage,
                "say which backup to restore",
                Some("list them with --list, then pass --backup ID"),
            ));
        }
        let mut list = keyferry::keys::list_backups(&own)?;
        for (by, n) in &keepers {
            for mut b in keyferry::keys::list_backups(n)?.backups {
                b.kept_by = Some(by.clone());
                list.backups.push(b);
            }
        }
        ui.show_document(&list, || {
            if list.backups.is_empty() {
                ui.info(&format!("Node {} has no backups yet.", list.node));
            }
            for b in &list.backups {
                ui.out(&format!(
                    "{}  {}  {}{}",
                    b.id,
                    b.fingerprint
                        .map(|f| f.to_string())
                        .unwrap_or_else(|| "(no key files)".into()),
                    b.command.as_deref().unwrap_or(""),
                    b.kept_by
                        .as_ref()
                        .map(|k| format!("  (kept by {k} in {})", b.dir.display()))
                        .unwrap_or_default()
                ));
                for f in &b.files {
                    ui.out(&format!("    {}", f.path.display()));
                }
            }
        });
        return success();
    };
    // The node's own backup, else the one state folder that keeps a backup of that name.
    let mut holders: Vec<&Node> = Vec::new();
    if own.backup_root().join(id).is_dir() {
        holders.push(&own);
    }
    holders.extend(
        keepers
            .iter()
            .filter(|(_, n)| n.backup_root().join(id).is_dir())
            .map(|(_, n)| n),
    );
    let node = match holders.as_slice() {
        [] | [_] => holders.first().copied().unwrap_or(&own),
        _ => {
            return Err(Failure::new(
                Code::Usage,
                format!("more than one state folder keeps a backup named {id}"),
                Some("list them with --list; restore on the node that kept the one you mean (--state-dir)"),
            ))
        }
    };
    crate::cmd::recover::first_in(ui, file.as_ref(), node, args.wait.wait, Own::Change)?;
    let report = keyferry::keys::restore(node, id, args.wait.wait)?;
    if let Some(r) = &report.recovered {
        ui.warn(&format!("first: {r}"));
    }
    ui.show_document(&report, || {
        for f in &report.files {
            let what = match f.action {
                "unchanged" => "unchanged",
                "install" => "restored",
                _ => "restored",
            };
            ui.out(&format!("  {what:<10} {}", f.path.display()));
            if let Some(a) = &f.attributes {
                ui.out(&format!("  {:<10} {}", "", a.describe()));
            }
        }
        if let Some(d) = &report.backup_dir {
            ui.out(&format!("What it replaced is backed up in {}", d.display()));
        }
        if let Some(fp) = report.fingerprint {
            ui.out(&format!("Key-set fingerprint now {fp}"));
        }
    });
    success()
}
