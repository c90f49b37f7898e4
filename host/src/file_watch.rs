//! Noticing that files changed, shared by the registry reload and the plugin
//! directory: a file is known by its modification time and size, checked every poll,
//! and a change is acted on once it has settled (looked the same on two polls in a
//! row), so a file still being written is never read half-written.

use std::path::Path;
use std::time::{Duration, SystemTime};

use tokio::time::{Interval, MissedTickBehavior};

/// A file's modification time and size; `None` when it cannot be read.
pub(crate) type Stamp = Option<(SystemTime, u64)>;

/// The stamp of the file at `path` now.
pub(crate) fn stamp(path: &Path) -> Stamp {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// Decides when a watched state that differs from the loaded one has settled.
#[derive(Debug)]
pub(crate) struct Settling<T> {
    seen: Option<T>,
}

impl<T> Default for Settling<T> {
    fn default() -> Self {
        Settling { seen: None }
    }
}

impl<T: PartialEq> Settling<T> {
    /// Given the state now and the state last loaded: whether to load it now (it
    /// differs and looked the same at the previous poll).
    pub(crate) fn settled(&mut self, now: T, loaded: &T) -> bool {
        if now == *loaded {
            self.seen = None;
            return false;
        }
        if self.seen.as_ref() == Some(&now) {
            self.seen = None;
            return true;
        }
        self.seen = Some(now);
        false
    }
}

/// A timer ticking every `period` that skips missed ticks; `None` for a zero period
/// (polling off).
pub(crate) fn poll_timer(period: Duration) -> Option<Interval> {
    (!period.is_zero()).then(|| {
        let mut t = tokio::time::interval(period);
        t.set_missed_tick_behavior(MissedTickBehavior::Skip);
        t
    })
}

/// Waits for the next tick of an optional timer (forever without one).
pub(crate) async fn tick(timer: &mut Option<Interval>) {
    match timer {
        Some(t) => {
            t.tick().await;
        }
        None => std::future::pending::<()>().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_is_loaded_once_it_looked_the_same_twice() {
        let mut s = Settling::default();
        assert!(!s.settled(1, &1), "unchanged");
        assert!(!s.settled(2, &1), "first sight of a change");
        assert!(!s.settled(3, &1), "still changing");
        assert!(s.settled(3, &1), "the same on two polls");
        assert!(!s.settled(3, &3), "loaded");
        assert!(!s.settled(4, &3));
        assert!(!s.settled(3, &3), "changed back before settling");
        assert!(!s.settled(4, &3), "a fresh first sight");
    }
}
