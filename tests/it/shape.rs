//! The kernel side of throttles, `TcShaper`, on a veth pair in a network namespace made for
//! each test: what it puts on the interface, what it leaves behind (nothing), a crashed run's
//! leftover cleaned up, an owner's own root qdisc refused and untouched, and no privilege.
//!
//! Needs root. Outside CI the tests are skipped without; under `CI` they fail.

use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::process::Command;

use streamwarden::enforce::shape::tc::TcShaper;

use crate::common::need::{Need, have};
use streamwarden::enforce::shape::{Conn, ShapeError, Shaper};

/// A namespace holding one end of a veth pair (`dev`); deleted on drop.
struct Ns {
    name: String,
    dev: String,
}

impl Ns {
    fn new(tag: &str) -> Option<Self> {
        if !have("the traffic-control test", &[Need::Netns, Need::NetAdmin]) {
            return None;
        }
        let id = std::process::id() % 10_000;
        let name = format!("swsh{tag}{id}");
        let dev = format!("sw{tag}{id}");
        let _ = Command::new("ip").args(["netns", "del", &name]).status();
        run(&["ip", "netns", "add", &name]);
        run(&[
            "ip", "-n", &name, "link", "add", &dev, "type", "veth", "peer", "name", "peer0",
        ]);
        run(&["ip", "-n", &name, "link", "set", &dev, "up"]);
        Some(Ns { name, dev })
    }

    /// Runs `f` on a thread inside the namespace.
    fn within<T: Send + 'static>(&self, f: impl FnOnce(String) -> T + Send + 'static) -> T {
        let (path, dev) = (format!("/run/netns/{}", self.name), self.dev.clone());
        std::thread::spawn(move || {
            let file = std::fs::File::open(&path).unwrap();
            nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            f(dev)
        })
        .join()
        .unwrap()
    }

    fn tc(&self, args: &[&str]) -> String {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.name, "tc"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "tc {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn qdiscs(&self) -> String {
        self.tc(&["qdisc", "show", "dev", &self.dev])
    }

    fn filters(&self) -> usize {
        self.tc(&["filter", "show", "dev", &self.dev, "parent", "5357:"])
            .lines()
            .filter(|l| l.contains("flowid 5357:"))
            .count()
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

fn run(args: &[&str]) {
    let s = Command::new(args[0]).args(&args[1..]).status().unwrap();
    assert!(s.success(), "{args:?}");
}

fn conn(client: &str) -> Conn {
    Conn {
        server: "10.9.0.1:32400".parse().unwrap(),
        client: client.parse::<SocketAddr>().unwrap(),
    }
}

#[test]
fn throttles_come_and_go_and_the_interface_is_left_as_found() {
    let Some(ns) = Ns::new("a") else { return };
    let before = ns.qdiscs();
    let shaper = ns.within(|dev| TcShaper::open(&dev).unwrap());
    let (a, b) = (conn("10.9.0.2:40001"), conn("10.9.0.2:40002"));
    let v6 = Conn {
        server: "[fd00::1]:32400".parse().unwrap(),
        client: "[fd00::2]:40003".parse().unwrap(),
    };
    shaper.apply(1, 625_000, &[a]).unwrap();
    let on = ns.qdiscs();
    assert!(on.contains("qdisc htb 5357: root"), "{on}");
    assert!(on.contains("parent 5357:1"), "{on}");
    let classes = ns.tc(&["class", "show", "dev", &ns.dev]);
    assert!(
        classes.contains("class htb 5357:1 root") && classes.contains("rate 5Mbit ceil 5Mbit"),
        "{classes}"
    );
    assert_eq!(ns.filters(), 1);
    // A new connection of the stream, then one that went away; another throttle; IPv6.
    shaper.apply(1, 625_000, &[a, b]).unwrap();
    assert_eq!(ns.filters(), 2);
    shaper.apply(1, 625_000, &[b]).unwrap();
    assert_eq!(ns.filters(), 1);
    shaper.apply(2, 125_000, &[v6]).unwrap();
    assert_eq!(ns.filters(), 2);
    let classes = ns.tc(&["class", "show", "dev", &ns.dev]);
    assert!(
        classes.contains("class htb 5357:2 root") && classes.contains("rate 1Mbit"),
        "{classes}"
    );
    // A new rate for the first.
    shaper.apply(1, 250_000, &[b]).unwrap();
    let classes = ns.tc(&["class", "show", "dev", &ns.dev]);
    assert!(classes.contains("rate 2Mbit ceil 2Mbit"), "{classes}");
    // Lifting one keeps the other; lifting the last leaves the interface as found.
    shaper.release(1).unwrap();
    assert_eq!(ns.filters(), 1);
    assert!(ns.qdiscs().contains("htb 5357:"));
    shaper.release(2).unwrap();
    assert_eq!(ns.qdiscs(), before);
    // And at shutdown.
    shaper.apply(3, 625_000, &[a]).unwrap();
    shaper.release_all().unwrap();
    assert_eq!(ns.qdiscs(), before);
}

#[test]
fn a_crashed_runs_leftover_is_removed_at_the_next_start() {
    let Some(ns) = Ns::new("b") else { return };
    let before = ns.qdiscs();
    let shaper = ns.within(|dev| TcShaper::open(&dev).unwrap());
    shaper.apply(1, 625_000, &[conn("10.9.0.2:40001")]).unwrap();
    // A crash: nothing is lifted.
    std::mem::forget(shaper);
    assert!(ns.qdiscs().contains("htb 5357: root"));
    let again = ns.within(|dev| TcShaper::open(&dev).unwrap());
    assert_eq!(ns.qdiscs(), before, "the leftover is gone");
    drop(again);
    assert_eq!(ns.qdiscs(), before);
}

#[test]
fn an_owners_own_root_qdisc_is_refused_and_left_alone() {
    let Some(ns) = Ns::new("c") else { return };
    ns.tc(&[
        "qdisc", "add", "dev", &ns.dev, "root", "handle", "1:", "tbf", "rate", "100mbit", "burst",
        "64kb", "latency", "50ms",
    ]);
    let before = ns.qdiscs();
    let err = ns.within(|dev| TcShaper::open(&dev).unwrap_err());
    assert!(
        matches!(&err, ShapeError::ForeignRootQdisc { kind, handle, .. } if kind == "tbf" && handle == "1:"),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(text.contains("will not replace it"), "{text}");
    assert_eq!(ns.qdiscs(), before);
}

#[test]
fn without_cap_net_admin_it_says_what_to_grant() {
    let Some(ns) = Ns::new("d") else { return };
    let err = ns.within(|dev| {
        // Capabilities are per thread: this one gives CAP_NET_ADMIN up.
        caps::drop(
            None,
            caps::CapSet::Effective,
            caps::Capability::CAP_NET_ADMIN,
        )
        .unwrap();
        TcShaper::open(&dev).unwrap_err()
    });
    assert!(matches!(err, ShapeError::NotPermitted(_)), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("CAP_NET_ADMIN") && text.contains("--cap-add NET_ADMIN"),
        "{text}"
    );
    let err = TcShaper::open("no-such-if0").unwrap_err();
    assert!(matches!(err, ShapeError::NoInterface(_)), "{err:?}");
}

/// A start that cannot throttle (no throttle rule, a dry run, capture off) still lifts the
/// throttle root a killed run left on its interface, and leaves an owner's own root alone.
#[test]
fn any_run_start_lifts_a_crashed_runs_throttles_whatever_its_config() {
    let Some(ns) = Ns::new("e") else { return };
    let before = ns.qdiscs();
    let shaper = ns.within(|dev| TcShaper::open(&dev).unwrap());
    shaper.apply(1, 625_000, &[conn("10.9.0.2:40001")]).unwrap();
    // kill -9: nothing is lifted.
    std::mem::forget(shaper);
    assert!(ns.qdiscs().contains("htb 5357: root"));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("c.toml"),
        format!(
            "[plex]\nurl = \"http://127.0.0.1:1\"\ntoken = \"t\"\n[capture]\nenabled = false\ninterface = \"{}\"\n",
            ns.dev
        ),
    )
    .unwrap();
    let mut daemon = Command::new("ip")
        .args(["netns", "exec", &ns.name])
        .arg(crate::common::bin())
        .args(["run", "--config", "c.toml", "--dry-run"])
        .current_dir(dir.path())
        .env("STATE_DIRECTORY", dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while ns.qdiscs() != before && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let lifted = ns.qdiscs();
    let _ = daemon.kill();
    let out = daemon.wait_with_output().unwrap();
    assert_eq!(
        lifted,
        before,
        "the leftover root stays: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // An owner's own root is not ours to remove.
    ns.tc(&[
        "qdisc", "add", "dev", &ns.dev, "root", "handle", "1:", "tbf", "rate", "100mbit", "burst",
        "64kb", "latency", "50ms",
    ]);
    let owners = ns.qdiscs();
    let removed = ns.within(|dev| streamwarden::enforce::shape::remove_leftover(&dev).unwrap());
    assert!(!removed);
    assert_eq!(ns.qdiscs(), owners);
}
