//! What each stream sent and played, a row per stream and minute (rolled up to hours after
//! `keep_minutes`, dropped after `keep`): the memory behind `streamwarden usage`, the
//! `user_gb_*` rule variables and `/metrics`' per-user bytes. The schema is documented in
//! docs/usage.md, for owners who open the file in sqlite3, Datasette or Grafana.

use rusqlite::params;

use super::{State, StateError};

/// The user of traffic from Plex's ports that no session accounts for.
pub const UNATTRIBUTED: &str = "(unattributed)";

/// One stream's usage in one period (a minute, or an hour once rolled up).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageRow {
    /// The period's start, unix seconds (UTC).
    pub start: i64,
    /// Its length in seconds: 60, or 3600 once rolled up.
    pub span: i64,
    pub user: String,
    /// The stream's identity (Plex's Session id where it gives one).
    pub stream: String,
    pub title: Option<String>,
    pub player: Option<String>,
    pub location: Option<String>,
    /// "transcode", "copy", "direct play".
    pub decision: Option<String>,
    pub video_resolution: Option<String>,
    pub source_resolution: Option<String>,
    /// "packets" or "plex".
    pub rate_source: Option<String>,
    /// Some of the bytes are an estimated share of an address.
    pub estimated: bool,
    /// IP bytes sent to the viewer.
    pub bytes: i64,
    /// Seconds it played (not paused).
    pub seconds: i64,
}

/// Totals over some rows, grouped by a key.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct UsageTotal {
    /// The user, day (YYYY-MM-DD, UTC), title or player.
    pub key: String,
    pub bytes: i64,
    pub seconds: i64,
    /// Distinct streams.
    pub streams: i64,
    /// Distinct streams that transcoded video or audio.
    pub transcodes: i64,
    /// Some bytes were estimated shares.
    pub estimated: bool,
}

/// How `usage_totals` groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    User,
    Day,
    Title,
    Player,
}

impl GroupBy {
    fn column(self) -> &'static str {
        match self {
            GroupBy::User => "user",
            GroupBy::Day => "date(start, 'unixepoch')",
            GroupBy::Title => "coalesce(title, '')",
            GroupBy::Player => "coalesce(player, '')",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "user" => Some(GroupBy::User),
            "day" => Some(GroupBy::Day),
            "title" => Some(GroupBy::Title),
            "player" => Some(GroupBy::Player),
            _ => None,
        }
    }
}

/// One user's totals since several instants, as rules read them.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Since {
    pub bytes: i64,
    pub seconds: i64,
    /// Distinct streams that transcoded.
    pub transcodes: i64,
}

impl State {
    /// Adds `rows` to what is recorded (a row of the same period and stream adds up), in one
    /// transaction.
    pub fn record_usage(&mut self, rows: &[UsageRow]) -> Result<(), StateError> {
        if rows.is_empty() {
            return Ok(());
        }
        let tx = self.conn.transaction().map_err(StateError::write)?;
        {
            let mut st = tx
                .prepare_cached(
                    "INSERT INTO usage (start, span, user, stream, title, player, location,
                        decision, video_resolution, source_resolution, rate_source, estimated,
                        bytes, seconds)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)
                     ON CONFLICT (start, span, stream) DO UPDATE SET
                        bytes = bytes + excluded.bytes, seconds = seconds + excluded.seconds,
                        estimated = max(estimated, excluded.estimated),
                        decision = coalesce(excluded.decision, decision)",
                )
                .map_err(StateError::write)?;
            for r in rows {
                st.execute(params![
                    r.start,
                    r.span,
                    r.user,
                    r.stream,
                    r.title,
                    r.player,
                    r.location,
                    r.decision,
                    r.video_resolution,
                    r.source_resolution,
                    r.rate_source,
                    r.estimated,
                    r.bytes,
                    r.seconds
                ])
                .map_err(StateError::write)?;
            }
        }
        tx.commit().map_err(StateError::write)
    }

    /// Rolls minute rows older than `minutes_before` up into hour rows, and drops rows older
    /// than `drop_before` (unix seconds), in one transaction. Totals are unchanged.
    pub fn roll_up_usage(
        &mut self,
        minutes_before: i64,
        drop_before: i64,
    ) -> Result<(), StateError> {
        let tx = self.conn.transaction().map_err(StateError::write)?;
        tx.execute(
            "INSERT INTO usage (start, span, user, stream, title, player, location, decision,
                video_resolution, source_resolution, rate_source, estimated, bytes, seconds)
             SELECT start - start % 3600, 3600, user, stream, max(title), max(player),
                max(location), max(decision), max(video_resolution), max(source_resolution),
                max(rate_source), max(estimated), sum(bytes), sum(seconds)
             FROM usage WHERE span = 60 AND start < ?1
             GROUP BY start - start % 3600, stream
             ON CONFLICT (start, span, stream) DO UPDATE SET
                bytes = bytes + excluded.bytes, seconds = seconds + excluded.seconds,
                estimated = max(estimated, excluded.estimated)",
            params![minutes_before - minutes_before.rem_euclid(3600)],
        )
        .map_err(StateError::write)?;
        tx.execute(
            "DELETE FROM usage WHERE span = 60 AND start < ?1",
            params![minutes_before - minutes_before.rem_euclid(3600)],
        )
        .map_err(StateError::write)?;
        tx.execute("DELETE FROM usage WHERE start < ?1", params![drop_before])
            .map_err(StateError::write)?;
        tx.commit().map_err(StateError::write)
    }

    /// Totals since `since` (unix seconds), for one user or all, grouped; largest first.
    pub fn usage_totals(
        &self,
        since: i64,
        user: Option<&str>,
        by: GroupBy,
    ) -> Result<Vec<UsageTotal>, StateError> {
        let sql = format!(
            "SELECT {col} AS k, sum(bytes), sum(seconds), count(DISTINCT stream),
                count(DISTINCT CASE WHEN decision = 'transcode' THEN stream END), max(estimated)
             FROM usage WHERE start >= ?1 AND (?2 IS NULL OR user = ?2 COLLATE NOCASE)
             GROUP BY k ORDER BY {order}",
            col = by.column(),
            order = if by == GroupBy::Day {
                "k"
            } else {
                "sum(bytes) DESC, k"
            },
        );
        let mut st = self.conn.prepare(&sql).map_err(StateError::read)?;
        let rows = st
            .query_map(params![since, user], |r| {
                Ok(UsageTotal {
                    key: r.get(0)?,
                    bytes: r.get(1)?,
                    seconds: r.get(2)?,
                    streams: r.get(3)?,
                    transcodes: r.get(4)?,
                    estimated: r.get::<_, i64>(5)? != 0,
                })
            })
            .map_err(StateError::read)?;
        rows.collect::<Result<_, _>>().map_err(StateError::read)
    }

    /// Each user's bytes per UTC day (YYYY-MM-DD) from `since` (unix seconds) on.
    pub fn usage_daily(&self, since: i64) -> Result<Vec<(String, String, i64)>, StateError> {
        let mut st = self
            .conn
            .prepare(
                "SELECT user, date(start, 'unixepoch') AS day, sum(bytes) FROM usage
                 WHERE start >= ?1 GROUP BY user, day ORDER BY user, day",
            )
            .map_err(StateError::read)?;
        let rows = st
            .query_map(params![since], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(StateError::read)?;
        rows.collect::<Result<_, _>>().map_err(StateError::read)
    }

    /// Every row from `since` (unix seconds) on, oldest first: what a backtest replays.
    pub fn usage_rows(&self, since: i64) -> Result<Vec<UsageRow>, StateError> {
        let mut st = self
            .conn
            .prepare(
                "SELECT start, span, user, stream, title, player, location, decision,
                    video_resolution, source_resolution, rate_source, estimated, bytes, seconds
                 FROM usage WHERE start >= ?1 ORDER BY start, stream",
            )
            .map_err(StateError::read)?;
        let rows = st
            .query_map(params![since], |r| {
                Ok(UsageRow {
                    start: r.get(0)?,
                    span: r.get(1)?,
                    user: r.get(2)?,
                    stream: r.get(3)?,
                    title: r.get(4)?,
                    player: r.get(5)?,
                    location: r.get(6)?,
                    decision: r.get(7)?,
                    video_resolution: r.get(8)?,
                    source_resolution: r.get(9)?,
                    rate_source: r.get(10)?,
                    estimated: r.get::<_, i64>(11)? != 0,
                    bytes: r.get(12)?,
                    seconds: r.get(13)?,
                })
            })
            .map_err(StateError::read)?;
        rows.collect::<Result<_, _>>().map_err(StateError::read)
    }

    /// Each user's totals since each of `since` (unix seconds), for the rule variables.
    pub fn usage_since(&self, since: &[i64]) -> Result<Vec<(String, Vec<Since>)>, StateError> {
        let mut out: Vec<(String, Vec<Since>)> = Vec::new();
        for (i, s) in since.iter().enumerate() {
            for t in self.usage_totals(*s, None, GroupBy::User)? {
                let slot = match out.iter().position(|(u, _)| *u == t.key) {
                    Some(p) => p,
                    None => {
                        out.push((t.key.clone(), vec![Since::default(); since.len()]));
                        out.len() - 1
                    }
                };
                out[slot].1[i] = Since {
                    bytes: t.bytes,
                    seconds: t.seconds,
                    transcodes: t.transcodes,
                };
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(start: i64, user: &str, stream: &str, bytes: i64) -> UsageRow {
        UsageRow {
            start,
            span: 60,
            user: user.into(),
            stream: stream.into(),
            decision: Some(
                if user == "bob" {
                    "transcode"
                } else {
                    "direct play"
                }
                .into(),
            ),
            bytes,
            seconds: 60,
            ..Default::default()
        }
    }

    #[test]
    fn rows_add_up_roll_up_to_hours_and_expire() {
        let mut s = State::memory();
        let t0 = 1_699_999_200; // a whole hour
        let mut rows = Vec::new();
        for m in 0..120 {
            rows.push(row(t0 + m * 60, "bob", "id:b", 1_000));
            rows.push(row(t0 + m * 60, "carol", "id:c", 10));
        }
        s.record_usage(&rows).unwrap();
        // The same minute again adds up.
        s.record_usage(&[row(t0, "bob", "id:b", 5)]).unwrap();
        let by_user = s.usage_totals(0, None, GroupBy::User).unwrap();
        assert_eq!(by_user[0].key, "bob");
        assert_eq!(by_user[0].bytes, 120_005);
        assert_eq!(by_user[0].seconds, 120 * 60 + 60);
        assert_eq!(by_user[0].transcodes, 1);
        assert_eq!(by_user[1].bytes, 1_200);
        // Rolled up: same totals, hour rows.
        s.roll_up_usage(t0 + 7200, 0).unwrap();
        let after = s.usage_totals(0, None, GroupBy::User).unwrap();
        assert_eq!(after, by_user);
        let n: i64 = s
            .conn
            .query_row("SELECT count(*) FROM usage WHERE span = 60", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(n, 0);
        // Expired.
        s.roll_up_usage(t0 + 7200, t0 + 3600).unwrap();
        let left = s.usage_totals(0, Some("BOB"), GroupBy::User).unwrap();
        assert_eq!(left[0].bytes, 60_000);
        let since = s.usage_since(&[0, t0 + 7000]).unwrap();
        let bob = since.iter().find(|(u, _)| u == "bob").unwrap();
        assert_eq!(bob.1[0].bytes, 60_000);
        assert_eq!(bob.1[1].bytes, 0);
    }
}
