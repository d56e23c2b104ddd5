//! Usage: what the meter counts for each stream lands in the state database, minute by
//! minute, exactly; unattributed traffic has a row of its own; a restart carries on.

use super::*;

use streamwarden::state::State;
use streamwarden::state::usage::{GroupBy, UNATTRIBUTED};

/// Pushes `n` frames of 1500 IP bytes from Plex's port to `client` into the feed, now.
fn push(feed: &Feed, client: [u8; 4], port: u16, n: usize) -> i64 {
    let frame = eth_tcp([10, 0, 0, 1], 32400, client, port, &[0u8; 1460]);
    for _ in 0..n {
        feed.ingest(&Packet {
            ts_micros: SystemClock.now_micros(),
            orig_len: frame.len() as u32,
            data: &frame,
        });
    }
    n as i64 * 1500
}

fn totals(path: &std::path::Path) -> Vec<(String, i64)> {
    State::open_read_only(path)
        .unwrap()
        .usage_totals(0, None, GroupBy::User)
        .unwrap()
        .into_iter()
        .map(|t| (t.key, t.bytes))
        .collect()
}

fn bytes_of(t: &[(String, i64)], user: &str) -> i64 {
    t.iter().find(|(u, _)| u == user).map_or(0, |(_, b)| *b)
}

#[tokio::test]
async fn each_users_bytes_are_recorded_exactly_and_a_restart_carries_them_on() {
    let keep = tempfile::tempdir().unwrap();
    let path = keep.path().join("state.db");
    let run = |extra: usize| {
        let path = path.clone();
        async move {
            let opts = Options {
                state: Some(path),
                ..Default::default()
            };
            let d = start(FakePlex::start(&mixed_sessions()), "", opts).await;
            // Let the first read of the sessions land, then send.
            tokio::time::sleep(Duration::from_millis(1200)).await;
            let sent = (
                push(&d.feed, [1, 2, 3, 11], 50_000, 1000 + extra),
                push(&d.feed, [127, 0, 0, 1], 50_001, 200),
                push(&d.feed, [9, 9, 9, 9], 50_002, 50),
            );
            tokio::time::sleep(Duration::from_millis(2200)).await;
            d.stop().await;
            sent
        }
    };
    let (fast, slow, stray) = run(0).await;
    let t = totals(&path);
    assert_eq!(bytes_of(&t, "User 7"), fast, "{t:?}");
    assert_eq!(bytes_of(&t, "APlexUser"), slow, "{t:?}");
    assert_eq!(bytes_of(&t, UNATTRIBUTED), stray, "{t:?}");
    // The same file after a restart: totals go on from there.
    let (fast2, _, _) = run(100).await;
    let t = totals(&path);
    assert_eq!(bytes_of(&t, "User 7"), fast + fast2, "{t:?}");
    assert_eq!(bytes_of(&t, "APlexUser"), 2 * slow, "{t:?}");
    // Play time counts while a stream plays: some seconds each run for user 7.
    let by_user = State::open_read_only(&path)
        .unwrap()
        .usage_totals(0, Some("user 7"), GroupBy::User)
        .unwrap();
    assert!(by_user[0].seconds >= 4, "{by_user:?}");
    assert_eq!(by_user[0].transcodes, 1, "{by_user:?}");
}
