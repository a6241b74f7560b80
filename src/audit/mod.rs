//! `keyferry audit`: collect every node's report ([`collect`]), then compare key sets,
//! binaries and clocks against the primary ([`compare`]). `report` is what one node says
//! about itself; `appdigest` digests its application folder.

pub(crate) mod appdigest;
pub(crate) mod collect;
pub(crate) mod compare;
pub(crate) mod report;

pub use collect::{collect, AuditOptions, Collected};
pub use compare::{compare, AuditReport, Binaries, NodeResult, NodeStatus};
pub use report::{node_report, KeySetStatus, NodeReport};
