//! Live capture on the loopback interface: a local server sends to a local client at a known,
//! paced rate while the test meters the packets; the measured rate must match.
//!
//! Needs CAP_NET_RAW. Without it the test is skipped with a printed reason, unless the `CI`
//! environment variable is set, in which case it fails.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use streamwarden::capture::{CaptureConfig, DecodeStats, Next, PacketSource, decode};
use streamwarden::meter::{FlowKey, Meter};

/// Payload bytes per second sent by the server.
const RATE: u64 = 2_000_000;
/// How long the server sends.
const SEND_FOR: Duration = Duration::from_millis(7_500);
/// Bytes per write.
const CHUNK: usize = 16 * 1024;

fn micros_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64
}

/// Sleeps until `offset` past the next whole wall-clock second, so the connection starts at the
/// beginning of a second and its first one-second bucket is (almost) full.
fn align_to_second(offset_micros: i64) {
    let now = micros_now();
    let target = (now.div_euclid(1_000_000) + 1) * 1_000_000 + offset_micros;
    thread::sleep(Duration::from_micros((target - now) as u64));
}

/// Writes `RATE` bytes per second for `SEND_FOR`, paced against a fixed schedule (the bytes
/// allowed by time t are `RATE * t`), and returns the bytes written.
fn paced_send(mut stream: TcpStream) -> u64 {
    let chunk = vec![0x42u8; CHUNK];
    let start = Instant::now();
    let mut sent: u64 = 0;
    loop {
        let elapsed = start.elapsed();
        if elapsed >= SEND_FOR {
            break;
        }
        let allowed = (RATE as f64 * elapsed.as_secs_f64()) as u64;
        if sent + CHUNK as u64 <= allowed {
            stream.write_all(&chunk).unwrap();
            sent += CHUNK as u64;
        } else {
            thread::sleep(Duration::from_micros(500));
        }
    }
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    sent
}

#[test]
fn loopback_rate_matches_the_paced_sender() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let config = CaptureConfig {
        interface: Some("lo".to_owned()),
        ports: vec![port],
        ..CaptureConfig::default()
    };
    if !crate::common::need::have(
        "the live capture test",
        &[crate::common::need::Need::NetRaw],
    ) {
        return;
    }
    let mut source = match PacketSource::open_live(&config) {
        Ok(s) => s,
        Err(e) => panic!("cannot open live capture on lo: {e}"),
    };
    let linktype = source.linktype();

    align_to_second(5_000);
    let server = thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        paced_send(stream)
    });
    let client = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let client_port = client.local_addr().unwrap().port();
    let reader = thread::spawn(move || {
        let mut client = client;
        let mut buf = vec![0u8; 64 * 1024];
        let mut total = 0u64;
        loop {
            match client.read(&mut buf).unwrap() {
                0 => break total,
                n => total += n as u64,
            }
        }
    });

    let mut meter = Meter::new();
    let mut stats = DecodeStats::default();
    let deadline = Instant::now() + SEND_FOR + Duration::from_secs(20);
    let mut quiet_since: Option<Instant> = None;
    loop {
        assert!(Instant::now() < deadline, "capture did not drain in time");
        match source.next_packet().unwrap() {
            Next::Packet(p) => {
                quiet_since = None;
                if let Ok(seg) = stats.count(decode(linktype, p.data)) {
                    meter.record(p.ts_micros, &seg);
                }
            }
            // both ends are done and nothing arrived for 300 ms: the capture is drained
            Next::Idle if server.is_finished() && reader.is_finished() => {
                let since = *quiet_since.get_or_insert_with(Instant::now);
                if since.elapsed() > Duration::from_millis(300) {
                    break;
                }
            }
            Next::Idle => {}
            Next::Eof => panic!("a live capture has no end"),
        }
    }
    let sent = server.join().unwrap();
    let received = reader.join().unwrap();
    assert_eq!(sent, received);
    let capture_stats = source.stats().expect("live stats");
    println!("sent {sent} bytes; {stats:?}; {capture_stats:?}");

    let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let down = meter
        .get(&FlowKey {
            src: lo,
            sport: port,
            dst: lo,
            dport: client_port,
        })
        .expect("server to client flow");
    assert!(down.syn && down.fin, "the whole connection was captured");
    if capture_stats.dropped == 0 {
        // every payload byte was seen, counted from the IP length fields (snaplen 256)
        assert_eq!(down.payload_bytes, sent);
    }

    // The steady window: at the 7th whole second after the connection's first second, the 10 s
    // window holds the 7 complete seconds the sender was busy in (it started 5 ms into the
    // first and ran 7.5 s). The meter counts IP bytes, so the sent payload rate is scaled by
    // the flow's own IP/payload ratio (IP and TCP headers, about 0.1 % on loopback's 64 KiB
    // segments) to give the IP-byte rate the meter must see.
    let first_sec = down.first_seen_micros.div_euclid(1_000_000);
    let now = (first_sec + 7) * 1_000_000;
    let rates = down.rates(now);
    let overhead = down.bytes as f64 / down.payload_bytes as f64;
    let expected_kbps = RATE as f64 * 8.0 / 1000.0 * overhead;
    let error = (rates.kbps_10s - expected_kbps).abs() / expected_kbps;
    println!(
        "measured {:.1} kbps (10 s window), expected {expected_kbps:.1} kbps, error {:.2} %",
        rates.kbps_10s,
        error * 100.0
    );
    assert!(
        error < 0.03,
        "measured {rates:?}, expected {expected_kbps} kbps"
    );
    // the 1 min window has the same 7 seconds of life
    assert_eq!(rates.kbps_1m, rates.kbps_10s);
}

/// Plex behind a VXLAN overlay (as Docker's overlay network carries it): capturing on the
/// underlay interface, the kernel filter lets the encapsulated packets through and the
/// decoder meters the inner connection (overlay addresses and Plex's port). Root only
/// (namespaces); skipped outside CI without it.
#[test]
fn plex_inside_vxlan_is_metered_from_the_underlay() {
    use crate::common::need::{Need, have};
    use std::os::fd::AsFd;
    use std::process::Command;
    if !have(
        "the VXLAN capture test",
        &[Need::Netns, Need::NetAdmin, Need::NetRaw],
    ) {
        return;
    }
    let ip = |args: &[&str]| {
        let s = Command::new("ip").args(args).status().unwrap();
        assert!(s.success(), "ip {args:?}");
    };
    let tag = std::process::id() % 10_000;
    let (a, b) = (format!("swvxa{tag}"), format!("swvxb{tag}"));
    struct Gone(Vec<String>);
    impl Drop for Gone {
        fn drop(&mut self) {
            for n in &self.0 {
                let _ = Command::new("ip").args(["netns", "del", n]).status();
            }
        }
    }
    let _gone = Gone(vec![a.clone(), b.clone()]);
    for n in [&a, &b] {
        let _ = Command::new("ip").args(["netns", "del", n]).status();
        ip(&["netns", "add", n]);
    }
    ip(&[
        "link", "add", "und0", "netns", &a, "type", "veth", "peer", "name", "und1", "netns", &b,
    ]);
    for (n, dev, under, remote, over) in [
        (&a, "und0", "10.91.0.1/24", "10.91.0.2", "172.30.0.1/24"),
        (&b, "und1", "10.91.0.2/24", "10.91.0.1", "172.30.0.2/24"),
    ] {
        ip(&["-n", n, "addr", "add", under, "dev", dev]);
        ip(&["-n", n, "link", "set", dev, "up"]);
        ip(&[
            "-n", n, "link", "add", "vx0", "type", "vxlan", "id", "42", "dstport", "4789",
            "remote", remote, "dev", dev,
        ]);
        ip(&["-n", n, "addr", "add", over, "dev", "vx0"]);
        ip(&["-n", n, "link", "set", "vx0", "up"]);
    }
    let enter = |n: &str| {
        let f = std::fs::File::open(format!("/run/netns/{n}")).unwrap();
        nix::sched::setns(f.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
    };
    // "Plex" in A on the overlay; the capture on A's underlay.
    let (a2, b2) = (a.clone(), b.clone());
    let metered = thread::spawn(move || {
        enter(&a2);
        let listener = TcpListener::bind("172.30.0.1:32400").unwrap();
        let config = CaptureConfig {
            interface: Some("und0".to_owned()),
            ports: vec![32400],
            ..CaptureConfig::default()
        };
        let mut source = PacketSource::open_live(&config).unwrap();
        let linktype = source.linktype();
        let client = thread::spawn(move || {
            enter(&b2);
            let mut c = TcpStream::connect("172.30.0.1:32400").unwrap();
            let mut buf = vec![0u8; 65536];
            let mut got = 0usize;
            while let Ok(n) = c.read(&mut buf) {
                if n == 0 {
                    break;
                }
                got += n;
            }
            got
        });
        let (mut conn, _) = listener.accept().unwrap();
        // Paced (20 MB/s), so a loaded machine's capture buffer keeps up.
        let sent = 2_000_000usize;
        for _ in 0..sent / 50_000 {
            conn.write_all(&[0x42u8; 50_000]).unwrap();
            thread::sleep(Duration::from_millis(2));
        }
        drop(conn);
        let received = client.join().unwrap();
        assert_eq!(received, sent);
        let mut meter = Meter::new();
        let mut stats = DecodeStats::default();
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            match source.next_packet() {
                Ok(Next::Packet(p)) => {
                    if let Ok(seg) = stats.count(decode(linktype, p.data)) {
                        meter.record(p.ts_micros, &seg);
                    }
                }
                Ok(_) => {}
                Err(e) => panic!("{e}"),
            }
        }
        let key = meter
            .flows()
            .find(|(k, _)| k.sport == 32400)
            .map(|(k, f)| (*k, f.packets, f.payload_bytes))
            .expect("the inner connection is metered");
        let dropped = source.stats().map_or(0, |s| s.dropped);
        (key, sent, dropped)
    });
    let ((key, packets, bytes), sent, dropped) = metered.join().unwrap();
    assert_eq!(key.src, IpAddr::V4(Ipv4Addr::new(172, 30, 0, 1)));
    assert_eq!(key.dst, IpAddr::V4(Ipv4Addr::new(172, 30, 0, 2)));
    assert!(packets > 0);
    // Every payload byte Plex sent, counted from the inner packets (unless the kernel
    // dropped captured packets, which it says).
    if dropped == 0 {
        assert_eq!(bytes as usize, sent, "payload bytes metered");
    } else {
        assert!(
            bytes as usize * 10 >= sent * 9,
            "{bytes} of {sent} ({dropped} dropped)"
        );
    }
}

/// The kernel takes the capture filter: in a namespace of its own (no other traffic), 400
/// datagrams to another port on lo are not even handed to libpcap (its count of packets
/// received stays near zero). When the kernel refuses a filter, libpcap filters in user space
/// and counts every packet of the interface.
#[test]
fn the_kernel_accepts_the_capture_filter_so_other_traffic_never_reaches_user_space() {
    use crate::common::need::{Need, have};
    use std::os::fd::AsFd;
    use std::process::Command;
    if !have(
        "the kernel-filter test",
        &[Need::Netns, Need::NetAdmin, Need::NetRaw],
    ) {
        return;
    }
    let name = format!("swkf{}", std::process::id() % 10_000);
    let _ = Command::new("ip").args(["netns", "del", &name]).status();
    assert!(
        Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .unwrap()
            .success()
    );
    let path = format!("/run/netns/{name}");
    let received = std::thread::spawn(move || {
        let ns = std::fs::File::open(&path).unwrap();
        nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        assert!(
            Command::new("ip")
                .args(["-n", &name_of(&path), "link", "set", "lo", "up"])
                .status()
                .unwrap()
                .success()
        );
        let config = CaptureConfig {
            interface: Some("lo".to_owned()),
            ports: vec![32400],
            ..CaptureConfig::default()
        };
        let mut source = PacketSource::open_live(&config).expect("capture on the namespace's lo");
        // The kernel runs the filter, and says so...
        let length = source.kernel_filter_length();
        assert!(length.is_some_and(|n| n > 0), "kernel filter length {length:?}");
        // ...and a filter it refuses is seen as refused (the filter of an earlier version:
        // libpcap's "pppoes" after "vlan" makes code the kernel's checker rejects), so
        // `set_filter` warns.
        let refused = "(tcp port 32400) or (vlan and tcp port 32400) or (vlan and vlan and tcp port 32400) or pppoes";
        source.set_filter(refused).expect("libpcap compiles it");
        assert_eq!(source.kernel_filter_length(), Some(0), "{refused}");
        source
            .set_filter(&streamwarden::capture::bpf_filter(&config.ports, false))
            .unwrap();
        assert!(source.kernel_filter_length().is_some_and(|n| n > 0));
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        for _ in 0..400 {
            udp.send_to(&[0u8; 64], "127.0.0.1:9999").unwrap();
        }
        std::thread::sleep(Duration::from_millis(300));
        source.stats().expect("live statistics").received
    })
    .join()
    .unwrap();
    let _ = std::process::Command::new("ip")
        .args([
            "netns",
            "del",
            &format!("swkf{}", std::process::id() % 10_000),
        ])
        .status();
    assert!(
        received < 20,
        "{received} packets reached libpcap: the kernel refused the filter"
    );
}

/// The namespace's name from its /run/netns path.
fn name_of(path: &str) -> String {
    path.rsplit('/').next().unwrap_or_default().to_string()
}
