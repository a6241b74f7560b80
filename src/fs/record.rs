//! keyferry's own records on a node (journals, run states, ledgers, backup and sync records):
//! one way to read and write them. A record is JSON in a private file; it is read through a
//! bound (a record is never large, and a hostile one must not be), a missing one is none,
//! and it is written whole, atomically, private to the account running keyferry.

use crate::error::{Error, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::path::Path;

/// How far one change on a node got, as its journal records it before each stage: the key
/// and `pg_hba.conf` transactions and the syncs share it (a replica's data-folder swap
/// records its finer steps instead: copying is preparing, the moves and the start installing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    /// What goes in is being written beside what it replaces (backups and temp files, a new
    /// tree built and verified); nothing in place has changed. Recovery rolls back.
    #[serde(alias = "building")]
    Preparing,
    /// What goes in is replacing what was there. Recovery finishes it or puts it back, as
    /// the change's own rules say.
    Installing,
    /// Everything is in place and verified; only clean-up and the journal are left.
    Committed,
}

/// The id of one change on a node (a key or `pg_hba.conf` transaction, a sync or rollback, a
/// data-folder swap): when it began, to the second, and the process that made it, so that ids
/// sort by time and two changes never share one. Journals, backups and kept trees carry it.
pub fn change_id(began: crate::time::Timestamp) -> String {
    format!("{}-{}", began.compact(), std::process::id())
}

/// Reads the record at `path` (at most `max` bytes; `what` names it in errors): `None` when
/// there is none. A record that is not what `T` reads becomes the error `unreadable` makes of
/// the parser's words, so that each record says what to do about it.
pub fn load<T: DeserializeOwned>(
    path: &Path,
    max: u64,
    what: &'static str,
    unreadable: impl FnOnce(serde_json::Error) -> Error,
) -> Result<Option<T>> {
    match super::read_bounded(path, max, what) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(unreadable),
        Err(e) if e.is_missing() => Ok(None),
        Err(e) => Err(e),
    }
}

/// Writes `value` as the record at `path`: pretty JSON and a final newline, replacing any
/// record there atomically, private (see [`super::write_private`]).
pub fn save<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let mut bytes = serde_json::to_vec_pretty(value)
        .map_err(|e| Error::InvalidInput(format!("{}: {e}", path.display())))?;
    bytes.push(b'\n');
    super::write_private(path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stage_reads_as_every_journal_wrote_it() {
        assert_eq!(
            serde_json::to_string(&Stage::Preparing).unwrap(),
            "\"preparing\""
        );
        // A sync journal written before the stages were shared said "building".
        for (word, stage) in [
            ("building", Stage::Preparing),
            ("preparing", Stage::Preparing),
            ("installing", Stage::Installing),
            ("committed", Stage::Committed),
        ] {
            let read: Stage = serde_json::from_str(&format!("\"{word}\"")).unwrap();
            assert_eq!(read, stage);
        }
        assert!(serde_json::from_str::<Stage>("\"swapped\"").is_err());
    }

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct R {
        n: u32,
    }

    #[test]
    fn a_record_round_trips_is_none_when_missing_and_says_when_unreadable_or_too_large() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.json");
        let none: Option<R> = load(&p, 64, "record", |_| unreachable!()).unwrap();
        assert!(none.is_none());
        save(&p, &R { n: 7 }).unwrap();
        assert!(std::fs::read(&p).unwrap().ends_with(b"}\n"));
        assert_eq!(
            load::<R>(&p, 64, "record", |_| unreachable!()).unwrap(),
            Some(R { n: 7 })
        );
        std::fs::write(&p, b"{\"n\": \"x\"}").unwrap();
        let e = load::<R>(&p, 64, "record", |e| Error::RecoveryConflict(e.to_string()));
        assert!(matches!(e, Err(Error::RecoveryConflict(_))), "{e:?}");
        std::fs::write(&p, vec![b' '; 65]).unwrap();
        assert!(load::<R>(&p, 64, "record", |_| unreachable!()).is_err());
    }
}
