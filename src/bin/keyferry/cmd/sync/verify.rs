//! `keyferry sync verify`: compare each target with the source by content (BLAKE3 on every
//! core), naming the files that differ. Changes nothing.

use super::{for_each_pair, label, Endpoints};
use crate::cmd::CmdResult;
use crate::failure::Failure;
use crate::ui::Ui;
use keyferry::sync::Verification;
use keyferry::text::size;
use serde::Serialize;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Exit status: 0 every target matches the source; 1 a target differs; 2 error."
)]
pub struct Args {
    #[command(flatten)]
    pub endpoints: Endpoints,
    /// Targets compared at once (1 to 64)
    #[arg(long, short = 'j', default_value_t = 4, value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..=64))]
    pub jobs: u16,
}

#[derive(Serialize)]
struct Row {
    node: String,
    slot: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    verification: Option<Verification>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<crate::failure::ErrorDoc>,
}

pub fn run(args: Args, ui: &Ui) -> CmdResult {
    let resolved = args.endpoints.resolve()?;
    let rows = for_each_pair(&resolved.pairs, usize::from(args.jobs), |pair| {
        let r = keyferry::sync::compare(
            &pair.source,
            &pair.target,
            &resolved.profile,
            usize::MAX,
            &|_| {},
        );
        let (verification, error) = match r {
            Ok(v) => (Some(v), None),
            Err(e) => (None, Some(Failure::from(e).into())),
        };
        Row {
            node: label(&pair.node, &pair.slot),
            slot: pair.slot.clone(),
            verification,
            error,
        }
    });
    let failed = rows.iter().any(|r| r.error.is_some());
    let differs = rows
        .iter()
        .any(|r| r.verification.as_ref().is_some_and(|v| !v.identical()));
    #[derive(Serialize)]
    struct Verified<'a> {
        identical: bool,
        targets: &'a [Row],
    }
    let verified = Verified {
        identical: !failed && !differs,
        targets: &rows,
    };
    ui.show("sync-verify", &verified, || {
        for r in &rows {
            match (&r.verification, &r.error) {
                (Some(v), _) if v.identical() => ui.out(&format!(
                    "{}: identical ({} files, {} compared by content)",
                    r.node,
                    v.files,
                    size(v.bytes)
                )),
                (Some(v), _) => {
                    ui.out(&format!(
                        "{}: DIFFERS in {} of {} files",
                        r.node,
                        v.differing.len(),
                        v.files
                    ));
                    for d in &v.differing {
                        ui.out(&format!(
                            "  {}: {}",
                            keyferry::fs::shown(&d.path),
                            d.why.describe()
                        ));
                    }
                }
                (None, Some(e)) => ui.failure(&crate::failure::shown(e, &format!("{}: ", r.node))),
                (None, None) => {}
            }
        }
        if differs {
            ui.info(
                "keyferry sync --checksum copies the source over the differing files (it compares \
                     contents: a plain sync takes a file of the same size and time as the same); \
                     protected files are never touched",
            );
        }
    });
    Ok(if failed {
        ExitCode::from(crate::exit::ERROR)
    } else if differs {
        ExitCode::from(crate::exit::NO)
    } else {
        ExitCode::SUCCESS
    })
}
