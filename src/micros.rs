//! Time as streamwarden counts it: microseconds since the Unix epoch, the time base of
//! captured packets, of the clock every round is judged at and of the state's records.
//! The conversions to whole seconds, minutes and elapsed times live here, once.

use std::time::Duration;

/// A point in time (or, for [`Micros::between`], a span) in microseconds since the Unix
/// epoch. Stored as it is written to the state and read from packets: an `i64`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Micros(pub i64);

impl Micros {
    /// One second.
    pub const SECOND: i64 = 1_000_000;
    /// One minute.
    pub const MINUTE: i64 = 60 * Self::SECOND;

    /// The system's wall clock, now (the epoch if the clock is before it).
    pub fn now() -> Self {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(Micros(0), Micros::from)
    }

    /// The start of Unix second `secs` (saturating at the ends of the range).
    pub const fn from_secs(secs: i64) -> Self {
        Micros(secs.saturating_mul(Self::SECOND))
    }

    /// A packet's timestamp: whole seconds and the microseconds past them.
    pub const fn from_parts(secs: i64, frac_micros: i64) -> Self {
        Micros(
            secs.saturating_mul(Self::SECOND)
                .saturating_add(frac_micros),
        )
    }

    /// The Unix second this falls in (rounded down, also before 1970).
    pub const fn secs(self) -> i64 {
        self.0.div_euclid(Self::SECOND)
    }

    /// The Unix minute this falls in (rounded down).
    pub const fn minute(self) -> i64 {
        self.0.div_euclid(Self::MINUTE)
    }

    /// The start of the second this falls in.
    pub const fn floor_sec(self) -> Self {
        Micros(self.secs() * Self::SECOND)
    }

    /// A span in seconds, rounded to the nearest second (half up).
    pub const fn round_secs(self) -> i64 {
        self.0
            .saturating_add(Self::SECOND / 2)
            .div_euclid(Self::SECOND)
    }

    /// A span in seconds, with its fraction.
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / Self::SECOND as f64
    }

    /// As a UTC date and time, when it is one `time` can hold.
    pub fn datetime(self) -> Option<time::OffsetDateTime> {
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.0) * 1000).ok()
    }

    /// As RFC 3339 UTC ("2026-12-06T05:51:18.5Z").
    pub fn rfc3339(self) -> Option<String> {
        self.datetime()?
            .format(&time::format_description::well_known::Rfc3339)
            .ok()
    }

    /// Whole seconds elapsed from `earlier` to this (0 when `earlier` is later: a clock
    /// stepped back is not negative time).
    pub fn whole_secs_since(self, earlier: Micros) -> u64 {
        u64::try_from(self.0.saturating_sub(earlier.0) / Self::SECOND).unwrap_or(0)
    }

    /// The time elapsed from `earlier` to this (zero when `earlier` is later).
    pub fn duration_since(self, earlier: Micros) -> Duration {
        Duration::from_micros(u64::try_from(self.0.saturating_sub(earlier.0)).unwrap_or(0))
    }

    /// This, `d` later (saturating).
    pub fn plus(self, d: Duration) -> Self {
        Micros(
            self.0
                .saturating_add(i64::try_from(d.as_micros()).unwrap_or(i64::MAX)),
        )
    }
}

impl From<Duration> for Micros {
    /// A span as microseconds (saturating).
    fn from(d: Duration) -> Self {
        Micros(i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_round_down_also_before_1970() {
        assert_eq!(Micros(1_999_999).secs(), 1);
        assert_eq!(Micros(-1).secs(), -1);
        assert_eq!(Micros(-1).floor_sec(), Micros(-1_000_000));
        assert_eq!(Micros(119_999_999).minute(), 1);
        assert_eq!(Micros::from_parts(3, 250_000), Micros(3_250_000));
        assert_eq!(Micros::from_secs(i64::MAX), Micros(i64::MAX));
        assert_eq!(
            Micros(1_765_000_000_500_000).rfc3339().as_deref(),
            Some("2025-12-06T05:46:40.5Z")
        );
        assert_eq!(Micros(i64::MAX).rfc3339(), None);
    }

    #[test]
    fn elapsed_time_is_never_negative_and_spans_round_half_up() {
        assert_eq!(Micros(5_900_000).whole_secs_since(Micros(1_000_000)), 4);
        assert_eq!(Micros(1_000_000).whole_secs_since(Micros(5_000_000)), 0);
        assert_eq!(
            Micros(i64::MAX).whole_secs_since(Micros(i64::MIN)),
            9_223_372_036_854
        );
        assert_eq!(Micros(1_499_999).round_secs(), 1);
        assert_eq!(Micros(1_500_000).round_secs(), 2);
        assert_eq!(
            Micros(1_000).plus(Duration::from_secs(2)),
            Micros(2_001_000)
        );
        assert_eq!(
            Micros(3_500_000).duration_since(Micros(1_000_000)),
            Duration::from_millis(2_500)
        );
        assert_eq!(Micros(0).duration_since(Micros(1)), Duration::ZERO);
        assert_eq!(Micros::from(Duration::from_millis(3)), Micros(3_000));
    }
}
