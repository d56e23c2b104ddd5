//! The state database's costs: one kill decision's transactions (intent, outcome, audit
//! record) on a file in WAL mode with synchronous writes, and `history` for one user over 30
//! days of a 1,000,000-record state.
//!
//! `cargo bench --bench state -- --warm-up-time 1 --measurement-time 5`

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use streamwarden::enforce::history::{self, Query};
use streamwarden::state::{AuditRow, Begin, KillIntent, KillOutcome, State};

const RECORDS: usize = 1_000_000;
const USERS: usize = 50;
const DAY: i64 = 86_400 * 1_000_000;

fn row(i: usize, at: i64) -> AuditRow {
    let actions = [
        "kill",
        "would-kill",
        "log",
        "kill-skipped",
        "zombie",
        "throttle",
    ];
    AuditRow {
        at,
        ts: "2026-12-01T00:00:00Z".into(),
        mode: "enforce".into(),
        action: actions[i % actions.len()].into(),
        rule: format!("rule-{}", i % 7),
        session_id: Some(format!("s{i}")),
        user: Some(format!("user{}", i % USERS)),
        address: Some("203.0.113.9".into()),
        title: Some("A Film".into()),
        message: "Stopped: over the limit".into(),
        values: r#"{"measured_kbps_10s":21000.0}"#.into(),
        ..AuditRow::default()
    }
}

fn decision(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let mut state = State::open(&dir.path().join("state.db")).unwrap();
    let mut n = 0i64;
    c.bench_function("a kill decision: intent, outcome and audit record", |b| {
        b.iter(|| {
            n += 1;
            let id = format!("s{n}");
            let at = n * 1_000_000_000;
            let intent = KillIntent {
                session_id: &id,
                mode: streamwarden::state::Mode::Enforce,
                rule: "r",
                at,
                max_per_minute: 100,
            };
            let Ok(Begin::Go(kill)) = state.begin_kill(&intent) else {
                panic!("refused");
            };
            state.end_kill(kill, KillOutcome::Killed, at + 1).unwrap();
            state.insert_audit(&row(n as usize, at)).unwrap();
            black_box(kill)
        })
    });
}

fn history_of_a_user(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let mut state = State::open(&path).unwrap();
    // A year of records, the newest now.
    let now = streamwarden::state::now_micros();
    let span = 365 * DAY;
    let rows: Vec<AuditRow> = (0..RECORDS)
        .map(|i| row(i, now - span + (span / RECORDS as i64) * i as i64))
        .collect();
    state.import(&rows).unwrap();
    drop(rows);
    let reader = State::open_read_only(&path).unwrap();
    let since = time::OffsetDateTime::now_utc() - time::Duration::days(30);
    let q = Query {
        user: Some("USER7".into()),
        since: Some(since),
        ..Query::default()
    };
    c.bench_function("history: one user, 30 days, of 1,000,000 records", |b| {
        b.iter(|| black_box(history::from_state(&reader, &q).unwrap().total))
    });
}

criterion_group!(benches, decision, history_of_a_user);
criterion_main!(benches);
