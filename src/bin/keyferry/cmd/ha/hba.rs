//! `keyferry ha hba`: the pair's lines in `pg_hba.conf`, planned, simulated, written through
//! the transaction engine, checked by PostgreSQL and reloaded.

use super::PairArgs;
use crate::cmd::CmdResult;
use crate::ui::Ui;
use keyferry::ha::{edit_hba_file, edit_hba_server, HbaReport};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "On a running server (the default) the file is the one SHOW hba_file \
names; the edited file is checked by PostgreSQL (pg_hba_file_rules) before the reload, and put \
back from the backup if PostgreSQL rejects it. Where keyferry cannot log in over the network (a \
fresh install takes local connections only) it edits <data>/pg_hba.conf on this node, reloads \
the server with pg_ctl and keeps the edit once its login goes through and PostgreSQL reports no \
error in the file; otherwise the file is put back and reloaded. With --file, the file alone is edited (to prepare \
or review one); nothing is reloaded.\n\n\
Exit status: 0 done (or nothing to do); 2 refused or failed (the file is as it was)."
)]
pub struct Args {
    #[command(flatten)]
    pub pair: PairArgs,
    /// Edit this file instead of the running server's
    #[arg(long, value_name = "PATH")]
    pub file: Option<PathBuf>,
    /// Show the plan and how each peer connection is decided before and after; change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Put the pair's lines above a `reject` line for a peer (an admin's decision)
    #[arg(long)]
    pub override_reject: bool,
}

pub fn run(args: Args, ui: &Ui) -> CmdResult {
    let loaded = args.pair.load()?;
    let node = args.pair.local(&loaded.pair)?;
    if !args.dry_run {
        loaded.recover_first(ui, node, keyferry::recover::Own::Change)?;
    }
    let report = match &args.file {
        Some(f) => edit_hba_file(&loaded.pair, node, f, args.override_reject, args.dry_run)?,
        None => edit_hba_server(
            &loaded.connector(),
            node,
            args.override_reject,
            args.dry_run,
        )?,
    };
    show(&report, ui);
    Ok(ExitCode::SUCCESS)
}

fn show(r: &HbaReport, ui: &Ui) {
    ui.show("ha-hba", r, || {
        let mut t = ui.table(["connection", "decided now by", "after the edit"]);
        for d in &r.decisions {
            t.add_row([d.connection.clone(), d.before.clone(), d.after.clone()]);
        }
        ui.out(&t.to_string());
        let path = r.path.display();
        match (r.changed, r.dry_run) {
            (false, _) => ui.out(&format!(
                "{path}: already lets both peers in for replication and normal connections; nothing to change"
            )),
            (true, true) => {
                ui.out(&format!("{path}: would become (dry run, nothing changed):"));
                ui.out(r.new_text.as_deref().unwrap_or(""));
            }
            (true, false) => {
                ui.out(&format!(
                    "{path}: the pair's lines are in place (backup: {})",
                    r.backup.as_deref().map(|p| p.display().to_string()).unwrap_or_default()
                ));
                if r.reloaded && r.local {
                    ui.out("keyferry could not log in over the network before the edit: it edited the \
                            file in the data folder, had the server reload it (pg_ctl reload), logged \
                            in and PostgreSQL reports no error in it (pg_hba_file_rules)");
                } else if r.reloaded {
                    ui.out("PostgreSQL accepted the file (pg_hba_file_rules) and has reloaded it");
                } else if r.local {
                    ui.out("the server does not run: it reads the file when it starts");
                } else {
                    ui.out("not reloaded (--file): run SELECT pg_reload_conf() once the file is where the server reads it");
                }
            }
        }
    });
}
