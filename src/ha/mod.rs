//! The PostgreSQL HA steps of a Privilege Secure pair (`keyferry ha`, docs/ha.md):
//! `pg_hba.conf` parsed, simulated and edited ([`hba`]), the cluster file's `[ha]` section
//! ([`config`]), the password file ([`pgpass`]), connections ([`pg`]) and the local server's
//! programs ([`server`]).

pub mod check;
pub mod config;
pub mod datadir;
pub mod facts;
pub mod hba;
pub mod hbaedit;
pub mod pg;
pub mod pgpass;
pub mod replica;
pub mod server;
pub mod status;
pub mod swap;
