//! `keyferry man [COMMAND...]`: the manual pages (roff), from the same command tree as
//! `--help`, for nodes where only the binary was copied. `keyferry man` is keyferry(1); every
//! page its SUBCOMMANDS section names can be produced too (`keyferry man keys push` is
//! keyferry-keys-push(1)). Each page ends with EXIT STATUS, ENVIRONMENT and FILES.

use crate::cmd::{success, CmdResult};
use crate::failure::{Code, Failure};
use crate::ui::Ui;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  keyferry man > keyferry.1 && man ./keyferry.1\n  keyferry man keys push > keyferry-keys-push.1\n  for c in keys sync ha upgrade audit diagnose; do keyferry man $c > keyferry-$c.1; done"
)]
pub struct Args {
    /// The command whose page to print (`keys push`); none: keyferry(1)
    #[arg(value_name = "COMMAND")]
    pub command: Vec<String>,
}

/// The sections every page ends with (roff).
const TAIL: &str = r#".SH "EXIT STATUS"
.TP
0
success (including "nothing to change")
.TP
1
ran, and the answer is no: audit or sync verify found a node that differs, misses keys or cannot be reached; diagnose found a fault
.TP
2
error: usage, bad input, refusal, I/O; nothing on disk was changed (a change that failed part-way was rolled back, and the message says so)
.TP
3
partly done: a command over several targets changed some and failed on others; the report (and \-\-json) says which
.SH ENVIRONMENT
.TP
KEYFERRY_CLUSTER
the cluster file, as \-c/\-\-cluster
.TP
KEYFERRY_STATE_DIR
this node's state folder, as \-\-state\-dir
.TP
KEYFERRY_SSH, KEYFERRY_SSH_CONFIG
the ssh program and its configuration file for nodes reached over ssh, as \-\-ssh and \-\-ssh\-config
.TP
NO_COLOR
no colour on the terminal
.TP
COLUMNS
the width tables are fitted to (off a terminal: 120)
.PP
No secret is ever read from the environment: passphrases come from a terminal, a file that is yours alone (\-\-passphrase\-file) or a file descriptor (\-\-passphrase\-fd).
.SH FILES
.TP
cluster.toml
the cluster file: the nodes, their roles, addresses and folders (the same file on every node)
.TP
<state folder>/ledger.json, lock, journal.json
the bundles keyferry wrote or kept, the lock a changing command holds, and the journal of a change under way
.TP
<state folder>/backups/<node>/<time>/
what each replace replaced (keys restore puts it back)
.TP
<state folder>/upgrade\-run.json, upgrade\-runs/
the upgrade run under way and the record of each run
.TP
<application folder>.keyferry\-new, .keyferry\-prev[.N]
a sync's new tree while it is built, and the previous trees it keeps (sync rollback)
"#;

pub fn run(args: Args, ui: &Ui, tree: fn() -> clap::Command) -> CmdResult {
    let mut cmd = tree();
    cmd.build();
    let mut path = vec!["keyferry".to_owned()];
    for name in &args.command {
        let Some(sub) = cmd.find_subcommand(name).cloned() else {
            return Err(Failure::new(
                Code::Usage,
                format!("keyferry {} has no command {name}", path[1..].join(" ")),
                Some("keyferry man lists its commands under SUBCOMMANDS"),
            ));
        };
        path.push(sub.get_name().to_owned());
        cmd = sub;
    }
    // The page's name is the one the SUBCOMMANDS sections refer to: keyferry-keys-push(1).
    let page = cmd
        .name(path.join("-"))
        .bin_name(path.join(" "))
        .display_name(path.join("-"));
    let mut out = Vec::new();
    clap_mangen::Man::new(page)
        .render(&mut out)
        .map_err(|e| keyferry::Error::io("<stdout>", e))?;
    out.extend_from_slice(TAIL.as_bytes());
    ui.raw(&out);
    success()
}
