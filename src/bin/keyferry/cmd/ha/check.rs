//! `keyferry ha check`: what the pair needs, checked from this node and, through the peer's
//! access, from the peer.

use super::PairArgs;
use crate::cmd::CmdResult;
use crate::ui::Ui;
use keyferry::ha::{check, check_here, peer_view, CheckReport, PeerRun, Severity};
use keyferry::time::parse_duration;
use serde::Serialize;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Checks: this node's address is its own; the peer's PostgreSQL and web-services \
ports answer (refused: nothing listens; no answer: dropped by a firewall or the host is down); \
on both servers, pg_hba.conf surely lets both peers in for replication and normal connections \
(simulated first-match), wal_level, max_wal_senders, hot_standby, wal_log_hints or checksums \
(for rejoin), wal_keep_size, the same major version; the local Archive folder is empty.\n\n\
The peer's own view (its address, this node's ports from there, its Archive folder) comes from \
keyferry ha check --here-only run on the peer through its access (ssh://, as keyferry audit \
reaches it; remote_keyferry and remote_cluster name the program and cluster file there). With \
any other access the report says those checks were not run (peer-not-checked).\n\n\
Exit status: 0 no error finding; 1 an error finding; 2 error."
)]
pub struct Args {
    #[command(flatten)]
    pub pair: PairArgs,
    /// Only what this node sees for itself (address, the peer's ports, Archive folder): no
    /// SQL, no password file, no run on the peer
    #[arg(long)]
    pub here_only: bool,
    #[command(flatten)]
    pub ssh: crate::node_args::SshArgs,
    /// Give up on the peer's run after this long
    #[arg(long, default_value = "30s", value_parser = parse_duration, value_name = "DURATION")]
    pub timeout: Duration,
}

pub fn run(args: Args, ui: &Ui) -> CmdResult {
    let report = if args.here_only {
        let (_, pair) = args.pair.load_pair()?;
        let node = args.pair.local(&pair)?;
        check_here(&pair, node)
    } else {
        let loaded = args.pair.load()?;
        let node = args.pair.local(&loaded.pair)?;
        let peer = loaded.pair.peer_of(node);
        let run = PeerRun {
            file: &loaded.file,
            cluster_path: &args.pair.cluster.path,
            ssh: args.ssh.client(),
            timeout: args.timeout,
        };
        // The peer's run and this node's SQL checks overlap.
        std::thread::scope(|s| {
            let view = s.spawn(|| peer_view(&run, node, peer));
            let conn = loaded.connector();
            let mut here = check(&conn, node);
            let view = view.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
            here.add_peer(peer, view);
            here
        })
    };
    show(&report, ui);
    Ok(if report.errors() == 0 {
        ExitCode::SUCCESS
    } else {
        crate::exit::NO.into()
    })
}

fn show(r: &CheckReport, ui: &Ui) {
    #[derive(Serialize)]
    struct Checked<'a> {
        ok: bool,
        #[serde(flatten)]
        report: &'a CheckReport,
    }
    let checked = Checked {
        ok: r.errors() == 0,
        report: r,
    };
    ui.show("ha-check", &checked, || {
        let mut t = ui.table(["", "code", "node", "from", "finding"]);
        for f in &r.findings {
            let mark = match f.severity {
                Severity::Ok => "ok",
                Severity::Info => "info",
                Severity::Warning => "WARN",
                Severity::Error => "ERROR",
            };
            t.add_row([
                mark.to_owned(),
                f.code.as_str().to_owned(),
                f.node.clone().unwrap_or_default(),
                f.more.from.clone(),
                match &f.fix {
                    Some(fix) => format!("{}\nfix: {fix}", f.message),
                    None => f.message.clone(),
                },
            ]);
        }
        ui.out(&t.to_string());
        let from = r.from.join(" and ");
        let only = if r.from.len() == 1 { " only" } else { "" };
        match r.errors() {
            0 => ui.out(&format!(
                "from {from}{only}: no error finding ({} checks)",
                r.findings.len()
            )),
            n => ui.out(&format!("from {from}{only}: {n} error finding(s)")),
        }
    });
}
