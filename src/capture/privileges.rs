//! Dropping privileges once the capture is open: the capture needs CAP_NET_RAW only to
//! open, never to read.

use caps::CapSet;
use nix::unistd::{Uid, User, setgid, setgroups, setuid};

/// Switches to `user` when running as root (with its primary group and no supplementary
/// groups), then clears every capability set. Returns a description of what was done.
pub fn drop_privileges(user: Option<&str>) -> Result<String, String> {
    let mut done = Vec::new();
    if Uid::effective().is_root() {
        match user {
            Some(name) => {
                let u = User::from_name(name)
                    .map_err(|e| format!("cannot look up [capture] user {name:?}: {e}"))?
                    .ok_or_else(|| format!("[capture] user {name:?} does not exist"))?;
                setgroups(&[u.gid]).map_err(|e| format!("setgroups: {e}"))?;
                setgid(u.gid).map_err(|e| format!("setgid({}): {e}", u.gid))?;
                setuid(u.uid).map_err(|e| format!("setuid({}): {e}", u.uid))?;
                done.push(format!(
                    "switched to user {name} (uid {}, gid {})",
                    u.uid, u.gid
                ));
            }
            None => tracing::warn!(
                "running as root: set [capture] user to run as an unprivileged user once the capture is open"
            ),
        }
    }
    for set in [
        CapSet::Ambient,
        CapSet::Inheritable,
        CapSet::Effective,
        CapSet::Permitted,
    ] {
        // Ambient may be unsupported on old kernels: not fatal.
        if let Err(e) = caps::clear(None, set) {
            if matches!(set, CapSet::Ambient) {
                continue;
            }
            return Err(format!("cannot drop capabilities ({set:?}): {e}"));
        }
    }
    done.push("dropped every capability".to_string());
    Ok(done.join("; "))
}

/// Whether this process still holds a capability (for tests and diagnostics).
pub fn has_net_raw() -> bool {
    caps::has_cap(None, CapSet::Effective, caps::Capability::CAP_NET_RAW).unwrap_or(false)
}
