//! `keyferry keys import BUNDLE`: install the primary's keys on this node only after every
//! check passes, never replacing a different key without `--replace` and a backup.

use crate::cmd::{success, CmdResult};
use crate::failure::Code;
use crate::node_args::NodeArgs;
use crate::passphrase::PassphraseArgs;
use crate::ui::Ui;
use keyferry::keys::MAX_IMPORT_WORK_FACTOR;
use keyferry::keys::{import_file, FileAction, ImportOptions, ImportOutcome, ProtectMode};
use keyferry::recover::Own;
use keyferry::time::Timestamp;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Checks, in order: passphrase, integrity of the file, format version, expiry, entry names, \
SHA-256 and fingerprint, role, profile and cluster. Any failure exits 2 and changes nothing.\n\n\
Examples:\n  keyferry keys import keys.kfb -c cluster.toml --dry-run\n  keyferry keys import keys.kfb -c cluster.toml --replace"
)]
pub struct Args {
    /// The bundle written by `keyferry keys export`, or `-`: a push stream on standard input
    /// (what `keyferry keys push` sends over ssh)
    #[arg(value_name = "BUNDLE")]
    pub bundle: PathBuf,
    #[command(flatten)]
    pub node: NodeArgs,
    /// Replace key files that differ (backed up first); without it, a differing node is refused
    #[arg(long)]
    pub replace: bool,
    /// With --replace, also on the primary, whose key set encrypts the database
    #[arg(long, requires = "replace")]
    pub replace_primary: bool,
    /// With --replace, let a DPAPI-protected key on this node be replaced by an unprotected
    /// one (without it such a replace is refused: keyferry keeps a node's protection)
    #[arg(long, requires = "replace")]
    pub leave_unprotected: bool,
    /// Show the plan and change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Leave the bundle file in place afterwards (recorded for `keys cleanup`)
    #[arg(long)]
    pub keep_bundle: bool,
    /// Import a bundle past its expiry time
    #[arg(long)]
    pub allow_expired: bool,
    /// Wrap installed files with machine-scope DPAPI (Windows) [default: auto, i.e. when the
    /// source file was DPAPI-protected]
    #[arg(long, value_enum, value_name = "HOW")]
    pub protect: Option<Protect>,
    #[command(flatten)]
    pub passphrase: PassphraseArgs,
    #[command(flatten)]
    pub wait: crate::node_args::WaitArgs,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Protect {
    Dpapi,
    None,
}

/// `keys import -`: a push stream on stdin (from `keys push` over ssh), never a terminal.
fn read_stream(
    args: &Args,
    ui: &Ui,
) -> Result<zeroize::Zeroizing<Vec<u8>>, crate::failure::Failure> {
    use std::io::Read;
    if args.passphrase.passphrase_file.is_some() || args.passphrase.passphrase_fd.is_some() {
        return Err(crate::failure::Failure::new(
            Code::Usage,
            "`keys import -` takes its passphrase from the push stream, not from --passphrase-file or --passphrase-fd",
            Some("leave those out: keyferry keys push sends the passphrase inside the stream"),
        ));
    }
    if ui.stdin_is_terminal() {
        return Err(crate::failure::Failure::new(
            Code::Usage,
            "`keys import -` reads a push stream on standard input, which is a terminal here",
            Some("run keyferry keys push on the primary (it feeds this over ssh), or import a bundle file"),
        ));
    }
    let limit = keyferry::keys::MAX_BUNDLE_BYTES + 4096;
    let mut buf = zeroize::Zeroizing::new(Vec::new());
    std::io::stdin()
        .lock()
        .take(limit + 1)
        .read_to_end(&mut buf)
        .map_err(|e| keyferry::Error::io("standard input", e))?;
    if buf.len() as u64 > limit {
        return Err(keyferry::Error::TooLarge {
            path: "standard input".into(),
            what: "push stream",
            limit,
        }
        .into());
    }
    Ok(buf)
}

pub fn run(args: Args, ui: &Ui) -> CmdResult {
    let (node, file) = args.node.resolve_in()?;
    if !args.dry_run {
        let wait = args.wait.wait;
        crate::cmd::recover::first_in(ui, file.as_ref(), &node, wait, Own::Change)?;
    }
    if args.bundle.as_os_str() == "-" {
        let stream = read_stream(&args, ui)?;
        let report = keyferry::keys::import_stream(&stream, &node, &options(&args), ui)?;
        return show(report, ui);
    }
    // Fail on a missing or unreadable bundle before asking for the passphrase.
    keyferry::fs::open_regular(&args.bundle)?
        .ok_or_else(|| keyferry::Error::missing(&args.bundle, "keyferry bundle"))?;
    let opts = options(&args);
    let report = args
        .passphrase
        .try_open(ui, "Bundle passphrase: ", |passphrase| {
            import_file(&args.bundle, passphrase, &node, &opts, args.keep_bundle, ui)
        })?;
    show(report, ui)
}

fn options(args: &Args) -> ImportOptions {
    ImportOptions {
        protect: match args.protect {
            Some(Protect::Dpapi) => ProtectMode::Dpapi,
            Some(Protect::None) => ProtectMode::None,
            None => ProtectMode::Auto,
        },
        replace: args.replace,
        replace_primary: args.replace_primary,
        dry_run: args.dry_run,
        allow_expired: args.allow_expired,
        now: Timestamp::now(),
        max_work_factor: MAX_IMPORT_WORK_FACTOR,
        wait: args.wait.wait,
        leave_unprotected: args.leave_unprotected,
    }
}

fn show(report: keyferry::keys::ImportReport, ui: &Ui) -> CmdResult {
    if report.expired_override {
        ui.warn(&format!(
            "IMPORTING AN EXPIRED BUNDLE (expired {}) because --allow-expired was given",
            report.bundle.expires
        ));
    }
    if let Some(r) = &report.recovered {
        ui.warn(&format!("first: {r}"));
    }
    for r in &report.swept {
        ui.warn(&format!(
            "removed a keyferry temp file left by a crash: {r}"
        ));
    }
    for w in report.plan.warnings.iter().chain(&report.warnings) {
        ui.warn(w);
    }
    ui.show_document(&report, || {
        let b = &report.bundle;
        ui.out(&format!(
            "Bundle from {} ({}, {}), created {}, fingerprint {}",
            b.source_node, b.source_role, b.source_host, b.created, b.fingerprint
        ));
        for f in &report.plan.files {
            let what = match (f.action, report.outcome) {
                (FileAction::Unchanged, _) => "unchanged",
                (FileAction::Install, ImportOutcome::DryRun) => "would install",
                (FileAction::Replace, ImportOutcome::DryRun) => "would replace",
                (FileAction::Install, _) => "installed",
                (FileAction::Replace, _) => "replaced",
                (FileAction::CannotCompare, _) => "cannot compare (protected)",
            };
            let dpapi = if f.dpapi {
                "  (DPAPI, machine scope)"
            } else {
                ""
            };
            ui.out(&format!("  {what:<13} {}{dpapi}", f.path.display()));
            if f.action != FileAction::Unchanged {
                ui.out(&format!("  {:<13} {}", "", f.attributes.describe()));
            }
        }
        for s in &report.plan.skipped {
            ui.out(&format!(
                "  {:<13} {s} (not for role {})",
                "skipped", report.role
            ));
        }
        match report.outcome {
            ImportOutcome::Unchanged => {
                ui.out(&format!(
                    "Node {} already holds these keys: nothing changed.",
                    report.node
                ));
                if report.bundle_kept {
                    ui.info("The bundle was left in place (on the ledger): `keyferry keys cleanup` removes it when every node has the keys.");
                }
            }
            ImportOutcome::DryRun => {
                if let Some(r) = &report.would_refuse {
                    ui.out(&format!(
                        "A real import would be refused [{}]: {}",
                        r.code, r.message
                    ));
                    if let Some(h) = crate::failure::hint_for_code(r.code) {
                        ui.out(&format!("  {h}"));
                    }
                }
                if report.bundle_removed_after {
                    ui.out("A real import removes the bundle afterwards; other nodes need their own copy, or pass --keep-bundle.");
                }
                ui.info("Dry run: nothing was changed.");
            }
            ImportOutcome::Installed => {
                if let Some(d) = &report.backup_dir {
                    ui.out(&format!("Previous files backed up in {}", d.display()));
                }
                ui.out(&format!(
                    "Key-set fingerprint now {}",
                    report.plan.fingerprint
                ));
                match &report.bundle_removal {
                    Some(r) => {
                        ui.out(&format!("Bundle {r}"));
                        ui.info("Other nodes need their own copy of the bundle (--keep-bundle leaves it in place for them).");
                    }
                    None if !report.bundle_kept => {}
                    None => {
                        ui.info("Bundle kept (--keep-bundle); `keyferry keys cleanup` will remove it.")
                    }
                }
                if let Some(next) = &report.next_step {
                    ui.info(&format!("Next: {next}"));
                }
            }
        }
    });
    success()
}
