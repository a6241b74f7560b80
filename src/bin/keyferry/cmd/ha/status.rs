//! `keyferry ha status`: both nodes at once, the pair's verdict, `--watch`.

use super::PairArgs;
use crate::cmd::CmdResult;
use crate::ui::Ui;
use keyferry::ha::{pair_status, PairStatus, Role};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Exit status: 0 one primary and one replica streaming from it; 1 anything \
else (split brain, a node down, a replica not streaming); 2 error."
)]
pub struct Args {
    #[command(flatten)]
    pub pair: PairArgs,
    /// Refresh every SECONDS until interrupted
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub watch: Option<u64>,
}

pub fn run(args: Args, ui: &Ui) -> CmdResult {
    let loaded = args.pair.load()?;
    let conn = loaded.connector();
    loop {
        let st = pair_status(&conn);
        show(&st, ui);
        match args.watch {
            Some(s) => std::thread::sleep(Duration::from_secs(s)),
            None => {
                return Ok(if st.healthy() {
                    ExitCode::SUCCESS
                } else {
                    crate::exit::NO.into()
                })
            }
        }
    }
}

fn show(st: &PairStatus, ui: &Ui) {
    ui.show_report(st, || {
        let mut t = ui.table([
            "node",
            "address",
            "state",
            "timeline",
            "WAL position",
            "replication",
        ]);
        for n in &st.nodes {
            let repl = match n.role {
                Role::RunningPrimary if n.replicas.is_empty() => "no replica connected".to_owned(),
                Role::RunningPrimary => n
                    .replicas
                    .iter()
                    .map(|r| {
                        format!(
                            "{} from {}: {}, {}",
                            r.application_name,
                            r.client_addr.as_deref().unwrap_or("?"),
                            r.state,
                            match (r.lag_bytes, r.lag_seconds) {
                                (Some(b), Some(s)) => format!("lag {b} B / {s:.1} s"),
                                (Some(b), None) => format!("lag {b} B"),
                                // Right after the start nothing has been replayed yet.
                                _ => "lag not known yet (nothing replayed so far)".into(),
                            }
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("; "),
                Role::RunningReplica => match &n.receiver {
                    Some(r) => format!(
                        "{} from {}, {}",
                        r.status,
                        r.sender_host.as_deref().unwrap_or("?"),
                        match (r.replay_lag_bytes, r.replay_lag_seconds) {
                            (Some(b), Some(s)) => format!("replay lag {b} B / {s:.1} s"),
                            (Some(b), None) => format!("replay lag {b} B"),
                            _ => "replay lag not known yet".into(),
                        }
                    ),
                    None => "not receiving (no WAL receiver)".into(),
                },
                _ => n.detail.clone().unwrap_or_default(),
            };
            let state = if st.verdict == keyferry::ha::Verdict::SplitBrain
                && n.role == Role::RunningPrimary
            {
                "Running Primary (SPLIT BRAIN)".to_owned()
            } else {
                n.role.label().to_owned()
            };
            t.add_row([
                n.node.clone(),
                format!("{}:{}", n.address, n.port),
                state,
                n.timeline.map(|t| t.to_string()).unwrap_or_default(),
                n.lsn.clone().unwrap_or_default(),
                repl,
            ]);
        }
        ui.out(&t.to_string());
        let slots: Vec<String> = st
            .nodes
            .iter()
            .flat_map(|n| {
                n.slots.iter().map(move |s| {
                    format!(
                        "slot {} on {}: {}, wal {}",
                        s.name,
                        n.node,
                        if s.active { "active" } else { "inactive" },
                        s.wal_status.as_deref().unwrap_or("?")
                    )
                })
            })
            .collect();
        for s in slots {
            ui.out(&s);
        }
        if st.problems.is_empty() {
            ui.out("pair: healthy (one primary, one replica streaming from it)");
        }
        for p in &st.problems {
            ui.out(&format!("pair: {p}"));
        }
    });
}
