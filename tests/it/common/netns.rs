//! Network namespaces made for a test, and paced TCP senders and counting receivers in
//! them: what the live throttle and usage tests run real traffic through.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// A network namespace, deleted on drop.
pub struct Netns(pub String);

impl Netns {
    pub fn new(name: String) -> Self {
        let _ = Command::new("ip").args(["netns", "del", &name]).status();
        ip(&["netns", "add", &name]);
        Netns(name)
    }

    /// Runs `f` on a thread inside this namespace (sockets it creates live there).
    pub fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> thread::JoinHandle<T> {
        let path = format!("/run/netns/{}", self.0);
        thread::spawn(move || {
            let file = std::fs::File::open(&path).unwrap();
            nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            f()
        })
    }

    /// `cmd` run inside the namespace.
    pub fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.0, program]);
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

pub fn ip(args: &[&str]) {
    let s = Command::new("ip")
        .args(args)
        .status()
        .expect("iproute2's ip");
    assert!(s.success(), "ip {args:?}");
}

/// Writes to every connection at the rate its client address is given, until `stop`.
pub fn serve(listener: TcpListener, rates: Vec<(std::net::IpAddr, u64)>, stop: Arc<AtomicBool>) {
    listener.set_nonblocking(true).unwrap();
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((conn, peer)) => {
                let bps = rates
                    .iter()
                    .find(|(ip, _)| *ip == peer.ip())
                    .map_or(1_000_000, |(_, r)| *r);
                let stop = stop.clone();
                thread::spawn(move || paced(conn, bps, stop));
            }
            Err(_) => thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Sends `bps` bits per second on a fixed schedule; when the network is slower, it just
/// falls behind.
pub fn paced(mut conn: TcpStream, bps: u64, stop: Arc<AtomicBool>) {
    conn.set_write_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let chunk = vec![0x5au8; 16 * 1024];
    let start = Instant::now();
    let mut sent: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        let allowed = (bps as f64 / 8.0 * start.elapsed().as_secs_f64()) as u64;
        if sent + chunk.len() as u64 <= allowed {
            match conn.write(&chunk) {
                Ok(n) => sent += n as u64,
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(_) => return,
            }
        } else {
            thread::sleep(Duration::from_millis(2));
        }
    }
}

/// Reads from `server` (bound to `local`) and counts the bytes received.
pub fn client(local: SocketAddr, server: SocketAddr, count: Arc<AtomicU64>, stop: Arc<AtomicBool>) {
    let socket = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Inet,
        nix::sys::socket::SockType::Stream,
        nix::sys::socket::SockFlag::empty(),
        None,
    )
    .unwrap();
    let SocketAddr::V4(local) = local else {
        unreachable!()
    };
    nix::sys::socket::bind(
        std::os::fd::AsRawFd::as_raw_fd(&socket),
        &nix::sys::socket::SockaddrIn::from(local),
    )
    .unwrap();
    let SocketAddr::V4(server) = server else {
        unreachable!()
    };
    nix::sys::socket::connect(
        std::os::fd::AsRawFd::as_raw_fd(&socket),
        &nix::sys::socket::SockaddrIn::from(server),
    )
    .unwrap();
    let mut conn = TcpStream::from(socket);
    conn.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    while !stop.load(Ordering::Relaxed) {
        match conn.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                count.fetch_add(n as u64, Ordering::Relaxed);
            }
            Err(_) => {}
        }
    }
}

/// Bits per second received over `secs`.
pub fn rate(count: &AtomicU64, secs: f64) -> f64 {
    let before = count.load(Ordering::Relaxed);
    let t = Instant::now();
    thread::sleep(Duration::from_secs_f64(secs));
    let after = count.load(Ordering::Relaxed);
    (after - before) as f64 * 8.0 / t.elapsed().as_secs_f64()
}
