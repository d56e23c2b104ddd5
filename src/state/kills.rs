//! Kills: each one's intent written before the terminate is sent (so a crash mid-send still
//! counts it: never twice), its outcome after, and its confirmation by a later poll. The
//! budget is these rows: no more than `max` in any 60 seconds, whichever process sent them.

use rusqlite::{OptionalExtension, TransactionBehavior, params};

use super::{Mode, State, StateError};

/// The budget's window.
pub const WINDOW_MICROS: i64 = crate::micros::Micros::MINUTE;

/// A kill about to be sent (or, in a dry run, decided).
#[derive(Debug, Clone)]
pub struct KillIntent<'a> {
    pub session_id: &'a str,
    /// Each mode has its own never-twice and budget.
    pub mode: Mode,
    pub rule: &'a str,
    /// Microseconds (Unix time for live work, packet time in a replay).
    pub at: i64,
    /// At most this many kills of this mode in any 60 seconds.
    pub max_per_minute: u32,
}

/// What the database said to a kill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Begin {
    /// Recorded (row id): send it.
    Go(i64),
    /// This session was killed (or a kill of it was sent) before.
    AlreadyKilled,
    /// `max_per_minute` kills in the last 60 seconds already.
    OverBudget,
}

/// What became of a sent kill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KillOutcome {
    /// Plex answered 200.
    Killed,
    /// Plex refused or could not be reached: the session may be tried again.
    Failed,
    /// A later poll no longer lists the stream.
    Confirmed,
    /// A later poll still lists it.
    Zombie,
    /// A dry run's decision (nothing sent).
    Would,
}

impl KillOutcome {
    fn as_str(self) -> &'static str {
        match self {
            KillOutcome::Killed => "killed",
            KillOutcome::Failed => "failed",
            KillOutcome::Confirmed => "confirmed",
            KillOutcome::Zombie => "zombie",
            KillOutcome::Would => "would",
        }
    }
}

/// Rows that stop a second kill of their session: all but failed ones.
const BLOCKING: &str = "state IN ('sent', 'killed', 'confirmed', 'zombie', 'would')";

impl State {
    /// In one transaction: refuses a session already killed and a kill over the budget, else
    /// writes the intent. Only a `Go` may be sent.
    pub fn begin_kill(&mut self, k: &KillIntent<'_>) -> Result<Begin, StateError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(StateError::write)?;
        let before: Option<i64> = tx
            .query_row(
                &format!(
                    "SELECT id FROM kills WHERE session_id = ?1 AND mode = ?2 AND {BLOCKING} LIMIT 1"
                ),
                params![k.session_id, k.mode.as_str()],
                |r| r.get(0),
            )
            .optional()
            .map_err(StateError::read)?;
        if before.is_some() {
            return Ok(Begin::AlreadyKilled);
        }
        let in_window: i64 = tx
            .query_row(
                "SELECT COUNT(*) FROM kills WHERE mode = ?1 AND at > ?2 AND at <= ?3",
                params![k.mode.as_str(), k.at - WINDOW_MICROS, k.at],
                |r| r.get(0),
            )
            .map_err(StateError::read)?;
        if in_window >= i64::from(k.max_per_minute.max(1)) {
            return Ok(Begin::OverBudget);
        }
        let state = if k.mode == Mode::DryRun {
            "would"
        } else {
            "sent"
        };
        tx.execute(
            "INSERT INTO kills (session_id, mode, rule, at, state, pid) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![k.session_id, k.mode.as_str(), k.rule, k.at, state, std::process::id()],
        )
        .map_err(StateError::write)?;
        let id = tx.last_insert_rowid();
        tx.commit().map_err(StateError::write)?;
        Ok(Begin::Go(id))
    }

    /// Writes what became of kill `id`, answered at `at`.
    pub fn end_kill(&mut self, id: i64, outcome: KillOutcome, at: i64) -> Result<(), StateError> {
        self.conn
            .execute(
                "UPDATE kills SET state = ?1, answered_at = ?2 WHERE id = ?3",
                params![outcome.as_str(), at, id],
            )
            .map_err(StateError::write)?;
        Ok(())
    }

    /// Records what a later poll found of the latest kill of a session sent in earnest.
    pub fn confirm_kill(
        &mut self,
        session_id: &str,
        outcome: KillOutcome,
        at: i64,
    ) -> Result<(), StateError> {
        self.conn
            .execute(
                "UPDATE kills SET state = ?1, answered_at = COALESCE(answered_at, ?2)
                 WHERE id = (SELECT MAX(id) FROM kills WHERE session_id = ?3 AND mode = 'enforce' AND state IN ('sent', 'killed'))",
                params![outcome.as_str(), at, session_id],
            )
            .map_err(StateError::write)?;
        Ok(())
    }

    /// Whether a kill of this session (in this mode) was sent or decided before.
    pub fn was_killed(&self, session_id: &str, mode: Mode) -> Result<bool, StateError> {
        self.conn
            .query_row(
                &format!(
                    "SELECT EXISTS (SELECT 1 FROM kills WHERE session_id = ?1 AND mode = ?2 AND {BLOCKING})"
                ),
                params![session_id, mode.as_str()],
                |r| r.get(0),
            )
            .map_err(StateError::read)
    }

    /// Kills of this mode in the 60 seconds up to `at`, whichever process sent them.
    pub fn kills_in_window(&self, mode: Mode, at: i64) -> Result<u32, StateError> {
        let n: i64 = self
            .conn
            .query_row(
                "SELECT COUNT(*) FROM kills WHERE mode = ?1 AND at > ?2 AND at <= ?3",
                params![mode.as_str(), at - WINDOW_MICROS, at],
                |r| r.get(0),
            )
            .map_err(StateError::read)?;
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn intent(id: &str, at: i64) -> KillIntent<'_> {
        KillIntent {
            session_id: id,
            mode: Mode::Enforce,
            rule: "r",
            at,
            max_per_minute: 3,
        }
    }

    #[test]
    fn never_twice_and_no_more_than_the_budget_in_any_60_seconds() {
        let mut s = State::memory();
        let s0 = 1_000_000_000;
        assert!(matches!(
            s.begin_kill(&intent("a", s0)).unwrap(),
            Begin::Go(_)
        ));
        assert_eq!(
            s.begin_kill(&intent("a", s0 + 1)).unwrap(),
            Begin::AlreadyKilled
        );
        assert!(matches!(
            s.begin_kill(&intent("b", s0 + 10_000_000)).unwrap(),
            Begin::Go(_)
        ));
        assert!(matches!(
            s.begin_kill(&intent("c", s0 + 20_000_000)).unwrap(),
            Begin::Go(_)
        ));
        // A fourth within 60 s of the first is refused, even 40 s later (a GCRA would allow it).
        assert_eq!(
            s.begin_kill(&intent("d", s0 + 40_000_000)).unwrap(),
            Begin::OverBudget
        );
        assert_eq!(
            s.kills_in_window(Mode::Enforce, s0 + 40_000_000).unwrap(),
            3
        );
        // Once the first leaves the window, one more fits.
        assert!(matches!(
            s.begin_kill(&intent("d", s0 + 60_000_001)).unwrap(),
            Begin::Go(_)
        ));
    }

    #[test]
    fn a_failed_kill_may_be_sent_again_and_a_dry_run_keeps_its_own_memory() {
        let mut s = State::memory();
        let Begin::Go(id) = s.begin_kill(&intent("a", 1)).unwrap() else {
            panic!("first kill refused");
        };
        s.end_kill(id, KillOutcome::Failed, 2).unwrap();
        assert!(!s.was_killed("a", Mode::Enforce).unwrap());
        assert!(matches!(
            s.begin_kill(&intent("a", 3)).unwrap(),
            Begin::Go(_)
        ));
        assert!(s.was_killed("a", Mode::Enforce).unwrap());
        assert!(!s.was_killed("a", Mode::DryRun).unwrap());
    }
}
