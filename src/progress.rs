//! How the library reaches a person: a small callback trait, like age's `Callbacks`. The
//! binary implements it with a spinner and stderr lines; tests pass [`NoProgress`].

/// Notifications from long or multi-step library work.
pub trait Progress {
    /// A slow step (scrypt, about a second) starts; `what` is a short label.
    fn start(&self, what: &str) {
        let _ = what;
    }
    /// The slow step started by [`Progress::start`] ended.
    fn finish(&self) {}
    /// Work on `total` items (nodes) starts.
    fn items(&self, total: u64) {
        let _ = total;
    }
    /// One item is done.
    fn item_done(&self) {}
    /// All items are done.
    fn items_finished(&self) {}
    /// A line of narration (used by `demo`).
    fn step(&self, message: &str) {
        let _ = message;
    }
}

/// Ignores everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {}
