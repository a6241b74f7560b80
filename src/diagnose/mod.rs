//! `keyferry diagnose`: turn an error message into its cause, the vendor's fix and the
//! keyferry commands that carry it out (`catalogue`); with a cluster file, run the checks
//! that bear on it (`checks`).

pub(crate) mod catalogue;
pub(crate) mod checks;
pub(crate) mod explain;
pub(crate) mod facts;
pub(crate) mod translate;

pub use catalogue::{match_message, Check, Known, ALL_CHECKS, CATALOGUE};
pub use checks::{
    check_pg_hba, check_ports, findings_from_audit, pg_hba_findings, Finding, Severity,
};
pub use explain::{explain, scan_log, Explained, LogScan};
