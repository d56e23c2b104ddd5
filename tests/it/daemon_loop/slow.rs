//! Clients that hold connections: 130 requests whose bodies trickle in a byte every 2 s must
//! not keep `/metrics` from answering (they are evictable until their body is in, and cut off
//! after the body's deadline).

use super::*;

use tokio::io::AsyncWriteExt;

const SECRET: &str = "slow-SECRET-0c2";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickled_bodies_cannot_starve_a_scrape() {
    let opts = Options {
        http: true,
        http_token: Some(SECRET.into()),
        ..Default::default()
    };
    let d = start(FakePlex::start(&mixed_sessions()), "", opts).await;
    let addr = d.http.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let mut slow = Vec::new();
    for _ in 0..130 {
        let stop = stop.clone();
        slow.push(tokio::spawn(async move {
            let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
                return;
            };
            let head = format!(
                "POST /api/tautulli HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {SECRET}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{"
            );
            if s.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_secs(2)).await;
                if s.write_all(b" ").await.is_err() {
                    return;
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let mut answered = 0;
    for _ in 0..10 {
        let r = client
            .get(format!("http://{addr}/metrics"))
            .bearer_auth(SECRET)
            .send()
            .await;
        if r.is_ok_and(|r| r.status() == 200) {
            answered += 1;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for t in slow {
        t.abort();
    }
    d.stop().await;
    assert_eq!(answered, 10, "probes answered while bodies trickle");
}
