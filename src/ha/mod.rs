//! The PostgreSQL HA steps of a Privilege Secure pair (`keyferry ha`, docs/ha.md):
//! `pg_hba.conf` parsed, simulated and edited ([`hba`]), the cluster file's `[ha]` section
//! (`config`), the password file (`pgpass`), connections (`pg`) and the local server's
//! programs (`server`).

pub(crate) mod check;
pub(crate) mod config;
pub(crate) mod datadir;
pub(crate) mod facts;
pub mod hba;
pub(crate) mod hbaedit;
pub(crate) mod pg;
pub(crate) mod pgpass;
pub mod replica;
pub(crate) mod server;
pub(crate) mod status;
pub(crate) mod swap;

pub use check::{check, check_here, peer_view, run_on, CheckReport, PeerRun, Severity};
pub use config::{HaNode, Pair};
pub use hbaedit::{edit_file as edit_hba_file, edit_server as edit_hba_server, HbaReport, MAX_HBA};
pub use pg::Connector;
pub use pgpass::PassFile;
pub use status::{pair_status, PairStatus, Role, Verdict};
