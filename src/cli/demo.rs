//! `streamwarden demo`: the daemon against a simulated Plex server and simulated traffic.

use std::net::SocketAddr;
use std::time::Duration;

use crate::Failure;
use crate::config::Secret;
use crate::config::http::TOKEN_ENV;
use crate::daemon::View;
use crate::demo::Demo;

use super::Done;

pub async fn run(
    duration: Duration,
    listen: Option<SocketAddr>,
    view: View,
) -> Result<Done, Failure> {
    let mut demo = Demo::start()?;
    if let Some(addr) = listen {
        let token = std::env::var(TOKEN_ENV)
            .ok()
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .map(Secret::new);
        demo.listen(addr, token)?;
    }
    println!("{}", demo.intro(duration));
    let report = demo.run(duration, view).await?;
    println!("\ndemo over: {} stream(s) stopped", report.stopped.len());
    for (user, id, message) in &report.stopped {
        println!("  {user} ({id}): \"{message}\"");
    }
    for (user, reason) in &report.failures {
        println!("  could not stop {user}: {reason}");
    }
    println!(
        "Try your own rules: streamwarden check --config rules.example.toml, then streamwarden run --dry-run."
    );
    Ok(Done::Ok)
}
