//! `keyferry dpapi protect|unprotect FILE`: wrap or unwrap one key file with machine-scope DPAPI
//! on its own node, through the transaction engine, so the file keeps its owner and ACL and a
//! crash leaves the old file or the new one.

use crate::cmd::{success, CmdResult};
use crate::ui::Ui;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Windows only. The file is replaced atomically; the previous bytes are kept in \
<state-dir>/backups/dpapi/<UTC time>/ with an owner-only ACL."
)]
pub struct Args {
    /// The key file
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    #[command(flatten)]
    pub state_dir: crate::node_args::StateDir,
    #[command(flatten)]
    pub wait: crate::node_args::WaitArgs,
}

pub fn run(args: Args, protect: bool, ui: &Ui) -> CmdResult {
    let state = args
        .state_dir
        .dir
        .unwrap_or_else(keyferry::cluster::default_state_dir);
    let report = if protect {
        keyferry::keys::protect_file(&args.file, &state, args.wait.wait)?
    } else {
        keyferry::keys::unprotect_file(&args.file, &state, args.wait.wait)?
    };
    if let Some(r) = &report.recovered {
        ui.warn(&format!("first: {r}"));
    }
    ui.show_document(&report, || {
        ui.out(&format!(
            "{} {} (previous bytes in {})",
            report.path.display(),
            if protect {
                "is now protected with machine-scope DPAPI"
            } else {
                "is now plain"
            },
            report.backup.display()
        ));
    });
    success()
}
