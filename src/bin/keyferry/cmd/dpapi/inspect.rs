//! `keyferry dpapi inspect FILE`: whether a file holds DPAPI blobs, of which scope, in which
//! form; the first question when a copied key gives "Key not valid for use in specified state".

use crate::cmd::{success, CmdResult};
use crate::ui::Ui;
use keyferry::dpapi::{classify, BlobReport};
use serde::Serialize;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Finds blobs as raw bytes, base64 or hex text, UTF-16LE text, and inside XML or \
config files (e.g. ASP.NET Core key rings). Reads only; shows structure, never decrypts."
)]
pub struct Args {
    /// The file to look into
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

#[derive(Serialize)]
struct Report {
    path: PathBuf,
    protected: bool,
    dpapi_ng: bool,
    blobs: Vec<BlobReport>,
}

pub fn run(args: Args, ui: &Ui) -> CmdResult {
    let bytes = keyferry::fs::read_bounded(&args.file, 64 * 1024 * 1024, "file to inspect")?;
    let c = classify(&bytes);
    let report = Report {
        path: args.file.clone(),
        protected: c.is_protected(),
        dpapi_ng: c.dpapi_ng.is_some(),
        blobs: c.blobs.iter().map(BlobReport::of).collect(),
    };
    ui.show("dpapi-inspect", &report, || {
        if !report.protected {
            ui.out(&format!("{}: no DPAPI data found", args.file.display()));
        }
        if report.dpapi_ng {
            ui.out(&format!(
                "{}: DPAPI-NG (CMS enveloped data)",
                args.file.display()
            ));
        }
        for (i, b) in report.blobs.iter().enumerate() {
            let form = format!(
                "{}{}{}",
                b.encoding.as_str(),
                if b.utf16 { " in UTF-16LE text" } else { "" },
                if b.whole_file {
                    ", whole file"
                } else {
                    ", embedded"
                }
            );
            ui.out(&format!(
                "blob {} at offset {} ({} bytes in file): {form}",
                i + 1,
                b.offset,
                b.length_in_file
            ));
            ui.out(&format!("  variant      {:?}", b.variant).to_lowercase());
            ui.out(&format!(
                "  scope        {} (flags 0x{:x})",
                b.scope, b.flags
            ));
            ui.out(&format!(
                "  master key   {} (version {})",
                b.master_key, b.master_key_version
            ));
            ui.out(&format!("  description  {:?}", b.description));
            ui.out(&format!(
                "  cipher       {} (0x{:x}), {}-bit key",
                b.cipher, b.cipher_alg_id, b.cipher_key_bits
            ));
            ui.out(&format!(
                "  hash         {} (0x{:x}), {} bits",
                b.hash, b.hash_alg_id, b.hash_bits
            ));
            let l = &b.lengths;
            ui.out(&format!(
                "  lengths      blob {}, description {}, salt {}, HMAC key {}, second HMAC key {}, data {}, signature {}",
                l.blob, l.description, l.salt, l.hmac_key, l.hmac2_key, l.data, l.signature
            ));
        }
    });
    success()
}
