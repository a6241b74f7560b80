//! One finding model for every check keyferry runs: `diagnose`, `ha check` and the upgrade
//! preflight each report a list of [`Finding`]s, `{code, severity, node, message, fix}`.
//!
//! Each command keeps its own list of stable codes (`C`: `diagnose`'s finding codes,
//! `ha::Code`, `preflight::Code`) and may add fields of its own beside these (`X`: where the
//! peer's view was taken, the `pg_hba.conf` lines PostgreSQL refuses). Documents written before
//! the three shared this model still read: `evidence` and `detail` were the message's names,
//! the preflight's `check` and `outcome` its code and severity, with `pass`, `warn` and `fail`.

use serde::{Deserialize, Serialize};

/// How much a finding weighs, the same scale for every check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Severity {
    /// As it should be.
    #[serde(alias = "pass")]
    Ok,
    /// Worth knowing.
    Info,
    /// Worth fixing; it works as it is.
    #[serde(alias = "warn")]
    Warning,
    /// It does not work as it is: the check fails (exit 1), the upgrade does not start.
    #[serde(alias = "fail")]
    Error,
}

impl Severity {
    /// The severity as the JSON writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Ok => "ok",
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

/// Nothing beyond the shared fields.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoMore {}

/// One result of a check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding<C, X = NoMore> {
    /// Its stable code.
    #[serde(alias = "check")]
    pub code: C,
    /// How much it weighs.
    #[serde(alias = "outcome")]
    pub severity: Severity,
    /// The node it is about (`null`: the cluster as a whole).
    pub node: Option<String>,
    /// What was seen.
    #[serde(alias = "evidence", alias = "detail")]
    pub message: String,
    /// What to do (`null` when the message says it, or there is nothing to do).
    #[serde(default)]
    pub fix: Option<String>,
    /// The command's own fields, beside these.
    #[serde(flatten)]
    pub more: X,
}

impl<C> Finding<C> {
    /// A finding with no fields beyond the shared ones.
    pub fn new(
        code: C,
        severity: Severity,
        node: Option<&str>,
        message: impl Into<String>,
        fix: Option<String>,
    ) -> Self {
        Finding {
            code,
            severity,
            node: node.map(str::to_owned),
            message: message.into(),
            fix,
            more: NoMore {},
        }
    }
}

impl<C, X> Finding<C, X> {
    /// Whether it is an error.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// How many of `findings` are errors.
pub fn errors<C, X>(findings: &[Finding<C, X>]) -> usize {
    findings.iter().filter(|f| f.is_error()).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "kebab-case")]
    enum Code {
        Clock,
    }

    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    struct From {
        from: String,
    }

    #[test]
    fn writes_the_shared_shape_with_the_commands_own_fields_beside_it() {
        let f = Finding {
            code: Code::Clock,
            severity: Severity::Warning,
            node: Some("web1".into()),
            message: "3 s off".into(),
            fix: None,
            more: From {
                from: "web2".into(),
            },
        };
        let v = serde_json::to_value(&f).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"code": "clock", "severity": "warning", "node": "web1",
                "message": "3 s off", "fix": null, "from": "web2"})
        );
        assert_eq!(serde_json::from_value::<Finding<Code, From>>(v).unwrap(), f);
        let plain = Finding::new(Code::Clock, Severity::Ok, None, "fine", None);
        let v = serde_json::to_value(&plain).unwrap();
        assert_eq!(v.as_object().unwrap().len(), 5, "{v}");
    }

    #[test]
    fn reads_the_documents_written_before_the_model_was_shared() {
        for (old, severity) in [
            (
                r#"{"node":"a","check":"clock","outcome":"pass","detail":"d"}"#,
                Severity::Ok,
            ),
            (
                r#"{"node":"a","check":"clock","outcome":"warn","detail":"d"}"#,
                Severity::Warning,
            ),
            (
                r#"{"node":"a","check":"clock","outcome":"fail","detail":"d"}"#,
                Severity::Error,
            ),
        ] {
            // The preflight's old row: `check` and `outcome` were its code and severity.
            let f: Finding<Code> = serde_json::from_str(old).unwrap();
            assert_eq!((f.severity, f.message.as_str()), (severity, "d"));
        }
        let f: Finding<Code> = serde_json::from_str(
            r#"{"code":"clock","severity":"info","node":null,"evidence":"e","fix":"f"}"#,
        )
        .unwrap();
        assert_eq!(
            (f.node, f.message.as_str(), f.fix.as_deref()),
            (None, "e", Some("f"))
        );
    }
}
