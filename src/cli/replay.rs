//! `streamwarden replay FILE`: the measurement engine over a capture file. Never kills.

use std::path::{Path, PathBuf};

use clap::Args;

use crate::Failure;
use crate::capture::PacketSource;
use crate::engine::open;
use crate::engine::replay::{self, Options};

use super::Done;

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// A capture file (pcap or pcapng).
    pub file: PathBuf,
    /// The sessions to attribute traffic to: a saved /status/sessions response.
    #[arg(long, value_name = "FILE.xml")]
    pub sessions: Option<PathBuf>,
    /// Saved /library/metadata/{ratingKey} responses (files or folders of .xml), for the
    /// rules that read source_bitrate or source_resolution. Repeatable.
    #[arg(long, value_name = "PATH", requires = "sessions")]
    pub metadata: Vec<PathBuf>,
    /// Ignore the port filter and meter every TCP connection.
    #[arg(long)]
    pub all_tcp: bool,
    /// Include per-connection totals.
    #[arg(long)]
    pub flows: bool,
    /// One JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: ReplayArgs, config: Option<&Path>) -> Result<Done, Failure> {
    let config = open::load(config)?;
    let rules = open::compile(&config)?;
    let mut sessions = match &args.sessions {
        None => Vec::new(),
        Some(p) => replay::load_sessions(p)?,
    };
    replay::fill_sources(&mut sessions, &args.metadata)?;
    // No BPF filter on a file: the meter checks ports after decoding, which also sees
    // inside VLAN tags that a plain "tcp and port N" filter would miss.
    let source =
        PacketSource::open_file(&args.file, None).map_err(|e| Failure::Usage(e.to_string()))?;
    let opts = Options {
        sessions,
        ports: config.capture.ports.clone(),
        all_tcp: args.all_tcp,
        enforce: config.enforce.clone(),
    };
    let report = replay::replay(source, &rules, opts)
        .await
        .map_err(|e| Failure::Usage(e.to_string()))?;
    if args.json {
        println!("{}", report.json(args.flows));
    } else {
        print!("{}", report.text(args.flows));
    }
    Ok(Done::Ok)
}
