//! The JSON documents keyferry's commands write with `--json`, as the types both sides use.
//!
//! A command serialises its report through one of these types (inside the envelope
//! `{"version", "kind", ...}`), and the upgrade run reads its steps' reports back through the
//! same types ([`Document::parse`]): a field renamed on one side is renamed on the other, and
//! a report that does not parse is "no report", never a silently empty one.

use crate::audit::compare::AuditReport;
use crate::ha::replica::{FailoverReport, RejoinReport};
use crate::ha::status::PairStatus;
use crate::keys::cleanup::CleanupReport;
use crate::keys::push::PushTarget;
use crate::preflight::Preflight;
use crate::sync::apply::SyncOutcome;
use crate::sync::plan::SyncPlan;
use serde::{Deserialize, Serialize};

/// A failure as the JSON contract writes it, in the error document
/// (`{"version", "error": {...}}`) and in one target's row of a command's report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDoc {
    /// The error's kind, stable for scripts ([`crate::Error::code`] or the binary's own).
    pub code: String,
    /// What went wrong, for people.
    pub message: String,
    /// What to do about it, where keyferry knows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

/// The error document a failed command writes with `--json`: `version`, then `error`.
#[derive(Serialize)]
pub struct ErrorEnvelope<'a> {
    /// [`crate::JSON_VERSION`].
    pub version: u32,
    /// The failure.
    pub error: ErrorBody<'a>,
}

/// The failure in an error document: `hint` is always there (`null` when keyferry has none),
/// as the document has always written it.
#[derive(Serialize)]
pub struct ErrorBody<'a> {
    /// [`ErrorDoc::code`].
    pub code: &'a str,
    /// [`ErrorDoc::message`].
    pub message: &'a str,
    /// [`ErrorDoc::hint`].
    pub hint: Option<&'a str>,
}

impl<'a> ErrorEnvelope<'a> {
    /// The document of `error`.
    pub fn of(error: &'a ErrorDoc) -> ErrorEnvelope<'a> {
        ErrorEnvelope {
            version: crate::JSON_VERSION,
            error: ErrorBody {
                code: &error.code,
                message: &error.message,
                hint: error.hint.as_deref(),
            },
        }
    }
}

/// A report with its `kind`: the envelope's tag, and the [`StepReport`] variant it reads as.
pub trait Kind: Serialize {
    /// The `kind` the envelope carries.
    const KIND: &'static str;
}

/// The envelope every report goes out in: `version`, `kind`, then the report's fields.
#[derive(Serialize)]
pub struct Envelope<'a, T> {
    /// [`version_of`] its kind.
    pub version: u32,
    /// The report's [`Kind::KIND`].
    pub kind: &'static str,
    /// The report, its fields flattened beside `version` and `kind`.
    #[serde(flatten)]
    pub report: &'a T,
}

impl<'a, T: Kind> Envelope<'a, T> {
    /// The envelope for `report`.
    pub fn of(report: &'a T) -> Envelope<'a, T> {
        Envelope {
            version: version_of(T::KIND),
            kind: T::KIND,
            report,
        }
    }
}

/// The `version` of a report of `kind`: [`crate::JSON_VERSION`], but 2 for the three checks
/// whose findings took the one shape of [`crate::finding`] in place of their own (`diagnose`,
/// `ha-check`, `upgrade-preflight`: a field renamed is a new version for a script that reads
/// it). Their version-1 documents still read.
pub fn version_of(kind: &str) -> u32 {
    match kind {
        "diagnose" | "ha-check" | "upgrade-preflight" => 2,
        _ => crate::JSON_VERSION,
    }
}

/// How one sync target ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SyncResult {
    /// A dry run's plan.
    Planned,
    /// The new tree is in place and verified.
    Synced,
    /// Nothing differed.
    Unchanged,
    /// The target was not changed, or was put back: `error` says why.
    Failed,
    /// The new tree is in place, the bookkeeping after it failed: a rerun finishes it.
    InstalledUnfinished,
}

impl SyncResult {
    /// The target's folder was changed.
    pub fn changed(self) -> bool {
        matches!(self, SyncResult::Synced | SyncResult::InstalledUnfinished)
    }
}

/// One target of `keyferry sync`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SyncTarget {
    /// The node the target belongs to.
    pub node: String,
    /// The profile's name for the folder (`web`, `app`, ...).
    pub slot: String,
    /// The folder's path on that node.
    pub target: String,
    /// The plan in full (not read back: a plan is only ever applied as it was made).
    #[serde(default, skip_serializing_if = "Option::is_none", skip_deserializing)]
    pub plan: Option<SyncPlan>,
    /// What the plan changes, in numbers, and its warnings: what the upgrade run reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<PlanSummary>,
    /// What the apply did (not read back: the plan and the result say what changed).
    #[serde(default, skip_serializing_if = "Option::is_none", skip_deserializing)]
    pub outcome: Option<SyncOutcome>,
    /// How the target ended.
    pub result: SyncResult,
    /// What was finished or rolled back first, from an earlier sync that was cut off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovered: Option<String>,
    /// Why it failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorDoc>,
}

/// A sync plan in numbers, with the warnings the admin should read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanSummary {
    /// Files the source has and the target lacks.
    pub add: usize,
    /// Files both have, with different contents.
    pub update: usize,
    /// Files only the target has (removed, unless kept).
    pub delete: usize,
    /// What the admin should read before applying.
    pub warnings: Vec<String>,
}

impl PlanSummary {
    /// The numbers of `plan`.
    pub fn of(plan: &SyncPlan) -> PlanSummary {
        PlanSummary {
            add: plan.add.len(),
            update: plan.update.len(),
            delete: plan.delete.len(),
            warnings: plan.warnings.clone(),
        }
    }
}

/// `keyferry sync --json` (kind `sync`, or `sync-plan` for a dry run).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SyncReport {
    /// Each target, in the order asked.
    pub targets: Vec<SyncTarget>,
}

/// `keyferry keys push --json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PushReport {
    /// The node whose keys were pushed.
    pub source: String,
    /// The key set's fingerprint.
    pub fingerprint: String,
    /// Nothing was changed: the plan alone.
    pub dry_run: bool,
    /// Every target holds the source's key set (or would, for a dry run).
    pub ok: bool,
    /// Each target node and what happened there.
    pub targets: Vec<PushTarget>,
}

impl Kind for SyncReport {
    const KIND: &'static str = "sync";
}
impl Kind for PushReport {
    const KIND: &'static str = "keys-push";
}
impl Kind for FailoverReport {
    const KIND: &'static str = "ha-failover";
}
impl Kind for RejoinReport {
    const KIND: &'static str = "ha-rejoin";
}
impl Kind for PairStatus {
    const KIND: &'static str = "ha-status";
}
impl Kind for Preflight {
    const KIND: &'static str = "upgrade-preflight";
}

/// `keyferry host ...` on a node: what it found and changed there.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HostReport {
    /// The node it ran on.
    pub node: String,
    /// What was asked of it.
    pub action: HostAction,
    /// Each pool or service: before, after, and whether keyferry changed it.
    pub changes: Vec<crate::host::Change>,
    /// When the node last started (RFC 3339), to tell a rebooted node from one that was not.
    pub booted: Option<String>,
    /// What else it did (iisreset's words, the reboot asked for).
    pub note: Option<String>,
}

/// What `keyferry host` was asked to do on a node, as its report writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HostAction {
    /// Stop the node's application pool.
    PoolStop,
    /// Start it.
    PoolStart,
    /// Stop the node's services.
    ServiceStop,
    /// Start them.
    ServiceStart,
    /// Restart IIS.
    IisRestart,
    /// Reboot the node.
    Reboot,
    /// Only report the pool's and services' states and the start time.
    Status,
}

impl Kind for HostReport {
    const KIND: &'static str = "host";
}

/// `keyferry host check-site`: each node's site, as it answered from here.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SiteReport {
    /// Every site answered with success and without the product's error pages.
    pub ok: bool,
    /// Each node's answer, in the cluster file's order.
    pub sites: Vec<SiteRow>,
}

/// One node's site answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SiteRow {
    /// The node whose site was asked.
    pub node: String,
    /// What the site answered.
    #[serde(flatten)]
    pub answer: crate::host::site::SiteAnswer,
}

impl Kind for SiteReport {
    const KIND: &'static str = "host-site";
}

/// The reports an upgrade step's command writes, by their `kind`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum StepReport {
    /// `keyferry sync`.
    Sync(SyncReport),
    /// `keyferry sync --dry-run`.
    SyncPlan(SyncReport),
    /// `keyferry keys push`.
    KeysPush(PushReport),
    /// `keyferry keys cleanup`.
    Cleanup(CleanupReport),
    /// `keyferry ha failover`.
    HaFailover(FailoverReport),
    /// `keyferry ha rejoin`.
    HaRejoin(RejoinReport),
    /// `keyferry ha status`.
    HaStatus(PairStatus),
    /// `keyferry upgrade preflight`.
    UpgradePreflight(Preflight),
    /// `keyferry audit`.
    Audit(AuditReport),
    /// `keyferry host` on a node.
    Host(HostReport),
    /// `keyferry host check-site`.
    HostSite(SiteReport),
    /// A report of a kind the run does not read (it is still kept with the run's record).
    #[serde(other)]
    Other,
}

/// What a command wrote on standard output with `--json`.
#[derive(Debug, Clone)]
pub enum Document {
    /// A report, by its kind.
    Report(Box<StepReport>),
    /// The error document of a command that failed.
    Error(ErrorDoc),
}

impl Document {
    /// Reads a command's output: its report, its error document, or `None` (nothing, not
    /// JSON, or a known kind whose fields do not read: never a half-read report).
    pub fn parse(bytes: &[u8]) -> Option<Document> {
        let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
        Document::from_value(v)
    }

    /// As [`Document::parse`], from JSON already read.
    pub fn from_value(v: serde_json::Value) -> Option<Document> {
        if let Some(e) = v.get("error").filter(|_| v.get("kind").is_none()) {
            return serde_json::from_value(e.clone()).ok().map(Document::Error);
        }
        v.get("kind")?;
        serde_json::from_value(v)
            .ok()
            .map(|r| Document::Report(Box::new(r)))
    }

    /// The report, if the command wrote one.
    pub fn report(&self) -> Option<&StepReport> {
        match self {
            Document::Report(r) => Some(r),
            Document::Error(_) => None,
        }
    }

    /// The error, if the command failed.
    pub fn error(&self) -> Option<&ErrorDoc> {
        match self {
            Document::Error(e) => Some(e),
            Document::Report(_) => None,
        }
    }
}
