//! The stable codes of audit and diagnose findings: API for scripts (`--json`), documented in
//! `docs/audit.md`. Error codes live with the library's [`crate::Error`]; catalogue codes
//! with the [`crate::diagnose::catalogue`].

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
