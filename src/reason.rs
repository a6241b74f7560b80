//! Why a `keyferry ha` or `keyferry host` step refused or failed, typed.
//!
//! The library says what went wrong: the error's words (the facts: names, addresses, the
//! server's own message) and one of these reasons, with what a fix needs to name. The binary's
//! `failure.rs` says what to do about each, in one place. The enums are exhaustive on
//! purpose: a reason added here without its hint there does not compile.

use std::path::PathBuf;

/// Why a `keyferry ha` step refused or failed ([`crate::Error::HaRefused`],
/// [`crate::Error::HaFailed`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HaReason {
    // --- the cluster file and this machine ---
    /// The cluster file names no node of that name.
    NoSuchNode,
    /// `--node` names a node outside the `[ha]` pair.
    NotInPair,
    /// This machine's host name is neither node of the pair, and no `--node` was given.
    HostNotInPair,
    /// A node's PostgreSQL data folder is set nowhere.
    NoDataFolder {
        /// The node.
        node: String,
    },
    /// The node's address is not one of this machine's.
    NotThisMachine {
        /// The command that must run on that node (`ha replica init`, `ha rejoin`).
        command: String,
    },
    /// `--replace-database-of` names another node than this one.
    WrongNodeNamed,
    /// keyferry on the peer, reached through its access, did not answer.
    PeerUnreachable,

    // --- the password file ---
    /// The password file has no line for a login.
    NoPassword {
        /// The line's host field.
        host: String,
        /// Its port.
        port: u16,
        /// Its database.
        database: String,
        /// Its user.
        user: String,
    },
    /// The password file is open to other accounts.
    PassFileOpen {
        /// The file.
        path: PathBuf,
    },
    /// The password file is not text.
    PassFileNotText,

    // --- PostgreSQL's programs and server on this node ---
    /// A PostgreSQL program (`pg_ctl`, `pg_basebackup`, ...) could not be run.
    Program,
    /// A PostgreSQL program ran and failed with its own message.
    ProgramSaid,
    /// `pg_ctl status` could not tell about the data folder.
    DataFolder,
    /// The server would not stop.
    WontStop,
    /// The server went away while starting.
    ServerGone {
        /// Its start log.
        log: PathBuf,
    },
    /// The service manager could not be asked.
    ServiceControl,
    /// The service manager refused.
    ServiceFailed,

    // --- pg_hba.conf ---
    /// A `reject` line stands before the lines keyferry would add.
    HbaReject,
    /// The file cannot be edited as it is.
    HbaUnplannable,
    /// A check after the edit failed for a reason other than PostgreSQL's verdict.
    HbaCheckFailed,
    /// The file changed after keyferry wrote it, so it could not be put back.
    HbaChangedAfterWrite,
    /// PostgreSQL already rejects the file before the edit.
    HbaAlreadyRejected,
    /// PostgreSQL rejects the edited file.
    HbaEditRejected,
    /// The server did not reload its configuration.
    HbaNotReloaded,
    /// The server's file is not in its data folder.
    HbaElsewhere,
    /// After the edit and a reload keyferry still cannot log in.
    HbaLoginRefused,

    // --- the primary, its replica and their slots ---
    /// The primary does not answer.
    PrimaryDown,
    /// The node taken for the primary is a replica.
    NotPrimary,
    /// The primary's `wal_level` is `minimal`.
    WalLevelMinimal,
    /// The primary has no free WAL sender.
    NoWalSender,
    /// The primary's `pg_hba.conf` does not let the replica in.
    PrimaryHbaClosed {
        /// The primary.
        primary: String,
    },
    /// The replica's slot is in use.
    SlotInUse,
    /// The slot is still in use after this node's own server stopped.
    SlotStillInUse,
    /// The replica does not answer.
    ReplicaDown,
    /// The replica does not stream.
    NotStreaming,

    // --- replica init ---
    /// A folder of an earlier run is there.
    LeftOver,
    /// The folder keyferry is about to create appeared during the run.
    AppearedDuringRun,
    /// This node's PostgreSQL programs are of another major version than the primary's.
    MajorVersion {
        /// The primary's major version.
        major: u32,
        /// The node to install it on.
        node: String,
    },
    /// The facts do not say to replace this node's database, and no one said to.
    ReplaceNeedsConsent {
        /// The node whose database would be replaced.
        node: String,
    },
    /// The disk lacks room for the copy.
    NoSpace,
    /// An earlier replica init was cut off mid-swap.
    SwapCutOff,
    /// The copy's server did not start; the old folder is back.
    CopyDidNotStart {
        /// The copy's start log.
        log: PathBuf,
    },
    /// Starting the old server again after a failure also failed.
    OldServerNotStarted,

    // --- rejoin ---
    /// This node is the running primary and its peer its replica.
    NothingToRejoin {
        /// This node.
        node: String,
    },
    /// Both nodes run as primaries.
    SplitBrain,
    /// The two nodes hold different databases.
    DifferentDatabases {
        /// This node.
        node: String,
    },
    /// A rewind cannot work across major versions.
    RejoinNeedsCopy {
        /// The node.
        node: String,
        /// The new primary's major version.
        major: u32,
    },
    /// The rewound node does not stream.
    RewoundNotStreaming {
        /// The node.
        node: String,
        /// Its start log.
        log: PathBuf,
    },
    /// The fresh copy that replaces a rewind failed, after the node's server was stopped.
    RejoinCopyFailed {
        /// The node.
        node: String,
        /// The copy's own reason, when it had one.
        inner: Option<Box<HaReason>>,
    },

    // --- failover ---
    /// The planned failover was asked of the replica.
    FailoverOnReplica {
        /// The primary to run it on.
        primary: String,
    },
    /// The replica did not receive the old primary's last WAL in time.
    WalNotReceived,
    /// The replica did not finish its promotion in time.
    PromotionSlow,
    /// No node answers as a replica.
    NoReplica,
    /// The primary said to be lost still answers.
    PrimaryNotLost {
        /// The primary.
        primary: String,
    },
    /// Fencing the primary over ssh failed.
    FenceOverSshFailed {
        /// The primary.
        primary: String,
    },
    /// The primary is not off.
    PrimaryNotOff {
        /// The primary.
        primary: String,
    },
    /// Nothing shows the primary cannot come back, and the admin did not confirm it.
    LossUnconfirmed {
        /// The primary.
        primary: String,
    },
    /// `keyferry ha fence` on the old primary failed.
    FenceFailed,
}

/// Why a `keyferry host` step refused or failed ([`crate::Error::Host`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostReason {
    /// This node is not a Windows node.
    NotWindows,
    /// A Windows tool is missing.
    ToolMissing,
    /// A Windows tool could not be run.
    ToolFailed,
    /// IIS has no application pool of that name.
    NoSuchPool,
    /// The Service Control Manager has no service of that name.
    NoSuchService,
    /// A pool or service did not reach the state asked for in time.
    DidNotSettle {
        /// The tool's exit code (`None`: ended by a signal).
        exit: Option<i32>,
    },
    /// `iisreset` failed.
    IisReset,
    /// `shutdown /r` was refused.
    RebootRefused,
    /// The node has no `app_pool` in the cluster file.
    NoAppPool,
    /// The node has no `services` in the cluster file.
    NoServices,
    /// A node has no `site_url` in the cluster file.
    NoSiteUrl,
    /// No node has a `site_url`.
    NoSiteUrls,
}
