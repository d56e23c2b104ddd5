//! The `[usage]` table: how long the record of what each stream sent is kept.

use std::time::Duration;

/// `[usage]`, resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct UsageConfig {
    /// `keep_minutes`: minute rows older than this are rolled up to hours (default 14 days).
    pub minutes: Duration,
    /// `keep`: rows older than this are dropped (default 400 days).
    pub all: Duration,
    /// `timezone`: where today, this week and this month begin (default the machine's).
    pub timezone: jiff::tz::TimeZone,
    /// `week_starts` (default monday).
    pub week_starts: jiff::civil::Weekday,
}

const DAY: u64 = 86_400;

impl Default for UsageConfig {
    fn default() -> Self {
        Self {
            minutes: Duration::from_secs(14 * DAY),
            all: Duration::from_secs(400 * DAY),
            timezone: jiff::tz::TimeZone::system(),
            week_starts: jiff::civil::Weekday::Monday,
        }
    }
}

/// `[usage]` as written.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUsage {
    keep_minutes: Option<toml::Spanned<String>>,
    keep: Option<toml::Spanned<String>>,
    timezone: Option<toml::Spanned<String>>,
    week_starts: Option<toml::Spanned<String>>,
}

impl RawUsage {
    pub(super) fn resolve(
        self,
        source: &super::SourceMap,
    ) -> Result<UsageConfig, super::ConfigError> {
        let d = UsageConfig::default();
        let read = |v: &Option<toml::Spanned<String>>, key: &str, default: Duration| match v {
            None => Ok(default),
            Some(s) => super::parse_duration(s.get_ref())
                .map_err(|m| source.error(Some(s.span()), format!("{key}: {m}"))),
        };
        let minutes = read(&self.keep_minutes, "keep_minutes", d.minutes)?;
        let all = read(&self.keep, "keep", d.all)?;
        if minutes < Duration::from_secs(3600) || all < minutes {
            let span = self
                .keep
                .as_ref()
                .or(self.keep_minutes.as_ref())
                .map(|s| s.span());
            return Err(source.error(
                span,
                "keep_minutes must be at least 1h, and keep at least keep_minutes (defaults: 14d and 400d)",
            ));
        }
        let timezone = match &self.timezone {
            None => d.timezone,
            Some(t) => zone(t, source)?,
        };
        let week_starts = match &self.week_starts {
            None => d.week_starts,
            Some(w) => weekday(w.get_ref()).ok_or_else(|| {
                source.error(
                    Some(w.span()),
                    "week_starts: give a day of the week such as \"monday\" or \"sunday\"",
                )
            })?,
        };
        Ok(UsageConfig {
            minutes,
            all,
            timezone,
            week_starts,
        })
    }
}

/// The days of the week by name, as written in the config and read by rules.
pub const WEEKDAYS: [(&str, jiff::civil::Weekday); 7] = {
    use jiff::civil::Weekday::*;
    [
        ("monday", Monday),
        ("tuesday", Tuesday),
        ("wednesday", Wednesday),
        ("thursday", Thursday),
        ("friday", Friday),
        ("saturday", Saturday),
        ("sunday", Sunday),
    ]
};

fn weekday(s: &str) -> Option<jiff::civil::Weekday> {
    let s = s.trim().to_ascii_lowercase();
    WEEKDAYS.iter().find(|(n, _)| *n == s).map(|(_, d)| *d)
}

/// The name of a day of the week ("monday").
pub fn weekday_name(d: jiff::civil::Weekday) -> &'static str {
    WEEKDAYS
        .iter()
        .find(|(_, w)| *w == d)
        .map_or("", |(n, _)| n)
}

/// A time zone as written (`timezone = "Europe/Paris"`), or an error at its place.
pub(super) fn zone(
    t: &toml::Spanned<String>,
    source: &super::SourceMap,
) -> Result<jiff::tz::TimeZone, super::ConfigError> {
    jiff::tz::TimeZone::get(t.get_ref().trim()).map_err(|e| {
        source.error(
            Some(t.span()),
            format!("timezone: {e}; give an IANA name such as \"Europe/Paris\" or leave it out for the machine's"),
        )
    })
}

impl UsageConfig {
    /// Where today, this week and this month began, and 7 and 30 days ago, as of `now`
    /// (unix seconds), in the configured zone.
    pub fn period_starts(&self, now: i64) -> [i64; 5] {
        let rolling = [now - 7 * DAY as i64, now - 30 * DAY as i64];
        let calendar = (|| -> Option<[i64; 3]> {
            let z = jiff::Timestamp::from_second(now)
                .ok()?
                .to_zoned(self.timezone.clone());
            let today = z.start_of_day().ok()?;
            let back = (i64::from(z.weekday().to_monday_zero_offset())
                - i64::from(self.week_starts.to_monday_zero_offset()))
            .rem_euclid(7);
            let week = z
                .date()
                .checked_sub(jiff::Span::new().days(back))
                .ok()?
                .to_zoned(self.timezone.clone())
                .ok()?;
            let month = z.first_of_month().ok()?.start_of_day().ok()?;
            Some([
                today.timestamp().as_second(),
                week.timestamp().as_second(),
                month.timestamp().as_second(),
            ])
        })()
        // A date out of range (never in practice): the day, week and month end now.
        .unwrap_or([now; 3]);
        [
            calendar[0],
            calendar[1],
            calendar[2],
            rolling[0],
            rolling[1],
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_periods_begin_at_local_midnight() {
        let c = UsageConfig {
            timezone: jiff::tz::TimeZone::get("America/New_York").unwrap(),
            week_starts: jiff::civil::Weekday::Sunday,
            ..UsageConfig::default()
        };
        // Wednesday 2026-12-16 15:00 in New York (20:00 UTC).
        let now = 1_797_451_200;
        let [today, week, month, d7, d30] = c.period_starts(now);
        assert_eq!(today, 1_797_397_200); // 2026-12-16 00:00 -05:00
        assert_eq!(week, today - 3 * 86_400); // Sunday the 13th
        assert_eq!(month, today - 15 * 86_400); // the 1st
        assert_eq!(d7, now - 7 * 86_400);
        assert_eq!(d30, now - 30 * 86_400);
    }
}
