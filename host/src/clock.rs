//! The injectable "now" used for TTL (`OUTSIDE_MAX_AGE`) checks.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Where the engine takes the current time from.
#[derive(Clone, Copy, Debug, Default)]
pub enum Clock {
    /// The system clock.
    #[default]
    System,
    /// A fixed instant (tests, reproducible runs).
    Fixed(SystemTime),
}

impl Clock {
    /// A clock fixed at `secs` seconds after the Unix epoch.
    pub fn fixed_unix(secs: u64) -> Self {
        Clock::Fixed(UNIX_EPOCH + Duration::from_secs(secs))
    }

    /// The current time.
    pub fn now(&self) -> SystemTime {
        match self {
            Clock::System => SystemTime::now(),
            Clock::Fixed(t) => *t,
        }
    }

    /// The current time as an event time, to the microsecond (what Feast keeps).
    pub(crate) fn event_time(&self) -> crate::value::EventTime {
        let micros = match self.now().duration_since(UNIX_EPOCH) {
            Ok(d) => i128::try_from(d.as_micros()).unwrap_or(i128::MAX),
            Err(e) => -i128::try_from(e.duration().as_micros()).unwrap_or(i128::MAX),
        };
        let seconds = micros.div_euclid(1_000_000);
        crate::value::EventTime {
            seconds: i64::try_from(seconds).unwrap_or(i64::MAX),
            nanos: (micros.rem_euclid(1_000_000) * 1000) as i32,
        }
    }

    /// The current time as whole seconds since the Unix epoch (negative before it).
    pub fn now_unix_secs(&self) -> i64 {
        match self.now().duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
        }
    }
}
