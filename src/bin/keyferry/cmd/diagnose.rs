//! `keyferry diagnose`: admins paste the error they see; this names the cause, the vendor's
//! fix and the keyferry commands, and with a cluster file runs the checks that bear on it.

use crate::cmd::CmdResult;
use crate::failure::{Code, Failure};
use crate::ui::Ui;
use keyferry::audit::{collect, compare, AuditOptions};
use keyferry::cluster::ClusterFile;
use keyferry::diagnose::{
    check_ports, explain, findings_from_audit, pg_hba_findings, scan_log, Check, Explained,
    Finding, Severity, ALL_CHECKS,
};
use serde::Serialize;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "With a cluster file (-c), the checks that bear on the error run, or those named \
by --check.\n\nExamples:\n  keyferry diagnose \"Key not valid for use in specified state.\"\n  keyferry diagnose --log C:\\inetpub\\wwwroot\\SecretServer\\log\\ss.log -c cluster.toml\n  keyferry diagnose -c cluster.toml --check ports --check pg-hba\n\nExit status: 0 no check found a fault; 1 a check found one; 2 error."
)]
pub struct Args {
    /// The error message as the admin saw it
    #[arg(value_name = "MESSAGE")]
    pub message: Option<String>,
    /// Read messages from a log file instead
    #[arg(long, value_name = "FILE", conflicts_with = "message")]
    pub log: Option<PathBuf>,
    // With a cluster file, the checks that bear on the error run (or those named by --check).
    #[command(flatten)]
    pub cluster: crate::node_args::ClusterOpt,
    /// Run this check (repeatable): keys, dpapi, binaries, clocks, ports, pg-hba, all
    #[arg(long = "check", value_name = "CHECK", value_parser = parse_check)]
    pub checks: Vec<Vec<Check>>,
    /// Ports to test instead of each role's defaults (comma-separated)
    #[arg(long, value_delimiter = ',', value_name = "PORTS")]
    pub ports: Option<Vec<u16>>,
    /// Replication user expected in pg_hba.conf lines
    #[arg(long, default_value = "repuser", value_name = "USER")]
    pub repl_user: String,
    /// Per-node and per-port time limit
    #[arg(long, default_value = "5s", value_parser = keyferry::time::parse_duration, value_name = "DURATION")]
    pub timeout: Duration,
    /// How the audit's checks reach nodes over ssh (as `keyferry audit` does)
    #[command(flatten)]
    pub ssh: crate::node_args::SshArgs,
}

fn parse_check(s: &str) -> Result<Vec<Check>, String> {
    Ok(match s {
        "all" => ALL_CHECKS.to_vec(),
        "keys" => vec![Check::Keys],
        "dpapi" => vec![Check::Dpapi],
        "binaries" => vec![Check::Binaries],
        "clocks" => vec![Check::Clocks],
        "ports" => vec![Check::Ports],
        "pg-hba" => vec![Check::PgHba],
        _ => {
            return Err(format!(
                "unknown check {s:?} (keys, dpapi, binaries, clocks, ports, pg-hba, all)"
            ))
        }
    })
}

#[derive(Serialize)]
struct Report {
    recognised: bool,
    matches: Vec<Explained>,
    /// `--log`: lines read, matched and not, and a few error lines nothing matched.
    log: Option<LogSummary>,
    checks_run: Vec<Check>,
    findings: Vec<Finding>,
    available_checks: &'static [Check],
}

#[derive(Serialize)]
struct LogSummary {
    lines: usize,
    matched: usize,
    unmatched: usize,
    unmatched_errors: Vec<String>,
}

const MAX_LOG: u64 = 64 * 1024 * 1024;

pub fn run(args: Args, ui: &Ui) -> CmdResult {
    if args.message.is_none() && args.log.is_none() && args.cluster.path.is_none() {
        return Err(Failure::new(
            Code::Usage,
            "nothing to diagnose",
            Some("give the error MESSAGE, --log FILE, or --cluster FILE to run checks"),
        ));
    }
    // The cluster file, when given, names the nodes in the fixes and runs the checks.
    let file = match &args.cluster.path {
        Some(path) => Some(ClusterFile::load(path)?),
        None => None,
    };
    let mut matches: Vec<Explained> = Vec::new();
    let mut log_summary = None;
    if let Some(m) = &args.message {
        matches = explain(m, file.as_ref());
    } else if let Some(log) = &args.log {
        let bytes = keyferry::fs::read_bounded(log, MAX_LOG, "log file to scan")?;
        let scan = scan_log(&String::from_utf8_lossy(&bytes), file.as_ref());
        matches = scan.explained;
        log_summary = Some(LogSummary {
            lines: scan.lines,
            matched: scan.matched,
            unmatched: scan.unmatched,
            unmatched_errors: scan.unmatched_errors,
        });
    }
    let mut checks: Vec<Check> = args.checks.iter().flatten().copied().collect();
    if checks.is_empty() && args.cluster.path.is_some() {
        checks = if matches.is_empty() {
            ALL_CHECKS.to_vec()
        } else {
            matches
                .iter()
                .flat_map(|m| m.known.checks.iter().copied())
                .collect()
        };
    }
    checks.sort_by_key(|c| *c as u8);
    checks.dedup();

    let mut findings = Vec::new();
    if let (Some(path), Some(file)) = (&args.cluster.path, &file) {
        if checks.is_empty() {
            checks = ALL_CHECKS.to_vec();
        }
        if checks.iter().any(|c| {
            matches!(
                c,
                Check::Keys | Check::Dpapi | Check::Binaries | Check::Clocks
            )
        }) {
            let opts = AuditOptions {
                jobs: 8,
                timeout: args.timeout,
                ssh_program: args.ssh.ssh.clone(),
                ssh_config: args.ssh.ssh_config.clone(),
                max_skew: Duration::from_secs(60),
                cluster_path: path.clone(),
            };
            let collected = collect(file, &opts, ui);
            findings.extend(findings_from_audit(
                &compare(file, &collected, opts.max_skew),
                &checks,
                path,
            ));
        }
        if checks.contains(&Check::Ports) {
            findings.extend(check_ports(file, args.ports.as_deref(), args.timeout));
        }
        if checks.contains(&Check::PgHba) {
            findings.extend(pg_hba_findings(file, &args.repl_user));
        }
    }
    findings.sort_by_key(|f| std::cmp::Reverse(f.severity));
    let report = Report {
        recognised: !matches.is_empty(),
        matches,
        log: log_summary,
        checks_run: checks,
        findings,
        available_checks: ALL_CHECKS,
    };
    let fault = report
        .findings
        .iter()
        .any(|f| f.severity == Severity::Error);
    ui.show("diagnose", &report, || {
        print_text(&report, &args, ui);
    });
    Ok(if fault {
        crate::exit::NO
    } else {
        crate::exit::SUCCESS
    }
    .into())
}

fn print_text(r: &Report, args: &Args, ui: &Ui) {
    if let Some(l) = &r.log {
        ui.out(&format!(
            "Read {}: {} matched a known error, {} did not.",
            crate::ui::count(l.lines, "line", "lines"),
            l.matched,
            l.unmatched
        ));
        if !l.unmatched_errors.is_empty() {
            ui.out("Error lines keyferry does not recognise (paste them into a search, or to support):");
            for e in &l.unmatched_errors {
                ui.out(&format!("  {e}"));
            }
        }
    }
    if args.message.is_some() || args.log.is_some() {
        if r.matches.is_empty() {
            ui.out("Not recognised: keyferry's catalogue has no entry for this message.");
            if args.cluster.path.is_none() {
                ui.out("Checks it can still run with --cluster FILE: keys, dpapi, binaries, clocks, ports, pg-hba (--check all).");
            }
        }
        for m in &r.matches {
            ui.out(&format!("{} [{}]", m.known.title, m.known.code));
            if let Some(e) = &m.evidence {
                match &m.seen {
                    Some(seen) => ui.out(&format!("  seen:   {seen}: {e}")),
                    None => ui.out(&format!("  seen:   {e}")),
                }
            }
            ui.out(&format!("  cause:  {}", m.known.cause));
            ui.out(&format!(
                "  fix:    {}",
                m.specific_fix.as_deref().unwrap_or(m.known.fix)
            ));
            for c in &m.run {
                ui.out(&format!("  run:    {c}"));
            }
        }
    }
    if !r.checks_run.is_empty() {
        let faults = r.findings.iter().any(|f| f.severity > Severity::Info);
        if !faults {
            ui.out(if r.findings.is_empty() {
                "Checks found nothing wrong."
            } else {
                "Checks found nothing wrong in what they could test; see below for what they could not."
            });
        }
        for f in &r.findings {
            let sev = f.severity.as_str();
            ui.out(&format!(
                "{sev}: [{}] {}{}",
                f.code,
                f.node
                    .as_deref()
                    .map(|n| format!("{n}: "))
                    .unwrap_or_default(),
                f.message
            ));
            if let Some(fix) = &f.fix {
                ui.out(&format!("  fix: {fix}"));
            }
        }
    }
}
