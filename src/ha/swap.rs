//! The replica's data-folder swap, journaled. `ha replica init` replaces a node's data folder
//! in steps: the copy made beside it (`<data>.keyferry-new`), the old folder moved aside
//! (`<data>.keyferry-old-<time>`, the way back), the copy moved in, its server started.
//! Before each step it writes where it stands into a record in the node's state folder
//! ([`crate::fs::record`]), under the node's lock; once the run ends, by success or by its
//! own undo, the record goes. A record still there means the run was cut off, and
//! [`recover`] rolls it back: the server in the data folder stopped if it runs, the old
//! folder put back in its place (checked to be the folder that was moved aside), the copy
//! removed, the old server started again if it ran before. Every step goes through the
//! data folder's pinned parent ([`super::datadir::DataDir`]), never through a link.

use super::config::HaNode;
use super::datadir::DataDir;
use crate::error::{Error, Result};
use crate::os::FileId;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Where an interrupted swap stood, in the order the steps happen. Each stage is written
/// before its step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    /// The old server may be stopped and the copy being made beside the data folder.
    Copying,
    /// The data folder is being moved aside.
    MovingOld,
    /// The copy is being moved into the data folder's place.
    MovingNew,
    /// The copy's server is being started in the data folder.
    Starting,
}

impl Stage {
    /// The step, in words.
    pub fn words(self) -> &'static str {
        match self {
            Stage::Copying => "while copying",
            Stage::MovingOld => "while moving the old data folder aside",
            Stage::MovingNew => "while moving the copy in",
            Stage::Starting => "while starting the copy's server",
        }
    }
}

/// The journal of one swap.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SwapJournal {
    /// The swap's id ([`crate::fs::record::change_id`]; empty in a journal written before
    /// swaps had one).
    #[serde(default)]
    pub id: String,
    /// The node whose data folder is replaced.
    pub node: String,
    /// The data folder.
    pub data: PathBuf,
    /// The suffix of the old folder's name once moved aside (`.keyferry-old-<time>`).
    pub old_suffix: String,
    /// The identity of the data folder before anything changed (the folder moved aside
    /// must be this one before it is put back).
    pub old_id: FileId,
    /// Whether the old server ran before (it is started again on the way back).
    pub was_running: bool,
    /// How far the run got.
    pub stage: Stage,
    /// When the run began.
    pub started: String,
}

/// The suffix of the copy's folder name.
pub const NEW_SUFFIX: &str = ".keyferry-new";
/// The record's file in the node's state folder.
const RECORD: &str = "ha-replica-swap.json";

fn record_path(state_dir: &Path) -> PathBuf {
    state_dir.join(RECORD)
}

impl SwapJournal {
    /// Writes the journal at its current stage.
    pub fn save(&self, state_dir: &Path) -> Result<()> {
        crate::fs::create_private_dir(state_dir)?;
        crate::fs::record::save(&record_path(state_dir), self)
    }

    /// Moves the journal to `stage` and writes it.
    pub fn reach(&mut self, stage: Stage, state_dir: &Path) -> Result<()> {
        self.stage = stage;
        self.save(state_dir)
    }

    /// The journal of an interrupted swap on this node, if there is one.
    pub fn load(state_dir: &Path) -> Result<Option<SwapJournal>> {
        let path = record_path(state_dir);
        crate::fs::record::load(&path, 64 * 1024, "replica swap journal", |e| {
            Error::RecoveryConflict(format!(
                "the replica swap journal {} is unreadable ({e}); look at the data folder and \
                 its .keyferry-old-* and .keyferry-new siblings, put the right folder in place \
                 by hand, then remove the journal",
                path.display()
            ))
        })
    }

    /// Removes the journal: the swap ended (done or undone).
    pub fn remove(state_dir: &Path) -> Result<()> {
        crate::fs::remove_if_present(&record_path(state_dir)).map(drop)
    }
}

/// Keeps the journal while a swap runs and removes it when the run ends, by success or by
/// its own undo (a crash or a panic leaves it for [`recover`]).
pub struct Ended<'a>(pub &'a Path);

impl Drop for Ended<'_> {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = SwapJournal::remove(self.0);
        }
    }
}

/// The identity of the folder `name` beside the data folder (never through a link).
pub fn folder_id(dd: &DataDir, name: &std::ffi::OsStr) -> Result<FileId> {
    dd.folder(name)?.id()
}

/// Rolls back a swap that was cut off on `node` (see the module); `None` when there is
/// none. What it did, in words, otherwise. Call it under the node's lock.
pub fn recover(node: &HaNode) -> Result<Option<String>> {
    let Some(j) = SwapJournal::load(&node.state_dir)? else {
        return Ok(None);
    };
    let conflict = |why: String| {
        Error::RecoveryConflict(format!(
            "{why}; the replica swap journal is {} (put the right data folder in place by hand, \
             then remove it)",
            record_path(&node.state_dir).display()
        ))
    };
    let data = node.data_dir()?.to_owned();
    if !j.node.eq_ignore_ascii_case(&node.name) || j.data != data {
        return Err(conflict(format!(
            "the journal is for node {} and data folder {}, not {} and {}",
            j.node,
            j.data.display(),
            node.name,
            data.display()
        )));
    }
    let dd = DataDir::open(&data)?;
    let data_n = dd.name().to_owned();
    let new_n = dd.sibling(NEW_SUFFIX);
    let old_n = dd.sibling(&j.old_suffix);
    let mut done = Vec::new();
    // A server started in the data folder (the copy's) stops before any folder moves.
    if j.stage >= Stage::Starting && dd.present(&data_n)? && super::server::is_running(node, &data)?
    {
        super::server::stop(node, &data).map_err(|e| {
            conflict(format!(
                "the server in {} could not be stopped ({e})",
                data.display()
            ))
        })?;
        done.push("stopped the copy's server".to_owned());
    }
    if dd.present(&old_n)? {
        let id = folder_id(&dd, &old_n)?;
        if id != j.old_id {
            return Err(conflict(format!(
                "{} is not the data folder that was moved aside (another folder is there)",
                dd.join(&old_n).display()
            )));
        }
        if dd.present(&data_n)? {
            // The copy is in the data folder's place: it goes back to its own name first.
            if dd.present(&new_n)? {
                return Err(conflict(format!(
                    "both {} and {} are there",
                    data.display(),
                    dd.join(&new_n).display()
                )));
            }
            dd.rename(&data_n, &new_n)?;
            crate::failpoint::hit("ha:recover-new-moved");
        }
        dd.rename(&old_n, &data_n)?;
        done.push(format!(
            "put the old data folder back from {}",
            dd.join(&old_n).display()
        ));
    } else if !dd.present(&data_n)? {
        return Err(conflict(format!(
            "neither {} nor the old folder {} is there",
            data.display(),
            dd.join(&old_n).display()
        )));
    } else if folder_id(&dd, &data_n)? != j.old_id {
        return Err(conflict(format!(
            "{} is not the data folder the run began with, and the old folder {} is gone",
            data.display(),
            dd.join(&old_n).display()
        )));
    }
    if dd.present(&new_n)? {
        dd.remove(&new_n)?;
        done.push(format!("removed the copy {}", dd.join(&new_n).display()));
    }
    if j.was_running && !super::server::is_running(node, &data)? {
        super::server::start(node, &data).map_err(|e| {
            conflict(format!(
                "the old data folder is back in {}, but its server did not start ({e})",
                data.display()
            ))
        })?;
        done.push("started the old server again".to_owned());
    }
    SwapJournal::remove(&node.state_dir)?;
    if done.is_empty() {
        done.push("nothing had changed yet".to_owned());
    }
    Ok(Some(format!(
        "rolled back the replica init of {} begun {} and cut off {} ({}): {}",
        node.name,
        j.started,
        j.stage.words(),
        data.display(),
        done.join("; ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A node whose data folder is `<dir>/data` and state folder `<dir>/state`; no server
    /// program is ever run here (the journals say none ran, and none is started).
    fn node(dir: &Path) -> HaNode {
        HaNode {
            name: "nps2".into(),
            role: crate::profile::Role::Secondary,
            addr: "10.0.5.2".parse().unwrap(),
            pg_port: 5432,
            web_port: 6500,
            bin: Some(dir.join("no-bin")),
            data: Some(dir.join("data")),
            service: None,
            archive: None,
            state_dir: dir.join("state"),
        }
    }

    fn journal(node: &HaNode, old_id: FileId, stage: Stage) -> SwapJournal {
        SwapJournal {
            id: "20261205T000000Z-1".into(),
            node: node.name.clone(),
            data: node.data.clone().unwrap(),
            old_suffix: ".keyferry-old-1".into(),
            old_id,
            was_running: false,
            stage,
            started: "2026-12-05T00:00:00Z".into(),
        }
    }

    /// Every name in the folder (recursively) with each file's bytes.
    fn files(root: &Path) -> Vec<(PathBuf, Vec<u8>)> {
        let mut out = Vec::new();
        let mut todo = vec![root.to_owned()];
        while let Some(d) = todo.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    todo.push(p.clone());
                    out.push((p, Vec::new()));
                } else {
                    out.push((p.clone(), std::fs::read(&p).unwrap()));
                }
            }
        }
        out.sort();
        out
    }

    fn id(p: &Path) -> FileId {
        crate::fs::Dir::open(p).unwrap().id().unwrap()
    }

    #[test]
    fn a_cut_off_swap_puts_the_very_folder_moved_aside_back_and_removes_the_copy() {
        let d = tempfile::tempdir().unwrap();
        let n = node(d.path());
        std::fs::create_dir_all(d.path().join("data.keyferry-old-1")).unwrap();
        std::fs::write(d.path().join("data.keyferry-old-1/PG_VERSION"), b"15\n").unwrap();
        std::fs::create_dir_all(d.path().join("data.keyferry-new")).unwrap();
        std::fs::write(d.path().join("data.keyferry-new/PG_VERSION"), b"copy\n").unwrap();
        let old = id(&d.path().join("data.keyferry-old-1"));
        journal(&n, old, Stage::MovingNew)
            .save(&n.state_dir)
            .unwrap();
        let said = recover(&n).unwrap().unwrap();
        assert!(said.contains("put the old data folder back"), "{said}");
        assert_eq!(
            std::fs::read(d.path().join("data/PG_VERSION")).unwrap(),
            b"15\n"
        );
        assert!(!d.path().join("data.keyferry-new").exists());
        assert!(SwapJournal::load(&n.state_dir).unwrap().is_none());
        assert!(recover(&n).unwrap().is_none());
    }

    #[test]
    fn a_journal_that_does_not_match_the_folders_is_refused_and_nothing_changes() {
        let d = tempfile::tempdir().unwrap();
        let n = node(d.path());
        std::fs::create_dir_all(d.path().join("data")).unwrap();
        std::fs::write(d.path().join("data/PG_VERSION"), b"new\n").unwrap();
        std::fs::create_dir_all(d.path().join("data.keyferry-old-1")).unwrap();
        std::fs::write(d.path().join("data.keyferry-old-1/PG_VERSION"), b"15\n").unwrap();
        let data_id = id(&d.path().join("data"));
        // The folder at the old name is another than the one moved aside.
        let mut cases = vec![(
            "another folder at the old name",
            journal(&n, data_id, Stage::MovingNew),
        )];
        // A journal of another node, or of another data folder.
        let mut other = journal(&n, data_id, Stage::Copying);
        other.node = "nps1".into();
        cases.push(("another node", other));
        let mut elsewhere = journal(&n, data_id, Stage::Copying);
        elsewhere.data = d.path().join("elsewhere");
        cases.push(("another data folder", elsewhere));
        for (what, j) in cases {
            j.save(&n.state_dir).unwrap();
            let before = files(d.path());
            let e = recover(&n).unwrap_err();
            assert!(matches!(e, Error::RecoveryConflict(_)), "{what}: {e}");
            assert_eq!(before, files(d.path()), "{what}: nothing may change");
        }
        // Neither the data folder nor the old one: refused, the journal kept.
        std::fs::remove_dir_all(d.path().join("data")).unwrap();
        std::fs::remove_dir_all(d.path().join("data.keyferry-old-1")).unwrap();
        journal(&n, data_id, Stage::MovingNew)
            .save(&n.state_dir)
            .unwrap();
        let before = files(d.path());
        let e = recover(&n).unwrap_err();
        assert!(e.to_string().contains("neither"), "{e}");
        assert_eq!(before, files(d.path()));
    }
}
