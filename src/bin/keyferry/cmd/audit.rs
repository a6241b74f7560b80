//! `keyferry audit`: the proof that every node holds the primary's keys and binaries; exit 1 and
//! a table of who differs, misses keys or cannot be reached when not.

use crate::cmd::CmdResult;
use crate::ui::Ui;
use keyferry::audit::{collect, compare, AuditOptions, Binaries};
use keyferry::cluster::ClusterFile;
use keyferry::time::parse_duration;
use std::time::Duration;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Each node is reached by its `access` in the cluster file: \"paths\" (default: read \
its folders, local or UNC), a folder path, \"ssh://user@host[:port]\" (runs keyferry fingerprint --json there \
through OpenSSH, batch mode; host keys per your ssh configuration), or \"report:FILE\" (a saved report).\n\n\
Exit status: 0 every node that needs keys matches the primary; 1 a node differs, misses keys or cannot be \
reached; 2 error."
)]
pub struct Args {
    #[command(flatten)]
    pub cluster: crate::node_args::ClusterArg,
    /// Nodes collected at once (1 to 64)
    #[arg(long, short = 'j', default_value_t = 8, value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..=64))]
    pub jobs: u16,
    /// Give up on a node after this long
    #[arg(long, default_value = "20s", value_parser = parse_duration, value_name = "DURATION")]
    pub timeout: Duration,
    /// Fail nodes whose clock differs from this machine's by more than this (ssh-collected
    /// reports; the upgrade preflight uses the same threshold)
    #[arg(long, default_value = "60s", value_parser = parse_duration, value_name = "DURATION")]
    pub max_skew: Duration,
    #[command(flatten)]
    pub ssh: crate::node_args::SshArgs,
}

pub fn run(args: Args, ui: &Ui) -> CmdResult {
    let path = args.cluster.path.clone();
    let file = ClusterFile::load(&path)?;
    let opts = AuditOptions {
        jobs: usize::from(args.jobs),
        timeout: args.timeout,
        ssh_program: args.ssh.ssh,
        ssh_config: args.ssh.ssh_config,
        max_skew: args.max_skew,
        cluster_path: path,
    };
    let collected = collect(&file, &opts, ui);
    let report = compare(&file, &collected, opts.max_skew);
    ui.show_document(&report, || {
        let mut t = ui.table([
            "node",
            "role",
            "via",
            "keys",
            "fingerprint",
            "binaries",
            "clock",
            "detail",
        ]);
        // Group by fingerprint: the reference group first, then the others, then the rest.
        let mut rows: Vec<_> = report.nodes.iter().collect();
        rows.sort_by_key(|n| {
            (
                n.fingerprint != report.reference_fingerprint,
                n.fingerprint.map(|f| f.to_string()),
                n.role,
            )
        });
        for n in rows {
            let status = n.status.as_str().to_owned();
            let fp = n
                .fingerprint
                .map(|f| short(&f.to_string()))
                .unwrap_or_else(|| "-".into());
            let bin = match n.binaries {
                Binaries::Same => "same".to_string(),
                Binaries::Differs if n.differing_paths.is_empty() => "DIFFER".to_string(),
                Binaries::Differs => format!("DIFFER: {}", n.differing_paths.join(", ")),
                Binaries::Unknown => "-".to_string(),
            };
            let clock = match (n.clock_skew_seconds, n.clock_flagged) {
                (Some(s), true) => format!("SKEW {s:+}s"),
                (Some(s), false) => format!("{s:+}s"),
                (None, _) => "-".into(),
            };
            let status = if n.status.fails() {
                status.to_uppercase()
            } else {
                status
            };
            t.add_row([
                n.node.clone(),
                n.role.to_string(),
                n.via.clone().unwrap_or_else(|| "-".into()),
                status,
                fp,
                bin,
                clock,
                n.reason.clone().unwrap_or_default(),
            ]);
        }
        ui.out(&t.to_string());
        ui.out(&format!(
            "reference: {} {}",
            report.reference,
            report
                .reference_fingerprint
                .map(|f| f.to_string())
                .unwrap_or_else(|| "(unavailable)".into())
        ));
        let problems = report.problems();
        if report.ok {
            ui.out("All nodes that need keys hold the primary's key set, and the binaries match where they were compared.");
        } else {
            for p in &problems {
                ui.out(&format!("Problem: {p}"));
            }
        }
    });
    Ok(if report.ok {
        crate::exit::SUCCESS
    } else {
        crate::exit::NO
    }
    .into())
}

fn short(fp: &str) -> String {
    fp.chars().take(7 + 12).collect::<String>() + "…"
}
