//! `keyferry ha check`: what the pair needs, checked from this node.

use super::PairArgs;
use crate::cmd::CmdResult;
use crate::ui::Ui;
use keyferry::ha::check::{check, CheckReport, Severity};
use serde::Serialize;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Checks: this node's address is its own; the peer's PostgreSQL and web-services \
ports answer (refused: nothing listens; no answer: dropped by a firewall or the host is down); \
on both servers, pg_hba.conf surely lets both peers in for replication and normal connections \
(simulated first-match), wal_level, max_wal_senders, hot_standby, wal_log_hints or checksums \
(for rejoin), the same major version; the local Archive folder is empty.\n\n\
Exit status: 0 no error finding; 1 an error finding; 2 error."
)]
pub struct Args {
    #[command(flatten)]
    pub pair: PairArgs,
}

pub fn run(args: Args, ui: &Ui) -> CmdResult {
    let loaded = args.pair.load()?;
    let node = args.pair.local(&loaded.pair)?;
    let report = check(&loaded.connector(), node);
    show(&report, ui);
    Ok(if report.errors() == 0 {
        ExitCode::SUCCESS
    } else {
        crate::exit::NO.into()
    })
}

fn show(r: &CheckReport, ui: &Ui) {
    if ui.json {
        #[derive(Serialize)]
        struct Doc<'a> {
            version: u32,
            kind: &'static str,
            ok: bool,
            #[serde(flatten)]
            report: &'a CheckReport,
        }
        ui.json(&Doc {
            version: keyferry::JSON_VERSION,
            kind: "ha-check",
            ok: r.errors() == 0,
            report: r,
        });
        return;
    }
    let mut t = ui.table(["", "code", "node", "finding"]);
    for f in &r.findings {
        let mark = match f.severity {
            Severity::Ok => "ok",
            Severity::Warning => "WARN",
            Severity::Error => "ERROR",
        };
        t.add_row([
            mark.to_owned(),
            f.code.as_str(),
            f.node.clone(),
            f.message.clone(),
        ]);
    }
    ui.out(&t.to_string());
    let n = r.errors();
    if n == 0 {
        ui.out(&format!(
            "from {}: no error finding ({} checks)",
            r.from,
            r.findings.len()
        ));
    } else {
        ui.out(&format!("from {}: {n} error finding(s)", r.from));
    }
}
