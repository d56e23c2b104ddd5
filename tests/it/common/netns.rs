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

/// "Plex" and two viewers for a live test: two namespaces joined by a veth pair, the server
/// at `NET.1` on `dev` (in `plex_ns`, where the daemon and the fake Plex run), the viewers at
/// `NET.2` and `NET.3` on the peer (in `client_ns`). Removed on drop.
pub struct Lab {
    pub plex_ns: Netns,
    pub client_ns: Netns,
    pub dev: String,
    net: String,
}

impl Lab {
    /// `letter` keeps the names of tests that run at once apart; `net` is a /24's first
    /// three numbers ("10.66.0").
    pub fn new(letter: char, net: &str) -> Self {
        let tag = std::process::id() % 100_000;
        let plex_ns = Netns::new(format!("sw{letter}p{tag}"));
        let client_ns = Netns::new(format!("sw{letter}c{tag}"));
        let (dev, peer) = (format!("sw{letter}p{tag}"), format!("sw{letter}c{tag}"));
        ip(&[
            "link",
            "add",
            &dev,
            "netns",
            &plex_ns.0,
            "type",
            "veth",
            "peer",
            "name",
            &peer,
            "netns",
            &client_ns.0,
        ]);
        ip(&[
            "-n",
            &plex_ns.0,
            "addr",
            "add",
            &format!("{net}.1/24"),
            "dev",
            &dev,
        ]);
        for host in [2, 3] {
            let a = format!("{net}.{host}/24");
            ip(&["-n", &client_ns.0, "addr", "add", &a, "dev", &peer]);
        }
        for (ns, d) in [(&plex_ns, &dev), (&client_ns, &peer)] {
            ip(&["-n", &ns.0, "link", "set", d, "up"]);
            ip(&["-n", &ns.0, "link", "set", "lo", "up"]);
        }
        Lab {
            plex_ns,
            client_ns,
            dev,
            net: net.to_string(),
        }
    }

    /// The fake Plex, in the server's namespace, listing mixed_sessions' ha_session_base
    /// viewer (user 7) at `NET.2` and homarr's (example_usr) at `NET.3`.
    pub fn fake_plex(&self) -> super::FakePlex {
        use super::StartFake;
        let sessions = super::mixed_sessions()
            .replace("1.2.3.11", &format!("{}.2", self.net))
            .replace(
                "address=\"0.0.0.0\"",
                &format!("address=\"{}.3\"", self.net),
            );
        self.plex_ns
            .run(move || super::FakePlex::start(&sessions))
            .join()
            .unwrap()
    }

    /// Sends `rates` (bits a second) to `NET.2` and `NET.3` from `NET.1:32400` until `stop`;
    /// returns once it listens.
    pub fn serve(&self, rates: [u64; 2], stop: Arc<AtomicBool>) -> thread::JoinHandle<()> {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let net = self.net.clone();
        let server = self.plex_ns.run(move || {
            let listener = TcpListener::bind(format!("{net}.1:32400")).unwrap();
            ready_tx.send(()).unwrap();
            let to = |h: u8| format!("{net}.{h}").parse().unwrap();
            serve(listener, vec![(to(2), rates[0]), (to(3), rates[1])], stop);
        });
        ready_rx.recv().unwrap();
        server
    }

    /// Both viewers reading until `stop`: the bytes each received, and their threads.
    pub fn viewers(
        &self,
        stop: &Arc<AtomicBool>,
    ) -> ([Arc<AtomicU64>; 2], Vec<thread::JoinHandle<()>>) {
        let counts = [Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0))];
        let server: SocketAddr = format!("{}.1:32400", self.net).parse().unwrap();
        let threads = [2, 3]
            .iter()
            .zip(&counts)
            .map(|(host, count)| {
                let local: SocketAddr = format!("{}.{host}:4000{}", self.net, host - 1)
                    .parse()
                    .unwrap();
                let (count, stop) = (count.clone(), stop.clone());
                self.client_ns
                    .run(move || client(local, server, count, stop))
            })
            .collect();
        (counts, threads)
    }

    /// `streamwarden run --config c.toml` in the server's namespace, from `dir` (its state
    /// there too), against `plex`.
    pub fn daemon(&self, dir: &std::path::Path, plex: &super::FakePlex) -> std::process::Child {
        self.plex_ns
            .cmd(super::bin().to_str().unwrap())
            .args(["run", "--config", "c.toml"])
            .current_dir(dir)
            .env_clear()
            .env("STATE_DIRECTORY", dir)
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("PLEX_URL", &plex.url)
            .env("PLEX_TOKEN", super::TOKEN)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    }
}

/// Stops a daemon with SIGTERM (killing it after 10 s); what it printed and its status.
pub fn stop(mut daemon: std::process::Child) -> std::process::Output {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while daemon.try_wait().unwrap().is_none() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(100));
    }
    let _ = daemon.kill();
    daemon.wait_with_output().unwrap()
}

/// The interface's transmitted IP bytes (its byte counter less 14 bytes of Ethernet header
/// per frame), read inside `ns`.
pub fn tx_ip_bytes(ns: &Netns, dev: &str) -> u64 {
    let read = |what: &str| -> u64 {
        let out = ns
            .cmd("cat")
            .arg(format!("/sys/class/net/{dev}/statistics/{what}"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    };
    read("tx_bytes") - 14 * read("tx_packets")
}
