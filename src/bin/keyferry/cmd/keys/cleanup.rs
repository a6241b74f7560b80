//! `keyferry keys cleanup`: an export file and its bundle left lying around are the classic
//! leak; this removes what the ledger recorded, the vendor's keys.exp and crash leftovers.

use crate::cmd::CmdResult;
use crate::node_args::NodeArgs;
use crate::ui::Ui;
use keyferry::recover::Own;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Removes the bundles this node's ledger records (written by export, or kept by \
import --keep-bundle), the profile's temporary vendor files (Privilege Secure: keys.exp) and \
keyferry temp files a crash left in the node's folders, and the copies of keys.exp that replaces \
kept in the node's backups. A ledger entry's file is removed only while it is still the file \
keyferry recorded (its identity and owner); another file at that path is left alone, and so is \
an entry an older keyferry wrote without one (remove it with keyferry shred). One failed removal \
does not stop the others. Files are overwritten first only where the file system rewrites in \
place; the report says which.\n\n\
Exit status: 0 done (or nothing to do); 3 some removed, some not (the report says which); 2 \
nothing removed because of an error."
)]
pub struct Args {
    #[command(flatten)]
    pub node: NodeArgs,
    /// List what would be removed and remove nothing
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub wait: crate::node_args::WaitArgs,
}

pub fn run(args: Args, ui: &Ui) -> CmdResult {
    let (node, file) = args.node.resolve_in()?;
    if !args.dry_run {
        let wait = args.wait.wait;
        crate::cmd::recover::first_in(ui, file.as_ref(), &node, wait, Own::Change)?;
    }
    let report = keyferry::keys::cleanup(&node, args.dry_run, args.wait.wait)?;
    if let Some(r) = &report.recovered {
        ui.warn(&format!("first: {r}"));
    }
    // Removed some, failed on others: partly done (3); failed on all: error (2).
    let changed = report.removed.len() + report.backups_removed.len();
    let code = crate::exit::of_many(changed, report.failed.len());
    ui.show_document(&report, || {
        for p in &report.would_remove {
            ui.out(&format!("would remove {}", p.display()));
        }
        for r in report.removed.iter().chain(&report.backups_removed) {
            ui.out(&r.to_string());
        }
        for p in &report.already_gone {
            ui.out(&format!("{}: already gone", p.display()));
        }
        for l in &report.left_alone {
            ui.out(&format!("{}: left alone ({})", l.path.display(), l.why));
        }
        for l in &report.failed {
            ui.warn(&format!("{}: not removed: {}", l.path.display(), l.why));
        }
        if changed == 0 && report.would_remove.is_empty() && report.failed.is_empty() {
            ui.info(&format!("Nothing to clean up on node {}.", report.node));
        }
    });
    Ok(std::process::ExitCode::from(code))
}
