//! The stable codes of audit and diagnose findings: API for scripts (`--json`), documented in
//! `docs/audit.md`. Error codes live with the library's [`crate::Error`]; catalogue codes
//! with the `crate::diagnose::catalogue`.

use serde::Serialize;

/// What a check found.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    strum::IntoStaticStr,
    strum::VariantArray,
)]
#[serde(rename_all = "kebab-case")]
#[strum(serialize_all = "kebab-case")]
pub enum FindingCode {
    /// A node's key set differs from the primary's.
    KeysDiffer,
    /// A node lacks key files its role needs.
    KeysMissing,
    /// A node could not be reached or read.
    NodeUnreachable,
    /// The primary's report is unusable, so nothing could be compared.
    NoReference,
    /// A key file differs and looks DPAPI-protected on one side.
    DpapiSuspected,
    /// A node runs other binaries than the primary ("Version does not match").
    BinariesDiffer,
    /// A node's clock is too far from this machine's.
    ClockSkew,
    /// A port the product needs between nodes is closed.
    PortClosed,
    /// A node's `pg_hba.conf` could not be read.
    PgHbaUnreadable,
    /// A node's `pg_hba.conf` does not let its peer in.
    PgHbaMissingPeer,
    /// PostgreSQL refuses the node's `pg_hba.conf` (a line it cannot load).
    PgHbaRefused,
    /// A check that had nothing to test (says what would give it something).
    NothingChecked,
}

impl FindingCode {
    /// Every code, in the order they are declared.
    pub const ALL: &'static [FindingCode] = <FindingCode as strum::VariantArray>::VARIANTS;

    /// The code as scripts see it (the variant's name in kebab case, as serde writes it).
    pub fn as_str(self) -> &'static str {
        self.into()
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
