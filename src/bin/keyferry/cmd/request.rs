//! `keyferry request`: run one keyferry command sent on standard input. This is how another
//! node runs keyferry here over ssh: the command line its shell sees is only
//! `<keyferry> request` (or nothing, through a subsystem or a forced command), and the
//! command with all its arguments comes as one JSON line on standard input, so no shell on
//! this node splits, expands or runs any of it (`keyferry::remote::invoke`).

use crate::cmd::CmdResult;
use crate::failure::{Code, Failure};
use crate::ui::Ui;
use keyferry::remote::{read_header, BadRequest};

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Reads one line of JSON, {\"keyferry-request\":1,\"args\":[...]}, then runs keyferry \
with those arguments; what follows the line (a push stream) is the command's standard input. Only \
keys, audit, sync, ha, host, upgrade, diagnose, fingerprint and dpapi are run. For ssh: \
`Subsystem keyferry <path to keyferry> request` or `ForceCommand <path to keyferry> request` in \
sshd_config (docs/cluster-file.md)."
)]
pub struct Args {}

pub fn run(_args: Args, tree: fn() -> clap::Command) -> CmdResult {
    use clap::Parser;
    // Whoever sent the request reads JSON: its own failures are an error document.
    let said = Ui::new(true, true, crate::ui::ColorChoice::Never);
    let refuse = |why: String, hint: &str| {
        let f = Failure::new(Code::Request, why, Some(hint));
        said.failure(&f);
        Ok(f.exit.into())
    };
    let args =
        match read_header(&mut std::io::stdin().lock()) {
            Ok(args) => args,
            Err(e @ BadRequest::Refused(_)) => {
                return refuse(
                    e.to_string(),
                    "run that command on this node itself; other nodes send only cluster commands",
                )
            }
            Err(e) => return refuse(
                e.to_string(),
                "keyferry request is run by keyferry on another node over ssh, with the request \
                 on standard input; to run a command here, type it",
            ),
        };
    let mut argv = vec!["keyferry".to_owned()];
    argv.extend(args);
    let cli = match crate::cli::Cli::try_parse_from(&argv) {
        Ok(cli) => cli,
        Err(e) => {
            return refuse(
                format!(
                    "the request does not parse: {}",
                    keyferry::text::one_line(e.to_string().lines().next().unwrap_or("")),
                ),
                "use the same keyferry version on every node",
            )
        }
    };
    let ui = Ui::new(cli.global.json, cli.global.batch, cli.global.color);
    match crate::cmd::run(cli.command, &ui, tree) {
        Ok(code) => Ok(code),
        Err(f) => {
            ui.failure(&f);
            Ok(f.exit.into())
        }
    }
}
