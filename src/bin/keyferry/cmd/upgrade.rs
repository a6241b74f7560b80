//! `keyferry upgrade plan`: the vendor upgrade procedure for this cluster as a checklist, node
//! names filled in, automatic steps as the keyferry commands they are, manual steps as what to
//! do where, and the check that gates each step.

use crate::cmd::CmdResult;
use crate::ui::Ui;
use clap::Subcommand;
use keyferry::cluster::ClusterFile;
use keyferry::upgrade::{plan, Kind};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum UpgradeCommand {
    /// Print the whole upgrade checklist for this cluster (changes nothing)
    Plan(PlanArgs),
}

#[derive(Debug, clap::Args)]
#[command(
    after_help = "The procedure follows the cluster file's profile: a Secret Server web \
cluster (back up, stop all but the primary, upgrade it, copy its application folder minus \
database.config and encryption.config to the others, start them, confirm); a Privilege Secure \
HA pair (in keyferry's order, with one writable database at every step: docs/ha.md) and its \
remote Action, Scheduler and Proxy hosts (upgrade each, keys to Action and Scheduler only, \
register the services). [auto] steps are the keyferry commands shown, run on the node named; \
[manual] steps are the vendor's installer, reboots and console buttons.\n\n\
Examples:\n  keyferry upgrade plan -c cluster.toml\n  keyferry upgrade plan -c cluster.toml --json"
)]
pub struct PlanArgs {
    /// Cluster file describing the nodes (docs/cluster-file.md)
    #[arg(long, short = 'c', value_name = "FILE", env = "KEYFERRY_CLUSTER")]
    pub cluster: PathBuf,
}

pub fn run(c: UpgradeCommand, ui: &Ui) -> CmdResult {
    let UpgradeCommand::Plan(args) = c;
    let file = ClusterFile::load(&args.cluster)?;
    let p = plan(&file, &args.cluster.display().to_string())?;
    if ui.json {
        super::ha::emit(ui, "upgrade-plan", &p);
        return Ok(ExitCode::SUCCESS);
    }
    let mut current = None;
    for s in &p.steps {
        if current != Some(s.procedure) {
            current = Some(s.procedure);
            ui.out(&format!("\n{}", s.procedure.title()));
        }
        let kind = match s.kind {
            Kind::Auto => "auto",
            Kind::Manual => "manual",
        };
        ui.out(&format!(
            "{:>3}. [{kind}] {}{}",
            s.n,
            s.title,
            s.node
                .as_deref()
                .map(|n| format!(" (on {n})"))
                .unwrap_or_default()
        ));
        if let Some(g) = &s.gate {
            ui.out(&format!("       only when: {g}"));
        }
        ui.out(&format!("       {}", s.what));
    }
    let manual = p.steps.iter().filter(|s| s.kind == Kind::Manual).count();
    ui.out(&format!(
        "\n{} steps: {} automatic, {manual} manual.",
        p.steps.len(),
        p.steps.len() - manual
    ));
    Ok(ExitCode::SUCCESS)
}
