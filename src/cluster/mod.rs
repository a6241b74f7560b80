//! The cluster: its file ([`file`]), the local node resolved from it or from `--profile` and
//! `--root` (`node`), how other machines reach each node (`access`), and the `[ha]`
//! section's schema (`ha`).
//!
//! A command picks its node by `--node NAME` or by the host name.

pub(crate) mod access;
pub(crate) mod file;
pub(crate) mod ha;
pub(crate) mod node;

pub use access::{parse_access, Access};
pub use file::{ClusterFile, CustomSection, NodeSpec, MAX_CLUSTER_FILE};
pub use node::{check_plain_name, default_state_dir, host_name, Node};
