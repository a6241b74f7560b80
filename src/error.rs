//! The library's one error type. It says *what* failed; the binary adds *what to do*.
//!
//! Every variant has a stable kebab-case [`Error::code`] that scripts may rely on, derived from
//! its name; [`Error::ALL_CODES`] lists them all from the same derive, and tests keep them
//! unique and documented.

use std::path::PathBuf;

use crate::reason::{HaReason, HostReason};

/// Result alias used throughout the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in keyferry's library.
#[derive(Debug, thiserror::Error, strum::IntoStaticStr, strum::VariantNames)]
#[strum(serialize_all = "kebab-case")]
#[non_exhaustive]
pub enum Error {
    // --- bundle opening, in the order import checks them ---
    /// The passphrase does not open the bundle.
    #[error("the passphrase does not open this bundle")]
    WrongPassphrase,
    /// The age envelope is damaged or was modified.
    #[error("the bundle is corrupt or was tampered with ({0})")]
    BundleCorrupt(String),
    /// The bundle was sealed with more scrypt work than keyferry accepts.
    #[error("the bundle asks for scrypt work factor {required}; keyferry accepts at most {max}")]
    #[strum(serialize = "excessive-work-factor")]
    ExcessiveWork {
        /// The work factor the bundle's header asks for.
        required: u8,
        /// The most keyferry accepts.
        max: u8,
    },
    /// Not a keyferry bundle, or a format version this build does not know.
    #[error("not a keyferry bundle this version can read: {0}")]
    BundleFormat(String),
    /// The bundle's lifetime is over.
    #[error("the bundle expired at {expires} (it is now {now})")]
    BundleExpired {
        /// When the bundle stopped being valid (RFC 3339, UTC).
        expires: String,
        /// This machine's clock when it looked.
        now: String,
    },
    /// An entry name is not a plain file name of the bundle's profile.
    #[error("bundle entry name {name:?} is not allowed: {why}")]
    BadEntryName {
        /// The entry's name, as the bundle holds it.
        name: String,
        /// Why the name is refused.
        why: &'static str,
    },
    /// An entry's bytes or the key-set fingerprint do not match the manifest.
    #[error("integrity check failed: {0}")]
    IntegrityMismatch(String),
    /// The bundle holds nothing for this node's role, or the role needs no keys.
    #[error("{0}")]
    WrongRole(String),
    /// The bundle lacks an entry this node's role needs.
    #[error("the bundle lacks {name}, which role {role} needs")]
    BundleIncomplete {
        /// The missing entry's file name.
        name: String,
        /// The node's role that needs it.
        role: String,
    },
    /// The bundle was made for another product profile.
    #[error("the bundle is for profile {bundle}, this node uses profile {node}")]
    WrongProfile {
        /// The profile the bundle was made for.
        bundle: String,
        /// This node's profile.
        node: String,
    },
    /// The bundle was made for another cluster.
    #[error("the bundle is for cluster {bundle:?}, this node belongs to cluster {node:?}")]
    WrongCluster {
        /// The cluster name in the bundle.
        bundle: String,
        /// This node's cluster name.
        node: String,
    },

    // --- exporting ---
    /// The node's role holds no keys (a proxy), so there is nothing to export.
    #[error(
        "node {node} is a {role} node: it holds no keys, so there is nothing to export from it"
    )]
    NothingToExport {
        /// The node's name.
        node: String,
        /// Its role, which holds no keys.
        role: String,
    },
    /// Export from a node that is not the primary, without saying so.
    #[error("node {node} is a {role} node, not the primary: the primary's keys are the cluster's source of truth, and a bundle from another node spreads whatever key that node has, right or wrong")]
    NotPrimary {
        /// The node's name.
        node: String,
        /// Its role.
        role: String,
    },

    // --- installing ---
    /// Import would replace the primary's key set, which needs its own flag.
    #[error("node {node} is the primary: its key set encrypts the database, and replacing it with another node's makes every secret unreadable unless that key is the right one")]
    ReplacesPrimary {
        /// The primary's name.
        node: String,
    },
    /// The node already holds different keys and `--replace` was not given.
    #[error("this node already holds different keys ({files})")]
    KeySetDiffers {
        /// The files that differ, as a list for people.
        files: String,
    },
    /// A key file's protection forbids the change asked for (see `ImportPlan::protection_refusal`).
    #[error("{0}")]
    KeyProtection(String),
    /// A destination is a symlink or not a regular file.
    #[error("refusing to write through {path}: {why}")]
    UnsafeDestination {
        /// The destination refused.
        path: PathBuf,
        /// What it is instead of a plain file keyferry may replace.
        why: &'static str,
    },
    /// A folder the profile needs does not exist.
    #[error("folder {path} does not exist")]
    FolderMissing {
        /// The folder that is not there.
        path: PathBuf,
    },
    /// Re-reading the installed keys did not give the bundle's fingerprint; backups restored.
    #[error("installed keys did not verify ({0}); the previous files were restored")]
    VerifyFailed(String),

    /// A sync installed its verified new tree, then failed at its bookkeeping (a full disk).
    #[error(
        "{target} is the new tree (installed and verified), but finishing the sync failed: \
         {why}"
    )]
    AfterInstall {
        /// The sync's target, now the new tree.
        target: PathBuf,
        /// What failed after the install.
        why: String,
    },

    /// An in-place sync moved some files in and then failed: the target is between old and
    /// new, as its journal records.
    #[error(
        "{target} is part old, part new: moving the files in one by one stopped ({why}); its \
         journal records where"
    )]
    PartlyInstalled {
        /// The sync's target, part old and part new.
        target: PathBuf,
        /// What stopped the moves.
        why: String,
    },

    /// A sync's new tree, built beside the target, did not match the source; it was
    /// discarded and the target not changed.
    #[error("{0}; the new tree was discarded and the target was not changed")]
    TreeMismatch(String),

    /// A file keyferry was pointed at does not exist.
    #[error("the {what} {path} does not exist")]
    FileMissing {
        /// The path named.
        path: PathBuf,
        /// What kind of file it should have been.
        what: &'static str,
    },

    // --- reading the node ---
    /// A key file the profile lists is not on this node.
    #[error("key file {path} is missing")]
    KeyFileMissing {
        /// The key file's path on this node.
        path: PathBuf,
        /// The product's own way to produce it, if it is made by a vendor tool (profile data).
        remedy: Option<String>,
    },
    /// A key file is larger than keyferry will carry.
    #[error("{path} is {len} bytes; keyferry carries key files up to {max} bytes")]
    KeyFileTooLarge {
        /// The key file.
        path: PathBuf,
        /// Its size in bytes.
        len: u64,
        /// The most keyferry carries.
        max: u64,
    },

    /// A key file is DPAPI-protected in a way that cannot travel.
    #[error("{path} is DPAPI-protected ({what})")]
    DpapiProtected {
        /// The key file's path.
        path: PathBuf,
        /// How it is protected (the blob's scope and description).
        what: String,
        /// The product's own way to turn protection off, or what to do on the owning node.
        remedy: String,
    },
    /// A DPAPI call failed.
    #[error("DPAPI: {0}")]
    #[strum(serialize = "dpapi-failed")]
    Dpapi(String),

    // --- configuration and input ---
    /// The cluster file is not valid.
    #[error("cluster file {path}: {why}")]
    ClusterFile {
        /// The cluster file's path.
        path: PathBuf,
        /// What is wrong with it, and where.
        why: String,
    },
    /// No node of the cluster file is the local machine, or the name is unknown.
    #[error("{0}")]
    NodeNotFound(String),
    /// A passphrase source is unsafe or unusable.
    #[error("{0}")]
    Passphrase(String),
    /// A supplied passphrase is too easy to guess.
    #[error("the passphrase is too easy to guess (about {bits} bits by zxcvbn's estimate; keyferry asks for {floor})")]
    WeakPassphrase {
        /// The estimated guessing entropy, in bits.
        bits: u32,
        /// The least keyferry accepts.
        floor: u32,
    },
    /// An output file exists and `--force` was not given.
    #[error("{path} already exists")]
    OutputExists {
        /// The output path that exists.
        path: PathBuf,
    },
    /// Invalid value given by the user.
    #[error("{0}")]
    InvalidInput(String),
    /// A feature that works only on another operating system.
    #[error("{0}")]
    Unsupported(String),

    /// A node report (saved, or from another node) is not one keyferry accepts.
    #[error("{0}")]
    NodeReport(String),

    /// A sync whose source or target is not what it should be.
    #[error("{0}")]
    SyncRefused(String),
    /// A protected file (a key, a node-local file) on a sync target is not what it was
    /// before the sync: the one thing a sync must never do.
    #[error("PROTECTED FILE CHANGED: {0}")]
    ProtectedChanged(String),

    // --- the file layer and the transaction engine ---
    /// A path that must be a regular file is a link, folder, FIFO or device.
    #[error("{path} is {what}, not a regular file; keyferry does not read or write through it")]
    NotAFile {
        /// The path refused.
        path: PathBuf,
        /// What it is instead ("a symbolic link", "a folder", ...).
        what: &'static str,
    },
    /// A file is larger than anything of its kind can be.
    #[error("{path} is larger than a {what} can be (at most {limit} bytes)")]
    TooLarge {
        /// The file's path.
        path: PathBuf,
        /// What kind of file it should be.
        what: &'static str,
        /// The most bytes a file of its kind may hold.
        limit: u64,
    },
    /// A file changed between keyferry's plan (or open) and its use.
    #[error(
        "{path} changed while keyferry was working on it (another program or user replaced it)"
    )]
    #[strum(serialize = "changed-underfoot")]
    Changed {
        /// The path whose identity or contents changed.
        path: PathBuf,
    },
    /// Another keyferry command holds the node's lock.
    #[error(
        "another keyferry command is changing node {node} (lock {lock} held for {waited_secs}s)"
    )]
    NodeBusy {
        /// The node whose lock is held.
        node: String,
        /// The lock file's path.
        lock: PathBuf,
        /// How long this command waited for it.
        waited_secs: u64,
    },
    /// An interrupted change could not be finished or rolled back safely.
    #[error("an interrupted change on this node needs attention: {0}")]
    RecoveryConflict(String),

    /// `keyferry ha` refused before changing anything.
    #[error("{why}")]
    HaRefused {
        /// What was refused, with the facts.
        why: String,
        /// Why, typed (the binary says what to do about it).
        reason: HaReason,
    },
    /// A step of `keyferry ha` failed part-way (the message says what was done and undone).
    #[error("{why}")]
    HaFailed {
        /// What was done, what failed and what was undone.
        why: String,
        /// Why, typed (the binary says what to do about it).
        reason: HaReason,
    },
    /// A PostgreSQL server did not answer or refused a query.
    #[error("{what}: {why}")]
    Postgres {
        /// The query or connection that failed.
        what: String,
        /// The server's or the client's words.
        why: String,
    },
    /// One of this node's services (an IIS application pool, a Windows service, IIS, a
    /// reboot) or a site's answer was not what it must be.
    #[error("{why}")]
    Host {
        /// What was found.
        why: String,
        /// Why, typed (the binary says what to do about it).
        reason: HostReason,
    },

    /// An I/O error, with the path it concerns.
    #[error("{path}: {source}")]
    Io {
        /// The path the operation concerned.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// Stable, kebab-case identifier of the error kind: API for scripts (`--json`), the
    /// variant's name in kebab case unless the variant says otherwise.
    pub fn code(&self) -> &'static str {
        self.into()
    }

    /// `keyferry ha` refused before changing anything: `why` with the facts, and its reason.
    pub fn ha_refused(why: impl Into<String>, reason: HaReason) -> Self {
        Error::HaRefused {
            why: why.into(),
            reason,
        }
    }

    /// A step of `keyferry ha` failed part-way: `why` with what was done and undone.
    pub fn ha_failed(why: impl Into<String>, reason: HaReason) -> Self {
        Error::HaFailed {
            why: why.into(),
            reason,
        }
    }

    /// A `keyferry host` step refused or failed: `why` with the facts, and its reason.
    pub fn host(why: impl Into<String>, reason: HostReason) -> Self {
        Error::Host {
            why: why.into(),
            reason,
        }
    }

    /// The typed reason of an `ha` error.
    pub fn ha_reason(&self) -> Option<&HaReason> {
        match self {
            Error::HaRefused { reason, .. } | Error::HaFailed { reason, .. } => Some(reason),
            _ => None,
        }
    }

    /// A missing file of some kind (`what`: "cluster file", "passphrase file", ...).
    pub fn missing(path: impl Into<PathBuf>, what: &'static str) -> Self {
        Error::FileMissing {
            path: path.into(),
            what,
        }
    }

    /// Whether this says a file is not there.
    pub fn is_missing(&self) -> bool {
        matches!(self, Error::FileMissing { .. })
            || matches!(self, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }

    /// The same refusal, worded for a destination keyferry would write (a key file).
    pub fn at_destination(self) -> Self {
        match self {
            Error::NotAFile { path, what } => Error::UnsafeDestination { path, why: what },
            e => e,
        }
    }

    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// Every code, one per variant, in the order they are declared.
    pub const ALL_CODES: &'static [&'static str] = <Error as strum::VariantNames>::VARIANTS;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn codes_are_unique_and_kebab_case() {
        let set: HashSet<_> = Error::ALL_CODES.iter().collect();
        assert_eq!(set.len(), Error::ALL_CODES.len(), "duplicate error code");
        for c in Error::ALL_CODES {
            assert!(
                c.chars().all(|ch| ch.is_ascii_lowercase() || ch == '-'),
                "{c} is not kebab-case"
            );
        }
    }

    #[test]
    fn a_code_is_its_variants_name_unless_the_variant_says_otherwise() {
        assert_eq!(Error::WrongPassphrase.code(), "wrong-passphrase");
        assert_eq!(Error::KeyProtection(String::new()).code(), "key-protection");
        assert_eq!(Error::Dpapi(String::new()).code(), "dpapi-failed");
        let e = Error::ExcessiveWork {
            required: 30,
            max: 20,
        };
        assert_eq!(e.code(), "excessive-work-factor");
        assert_eq!(Error::io("x", std::io::Error::other("y")).code(), "io");
        assert!(Error::ALL_CODES.contains(&"changed-underfoot"));
        assert!(Error::ALL_CODES.len() >= 47, "{:?}", Error::ALL_CODES);
    }
}
