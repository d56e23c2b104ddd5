//! `streamwarden demo`: the daemon against a simulated Plex server and simulated traffic.

use std::time::Duration;

use crate::Failure;
use crate::daemon::View;
use crate::demo::Demo;

use super::Done;

pub async fn run(duration: Duration, view: View) -> Result<Done, Failure> {
    let demo = Demo::start()?;
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
