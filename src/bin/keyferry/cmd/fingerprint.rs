//! `keyferry fingerprint`: this node's key-set fingerprint, to read over the phone or compare
//! between nodes, and (`--json`) the node report the audit collects.

use crate::cmd::{success, CmdResult};
use crate::node_args::NodeArgs;
use crate::ui::Ui;
use keyferry::audit::{node_report, KeySetStatus};
use keyferry::cluster::host_name;
use keyferry::time::Timestamp;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "The fingerprint covers the key files this node's role holds (names and SHA-256), \
domain-separated: docs/node-report.md. With --json: the per-node report the fleet audit collects."
)]
pub struct Args {
    #[command(flatten)]
    pub node: NodeArgs,
    /// Also spell the fingerprint as 12 words, for reading it aloud
    #[arg(long)]
    pub words: bool,
}

pub fn run(args: Args, ui: &Ui) -> CmdResult {
    let node = args.node.resolve()?;
    let report = node_report(&node, &host_name(), Timestamp::now())?;
    ui.show_document(&report, || {
        match (&report.fingerprint, report.status) {
            (_, KeySetStatus::NotNeeded) => ui.out("none (this role needs no keys)"),
            (Some(fp), _) => ui.out(&fp.to_string()),
            (None, _) => ui.out("none (no key files present)"),
        }
        if args.words {
            if let Some(fp) = &report.fingerprint {
                ui.out(&fp.words().join(" "));
            }
        }
        // Full hashes where they fit; the first 16 hex digits on a narrow terminal (--json keeps
        // them whole).
        let hex_width = match ui.width() {
            Some(w) if w < 2 + 64 + 2 + 14 + 2 + 40 => 16,
            _ => 64,
        };
        for f in &report.files {
            match (&f.sha256, f.len) {
                (Some(h), Some(len)) => {
                    let hex = h.to_hex();
                    let hex = if hex_width < hex.len() {
                        format!("{}…", &hex[..hex_width])
                    } else {
                        hex
                    };
                    ui.out(&format!(
                        "  {hex}  {}  {}",
                        crate::ui::count(len as usize, "byte", "bytes"),
                        f.path.display()
                    ))
                }
                _ => ui.out(&format!(
                    "  {:<w$}  {}{}",
                    "missing",
                    f.path.display(),
                    if f.transient {
                        " (temporary vendor file; absent after cleanup)"
                    } else {
                        ""
                    },
                    w = hex_width
                )),
            }
        }
        ui.info(&format!(
            "node {} ({}), profile {}, status {}",
            report.node,
            report.role,
            report.profile,
            report.status.as_str()
        ));
    });
    success()
}
