//! Waiting for a rebooted node: asked until it answers with a later start time, within a
//! deadline, its last words kept for the failure.

use super::{Event, Hands, Ran, RunError, REBOOT_DEADLINE, REBOOT_POLL};
use crate::report::{Document, StepReport};

/// Why a command could not be run on a node, in words (where it was reached, and why not).
pub(super) fn why_not(e: RunError) -> String {
    match e {
        RunError::Unreachable { url, why, .. } => format!("{url}: {why}"),
        other => format!("{other:?}"),
    }
}

/// How long to wait for a rebooted node, and how often to ask. Debug builds (the test suite,
/// whose stand-in nodes never restart) may shorten it through KEYFERRY_TEST_REBOOT_DEADLINE.
pub(super) fn reboot_wait() -> (std::time::Duration, std::time::Duration) {
    #[cfg(debug_assertions)]
    if let Some(d) = std::env::var("KEYFERRY_TEST_REBOOT_DEADLINE")
        .ok()
        .and_then(|v| crate::time::parse_duration(&v).ok())
    {
        return (d, std::time::Duration::from_millis(200));
    }
    (REBOOT_DEADLINE, REBOOT_POLL)
}

/// Waits until `node`, asked to reboot, answers `host status` again with a start time later
/// than `before` (or, when the first answer gave none, answers again after it stopped
/// answering). Unreachable while it restarts is expected; `(deadline, poll)` bound the wait.
pub(super) fn wait_reboot(
    hands: &dyn Hands,
    node: &str,
    ask: &dyn Fn() -> std::result::Result<Ran, String>,
    before: Option<&str>,
    (deadline, poll): (std::time::Duration, std::time::Duration),
) -> std::result::Result<String, String> {
    let began = std::time::Instant::now();
    let before_t = before.and_then(|b| crate::time::Timestamp::parse(b).ok());
    let mut went_down = false;
    loop {
        std::thread::sleep(poll);
        let last = match ask() {
            Ok(ran) if ran.code == 0 => {
                let booted = match Document::parse(&ran.stdout) {
                    Some(Document::Report(r)) => match *r {
                        StepReport::Host(h) => h.booted,
                        _ => None,
                    },
                    _ => None,
                };
                let later = match (booted.as_deref(), before_t) {
                    // A start time from an uptime wobbles by a second or so between two
                    // answers; a restart moves it on by at least the time the node was up.
                    (Some(b), Some(t)) => crate::time::Timestamp::parse(b)
                        .map(|b| b.unix() > t.unix() + 60)
                        .unwrap_or(false),
                    _ => went_down,
                };
                if later {
                    return Ok(format!(
                        "{node} answered again {}s after the reboot was asked for (started {})",
                        began.elapsed().as_secs(),
                        booted.as_deref().unwrap_or("at an unknown time")
                    ));
                }
                format!(
                    "it answers, up since {} (not restarted yet)",
                    booted.as_deref().unwrap_or("an unknown time")
                )
            }
            Ok(ran) => format!("its keyferry answered with exit {}", ran.code),
            Err(why) => {
                went_down = true;
                format!("no answer ({})", crate::text::one_line(&why))
            }
        };
        if began.elapsed() >= deadline {
            return Err(format!(
                "{node} did not answer again within {} min of its reboot (last: {last}); check \
                 its console, then: keyferry upgrade resume ... --mark-done <this step> \
                 --because \"<what you saw>\"",
                deadline.as_secs() / 60
            ));
        }
        hands.tell(Event::WaitingReboot {
            node,
            seconds: began.elapsed().as_secs(),
            last: &last,
        });
    }
}
