//! The stable codes of audit and diagnose findings: API for scripts (`--json`), documented in
//! `docs/audit.md`. Error codes live with the library's [`crate::Error`]; catalogue codes
//! with the [`crate::diagnose::catalogue`].

use serde::Serialize;

/// What a check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FindingCode {
    KeysDiffer,
    KeysMissing,
    NodeUnreachable,
    NoReference,
    DpapiSuspected,
    BinariesDiffer,
    ClockSkew,
    PortClosed,
    PgHbaUnreadable,
    PgHbaMissingPeer,
    /// PostgreSQL refuses the node's `pg_hba.conf` (a line it cannot load).
    PgHbaRefused,
    /// A check that had nothing to test (says what would give it something).
    NothingChecked,
}

impl FindingCode {
    pub const ALL: &'static [FindingCode] = &[
        FindingCode::KeysDiffer,
        FindingCode::KeysMissing,
        FindingCode::NodeUnreachable,
        FindingCode::NoReference,
        FindingCode::DpapiSuspected,
        FindingCode::BinariesDiffer,
        FindingCode::ClockSkew,
        FindingCode::PortClosed,
        FindingCode::PgHbaUnreadable,
        FindingCode::PgHbaMissingPeer,
        FindingCode::PgHbaRefused,
        FindingCode::NothingChecked,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FindingCode::KeysDiffer => "keys-differ",
            FindingCode::KeysMissing => "keys-missing",
            FindingCode::NodeUnreachable => "node-unreachable",
            FindingCode::NoReference => "no-reference",
            FindingCode::DpapiSuspected => "dpapi-suspected",
            FindingCode::BinariesDiffer => "binaries-differ",
            FindingCode::ClockSkew => "clock-skew",
            FindingCode::PortClosed => "port-closed",
            FindingCode::PgHbaUnreadable => "pg-hba-unreadable",
            FindingCode::PgHbaMissingPeer => "pg-hba-missing-peer",
            FindingCode::PgHbaRefused => "pg-hba-refused",
            FindingCode::NothingChecked => "nothing-checked",
        }
    }
}

impl std::fmt::Display for FindingCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn finding_codes_are_unique_serialise_as_named_and_are_documented() {
        let docs = include_str!("../docs/audit.md");
        let mut seen = HashSet::new();
        for c in FindingCode::ALL {
            assert!(seen.insert(c.as_str()), "duplicate {c}");
            assert_eq!(serde_json::to_value(c).unwrap(), c.as_str());
            assert!(
                docs.contains(&format!("`{c}`")),
                "{c} is not in docs/audit.md"
            );
        }
    }

    #[test]
    fn error_codes_are_documented_in_the_readme() {
        let readme = include_str!("../README.md");
        for c in crate::Error::ALL_CODES {
            assert!(
                readme.contains(&format!("`{c}`")),
                "{c} is not in README.md"
            );
        }
    }
}
