//! keyferry's integration tests: one binary (one link, one process per platform, one Wine start
//! on Windows), one module per area. Each module's first lines say what it holds and against
//! what real thing (a real sshd, real PostgreSQL servers, rsync, Wine) it runs.

/// The fixture every CLI test shares: a real cluster in a temp folder and the real binary.
mod common;
/// Two real PostgreSQL servers in network namespaces (Linux, root).
#[cfg(target_os = "linux")]
#[macro_use]
mod pgbed;

/// `audit` over folders, saved reports and a real sshd.
mod cli_audit;
/// Shell completions loaded into a real bash; the man page.
mod cli_completions;
/// `diagnose`: the catalogue, logs, port checks in a test host.
mod cli_diagnose;
/// DPAPI: inspection, refusals, and real protect/unprotect on Windows.
mod cli_dpapi;
/// Every exit code and the JSON error contract.
mod cli_exit_codes;
/// The file layer and the transaction engine on real files.
mod cli_file_layer;
/// `fingerprint` and `shred`.
mod cli_fingerprint_shred;
/// `ha` against two real PostgreSQL servers.
mod cli_ha;
/// `ha` made to do the wrong thing on purpose.
mod cli_ha_safety;
/// Every `--help` pinned as a trycmd case.
mod cli_help;
/// `host check-site` against a real HTTPS server.
mod cli_host;
/// `keys export|import|inspect|cleanup`.
mod cli_keys;
/// Paths and text as Windows admins write them.
mod cli_paths;
/// Privilege Secure's `keys.exp` and HA `appsettings.json`.
mod cli_privilege_secure;
/// `keys push` across a cluster.
mod cli_push;
/// Results that tell the truth; output fit for a terminal.
mod cli_results;
/// Secrets never leak: argv, environment, output, files.
mod cli_secrets;
/// `sync`, `sync verify`, `sync rollback`.
mod cli_sync;
/// `upgrade plan` and the upgrade run.
mod cli_upgrade;
/// Key-file changes stopped at every durable step (failpoints build).
mod crash_trials;
/// `pg_hba.conf` reading held against PostgreSQL itself.
mod hba_vs_postgres;
/// The README's Layout table against `src/`.
mod layout;
/// `sync` stopped at every durable step (failpoints build).
mod sync_crash_trials;
/// `sync` on a small real volume that fills up or goes read-only.
mod sync_faults;
/// `sync` held against `rsync -a --delete`.
mod sync_vs_rsync;
/// Windows nodes reached over a Windows-style OpenSSH, running keyferry.exe under Wine.
mod windows_nodes;
