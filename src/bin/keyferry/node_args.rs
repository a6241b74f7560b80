//! How a command finds the node it acts on: a cluster file and `--node`, or `--profile` and
//! `--root` for a node without one.

use crate::failure::{Code, Failure};
use clap::Args;
use keyferry::cluster::{host_name, ClusterFile, Node, NodeSpec};
use keyferry::profile::{ProfileId, Role};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, Args)]
pub struct NodeArgs {
    #[command(flatten)]
    pub cluster: ClusterOpt,
    #[command(flatten)]
    pub node: NodeName,
    /// Without a cluster file: the product profile [secret-server, privilege-secure]
    #[arg(
        long,
        value_name = "PROFILE",
        requires = "root",
        conflicts_with = "cluster"
    )]
    pub profile: Option<ProfileId>,
    /// Without a cluster file: the folder holding the key files
    #[arg(
        long,
        value_name = "DIR",
        requires = "profile",
        conflicts_with = "cluster"
    )]
    pub root: Option<PathBuf>,
    /// Without a cluster file: this node's role [default: primary]
    #[arg(
        long,
        value_name = "ROLE",
        requires = "root",
        conflicts_with = "cluster"
    )]
    pub role: Option<Role>,
    #[command(flatten)]
    pub state_dir: StateDir,
}

impl NodeArgs {
    pub fn resolve(&self) -> Result<Node, Failure> {
        Ok(self.resolve_in()?.0)
    }

    /// [`NodeArgs::resolve`], with the cluster file it read (none without one), for a command
    /// that needs more of it: the file is read once.
    pub fn resolve_in(&self) -> Result<(Node, Option<ClusterFile>), Failure> {
        if let Some(path) = &self.cluster.path {
            let file = ClusterFile::load(path)?;
            let spec = self.node.select(&file)?;
            let node = Node::from_cluster(&file, spec, self.state_dir.dir.clone())?;
            return Ok((node, Some(file)));
        }
        if let (Some(profile), Some(root)) = (self.profile, &self.root) {
            let name = self.node.name.clone().unwrap_or_else(host_name);
            let node = Node::from_root(
                profile,
                root,
                self.role.unwrap_or(Role::Primary),
                &name,
                self.state_dir.dir.clone(),
            )?;
            return Ok((node, None));
        }
        Err(Failure::new(
            Code::Usage,
            "no node to act on",
            Some("pass --cluster FILE (and --node NAME), or --profile PROFILE --root DIR"),
        ))
    }
}

/// `--cluster FILE` of a command that works with the whole cluster: declared once here.
#[derive(Debug, Clone, Args)]
pub struct ClusterArg {
    /// Cluster file describing the nodes (docs/cluster-file.md)
    #[arg(
        id = "cluster",
        long = "cluster",
        short = 'c',
        value_name = "FILE",
        env = "KEYFERRY_CLUSTER"
    )]
    pub path: PathBuf,
}

impl ClusterArg {
    /// The cluster file, read and checked.
    pub fn load(&self) -> Result<ClusterFile, Failure> {
        Ok(ClusterFile::load(&self.path)?)
    }
}

/// `--cluster FILE` of a command that can also work without one (`--profile`, a message to
/// explain): declared once here.
#[derive(Debug, Clone, Args)]
pub struct ClusterOpt {
    /// Cluster file describing the nodes (docs/cluster-file.md)
    #[arg(
        id = "cluster",
        long = "cluster",
        short = 'c',
        value_name = "FILE",
        env = "KEYFERRY_CLUSTER"
    )]
    pub path: Option<PathBuf>,
}

/// `--node NAME`: which node of the cluster file this machine is. Declared once here; every
/// command resolves it through [`NodeName::select`].
#[derive(Debug, Clone, Args)]
pub struct NodeName {
    /// This machine's node in the cluster file [default: the node named after this host]
    #[arg(id = "node", long = "node", value_name = "NAME")]
    pub name: Option<String>,
}

impl NodeName {
    /// This machine's node in `file`: the one named, else the one named after this host.
    pub fn select<'f>(&self, file: &'f ClusterFile) -> Result<&'f NodeSpec, Failure> {
        Ok(file.select(self.name.as_deref(), &host_name())?)
    }
}

/// `--state-dir DIR`: where keyferry keeps its own records on this node. Declared once here.
#[derive(Debug, Clone, Args)]
pub struct StateDir {
    /// Folder for keyferry's own records: locks, journals, backups, the ledger [default: the
    /// node's, see docs/cluster-file.md, "State folder"]
    #[arg(
        id = "state_dir",
        long = "state-dir",
        value_name = "DIR",
        env = "KEYFERRY_STATE_DIR"
    )]
    pub dir: Option<PathBuf>,
}

/// For commands that change a node: one at a time per node, under its lock.
#[derive(Debug, Clone, Args)]
pub struct WaitArgs {
    /// How long to wait while another keyferry command is changing this node
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = keyferry::time::parse_duration)]
    pub wait: Duration,
}

/// How keyferry reaches nodes whose access is `ssh://`: the OpenSSH client and its
/// configuration (also through KEYFERRY_SSH and KEYFERRY_SSH_CONFIG, so an upgrade run hands
/// them to its steps' commands).
#[derive(Debug, Clone, Args)]
pub struct SshArgs {
    /// OpenSSH client configuration file for nodes reached over ssh (passed as ssh -F FILE)
    #[arg(long, value_name = "FILE", env = "KEYFERRY_SSH_CONFIG")]
    pub ssh_config: Option<PathBuf>,
    /// The ssh program
    #[arg(
        long,
        default_value = "ssh",
        value_name = "PROGRAM",
        env = "KEYFERRY_SSH"
    )]
    pub ssh: String,
}

impl SshArgs {
    pub fn client(&self) -> keyferry::remote::SshClient {
        keyferry::remote::SshClient::new(self.ssh.clone(), self.ssh_config.clone())
    }
}
