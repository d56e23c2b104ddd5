//! Audit records in the database: written in the decision's transaction, read back through
//! indexed queries (by time, by user, by action) for `history`, the page and `/api/history`.

use rusqlite::{ToSql, params, params_from_iter};

use super::{State, StateError};

/// One audit record as stored.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditRow {
    /// Microseconds since the Unix epoch.
    pub at: i64,
    /// RFC 3339, UTC.
    pub ts: String,
    pub mode: String,
    pub action: String,
    pub rule: String,
    pub session_id: Option<String>,
    pub session_key: Option<String>,
    pub user: Option<String>,
    pub address: Option<String>,
    pub title: Option<String>,
    pub message: String,
    pub reason: Option<String>,
    pub rate: Option<String>,
    pub estimated: bool,
    /// The values the rule read, as a JSON object.
    pub values: String,
}

/// Which records to read.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter<'a> {
    /// Case-insensitive.
    pub user: Option<&'a str>,
    pub rule: Option<&'a str>,
    /// At or after (microseconds).
    pub since: Option<i64>,
    /// Any of these actions (none: all).
    pub actions: &'a [String],
}

/// How many records of one action one user has, over a filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionCount {
    pub user: Option<String>,
    pub action: String,
    pub count: u32,
}

const COLUMNS: &str = "at, ts, mode, action, rule, session_id, session_key, user, address, title, message, reason, rate, estimated, vals";

impl State {
    /// Writes one record.
    pub fn insert_audit(&mut self, r: &AuditRow) -> Result<(), StateError> {
        self.conn
            .execute(
                &format!("INSERT INTO audit ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)"),
                params![
                    r.at,
                    r.ts,
                    r.mode,
                    r.action,
                    r.rule,
                    r.session_id,
                    r.session_key,
                    r.user,
                    r.address,
                    r.title,
                    r.message,
                    r.reason,
                    r.rate,
                    r.estimated,
                    r.values
                ],
            )
            .map_err(StateError::write)?;
        Ok(())
    }

    /// Brings in records written before the state existed (an older install's JSONL audit
    /// log), in one transaction; each kill among them also counts for never-twice and the
    /// budget.
    pub fn import(&mut self, rows: &[AuditRow]) -> Result<usize, StateError> {
        let tx = self.conn.transaction().map_err(StateError::write)?;
        for r in rows {
            tx.execute(
                &format!("INSERT INTO audit ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)"),
                params![
                    r.at, r.ts, r.mode, r.action, r.rule, r.session_id, r.session_key, r.user,
                    r.address, r.title, r.message, r.reason, r.rate, r.estimated, r.values
                ],
            )
            .map_err(StateError::write)?;
            if r.action == super::AuditAction::Kill.as_str()
                && let Some(id) = &r.session_id
            {
                tx.execute(
                    "INSERT INTO kills (session_id, mode, rule, at, state, answered_at, pid) VALUES (?1, ?2, ?3, ?4, 'killed', ?4, 0)",
                    params![id, r.mode, r.rule, r.at],
                )
                .map_err(StateError::write)?;
            }
        }
        tx.commit().map_err(StateError::write)?;
        Ok(rows.len())
    }

    /// The newest `limit` records a filter matches, newest first.
    pub fn audit_newest(
        &self,
        f: &AuditFilter<'_>,
        limit: usize,
    ) -> Result<Vec<AuditRow>, StateError> {
        let (clause, mut args) = where_of(f);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        args.push(Box::new(limit));
        let sql = format!("SELECT {COLUMNS} FROM audit {clause} ORDER BY at DESC, id DESC LIMIT ?");
        let mut stmt = self.conn.prepare(&sql).map_err(StateError::read)?;
        let rows = stmt
            .query_map(params_from_iter(args.iter().map(|a| a.as_ref())), |r| {
                Ok(AuditRow {
                    at: r.get(0)?,
                    ts: r.get(1)?,
                    mode: r.get(2)?,
                    action: r.get(3)?,
                    rule: r.get(4)?,
                    session_id: r.get(5)?,
                    session_key: r.get(6)?,
                    user: r.get(7)?,
                    address: r.get(8)?,
                    title: r.get(9)?,
                    message: r.get(10)?,
                    reason: r.get(11)?,
                    rate: r.get(12)?,
                    estimated: r.get(13)?,
                    values: r.get(14)?,
                })
            })
            .map_err(StateError::read)?;
        rows.collect::<Result<_, _>>().map_err(StateError::read)
    }

    /// Per user and action, how many records a filter matches.
    pub fn audit_counts(&self, f: &AuditFilter<'_>) -> Result<Vec<ActionCount>, StateError> {
        let (clause, args) = where_of(f);
        let sql = format!(
            "SELECT user, action, COUNT(*) FROM audit {clause} GROUP BY user COLLATE NOCASE, action"
        );
        let mut stmt = self.conn.prepare(&sql).map_err(StateError::read)?;
        let rows = stmt
            .query_map(params_from_iter(args.iter().map(|a| a.as_ref())), |r| {
                Ok(ActionCount {
                    user: r.get(0)?,
                    action: r.get(1)?,
                    count: r.get(2)?,
                })
            })
            .map_err(StateError::read)?;
        rows.collect::<Result<_, _>>().map_err(StateError::read)
    }
}

fn where_of(f: &AuditFilter<'_>) -> (String, Vec<Box<dyn ToSql>>) {
    let mut parts = Vec::new();
    let mut args: Vec<Box<dyn ToSql>> = Vec::new();
    if let Some(u) = f.user {
        parts.push("user = ? COLLATE NOCASE".to_string());
        args.push(Box::new(u.trim().to_string()));
    }
    if let Some(r) = f.rule {
        parts.push("rule = ?".to_string());
        args.push(Box::new(r.trim().to_string()));
    }
    if let Some(s) = f.since {
        parts.push("at >= ?".to_string());
        args.push(Box::new(s));
    }
    if !f.actions.is_empty() {
        let marks = vec!["?"; f.actions.len()].join(", ");
        parts.push(format!("action IN ({marks})"));
        for a in f.actions {
            args.push(Box::new(a.clone()));
        }
    }
    let clause = if parts.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", parts.join(" AND "))
    };
    (clause, args)
}
