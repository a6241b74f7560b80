//! `keyferry demo`: the whole job on a throwaway four-node cluster, so an admin (or a reviewer)
//! can see what keyferry does before pointing it at real nodes.

use crate::cmd::{export_work_factor, success, CmdResult};
use crate::failure::{Code, Failure};
use crate::ui::Ui;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Builds four Secret Server-style nodes in a temp folder (primary; secondary with a \
different key; DR with none; proxy), audits them (they disagree), exports from the primary, imports \
on the others, audits again (they agree), removes everything, and ends with the commands that do the \
same on a real cluster. Real age bundles at the real scrypt work factor; no prompts."
)]
pub struct Args {}

pub fn run(_args: Args, ui: &Ui) -> CmdResult {
    let report = keyferry::demo::run(export_work_factor(ui), ui)?;
    ui.show_document(&report, || if report.agreed_after && !report.agreed_before {
        ui.out("Before: the nodes disagreed. After: every node that needs keys holds the same key set.");
        ui.out("");
        ui.out("On a real cluster, with the same cluster file copied to every node, that is:");
        for (cmd, what) in [
            (
                "keyferry audit -c cluster.toml",
                "anywhere: who differs, misses keys, runs other binaries",
            ),
            (
                "keyferry keys export -c cluster.toml -o keys.kfb",
                "on web1, the primary: shows a one-time passphrase",
            ),
            (
                "keyferry keys import keys.kfb -c cluster.toml --dry-run",
                "on web2: the plan, and what would be refused",
            ),
            (
                "keyferry keys import keys.kfb -c cluster.toml --replace --keep-bundle",
                "on web2: its key differs; backed up first",
            ),
            (
                "keyferry keys import keys.kfb -c cluster.toml",
                "on dr1: installs, then removes the bundle",
            ),
            (
                "keyferry keys cleanup -c cluster.toml",
                "on web1 and web2: removes what is left",
            ),
            (
                "keyferry audit -c cluster.toml",
                "anywhere: every node agrees",
            ),
        ] {
            ui.out(&format!("  {cmd}\n      ({what})"));
        }
    });
    if !report.agreed_after {
        return Err(Failure::new(
            Code::DemoFailed,
            "the nodes still disagree after the import",
            None,
        ));
    }
    success()
}
