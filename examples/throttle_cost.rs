//! Holds a throttle on an interface while a benchmark runs (scripts/bench-throttle.sh): the
//! HTB root, one class, and N u32 filters for connections that carry nothing, so that the
//! traffic measured passes through the classifier (every filter is tried) and the direct
//! queue, as everyone else's traffic does while a stream is throttled.
//!
//!   throttle_cost INTERFACE FILTERS
//!
//! It prints "ready" once the throttle is on, and lifts it when stdin closes.

use std::io::BufRead;
use std::net::{Ipv4Addr, SocketAddr};

use streamwarden::enforce::shape::tc::TcShaper;
use streamwarden::enforce::shape::{Conn, Shaper};

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(interface), Some(n)) = (args.next(), args.next()) else {
        eprintln!("usage: throttle_cost INTERFACE FILTERS");
        std::process::exit(2);
    };
    let n: u16 = n.parse().unwrap_or(1);
    let shaper = match TcShaper::open(&interface) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    };
    let conns: Vec<Conn> = (0..n)
        .map(|i| Conn {
            server: SocketAddr::from((Ipv4Addr::new(192, 0, 2, 1), 32400)),
            client: SocketAddr::from((Ipv4Addr::new(198, 51, 100, 7), 40_000 + i)),
        })
        .collect();
    if let Err(e) = shaper.apply(1, 625_000, &conns) {
        eprintln!("{e}");
        std::process::exit(1);
    }
    println!("ready");
    for _ in std::io::stdin().lock().lines() {}
    if let Err(e) = shaper.release_all() {
        eprintln!("{e}");
        std::process::exit(1);
    }
}
