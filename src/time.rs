//! UTC timestamps as RFC 3339 text with whole seconds, the only form keyferry writes.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A point in time, whole seconds, shown as `2026-11-22T10:00:00Z`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(u64);

impl Timestamp {
    /// This machine's clock.
    pub fn now() -> Timestamp {
        Timestamp::from_system(SystemTime::now())
    }

    /// A system time, to the second (before 1970: 1970).
    pub fn from_system(t: SystemTime) -> Timestamp {
        Timestamp(
            t.duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        )
    }

    /// Seconds since 1970.
    pub fn from_unix(secs: u64) -> Timestamp {
        Timestamp(secs)
    }

    /// Seconds since 1970.
    pub fn unix(self) -> u64 {
        self.0
    }

    /// `d` later, to the second.
    pub fn plus(self, d: Duration) -> Timestamp {
        Timestamp(self.0.saturating_add(d.as_secs()))
    }

    /// An RFC 3339 time in its canonical form (`2026-01-02T03:04:05Z`); any other spelling is
    /// refused.
    pub fn parse(s: &str) -> Result<Timestamp, String> {
        let t = humantime::parse_rfc3339(s).map_err(|e| format!("bad time {s:?}: {e}"))?;
        let ts = Timestamp::from_system(t);
        // Only the canonical form is accepted, so a timestamp has exactly one spelling.
        if ts.to_string() != s {
            return Err(format!(
                "time {s:?} is not in the form 2026-11-22T10:00:00Z"
            ));
        }
        Ok(ts)
    }

    /// A compact form for file names: `20261122T100000Z`.
    pub fn compact(self) -> String {
        self.to_string().replace(['-', ':'], "")
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = UNIX_EPOCH + Duration::from_secs(self.0);
        write!(f, "{}", humantime::format_rfc3339_seconds(t))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Timestamp::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Parses a lifetime such as `2h`, `30m` or `1h 30m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("bad duration {s:?}: {e} (try 2h or 30m)"))
}

/// Formats a duration the way `parse_duration` reads it.
pub fn format_duration(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_canonical_only() {
        let t = Timestamp::parse("2026-11-22T10:00:00Z").unwrap();
        assert_eq!(t.to_string(), "2026-11-22T10:00:00Z");
        assert_eq!(t.compact(), "20261122T100000Z");
        assert!(Timestamp::parse("2026-11-22T10:00:00.5Z").is_err());
        assert!(Timestamp::parse("2026-11-22 10:00:00Z").is_err());
        assert!(Timestamp::parse("yesterday").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(format_duration(Duration::from_secs(5400)), "1h 30m");
        assert!(parse_duration("soon").is_err());
    }
}
