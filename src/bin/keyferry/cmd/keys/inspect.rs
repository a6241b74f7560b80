//! `keyferry keys inspect BUNDLE`: what a bundle carries (source, expiry, files, fingerprint)
//! before anyone imports it; never the key bytes.

use crate::cmd::{success, CmdResult};
use crate::passphrase::PassphraseArgs;
use crate::ui::Ui;
use keyferry::keys::BundleSummary;
use keyferry::keys::{Bundle, MAX_IMPORT_WORK_FACTOR};
use keyferry::progress::Progress;
use keyferry::time::Timestamp;
use serde::Serialize;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The bundle to look into
    #[arg(value_name = "BUNDLE")]
    pub bundle: PathBuf,
    #[command(flatten)]
    pub passphrase: PassphraseArgs,
}

#[derive(Serialize)]
struct InspectReport {
    #[serde(flatten)]
    summary: BundleSummary,
    expired: bool,
    integrity: &'static str,
}

pub fn run(args: Args, ui: &Ui) -> CmdResult {
    let bytes = Bundle::read_file(&args.bundle)?;
    let manifest = args
        .passphrase
        .try_open(ui, "Bundle passphrase: ", |passphrase| {
            ui.start("decrypting (scrypt)");
            let m = Bundle::open(&bytes[..], passphrase, MAX_IMPORT_WORK_FACTOR);
            ui.finish();
            m
        })?;
    manifest.check_names(None)?;
    manifest.verify_integrity()?;
    let report = InspectReport {
        summary: BundleSummary::of(&manifest, "inspect", None),
        expired: Timestamp::now() >= manifest.header.expires,
        integrity: "ok",
    };
    ui.show_document(&report, || {
        let s = &report.summary;
        ui.out(&format!(
            "cluster      {}",
            s.cluster.as_deref().unwrap_or("(none)")
        ));
        ui.out(&format!("profile      {}", s.profile));
        ui.out(&format!(
            "source       {} ({}) on host {}",
            s.source_node, s.source_role, s.source_host
        ));
        ui.out(&format!("created      {}", s.created));
        ui.out(&format!(
            "expires      {}{}",
            s.expires,
            if report.expired { "  (EXPIRED)" } else { "" }
        ));
        ui.out(&format!("fingerprint  {}", s.fingerprint));
        ui.out("entries:");
        for e in &s.entries {
            let roles: Vec<_> = e.roles.iter().map(|r| r.as_str()).collect();
            ui.out(&format!(
                "  {:<20} {:>8} bytes  sha256 {}  for {}",
                e.name,
                e.len,
                e.sha256.to_hex(),
                roles.join(", ")
            ));
        }
        ui.out("integrity    ok (every entry matches its SHA-256 and the fingerprint)");
    });
    success()
}
