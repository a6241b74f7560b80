//! What the binary reports when a command fails: the library's error (what) plus a hint
//! (what to do), both under a stable code.

use keyferry::{Error, HaReason, HostReason};

/// A failed command.
pub struct Failure {
    pub code: std::borrow::Cow<'static, str>,
    pub message: String,
    pub hint: Option<String>,
    /// The exit code: [`crate::exit::ERROR`] (nothing changed), or
    /// [`crate::exit::PARTIAL`] for a failure after something was changed.
    pub exit: u8,
}

/// The codes of the failures the binary finds itself (the library's are [`Error::code`]).
/// Stable API for scripts, like the library's, and listed in the README with them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr, strum::VariantArray)]
#[strum(serialize_all = "kebab-case")]
pub enum Code {
    /// The command line asks for something that cannot be.
    Usage,
    /// A bundle would be written to a terminal.
    OutputIsTerminal,
    /// `keyferry demo` did not end as it should.
    DemoFailed,
    /// A request from another node could not be read (`keyferry request`).
    Request,
    /// An upgrade run's own failure (its record, its procedure).
    Upgrade,
    /// The upgrade run belongs to another node.
    UpgradeWrongNode,
    /// A run is in progress and the command would start another.
    UpgradeInProgress,
    /// There is no run to resume, mark or abandon.
    UpgradeNoRun,
    /// The cluster file or procedure changed under a run.
    UpgradeRunChanged,
    /// A gate (the admin's confirmation) was not given.
    UpgradeGate,
    /// A step of the run failed.
    UpgradeStepFailed,
    /// A step failed on its node.
    StepFailed,
}

impl Code {
    /// The code as scripts see it.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

impl Failure {
    /// A failure the binary finds itself.
    pub fn new(code: Code, message: impl Into<String>, hint: Option<&str>) -> Failure {
        Failure {
            code: code.as_str().into(),
            exit: crate::exit::ERROR,
            message: message.into(),
            hint: hint.map(str::to_owned),
        }
    }

    /// A failure of a kind the library names (`make` is its variant, `Error::SyncRefused`),
    /// found by the binary, with the binary's hint: the code is the library's.
    pub fn library(
        make: fn(String) -> Error,
        message: impl Into<String>,
        hint: Option<&str>,
    ) -> Failure {
        let e = make(message.into());
        Failure {
            code: e.code().into(),
            exit: crate::exit::ERROR,
            message: e.to_string(),
            hint: hint.map(str::to_owned),
        }
    }

    /// A library error with this command's own hint in place of the usual one.
    pub fn hinted(e: Error, hint: &str) -> Failure {
        Failure {
            hint: Some(hint.to_owned()),
            ..Failure::from(e)
        }
    }
}

/// A failure in a JSON document (the error document, one target's row): the library's type,
/// which the upgrade run reads back.
pub use keyferry::report::ErrorDoc;

impl Failure {
    /// The failure as the JSON documents write it.
    pub fn doc(&self) -> ErrorDoc {
        ErrorDoc {
            code: self.code.to_string(),
            message: self.message.clone(),
            hint: self.hint.clone(),
        }
    }
}

impl From<Failure> for ErrorDoc {
    fn from(f: Failure) -> ErrorDoc {
        f.doc()
    }
}

/// A target's failure again, to show on a terminal (`prefix` names the target).
pub fn shown(e: &ErrorDoc, prefix: &str) -> Failure {
    Failure {
        code: e.code.clone().into(),
        message: format!("{prefix}{}", e.message),
        hint: e.hint.clone(),
        exit: crate::exit::ERROR,
    }
}

impl Failure {
    /// The same failure, after something was already changed (exit 3).
    pub fn partial(mut self) -> Failure {
        self.exit = crate::exit::PARTIAL;
        self
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        if let Error::KeyFileMissing {
            remedy: Some(remedy),
            ..
        } = &e
        {
            return Failure {
                code: e.code().into(),
                exit: crate::exit::ERROR,
                message: e.to_string(),
                hint: Some(remedy.clone()),
            };
        }
        if let Error::DpapiProtected { remedy, .. } = &e {
            return Failure {
                code: e.code().into(),
                exit: crate::exit::ERROR,
                message: e.to_string(),
                hint: Some(remedy.clone()),
            };
        }
        if let Error::FileMissing { what, .. } = &e {
            return Failure {
                code: e.code().into(),
                exit: crate::exit::ERROR,
                message: e.to_string(),
                hint: Some(missing_hint(what).to_owned()),
            };
        }
        let typed = match &e {
            Error::HaRefused { reason, .. } | Error::HaFailed { reason, .. } => {
                Some(ha_hint(reason))
            }
            Error::Host { reason, .. } => Some(host_hint(reason)),
            _ => None,
        };
        if let Some(hint) = typed {
            return Failure {
                code: e.code().into(),
                exit: crate::exit::ERROR,
                message: e.to_string(),
                hint: Some(hint),
            };
        }
        if let Error::Io { path, source } = &e {
            if let Some(h) = io_hint(path, source) {
                return Failure {
                    code: e.code().into(),
                    exit: crate::exit::ERROR,
                    message: e.to_string(),
                    hint: Some(h),
                };
            }
        }
        let hint = hint_for(&e);
        Failure {
            code: e.code().into(),
            exit: crate::exit::ERROR,
            message: e.to_string(),
            hint: hint.map(str::to_owned),
        }
    }
}

/// What to do when a `keyferry ha` step refused or failed, by its reason.
fn ha_hint(reason: &HaReason) -> String {
    use HaReason as R;
    match reason {
        R::NoSuchNode => "check the cluster file".into(),
        R::NotInPair => "run keyferry ha on one of the pair's nodes, or name it with --node".into(),
        R::HostNotInPair => {
            "run it on one of the pair's nodes, or name this machine's node with --node".into()
        }
        R::NoDataFolder { node } => format!(
            "set data in the cluster file's [ha] section or in node {node}'s ha table \
             (SHOW data_directory in psql tells it)"
        ),
        R::NotThisMachine { command } => {
            format!("run keyferry {command} on the node that becomes the replica (or fix --node)")
        }
        R::WrongNodeNamed => "name this node, or run on the node you meant".into(),
        R::PeerUnreachable => "check the node's access in the cluster file and its sshd".into(),
        R::NoPassword {
            host,
            port,
            database,
            user,
        } => format!(
            "add a line {host}:{port}:{database}:{user}:<password> (or with * fields) to the \
             password file"
        ),
        R::PassFileOpen { path } => format!(
            "chmod 600 {} (owned by the account PostgreSQL runs as)",
            path.display()
        ),
        R::PassFileNotText => "write it as host:port:database:user:password lines".into(),
        R::Program => "check the node's bin folder in the cluster file's [ha] section".into(),
        R::ProgramSaid => {
            "the message is PostgreSQL's own; fix its cause and run the step again".into()
        }
        R::DataFolder => "check the node's data folder in the cluster file's [ha] section".into(),
        R::WontStop => "look at its log and its processes; stop it by hand, then run again".into(),
        R::ServerGone { log } => format!("read its log ({})", log.display()),
        R::ServiceControl => "check the service name in the cluster file's [ha] section".into(),
        R::ServiceFailed => {
            "check the service name in the cluster file's [ha] section and the server's log".into()
        }
        R::HbaReject => {
            "remove the reject line if it is no longer wanted, or pass --override-reject".into()
        }
        R::HbaUnplannable => {
            "fix the file by hand (nothing was changed), then run keyferry ha hba again".into()
        }
        R::HbaCheckFailed => "nothing was changed; fix the cause and run again".into(),
        R::HbaChangedAfterWrite => "look at the file now (someone changed it after keyferry \
                                    wrote it), put right what PostgreSQL refuses, then run \
                                    keyferry ha hba again"
            .into(),
        R::HbaAlreadyRejected => "fix those lines first (SELECT * FROM pg_hba_file_rules WHERE \
                                  error IS NOT NULL shows them), then run keyferry ha hba again"
            .into(),
        R::HbaEditRejected => {
            "check hba_method and the file's other lines, then run keyferry ha hba again".into()
        }
        R::HbaNotReloaded => "check the server's log, then SELECT pg_reload_conf()".into(),
        R::HbaElsewhere => {
            "edit that file with keyferry ha hba --file PATH, then reload the server".into()
        }
        R::HbaLoginRefused => "read the server's log (it names the line it rejects), check \
                               hba_method and the password file, then run keyferry ha hba again"
            .into(),
        R::PrimaryDown => "start it, or check the address and port (keyferry ha check)".into(),
        R::NotPrimary => {
            "run it against the running primary (keyferry ha status shows which node that is)"
                .into()
        }
        R::WalLevelMinimal => "set wal_level = replica on the primary and restart it".into(),
        R::NoWalSender => "raise max_wal_senders on the primary and restart it".into(),
        R::PrimaryHbaClosed { primary } => format!(
            "run keyferry ha hba on {primary} first (keyferry ha hba --dry-run shows what it adds)"
        ),
        R::SlotInUse => {
            "stop the server that uses it (it may be this node's old server), then run again".into()
        }
        R::SlotStillInUse => {
            "find the server using it (pg_stat_replication on the primary), then run again".into()
        }
        R::ReplicaDown => {
            "a planned failover needs a streaming replica (keyferry ha status)".into()
        }
        R::NotStreaming => {
            "fix replication first (keyferry ha status; keyferry ha replica init on the replica)"
                .into()
        }
        R::LeftOver => "look at it, remove it when it is not needed, then run again".into(),
        R::AppearedDuringRun => {
            "another keyferry or pg_basebackup may be running here; look, then run again".into()
        }
        R::MajorVersion { major, node } => format!(
            "install PostgreSQL {major} on {node} (and point the cluster file's [ha] bin and data \
             at it), then run again"
        ),
        R::ReplaceNeedsConsent { node } => format!(
            "run it on the node that becomes the replica (keyferry ha status shows which is \
             which); if {node} is the one to give up, say so with --replace-database-of {node} \
             (its folder is kept as <data>.keyferry-old-<time>)"
        ),
        R::NoSpace => "free space there (an old <data>.keyferry-old-<time> folder you no longer \
                       need, for example), then run again"
            .into(),
        R::SwapCutOff => "run keyferry recover (or this command without --dry-run): it puts the \
                          old data folder back first"
            .into(),
        R::CopyDidNotStart { log } => format!(
            "read the new server's log ({}), fix the cause, remove the kept copy, run again",
            log.display()
        ),
        R::OldServerNotStarted => "start it by hand (pg_ctl start) and look at its log".into(),
        R::NothingToRejoin { node } => format!(
            "rejoin is for the old primary after a failover; to switch roles, run keyferry ha \
             failover on {node}"
        ),
        R::SplitBrain => "stop it first (keyferry ha fence, or pg_ctl stop) once you are sure its \
                          writes are not needed, then run again"
            .into(),
        R::DifferentDatabases { node } => format!(
            "if {node} is the one to give up, keyferry ha replica init --replace-database-of \
             {node} (its folder is kept)"
        ),
        R::RejoinNeedsCopy { node, major } => format!(
            "make {node} a replica with a fresh copy from the new primary: install PostgreSQL \
             {major} there, point the cluster file's [ha] bin and data at it, and run keyferry ha \
             replica init on {node}"
        ),
        R::RewoundNotStreaming { node, log } => format!(
            "read its log ({}); keyferry ha replica init on {node} makes a fresh copy",
            log.display()
        ),
        R::RejoinCopyFailed { node, inner } => format!(
            "{}; then keyferry ha rejoin (or ha replica init) on {node}; until then it serves \
             nothing",
            inner
                .as_deref()
                .map(ha_hint)
                .unwrap_or_else(|| "fix the cause".into())
        ),
        R::FailoverOnReplica { primary } => format!(
            "run the planned failover on the primary ({primary}), or use --primary-lost when it \
             is gone"
        ),
        R::WalNotReceived => "check replication (keyferry ha status) and try again".into(),
        R::PromotionSlow => {
            "look at its log; SELECT pg_is_in_recovery() says when it is done".into()
        }
        R::NoReplica => "keyferry ha status shows the state of both nodes".into(),
        R::PrimaryNotLost { primary: p } => format!(
            "run the planned failover on {p} (keyferry ha failover, no rows lost); if its \
             database must go, stop its server there first (keyferry ha fence on {p})"
        ),
        R::FenceOverSshFailed { primary: p } => format!(
            "on {p}: stop PostgreSQL and create an empty standby.signal in its data folder \
             (keyferry ha fence does both), then run again"
        ),
        R::PrimaryNotOff { primary: p } => format!(
            "on {p}: run keyferry ha fence (or stop PostgreSQL and create an empty standby.signal \
             in its data folder), or give it ssh access in the cluster file so keyferry fences \
             it; then run again"
        ),
        R::LossUnconfirmed { primary: p } => format!(
            "make sure {p} is off (or its PostgreSQL stopped and fenced), then confirm by its \
             name: --confirm-lost {p}"
        ),
        R::FenceFailed => "run keyferry ha fence on it by hand".into(),
    }
}

/// What to do when a `keyferry host` step refused or failed, by its reason.
fn host_hint(reason: &HostReason) -> String {
    use HostReason as R;
    match reason {
        R::NotWindows => "do it by hand on this node; in an upgrade run, then mark the step done \
                          (keyferry upgrade resume ... --mark-done N --because \"...\")"
            .into(),
        R::ToolMissing => "run this step on the node that serves the site, or check the node's \
                           name in the cluster file"
            .into(),
        R::ToolFailed => "run it by hand on the node to see why".into(),
        R::NoSuchPool => "the pool's name is in IIS Manager (Application Pools); write it as \
                          app_pool in the node's [[node]]"
            .into(),
        R::NoSuchService => "the service's name (not its display name) is in services.msc, \
                             Properties; write it in services in the node's [[node]]"
            .into(),
        R::DidNotSettle { exit } => format!(
            "see the node's event log (System, and IIS or the service's own); exit {}",
            exit.map(|c| c.to_string())
                .unwrap_or_else(|| "by a signal".into())
        ),
        R::IisReset => "run it as an administrator of the node".into(),
        R::RebootRefused => {
            "the account needs the right to shut the node down (an administrator)".into()
        }
        R::NoAppPool => "write the node's IIS application pool (as IIS Manager names it) as \
                         app_pool in its [[node]]"
            .into(),
        R::NoServices => "list the product's Windows services by service name (services.msc, \
                          Properties) as services = [...] in its [[node]], in the order they \
                          start"
            .into(),
        R::NoSiteUrl => {
            "write the node's own site address (https://...) as site_url in its [[node]]".into()
        }
        R::NoSiteUrls => {
            "write each node's own site address (https://...) as site_url in its [[node]]".into()
        }
    }
}

/// What to do about a missing file, by kind: the same wording wherever it is missing.
fn missing_hint(what: &str) -> &'static str {
    match what {
        "cluster file" => {
            "check the path given with -c/--cluster (or KEYFERRY_CLUSTER); the same cluster file \
             is copied to every node"
        }
        "passphrase file" => {
            "check the path given with --passphrase-file; or leave it out and type the passphrase \
             at the prompt"
        }
        "keyferry bundle" => {
            "check the path; copy the bundle from the node that exported it (keyferry keys export \
             on the primary writes it)"
        }
        _ => "check the path",
    }
}

/// The recommendation for an error code, where it does not depend on the error's details.
pub fn hint_for_code(code: &str) -> Option<&'static str> {
    Some(match code {
        "replaces-primary" => {
            "check with keyferry audit which key set is right; only if this bundle holds the \
             right key for the database, pass --replace --replace-primary"
        }
        "key-set-differs" => {
            "if this node's keys are the wrong ones, run again with --replace (the current files \
             are backed up first)"
        }
        _ => return None,
    })
}

/// What to do about an I/O error whose kind says more than "check the path": a full disk, a
/// file that may not be changed, no permission.
fn io_hint(path: &std::path::Path, e: &std::io::Error) -> Option<String> {
    use std::io::ErrorKind as K;
    let where_ = path.display();
    Some(match e.kind() {
        K::StorageFull | K::QuotaExceeded => format!(
            "the disk holding {where_} is full (or the account's quota used up): free space \
             there (df -h / the drive's properties show how much), then run the command again; \
             keyferry's message above says what it had done"
        ),
        K::PermissionDenied if e.raw_os_error() == Some(1) => format!(
            "{where_} may not be changed by anyone (an immutable or append-only file: lsattr \
             shows it; chattr -i removes the flag), or the file system refuses the operation"
        ),
        K::PermissionDenied => format!(
            "this account may not write or read {where_}: run keyferry as an administrator (root), \
             or give the account access to it and the folder holding it"
        ),
        K::ReadOnlyFilesystem => format!(
            "{where_} is on a file system mounted read-only: remount it read-write, then run again"
        ),
        _ => return None,
    })
}

/// The recommendation paired with each error kind.
fn hint_for(e: &Error) -> Option<&'static str> {
    Some(match e {
        Error::WrongPassphrase => {
            "check the passphrase with whoever exported the bundle (words in lower case, single spaces); \
             if it is right, the file was damaged: export a new bundle"
        }
        Error::BundleCorrupt(_) => {
            "the file was damaged or changed on the way: export a new bundle on the source node \
             (keyferry keys export) and copy it again"
        }
        Error::ExcessiveWork { .. } => {
            "keyferry writes bundles at work factor 18; export a new bundle with keyferry"
        }
        Error::BundleFormat(_) => {
            "check that the path names the bundle that keyferry keys export wrote; if it does, it \
             needs a newer keyferry: use the same keyferry version on both nodes"
        }
        Error::BundleExpired { .. } => {
            "export a fresh bundle on the source node; if you are certain this is the bundle you \
             meant, pass --allow-expired"
        }
        Error::BadEntryName { .. } | Error::IntegrityMismatch(_) => {
            "do not use this bundle: it was altered or not made by keyferry; export a new one on \
             the source node"
        }
        Error::WrongRole(_) => {
            "run the import on a node that needs keys; check --node and the node's role in the \
             cluster file (proxy hosts need no keys)"
        }
        Error::BundleIncomplete { .. } => {
            "export from the primary, which holds every key file of the profile"
        }
        Error::WrongProfile { .. } | Error::WrongCluster { .. } => {
            "use a bundle exported from this cluster's primary; check --cluster and the profile"
        }
        Error::NothingToExport { .. } => {
            "run keyferry keys export on the primary (the node with role = \"primary\" in the cluster file)"
        }
        Error::NotPrimary { .. } => {
            "run keyferry keys export on the primary; if you are certain this node holds the right \
             keys (the primary is lost), pass --from-non-primary"
        }
        Error::ReplacesPrimary { .. } => {
            "check with keyferry audit which key set is right before anything else; if this bundle \
             really holds the right key for the database, pass --replace --replace-primary (the \
             current files are backed up first)"
        }
        Error::KeySetDiffers { .. } => {
            "compare with `keyferry fingerprint` on both nodes (or keyferry audit); if this node's \
             keys are the wrong ones, run again with --replace (the current files are backed up \
             first); --dry-run shows the plan"
        }
        Error::UnsafeDestination { .. } => {
            "replace the link or folder with the real file, or fix the node's paths in the cluster file"
        }
        Error::FolderMissing { .. } => {
            "check the node's paths in the cluster file (or --root); keyferry does not create \
             application folders"
        }
        Error::PartlyInstalled { .. } => {
            "fix the cause the message names, then run the same sync again: it finishes from \
             where it stopped; or keyferry sync rollback puts the old files back"
        }
        Error::AfterInstall { .. } => {
            "the target already runs the new files; free the cause (disk space, permissions), \
             then run the same sync again: it finishes the bookkeeping (keyferry sync rollback \
             still puts the old folder back)"
        }
        Error::TreeMismatch(_) => {
            "run the sync again; if it fails the same way, something changes the source while it \
             is copied (stop the application there) or the disk is failing"
        }
        Error::VerifyFailed(_) => {
            "the previous files are back in place; check the disk and file system, then try again"
        }
        Error::KeyFileMissing { .. } => {
            "check the node's paths in the cluster file (or --root): the key file should be there"
        }
        Error::KeyFileTooLarge { .. } => "check that the path names the key file itself",
        Error::ClusterFile { .. } => "fix the cluster file; docs/cluster-file.md has a full example",
        Error::NodeNotFound(_) => "pass --node NAME with a node name from the cluster file",
        Error::Passphrase(_) => {
            "make the file yours alone (Unix: chown to you, chmod 600 FILE; Windows: icacls FILE \
             /inheritance:r /grant:r \"%USERNAME%\":F), or give the passphrase on the terminal or \
             with --passphrase-fd N"
        }
        Error::WeakPassphrase { .. } => {
            "leave out --passphrase-file and --passphrase-fd on a terminal and keyferry generates \
             ten words (110 bits); or use a longer passphrase; or, knowing the risk, pass \
             --allow-weak-passphrase"
        }
        Error::OutputExists { .. } => "choose another -o path, or pass --force to replace the file",
        Error::Dpapi(_) => {
            "\"Key not valid for use in specified state\" means the blob was made on another \
             machine or account: decrypt it there first"
        }
        Error::Unsupported(_) => {
            "run it on the Windows node that owns the file; keyferry's other commands work everywhere"
        }
        Error::NotAFile { .. } => {
            "point keyferry at the file itself, not at a link, folder, FIFO or device; nothing was read or changed"
        }
        Error::TooLarge { .. } => "check that the path names the right file",
        Error::Changed { .. } => {
            "another program or user changed the file while keyferry worked; nothing of keyferry's \
             was left in its place: find out who changed it, then run the command again"
        }
        Error::NodeBusy { .. } => {
            "wait for the other keyferry command to finish (or give it longer with --wait 2m), \
             then run this one again"
        }
        Error::RecoveryConflict(_) => {
            "compare the named file with the backup named in the message, put the right one in \
             place by hand, then remove journal.json from the node's state folder"
        }
        Error::NodeReport(_) => {
            "collect the report again with keyferry fingerprint --json on that node (same keyferry version)"
        }
        Error::Postgres { .. } => {
            "check that the server runs and that this machine may reach it (keyferry ha check); \
             the cluster file's [ha] section names the port, user and password file"
        }
        Error::InvalidInput(_) => return None,
        Error::Io { .. } => "check that the path exists and that you may read and write it",
        _ => return None,
    })
}

#[cfg(test)]
mod io_hint_tests {
    use super::*;
    use std::io::{Error as IoError, ErrorKind};
    use std::path::Path;

    #[test]
    fn a_full_disk_an_immutable_file_and_no_permission_each_say_what_to_do() {
        let p = Path::new("/srv/app/bin/a.dll");
        let hint = |e: IoError| {
            Failure::from(Error::Io {
                path: p.to_owned(),
                source: e,
            })
            .hint
            .unwrap_or_default()
        };
        assert!(hint(IoError::new(ErrorKind::StorageFull, "x")).contains("is full"));
        assert!(hint(IoError::new(ErrorKind::PermissionDenied, "x")).contains("may not write"));
        assert!(hint(IoError::new(ErrorKind::ReadOnlyFilesystem, "x")).contains("read-only"));
        #[cfg(unix)]
        {
            assert!(hint(IoError::from_raw_os_error(28)).contains("is full"));
            assert!(hint(IoError::from_raw_os_error(1)).contains("immutable"));
        }
        assert!(hint(IoError::new(ErrorKind::NotFound, "x")).contains("path exists"));
    }

    #[test]
    fn the_binarys_codes_are_its_own_kebab_case_and_in_the_readme() {
        use strum::VariantArray;
        let readme = include_str!("../../../README.md");
        for c in Code::VARIANTS {
            let c = c.as_str();
            assert!(
                c.chars().all(|ch| ch.is_ascii_lowercase() || ch == '-'),
                "{c}"
            );
            assert!(!Error::ALL_CODES.contains(&c), "{c} is also a library code");
            assert!(
                readme.contains(&format!("`{c}`")),
                "{c} is not in README.md"
            );
        }
        assert_eq!(Code::UpgradeWrongNode.as_str(), "upgrade-wrong-node");
    }
}
