//! `streamwarden sessions`: the server's current streams, with what a running daemon
//! measured for each.

use std::path::Path;

use crate::Failure;
use crate::engine::open;
use crate::hook::listing;

use super::Done;

pub async fn run(config: Option<&Path>, as_json: bool) -> Result<Done, Failure> {
    let config = open::load(config)?;
    let listing = listing::list(&config).await?;
    if as_json {
        let text = serde_json::to_string_pretty(&listing.json())
            .map_err(|e| Failure::Failed(e.to_string()))?;
        println!("{text}");
    } else {
        print!("{}", listing.table());
    }
    Ok(Done::Ok)
}
