//! The throttles in force, so that a restart (after a crash too) knows which interfaces it
//! left a traffic-control root on and lifts exactly those.

use rusqlite::params;

use super::{State, StateError};

/// One throttle in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThrottleRow {
    /// The stream's identity.
    pub identity: String,
    pub session_id: Option<String>,
    pub rule: String,
    pub rate_bps: u64,
    pub interface: String,
    /// Microseconds since the Unix epoch.
    pub since: i64,
}

impl State {
    /// Records a throttle put on (or its new rate).
    pub fn throttle_on(&mut self, t: &ThrottleRow) -> Result<(), StateError> {
        self.conn
            .execute(
                "INSERT INTO throttles (identity, session_id, rule, rate_bps, interface, since)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (identity) DO UPDATE SET rule = ?3, rate_bps = ?4, interface = ?5",
                params![
                    t.identity,
                    t.session_id,
                    t.rule,
                    i64::try_from(t.rate_bps).unwrap_or(i64::MAX),
                    t.interface,
                    t.since
                ],
            )
            .map_err(StateError::write)?;
        Ok(())
    }

    /// Records a throttle lifted.
    pub fn throttle_off(&mut self, identity: &str) -> Result<(), StateError> {
        self.conn
            .execute(
                "DELETE FROM throttles WHERE identity = ?1",
                params![identity],
            )
            .map_err(StateError::write)?;
        Ok(())
    }

    /// Forgets every throttle on an interface (its root was removed).
    pub fn throttles_cleared(&mut self, interface: &str) -> Result<(), StateError> {
        self.conn
            .execute(
                "DELETE FROM throttles WHERE interface = ?1",
                params![interface],
            )
            .map_err(StateError::write)?;
        Ok(())
    }

    /// The throttles recorded as in force.
    pub fn throttles(&self) -> Result<Vec<ThrottleRow>, StateError> {
        let mut stmt = self
            .conn
            .prepare("SELECT identity, session_id, rule, rate_bps, interface, since FROM throttles ORDER BY since")
            .map_err(StateError::read)?;
        let rows = stmt
            .query_map([], |r| {
                Ok(ThrottleRow {
                    identity: r.get(0)?,
                    session_id: r.get(1)?,
                    rule: r.get(2)?,
                    rate_bps: u64::try_from(r.get::<_, i64>(3)?).unwrap_or(0),
                    interface: r.get(4)?,
                    since: r.get(5)?,
                })
            })
            .map_err(StateError::read)?;
        rows.collect::<Result<_, _>>().map_err(StateError::read)
    }
}
