//! What the binary reports when a command fails: the library's error (what) plus a hint
//! (what to do), both under a stable code.

use keyferry::Error;

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
        if let Error::HaRefused { hint, .. }
        | Error::HaFailed { hint, .. }
        | Error::Host { hint, .. } = &e
        {
            return Failure {
                code: e.code().into(),
                exit: crate::exit::ERROR,
                message: e.to_string(),
                hint: Some(hint.clone()),
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
