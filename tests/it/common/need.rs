//! What a privileged test needs, checked exactly: a capability in the effective set, the
//! ability to make a network namespace (tried for real), a program on PATH. Outside CI a test
//! that lacks something skips with one line saying what; under `CI` it fails instead, so CI
//! (which runs as root) never skips one silently.

use std::process::{Command, Stdio};
use std::sync::OnceLock;

use caps::{CapSet, Capability};

#[derive(Clone, Copy, Debug)]
pub enum Need {
    /// CAP_NET_RAW: open a live capture.
    NetRaw,
    /// CAP_NET_ADMIN: veth pairs, addresses, traffic control.
    NetAdmin,
    /// `ip netns add` works here (CAP_SYS_ADMIN, a writable /run/netns, iproute2).
    Netns,
    /// CAP_SETUID and CAP_SETGID: start a process as another user.
    SwitchUser,
    /// CAP_SYS_CHROOT: enter a chroot.
    Chroot,
    /// CAP_SYS_ADMIN: mount a filesystem (a small tmpfs to fill).
    Mount,
    /// A program on PATH.
    Tool(&'static str),
}

impl Need {
    /// Whether this need is met, without saying anything.
    pub fn met(self) -> bool {
        self.lack().is_none()
    }

    /// What is missing, or None when this need is met.
    fn lack(self) -> Option<String> {
        let cap = |c: Capability, name: &str| {
            let have = caps::has_cap(None, CapSet::Effective, c).unwrap_or(false);
            (!have).then(|| name.to_string())
        };
        match self {
            Need::NetRaw => cap(Capability::CAP_NET_RAW, "CAP_NET_RAW"),
            Need::NetAdmin => cap(Capability::CAP_NET_ADMIN, "CAP_NET_ADMIN"),
            Need::SwitchUser => cap(Capability::CAP_SETUID, "CAP_SETUID")
                .or_else(|| cap(Capability::CAP_SETGID, "CAP_SETGID")),
            Need::Chroot => cap(Capability::CAP_SYS_CHROOT, "CAP_SYS_CHROOT"),
            Need::Mount => cap(Capability::CAP_SYS_ADMIN, "CAP_SYS_ADMIN")
                .or_else(|| (!on_path("mount")).then(|| "the program mount".to_string())),
            Need::Netns => netns_probe().clone(),
            Need::Tool(program) => (!on_path(program)).then(|| format!("the program {program}")),
        }
    }
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| {
            let p = dir.join(program);
            p.is_file()
                && std::fs::metadata(&p)
                    .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0)
                    .unwrap_or(false)
        })
    })
}

/// Makes and deletes a throwaway namespace once per test process.
fn netns_probe() -> &'static Option<String> {
    static PROBE: OnceLock<Option<String>> = OnceLock::new();
    PROBE.get_or_init(|| {
        if !on_path("ip") {
            return Some("the program ip (iproute2)".into());
        }
        let name = format!("swprobe{}", std::process::id());
        let made = Command::new("ip")
            .args(["netns", "add", &name])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output();
        match made {
            Ok(o) if o.status.success() => {
                let _ = Command::new("ip").args(["netns", "del", &name]).status();
                None
            }
            Ok(o) => Some(format!(
                "network namespaces (ip netns add: {})",
                String::from_utf8_lossy(&o.stderr).trim()
            )),
            Err(e) => Some(format!("network namespaces (ip: {e})")),
        }
    })
}

/// True when every need is met. Otherwise: under `CI`, fails the test naming what is missing;
/// elsewhere prints one line (`skipping WHAT: lacks A, B`) and returns false.
pub fn have(what: &str, needs: &[Need]) -> bool {
    let lacks: Vec<String> = needs.iter().filter_map(|n| n.lack()).collect();
    if lacks.is_empty() {
        return true;
    }
    let lacks = lacks.join(", ");
    assert!(
        std::env::var_os("CI").is_none(),
        "CI must run {what}, but this process lacks {lacks}"
    );
    println!("skipping {what}: lacks {lacks}");
    false
}
