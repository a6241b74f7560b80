//! `keyferry shred FILE...`: removing a stray bundle or export by hand, saying honestly
//! whether it was overwritten or only removed (copy-on-write and network file systems).

use crate::cmd::{success, CmdResult};
use crate::failure::Failure;
use crate::ui::Ui;
use keyferry::Error;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Each file is overwritten with zeros and flushed before removal only where the file \
system rewrites blocks in place (ext4, xfs, NTFS...); on copy-on-write file systems, network shares and \
where other hard links exist it is just removed, and the output says so. docs/security.md explains why."
)]
pub struct Args {
    /// Files to remove
    #[arg(value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,
}

pub fn run(args: Args, ui: &Ui) -> CmdResult {
    // Check every argument before removing any, so a typo removes nothing.
    for f in &args.files {
        match std::fs::symlink_metadata(f) {
            Ok(m) if m.is_file() || m.file_type().is_symlink() => {}
            Ok(_) => {
                return Err(Failure::library(
                    Error::InvalidInput,
                    format!("{} is not a file", f.display()),
                    Some("shred removes files only; nothing was removed"),
                ))
            }
            Err(e) => {
                return Err(Failure::hinted(
                    Error::io(f, e),
                    "check the path; nothing was removed",
                ))
            }
        }
    }
    let mut removals = Vec::new();
    for f in &args.files {
        removals.push(keyferry::fs::shred_file(f)?);
    }
    ui.show("shred", &serde_json::json!({ "removed": removals }), || {
        for r in &removals {
            ui.out(&r.to_string());
        }
    });
    success()
}
