//! `keyferry ha explain`: which line of a `pg_hba.conf` decides one connection, with which
//! method, and why each line above it does not (or might), as PostgreSQL 15 reads the file.

use crate::cmd::CmdResult;
use crate::ui::Ui;
use keyferry::ha::hba::{self, Connection, LineOutcome, Server};
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Reads the file as PostgreSQL reads it (quotes, lists, @files beside it, \
continuations, the C library's address forms, every method and option: docs/ha.md) and walks its \
lines in order for one connection, as the server does: the first line whose type, address, \
database and user all match decides, with its method. What the file cannot say (a host name, \
samehost/samenet, group membership not given, whether the client uses SSL when not given) is \
shown as \"might\". Changes nothing; needs no cluster file and no server.\n\n\
Examples:\n  keyferry ha explain --file /var/lib/postgresql/15/main/pg_hba.conf --from 10.0.5.2 \
--user repuser --replication\n  keyferry ha explain --file pg_hba.conf --from 10.0.5.9 --user app \
--database nps --ssl no --member-of admins --json\n\n\
Exit status: 0 a line surely decides and lets the connection on to its login; 1 it is refused \
(a reject line, no line, a file PostgreSQL refuses) or lines above might decide first; 2 error."
)]
pub struct Args {
    /// The pg_hba.conf to read
    #[arg(long, value_name = "PATH")]
    pub file: PathBuf,
    /// The client's address
    #[arg(long, value_name = "IP")]
    pub from: IpAddr,
    /// The user it logs in as [default: any user]
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
    /// The database it asks for [default: any database]
    #[arg(long, value_name = "NAME", conflicts_with = "replication")]
    pub database: Option<String>,
    /// A replication connection (pg_basebackup, a standby)
    #[arg(long)]
    pub replication: bool,
    /// Whether the client uses SSL [default: not known; libpq tries SSL first]
    #[arg(long, value_name = "yes|no", value_parser = yes_no)]
    pub ssl: Option<bool>,
    /// A role the user is a member of (repeatable); given once or more, the user's memberships
    /// are taken as known (the user itself included)
    #[arg(long, value_name = "ROLE")]
    pub member_of: Vec<String>,
    /// The server's PostgreSQL major version (16 adds include lines and regular expressions)
    #[arg(long, value_name = "N", default_value_t = 15,
          value_parser = clap::value_parser!(u32).range(12..=16))]
    pub server_version: u32,
}

fn yes_no(s: &str) -> Result<bool, String> {
    match s {
        "yes" | "on" | "true" => Ok(true),
        "no" | "off" | "false" => Ok(false),
        _ => Err("yes or no".into()),
    }
}

pub fn run(args: Args, ui: &Ui) -> CmdResult {
    let bytes = keyferry::fs::read_bounded(&args.file, keyferry::ha::MAX_HBA, "pg_hba.conf")?;
    let (text, _) = hba::decode(&bytes);
    let dir = args
        .file
        .parent()
        .map(|d| {
            if d.as_os_str().is_empty() {
                std::path::Path::new(".")
            } else {
                d
            }
        })
        .unwrap_or(std::path::Path::new("."));
    let files = hba::files_beside(dir);
    let server = Server::version(args.server_version);
    let file = hba::parse_for(&text, &server, Some(&files));
    let mut c = Connection::new(args.replication, args.user.as_deref(), args.from);
    c.database = args.database.clone();
    c.ssl = args.ssl;
    // Memberships known: the given roles, and the user itself (a role is a member of itself).
    if !args.member_of.is_empty() {
        let mut roles = args.member_of.clone();
        roles.extend(args.user.clone());
        c.member_of = Some(roles);
    }
    let x = file.explain(&c);
    let code = if x.admitted() {
        ExitCode::SUCCESS
    } else {
        crate::exit::NO.into()
    };
    ui.show("ha-explain", &x, || {
        ui.out(&format!("{}: {}", args.file.display(), x.connection));
        let mut t = ui.table(["line", "verdict", "text", "why"]);
        for l in &x.lines {
            let line = if l.last_line > l.line {
                format!("{}-{}", l.line, l.last_line)
            } else {
                l.line.to_string()
            };
            let verdict = match l.outcome {
                LineOutcome::Decides => "DECIDES",
                LineOutcome::No => "no",
                LineOutcome::Might => "might",
                LineOutcome::Refused => "REFUSED",
                LineOutcome::Include => "include",
                LineOutcome::Below => "",
            };
            t.add_row([line, verdict.into(), l.text.clone(), l.why.join("; ")]);
        }
        ui.out(&t.to_string());
        let refused: Vec<String> = x
            .lines
            .iter()
            .filter(|l| l.outcome == LineOutcome::Refused)
            .map(|l| format!("line {}: {}", l.line, l.why.join("; ")))
            .collect();
        ui.out(&if !refused.is_empty() {
            format!(
            "PostgreSQL refuses this file ({}): a server keeps its old rules, and one that starts \
             with it fails",
            refused.join("; ")
        )
        } else {
            match (&x.decided_by, &x.method) {
                (Some(n), Some(m)) if m == "reject" => {
                    format!("refused by line {n} (reject)")
                }
                (Some(n), Some(m)) => format!("decided by line {n}: method {m}"),
                _ => "no line matches: refused (\"no pg_hba.conf entry\")".into(),
            }
        });
        if !x.might_be_decided_by.is_empty() {
            ui.out(&format!(
                "unless line {} decides first (what it depends on is not in the file)",
                x.might_be_decided_by
                    .iter()
                    .map(|n| n.to_string())
                    .collect::<Vec<_>>()
                    .join(", line ")
            ));
        }
    });
    Ok(code)
}
