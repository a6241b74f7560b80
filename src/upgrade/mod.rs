//! The vendor upgrade procedures as data, and the checklist they make for one cluster file
//! (`keyferry upgrade plan`). Each procedure is the seeds' steps in the seeds' order, except
//! where keyferry's own order keeps exactly one writable database (the HA pair: see
//! docs/ha.md). A step is automatic (a keyferry command, shown as it will run) or manual (the
//! vendor installer, a reboot, a console button: exactly what to do, on which node), and may
//! name the check that gates it. A run of the checklist (`upgrade run`, `resume`, `status`)
//! is kept as a [`RunState`] in the driving node's state folder after every step.

use crate::cluster::file::{ClusterFile, NodeSpec};
use crate::error::{Error, Result};
use crate::profile::{ProfileId, Role};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

mod privilege_secure;
pub(crate) mod run;
mod secret_server;
mod state;

use privilege_secure::{privilege_secure_ha, remote_services};
pub use run::{pair_status, Driver, Event, Hands, Question, Ran, RunError, Stop, Wait};
use secret_server::secret_server;
pub use state::{state_path, Done, RunState, StepFailure, StepState};

/// One procedure: the Secret Server cluster upgrade, the Privilege Secure HA pair upgrade,
/// and the Privilege Secure remote-service upgrade.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Procedure {
    /// Secret Server: upgrading a web cluster.
    SecretServerCluster,
    /// Secret Server: upgrading database mirroring.
    SecretServerMirroring,
    /// Secret Server: adding a node to a cluster.
    SecretServerAddNode,
    /// Privilege Secure: upgrading the HA pair.
    PrivilegeSecureHa,
    /// Privilege Secure: upgrading the remote Action, Scheduler and Proxy hosts.
    PrivilegeSecureRemote,
}

impl Procedure {
    /// The procedure's title, as the vendor's document names it.
    pub fn title(self) -> &'static str {
        match self {
            Procedure::SecretServerCluster => {
                "Secret Server web cluster upgrade (\"Upgrading Secret Server with Web Clustering\", \
                 and \"Upgrading Remote DR Instances\" for a DR node)"
            }
            Procedure::SecretServerMirroring => {
                "Secret Server upgrade with database mirroring (\"Upgrading Database Mirroring\", \
                 and \"Upgrading Remote DR Instances\" for a DR node)"
            }
            Procedure::SecretServerAddNode => {
                "Adding a node to a Secret Server web cluster (\"Setting up Clustering\", initial \
                 set-up)"
            }
            Procedure::PrivilegeSecureHa => {
                "Privilege Secure HA pair upgrade (\"HA Upgrade Instructions\")"
            }
            Procedure::PrivilegeSecureRemote => {
                "Privilege Secure remote services upgrade (\"Remote Service Upgrade Instructions\")"
            }
        }
    }
}

/// Who does a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// keyferry runs it.
    Auto,
    /// The admin does it and confirms.
    Manual,
}

/// One step of the checklist, for this cluster.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// 1-based, across the whole checklist.
    pub n: usize,
    /// A stable id (`ss.sync`, `ha.failover`, ...), for resuming and scripts.
    pub id: String,
    /// The procedure it belongs to.
    pub procedure: Procedure,
    /// Automatic or manual.
    pub kind: Kind,
    /// The node it happens on (automatic steps: where keyferry runs it).
    pub node: Option<String>,
    /// What it does, in a line.
    pub title: String,
    /// Automatic: the keyferry command line. Manual: what to do.
    pub what: String,
    /// What must hold before the step (checked by `upgrade run`).
    pub gate: Option<String>,
    /// Automatic: keyferry's arguments (after the program name).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Automatic: the exit codes that count as done (a preflight audit that finds
    /// differences the later steps fix is done with 1).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ok_codes: Vec<i32>,
    /// The keyferry arguments whose exit 0 proves the gate, run on the node driving the run
    /// (the primary: it reaches every node).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub gate_args: Vec<String>,
    /// How to undo what this step changed, should the admin want to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub undo: Option<String>,
    /// A key push: planned first (`--dry-run`); a node whose keys differ stops the run and
    /// waits for the admin's confirmation of this step before anything is replaced (then the
    /// push runs with `--replace`). Never a replace unasked (the vendor's hard rule).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub confirm_replace: bool,
    /// The step's own end state, as `ha status` shows it: each (node, role) must hold
    /// (`running-primary`, `running-replica`, or `!running-primary` for "not the primary").
    /// Checked before the step and its gate: where it holds, the step is already done (a
    /// run cut off while the step ran on another node, its work finished).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub done_when: Vec<(String, String)>,
    /// A reboot of another node: once its command asked for the restart, the run waits until
    /// the node's keyferry answers again with a later start time (or the wait's deadline).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub wait_reboot: bool,
    /// keyferry's arguments that put back what this step changed, run by `upgrade abandon`
    /// when the step ran and `undone_by` (a later step on the same node) did not: a pool the
    /// run stopped is started again when the run is given up.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub undo_args: Vec<String>,
    /// The later step that puts this one's change back in the normal course of the run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub undone_by: Option<String>,
}

/// The whole checklist.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// The cluster's name.
    pub cluster: String,
    /// The node the run is driven from: the primary, which reaches every other.
    pub driver: String,
    /// The procedures it holds, in order.
    pub procedures: Vec<Procedure>,
    /// What the cluster file's `[upgrade]` section changed, in words (steps left out, whose
    /// order).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Every step, numbered across the procedures.
    pub steps: Vec<Step>,
}

struct Builder<'a> {
    steps: Vec<Step>,
    cluster_arg: &'a str,
    /// The node the run is driven from (gates are checked there).
    driver: String,
    procedure: Procedure,
    notes: Vec<String>,
}

impl Builder<'_> {
    fn push(&mut self, id: &str, kind: Kind, node: Option<&str>, title: &str, what: String) {
        let n = self.steps.len() + 1;
        self.steps.push(Step {
            n,
            id: id.to_owned(),
            procedure: self.procedure,
            kind,
            node: node.map(str::to_owned),
            title: title.to_owned(),
            what,
            gate: None,
            args: Vec::new(),
            ok_codes: Vec::new(),
            gate_args: Vec::new(),
            undo: None,
            confirm_replace: false,
            done_when: Vec::new(),
            wait_reboot: false,
            undo_args: Vec::new(),
            undone_by: None,
        });
    }

    /// `keyferry keys push ...` from `node` (automatic), undone from the replaced key files
    /// it keeps.
    fn push_keys(&mut self, id: &str, node: &str, title: &str, args: &[&str]) {
        self.auto(id, node, title, args);
        self.undo(keys_undo(self.cluster_arg, node));
        if let Some(s) = self.steps.last_mut() {
            s.confirm_replace = true;
        }
    }

    /// The last step's end state (see [`Step::done_when`]).
    fn done_when(&mut self, roles: &[(&str, &str)]) {
        if let Some(s) = self.steps.last_mut() {
            s.done_when = roles
                .iter()
                .map(|(n, r)| ((*n).to_owned(), (*r).to_owned()))
                .collect();
        }
    }

    /// How to undo the last step.
    fn undo(&mut self, how: String) {
        if let Some(s) = self.steps.last_mut() {
            s.undo = Some(how);
        }
    }

    /// The last step's gate; `check` (keyferry arguments, run on the driving node) proves it
    /// by exiting 0, where a command can.
    fn gate(&mut self, gate: &str, check: Option<&str>) {
        let argv = check.map(|c| {
            let words: Vec<&str> = c.split_whitespace().collect();
            self.argv(&words, Some(&self.driver))
        });
        if let Some(s) = self.steps.last_mut() {
            s.gate = Some(gate.to_owned());
            s.gate_args = argv.unwrap_or_default();
        }
    }

    /// keyferry's arguments `args` (each a word, a node name with spaces one word) on
    /// `node`; `audit` is cluster-wide (no `--node`).
    fn argv(&self, args: &[&str], node: Option<&str>) -> Vec<String> {
        let mut v: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        v.extend(["-c".to_owned(), self.cluster_arg.to_owned()]);
        if let Some(n) = node.filter(|_| args != ["audit"]) {
            v.extend(["--node".to_owned(), n.to_owned()]);
        }
        v
    }

    /// `keyferry <args> -c <file> --node <node>`, run on `node`.
    fn auto(&mut self, id: &str, node: &str, title: &str, args: &[&str]) {
        let argv = self.argv(args, Some(node));
        let what = format!("keyferry {}", crate::text::command_line(&argv));
        self.push(id, Kind::Auto, Some(node), title, what);
        if let Some(s) = self.steps.last_mut() {
            s.args = argv;
            s.ok_codes = vec![0];
        }
    }

    fn manual(&mut self, id: &str, node: &str, title: &str, what: String) {
        self.push(id, Kind::Manual, Some(node), title, what);
    }
}

fn with_role<'f>(file: &'f ClusterFile, roles: &[Role]) -> Vec<&'f NodeSpec> {
    file.nodes
        .iter()
        .filter(|n| roles.contains(&n.role))
        .collect()
}

/// The cluster file's one primary: the node an upgrade is driven from.
pub fn primary(file: &ClusterFile) -> Result<&NodeSpec> {
    let p = with_role(file, &[Role::Primary]);
    match p.as_slice() {
        [one] => Ok(one),
        _ => Err(Error::InvalidInput(format!(
            "an upgrade plan needs exactly one primary node in the cluster file; it has {}",
            p.len()
        ))),
    }
}

/// The checklist for `file`, whose path is given to the commands as `cluster_arg`.
pub fn plan(file: &ClusterFile, cluster_arg: &str) -> Result<Plan> {
    let mut procedures = Vec::new();
    let mut b = Builder {
        steps: Vec::new(),
        cluster_arg,
        driver: String::new(),
        procedure: Procedure::SecretServerCluster,
        notes: Vec::new(),
    };
    match file.profile {
        ProfileId::SecretServer if file.upgrade.mirroring => {
            procedures.push(Procedure::SecretServerMirroring)
        }
        ProfileId::SecretServer => procedures.push(Procedure::SecretServerCluster),
        ProfileId::PrivilegeSecure => {
            if file.ha.is_some() {
                procedures.push(Procedure::PrivilegeSecureHa);
            }
            if !with_role(file, &[Role::Action, Role::Scheduler, Role::Proxy]).is_empty() {
                procedures.push(Procedure::PrivilegeSecureRemote);
            }
            if procedures.is_empty() {
                return Err(Error::InvalidInput(
                    "this Privilege Secure cluster has neither an [ha] section nor remote \
                     Action, Scheduler or Proxy hosts: a standard upgrade with NPS_Setup needs \
                     no procedure"
                        .into(),
                ));
            }
        }
        ProfileId::Custom => {
            return Err(Error::InvalidInput(
                "keyferry has upgrade procedures for the secret-server and privilege-secure \
                 profiles only"
                    .into(),
            ))
        }
    }
    let p = primary(file)?;
    b.driver = p.name.clone();
    b.procedure = procedures[0];
    b.auto(
        "preflight",
        &p.name,
        "Preflight: nodes reachable, room for what keyferry keeps, clocks, roles (differences in \
         keys and binaries are listed: the steps below fix them)",
        &["upgrade", "preflight"],
    );
    for (i, &procedure) in procedures.iter().enumerate() {
        b.procedure = procedure;
        match procedure {
            Procedure::SecretServerCluster | Procedure::SecretServerMirroring => {
                secret_server(&mut b, file)?
            }
            // Never in this list: planned alone by `plan_add_node`.
            Procedure::SecretServerAddNode => {}
            Procedure::PrivilegeSecureHa => privilege_secure_ha(&mut b, file)?,
            Procedure::PrivilegeSecureRemote => remote_services(&mut b, file, i == 0)?,
        }
    }
    Ok(Plan {
        cluster: file.name.clone(),
        driver: b.driver.clone(),
        procedures,
        notes: b.notes,
        steps: b.steps,
    })
}

/// The checklist for adding `node` (already in the cluster file, with its application
/// folder empty or absent) to a Secret Server web cluster: "Setting up Clustering", initial
/// set-up. keyferry copies the folder and the key; the product's own steps (clustering on,
/// IIS, the database connection, licences, the load balancer) are manual.
pub fn plan_add_node(file: &ClusterFile, cluster_arg: &str, node: &str) -> Result<Plan> {
    if file.profile != ProfileId::SecretServer {
        return Err(Error::InvalidInput(
            "adding a node is a Secret Server procedure (\"Setting up Clustering\"); a \
             Privilege Secure server is added with its own installer and HA tool"
                .into(),
        ));
    }
    let p = primary(file)?;
    let new = file
        .nodes
        .iter()
        .find(|n| n.name.eq_ignore_ascii_case(node))
        .ok_or_else(|| {
            Error::InvalidInput(format!(
                "no node {node} in the cluster file: add its [[node]] (role secondary or dr, \
                 paths.app) first, then plan again"
            ))
        })?;
    if new.name == p.name || !matches!(new.role, Role::Secondary | Role::Dr) {
        return Err(Error::InvalidInput(format!(
            "{} is the cluster's {}: the node to add is a secondary or DR web node",
            new.name,
            if new.name == p.name {
                "primary".to_owned()
            } else {
                format!("{} node", new.role)
            }
        )));
    }
    let Some(app) = new.paths.get("app") else {
        return Err(Error::InvalidInput(format!(
            "node {} has no paths.app: say where its application folder goes",
            new.name
        )));
    };
    let mut b = Builder {
        steps: Vec::new(),
        cluster_arg,
        driver: p.name.clone(),
        procedure: Procedure::SecretServerAddNode,
        notes: Vec::new(),
    };
    let (p, n) = (p.name.as_str(), new.name.as_str());
    b.auto(
        "preflight",
        p,
        "Preflight: nodes reachable, room for the new folder (create it, empty, first), \
         clocks, roles",
        &["upgrade", "preflight", "--new-node", n],
    );
    b.manual(
        "add.enable-clustering",
        p,
        "Enable clustering",
        format!(
            "on {p}'s site: Admin > See All > Server Nodes, click Enable Clustering (once per \
             cluster: nothing to do if it is on)"
        ),
    );
    b.auto(
        "add.copy-folder",
        p,
        "Copy the whole application folder to the new node, minus database.config and \
         encryption.config (its own database connection and the key come below)",
        &["sync", "--checksum", "--new-target", "--to", n],
    );
    b.undo(format!(
        "keyferry sync rollback -c {cluster_arg} --node {p} --to {n} (the new node's folder \
         goes back to what it was: empty)"
    ));
    b.push_keys(
        "add.keys",
        p,
        "Give the new node the primary's encryption.config (a DPAPI-protected key is decrypted \
         on the primary before it travels, as the vendor says: the new node's copy is not \
         DPAPI-protected until you turn it on there)",
        &["keys", "push", "--to", n],
    );
    b.manual(
        "add.iis",
        n,
        "Set up the application pool and the site in IIS",
        format!(
            "on {n}: create the Secret Server application pool and site (virtual directory) as \
             the Installation Guide says, pointing at {}",
            app.display()
        ),
    );
    b.manual(
        "add.connection-reset",
        n,
        "Set up the node's database connection",
        format!(
            "browse to {n}'s site and perform a database connection reset (\"Changing SQL \
             Server Connection Parameters\"): it writes {n}'s database.config"
        ),
    );
    b.manual(
        "add.licences",
        p,
        "Activate the licences for the new node",
        format!("on either node's site: Admin > Licenses, activate the licences for {n}"),
    );
    b.manual(
        "add.dpapi",
        n,
        "Turn DPAPI on for the new node's key, if the cluster uses it",
        format!(
            "on {n}'s site, only if the other nodes protect encryption.config with DPAPI: Admin \
             > Configuration > Security, Encrypt Key with DPAPI (on {n} itself: DPAPI is bound \
             to the machine)"
        ),
    );
    b.manual(
        "add.load-balancer",
        p,
        "Add the node to the load balancer",
        format!(
            "add {n} to the load balancer's pool with sticky sessions (session affinity), as \
             \"Load Balancing Secret Server Clusters\" says"
        ),
    );
    b.auto(
        "add.verify",
        p,
        "Verify: the new node's binaries and key equal the primary's and it has its \
         database.config",
        &["audit"],
    );
    Ok(Plan {
        cluster: file.name.clone(),
        driver: b.driver.clone(),
        procedures: vec![Procedure::SecretServerAddNode],
        notes: b.notes,
        steps: b.steps,
    })
}

/// A node keyferry runs steps on from the driving node: the driver itself, or one reached
/// over ssh (a node reached by path has its folders here, not its IIS or services).
fn reachable(n: &NodeSpec, driver: &str) -> bool {
    n.name == driver
        || n.access
            .as_deref()
            .is_some_and(|a| a.trim().starts_with("ssh://"))
}

/// IIS's own command for a pool, as the admin types it on the node.
fn appcmd(verb: &str, pool: Option<&str>) -> String {
    format!(
        "%windir%\\system32\\inetsrv\\appcmd {verb} apppool /apppool.name:\"{}\"",
        pool.unwrap_or("<Secret Server's application pool>")
    )
}

/// Said where a pool step stays manual: what makes keyferry do it.
fn hint_pool(pool: Option<&str>) -> &'static str {
    match pool {
        None => "; write app_pool in its [[node]], with ssh access, and keyferry does it",
        Some(_) => "; with ssh access to the node, keyferry does it",
    }
}

/// "Confirm it works": keyferry asks the node's site from the driving node (`site_url`), or,
/// without one, the admin browses to it.
fn works(b: &mut Builder<'_>, n: &NodeSpec, driver: &str, id: &str, title: &str) {
    if n.site_url.is_some() {
        b.auto(id, driver, title, &["host", "check-site", "--to", &n.name]);
    } else {
        b.manual(
            id,
            &n.name,
            title,
            format!(
                "browse to {}'s site and log in: it must answer, with no \"Version does not \
                 match\" or \"Encryption key doesn't match\" page (write site_url in its \
                 [[node]] and keyferry checks it)",
                n.name
            ),
        );
    }
}

/// How a key push is undone: the backups each replace left (for nodes reached by path, in
/// the pushing node's state folder; over ssh, in the node's own).
fn keys_undo(cluster: &str, from: &str) -> String {
    format!(
        "the replaced key files are kept: keyferry keys restore -c {cluster} --node NODE --list \
         (on {from}: it lists the backups {from} kept for nodes it reached by path; on a node \
         reached over ssh, its own), then --backup ID"
    )
}

/// The vendor's key export on the Privilege Secure server, which `keys push` then carries.
fn export_keys(node: &str) -> String {
    format!(
        "on {node}, in the KeyTools folder: SbPAM.RotateKey.exe export -n keys.exp; note the \
         password it shows (never on digital media): the import asks for it"
    )
}

/// The vendor's upgrade of a Privilege Secure server.
fn nps_setup(node: &str) -> String {
    format!(
        "on {node}: run NPS_Setup, click Upgrade Netwrix Privilege Secure, close the installer \
         and NPS_Setup"
    )
}

/// The reboot the vendor requires on every Privilege Secure server after an upgrade: another
/// node is rebooted by keyferry there and waited for; the node driving the run is rebooted
/// by the admin (the run cannot outlive it), who resumes it afterwards.
fn reboot(b: &mut Builder<'_>, file: &ClusterFile, id: &str, node: &str) {
    let over_ssh = file
        .nodes
        .iter()
        .find(|n| n.name == node)
        .is_some_and(|n| n.name != b.driver && reachable(n, &b.driver));
    if over_ssh {
        b.auto(
            id,
            node,
            "Reboot the server and wait until it answers again",
            &["host", "reboot"],
        );
        if let Some(s) = b.steps.last_mut() {
            s.wait_reboot = true;
        }
        return;
    }
    b.manual(
        id,
        node,
        "Reboot the server",
        format!(
            "reboot {node} (the vendor requires a reboot of every Privilege Secure server after \
             an upgrade: shutdown /r /t 0); once it is back and its services run: keyferry \
             upgrade resume -c {} --confirm <this step>",
            b.cluster_arg
        ),
    );
}

/// A Privilege Secure version as the vendor writes it (`3.6`, `3.7.1250`, `3.7CU1`, `4.1`):
/// major, minor, build (a cumulative update `CUn` counts as a build after every plain one).
fn nps_version(v: &str) -> Option<(u32, u32, u32)> {
    let v = v.trim().trim_start_matches(['v', 'V']);
    let (base, cu) = match v.to_ascii_uppercase().split_once("CU") {
        Some((b, n)) => (
            b.trim_end_matches(['.', ' ']).to_owned(),
            Some(n.trim().parse::<u32>().ok()?),
        ),
        None => (v.to_owned(), None),
    };
    let mut parts = base.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next().map_or(Some(0), |m| m.parse().ok())?;
    let build = match (parts.next(), cu) {
        (Some(_), Some(_)) => return None,
        (Some(b), None) => b.parse().ok()?,
        // 3.7 CU1 is 3.7.1250 (the vendor's own equation); a later CU is later.
        (None, Some(n)) if n >= 1 && (major, minor) == (3, 7) => 1250 + (n - 1),
        (None, Some(n)) => n,
        (None, None) => 0,
    };
    if parts.next().is_some() {
        return None;
    }
    Some((major, minor, build))
}

/// Whether the vendor's export and import of the keys may be left out: from 3.6 or later to
/// 3.7 CU1 (3.7.1250) or later, the installer keeps each server's keys ("Upgrading from 3.6 or
/// Higher to 3.7CU1 (3.7.1250) or Higher"). Both versions must be given; an unreadable one
/// is refused.
fn keys_kept(b: &mut Builder<'_>, file: &ClusterFile) -> Result<bool> {
    let up = &file.upgrade;
    let read = |v: &str| {
        nps_version(v).ok_or_else(|| Error::ClusterFile {
            path: file.path.clone(),
            why: format!(
                "[upgrade]: {v:?} is not a Privilege Secure version (write it as 3.6, 3.7CU1, \
                 3.7.1250 or 4.1)"
            ),
        })
    };
    let (Some(from), Some(to)) = (up.from_version.as_deref(), up.to_version.as_deref()) else {
        return Ok(false);
    };
    let (f, t) = (read(from)?, read(to)?);
    let kept = f >= (3, 6, 0) && t >= (3, 7, 1250);
    let note = if kept {
        format!(
            "from {from} to {to}: the key export and import steps are left out (the 3.7 CU1 \
             installer keeps every server's keys, as the vendor says); the final audit still \
             checks that the keys agree"
        )
    } else {
        format!("from {from} to {to}: the key steps are needed")
    };
    if !b.notes.contains(&note) {
        b.notes.push(note);
    }
    Ok(kept)
}

/// `name` in the folder that holds `path`, as the node writes paths (a Windows node's
/// `C:\...\Data` read on any system): None where `path` has no parent.
fn beside(path: &Path, name: &str) -> Option<String> {
    let s = path.to_string_lossy();
    let s = s.trim_end_matches(['\\', '/']);
    let at = s.rfind(['\\', '/'])?;
    let sep = &s[at..=at];
    Some(format!("{}{sep}{name}", &s[..at]))
}

/// "Before configuring HA ... delete the contents of the Archive folder", on both servers.
fn empty_archive(b: &mut Builder<'_>, pair: &crate::ha::config::Pair) {
    for n in &pair.nodes {
        let at = n
            .archive
            .as_deref()
            .map(|a| a.display().to_string())
            .or_else(|| n.data.as_deref().and_then(|d| beside(d, "Archive")))
            .unwrap_or_else(|| "the Archive folder beside the PostgreSQL data folder".into());
        b.manual(
            "ha.empty-archive",
            &n.name,
            "Empty the PostgreSQL Archive folder",
            format!(
                "on {}: delete the contents of {at} (the HA tool's folder icon by PgDataDir \
                 opens the Postgres folder that holds it); keep the folder itself",
                n.name
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::state::{bounded, MAX_CHANGES, MAX_CHANGE_LEN};
    use super::*;

    #[test]
    fn versions_and_folders_are_read_as_the_vendor_and_the_node_write_them() {
        assert_eq!(nps_version("3.6"), Some((3, 6, 0)));
        assert_eq!(nps_version("3.7CU1"), Some((3, 7, 1250)));
        assert_eq!(nps_version("3.7 CU2"), Some((3, 7, 1251)));
        assert_eq!(nps_version("v3.7.1250"), Some((3, 7, 1250)));
        assert_eq!(nps_version("4.1CU3"), Some((4, 1, 3)));
        for bad in ["", "three", "3.x", "3.7CU", "3.7.1.2", "3.7.5CU1"] {
            assert_eq!(nps_version(bad), None, "{bad:?}");
        }
        assert_eq!(
            beside(
                Path::new(r"C:\Program Files\Stealthbits\Postgres12\Data\"),
                "Archive"
            )
            .as_deref(),
            Some(r"C:\Program Files\Stealthbits\Postgres12\Archive")
        );
        assert_eq!(
            beside(Path::new("/var/lib/pg/data"), "Archive").as_deref(),
            Some("/var/lib/pg/Archive")
        );
        assert_eq!(beside(Path::new("data"), "Archive"), None);
    }

    #[test]
    fn a_huge_step_report_is_kept_bounded_in_the_state() {
        let big: Vec<String> = (0..10_000)
            .map(|i| format!("web{i}: {}", "é".repeat(2_000)))
            .collect();
        let kept = bounded(big);
        assert_eq!(kept.len(), MAX_CHANGES + 1);
        assert!(kept.iter().all(|c| c.len() < MAX_CHANGE_LEN + 64));
        assert!(kept.last().unwrap().contains("9936 more"));
        let json = serde_json::to_vec(&kept).unwrap();
        assert!(json.len() < 64 * 1024, "{}", json.len());
    }
}
