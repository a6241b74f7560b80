//! `keyferry keys restore`: the way back after an import or a DPAPI rewrite that turned out
//! wrong. Every replace leaves a backup; this lists them and puts one back through the same
//! engine, which backs up what it replaces.

use crate::cmd::{success, CmdResult};
use crate::failure::Failure;
use crate::node_args::{NodeArgs, WaitArgs};
use crate::ui::Ui;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  keyferry keys restore -c cluster.toml --list\n  keyferry keys restore -c cluster.toml --backup 20261124T031500Z"
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

pub fn run(args: Args, ui: &Ui) -> CmdResult {
    let node = args.node.resolve()?;
    let Some(id) = args.backup.as_deref() else {
        if !args.list {
            return Err(Failure::new(
                "usage",
                "say which backup to restore",
                Some("list them with --list, then pass --backup ID"),
            ));
        }
        let list = keyferry::keys::restore::list(&node)?;
        if ui.json {
            ui.json(&list);
            return success();
        }
        if list.backups.is_empty() {
            ui.info(&format!("Node {} has no backups yet.", list.node));
        }
        for b in &list.backups {
            ui.out(&format!(
                "{}  {}  {}",
                b.id,
                b.fingerprint
                    .map(|f| f.to_string())
                    .unwrap_or_else(|| "(no key files)".into()),
                b.command.as_deref().unwrap_or("")
            ));
            for f in &b.files {
                ui.out(&format!("    {}", f.path.display()));
            }
        }
        return success();
    };
    let report = keyferry::keys::restore::restore(&node, id, args.wait.wait)?;
    if let Some(r) = &report.recovered {
        ui.warn(&format!("first: {r}"));
    }
    if ui.json {
        ui.json(&report);
        return success();
    }
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
    success()
}
