//! The `keyferry` command: parse, build the UI, dispatch, report, exit.

#![forbid(unsafe_code)]

mod cli;
mod cmd;
mod exit;
mod failure;
mod node_args;
mod passphrase;
mod ui;

use clap::{CommandFactory, Parser};
use std::process::ExitCode;

fn main() -> ExitCode {
    let hardening = keyferry::os::harden_process();
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return ui::clap_failure(e),
    };
    let ui = ui::Ui::new(cli.global.json, cli.global.batch, cli.global.color);
    if !hardening.core_dumps_disabled {
        ui.warn("could not turn off core dumps; key material could end up in a crash dump");
    }
    match cmd::run(cli.command, &ui, cli::Cli::command) {
        Ok(code) => code,
        Err(f) => {
            ui.failure(&f);
            f.exit.into()
        }
    }
}
