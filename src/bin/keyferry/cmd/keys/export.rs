//! `keyferry keys export`: seal the primary's key set into a passphrase-wrapped bundle with an
//! expiry, so the keys cross to the other nodes without a plaintext copy on the way.

use crate::cmd::{export_work_factor, success, CmdResult};
use crate::failure::{Code, Failure};
use crate::node_args::NodeArgs;
use crate::passphrase::PassphraseArgs;
use crate::ui::Ui;
use keyferry::cluster::host_name;
use keyferry::keys::Encoding;
use keyferry::keys::{build_manifest, export_to_file, seal_to, BundleSummary};
use keyferry::secret::Passphrase;
use keyferry::time::{format_duration, parse_duration, Timestamp};
use keyferry::Error;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  keyferry keys export -c cluster.toml -o keys.kfb\n  keyferry keys export -c cluster.toml -o keys.kfb --passphrase-file /root/pass.txt --ttl 30m"
)]
pub struct Args {
    #[command(flatten)]
    pub node: NodeArgs,
    /// Write the bundle here (created 0600; stdout if omitted and not a terminal)
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Replace an existing output file
    #[arg(long)]
    pub force: bool,
    /// Write raw age binary instead of ASCII armor
    #[arg(long)]
    pub binary: bool,
    /// How long the bundle may be imported, e.g. 30m, 2h (from 5 minutes to 7 days)
    #[arg(long, value_name = "DURATION", default_value = "2h", value_parser = parse_ttl)]
    pub ttl: Duration,
    /// Export although this node is not the primary (only when the primary's keys are lost
    /// and this node is known to hold the right ones)
    #[arg(long)]
    pub from_non_primary: bool,
    /// Accept a supplied passphrase below keyferry's strength floor (about 46 bits)
    #[arg(long)]
    pub allow_weak_passphrase: bool,
    #[command(flatten)]
    pub passphrase: PassphraseArgs,
}

fn parse_ttl(s: &str) -> Result<Duration, String> {
    use keyferry::keys::{MAX_TTL, MIN_TTL};
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!(
            "{s} has no unit; give one, e.g. --ttl {s}m for {s} minutes or --ttl 2h"
        ));
    }
    let d = parse_duration(s).map_err(|e| format!("{e}; e.g. --ttl 30m or --ttl 2h"))?;
    if d < MIN_TTL {
        return Err(format!(
            "{s} is too short to copy the bundle and type the passphrase; at least {}, e.g. --ttl 30m",
            format_duration(MIN_TTL)
        ));
    }
    if d > MAX_TTL {
        return Err(format!(
            "{s} is longer than one maintenance window should last; at most {}, e.g. --ttl 1d",
            format_duration(MAX_TTL)
        ));
    }
    Ok(d)
}

pub fn run(args: Args, ui: &Ui) -> CmdResult {
    let node = args.node.resolve()?;
    let to_stdout = args.output.is_none();
    if to_stdout && ui.stdout_is_terminal() {
        return Err(Failure::new(
            Code::OutputIsTerminal,
            "refusing to write a bundle to the terminal",
            Some("pass -o FILE, or redirect standard output to a file"),
        ));
    }
    if to_stdout && ui.json {
        return Err(Failure::new(
            Code::Usage,
            "--json needs -o FILE: standard output carries the JSON report",
            Some("pass -o FILE"),
        ));
    }
    // The key set first: a refusal about the keys themselves (a DPAPI file this machine
    // cannot decrypt) comes before any question about the passphrase.
    let host = host_name();
    let (manifest, warnings) = build_manifest(
        &node,
        &host,
        Timestamp::now(),
        args.ttl,
        args.from_non_primary,
    )?;
    // Then where the passphrase comes from, before any sealing, so a missing terminal fails
    // fast.
    let supplied = args.passphrase.supplied()?;
    let generated = supplied.is_none();
    if let (Some(p), false) = (&supplied, args.allow_weak_passphrase) {
        p.require_strong()?;
    }
    if generated && !ui.can_prompt() {
        return Err(Failure::library(
            Error::Passphrase,
            "a generated passphrase is shown once on the terminal, and there is none here",
            Some("pass --passphrase-file PATH (mode 0600) or --passphrase-fd N"),
        ));
    }
    let passphrase = supplied.unwrap_or_else(Passphrase::generate);

    for w in &warnings {
        ui.warn(w);
    }
    for e in manifest.header.entries.iter().filter(|e| e.dpapi.is_some()) {
        ui.info(&format!(
            "{} was DPAPI-protected ({} scope): decrypted in memory for the bundle; import protects it again on Windows",
            e.name,
            e.dpapi.map(|s| s.to_string()).unwrap_or_default()
        ));
    }
    let wf = export_work_factor(ui);
    let encoding = if args.binary {
        Encoding::Binary
    } else {
        Encoding::Armored
    };
    let written = match &args.output {
        Some(path) => Some(export_to_file(
            &node,
            &manifest,
            &passphrase,
            wf,
            encoding,
            path,
            args.force,
            ui,
        )?),
        None => {
            let stdout = std::io::stdout();
            seal_to(&manifest, &passphrase, wf, encoding, stdout.lock(), ui)?;
            None
        }
    };
    let summary = BundleSummary::of(&manifest, "export", written.clone());
    ui.show_document(&summary, || {
        let h = &manifest.header;
        match &written {
            Some(p) => ui.info(&format!("Wrote {}", p.display())),
            None => ui.info("Wrote the bundle to standard output"),
        }
        ui.info(&format!(
            "{} from node {} ({}), expires {} (in {})",
            crate::ui::count(h.entries.len(), "file", "files"),
            h.source.node,
            h.source.role,
            h.expires,
            format_duration(args.ttl)
        ));
        if to_stdout {
            ui.info(&format!("Key-set fingerprint: {}", h.fingerprint));
        } else {
            ui.out(&h.fingerprint.to_string());
        }
        if written.is_some() {
            ui.info("Remove the bundle after the import (import does it) or with: keyferry keys cleanup");
        }
    });
    if generated {
        ui.show_passphrase_once(passphrase.expose_secret());
    }
    success()
}
