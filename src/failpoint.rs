//! Points in the code where a test can stop the process abruptly or run a hook, to prove
//! what a crash or a race at that point leaves behind. They exist only in this crate's unit
//! tests and in builds with the `failpoints` feature (off by default, refused in release
//! builds); everywhere else [`hit`] is an empty inline function.
//!
//! - `KEYFERRY_FAILPOINT=NAME` or `NAME#N`: the process aborts at the first (or Nth) time it
//!   reaches point NAME, like `kill -9` there: no destructors, no flushing.
//! - `KEYFERRY_FAILPOINT_RUN=NAME=PROGRAM`: each time the process reaches point NAME it runs
//!   PROGRAM (no arguments) and waits for it: a CLI test makes a race deterministic by doing
//!   what another account would do at exactly that moment (swap a folder for a link). A point
//!   reached once per item ([`hit_at`]) tells PROGRAM which in `KEYFERRY_FAILPOINT_AT`.
//! - `on` (the crate's unit tests): a closure runs at a point, on the current thread only.

#[cfg(all(feature = "failpoints", not(debug_assertions)))]
compile_error!("the failpoints feature is for test builds only, never for release binaries");

#[cfg(any(test, feature = "failpoints"))]
mod imp {
    use std::cell::RefCell;
    use std::collections::HashMap;
    use std::sync::Mutex;

    type Hook = Box<dyn FnMut()>;

    thread_local! {
        static HOOKS: RefCell<Vec<(&'static str, Hook)>> = RefCell::new(Vec::new());
    }
    static COUNTS: Mutex<Option<HashMap<String, u32>>> = Mutex::new(None);

    /// Runs the hooks a test set for `name` (a failpoints build only; elsewhere nothing).
    pub fn hit(name: &'static str) {
        hit_at(name, "")
    }

    /// As [`hit`], with `at` (a path, a node) for hooks that care where.
    pub fn hit_at(name: &'static str, at: &str) {
        HOOKS.with(|h| {
            for (n, f) in h.borrow_mut().iter_mut() {
                if *n == name {
                    f();
                }
            }
        });
        if let Ok(spec) = std::env::var("KEYFERRY_FAILPOINT_RUN") {
            if let Some((n, program)) = spec.split_once('=') {
                if n == name {
                    run_hook(program, at);
                }
            }
        }
        let Ok(spec) = std::env::var("KEYFERRY_FAILPOINT") else {
            return;
        };
        let (want, nth) = match spec.split_once('#') {
            Some((n, k)) => (n.to_owned(), k.parse::<u32>().unwrap_or(1)),
            None => (spec, 1),
        };
        if want != name {
            return;
        }
        let mut counts = COUNTS.lock().unwrap_or_else(|e| e.into_inner());
        let c = counts
            .get_or_insert_with(HashMap::new)
            .entry(want)
            .or_insert(0);
        *c += 1;
        if *c == nth {
            std::process::abort();
        }
    }

    /// Runs a test's hook program and waits for it. A hook that cannot be started stops
    /// the process (a test must not pass because its fault never happened); a program just
    /// written by a multi-threaded test may be briefly busy (another thread's child still
    /// holds it open for writing), so that is retried.
    fn run_hook(program: &str, at: &str) {
        for _ in 0..50 {
            match std::process::Command::new(program)
                .env("KEYFERRY_FAILPOINT_AT", at)
                .status()
            {
                Ok(_) => return,
                Err(e) if e.raw_os_error() == Some(26) => {
                    std::thread::sleep(std::time::Duration::from_millis(20))
                }
                Err(e) => {
                    let _ = std::io::Write::write_all(
                        &mut std::io::stderr(),
                        format!("failpoint hook {program} could not run: {e}\n").as_bytes(),
                    );
                    std::process::abort();
                }
            }
        }
        std::process::abort();
    }

    /// Removes its hook when dropped.
    #[cfg(test)]
    pub struct Guard(&'static str);

    #[cfg(test)]
    impl Drop for Guard {
        fn drop(&mut self) {
            HOOKS.with(|h| h.borrow_mut().retain(|(n, _)| *n != self.0));
        }
    }

    /// Runs `f` each time this thread reaches point `name`, until the guard is dropped.
    #[cfg(test)]
    pub fn on(name: &'static str, f: impl FnMut() + 'static) -> Guard {
        HOOKS.with(|h| h.borrow_mut().push((name, Box::new(f))));
        Guard(name)
    }
}

#[cfg(test)]
pub use imp::on;
#[cfg(any(test, feature = "failpoints"))]
pub use imp::{hit, hit_at};

/// A failpoint: nothing at all outside test builds.
#[cfg(not(any(test, feature = "failpoints")))]
#[inline(always)]
pub fn hit(_name: &'static str) {}

/// A failpoint reached once per item (a file copied), which a hook program is told in
/// `KEYFERRY_FAILPOINT_AT`: nothing at all outside test builds.
#[cfg(not(any(test, feature = "failpoints")))]
#[inline(always)]
pub fn hit_at(_name: &'static str, _at: &str) {}
