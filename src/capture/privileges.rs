//! Dropping privileges once the capture is open: the capture needs CAP_NET_RAW only to
//! open, never to read. A daemon with `throttle` rules keeps CAP_NET_ADMIN (and nothing
//! else): traffic control is changed while it runs.

use caps::{CapSet, Capability, CapsHashSet};
use nix::unistd::{Uid, User, setgid, setgroups, setuid};

/// What to keep of the process's capabilities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Keep {
    /// Nothing at all.
    #[default]
    Nothing,
    /// CAP_NET_ADMIN, for throttles (Linux traffic control).
    NetAdmin,
}

/// Switches to `user` when running as root (with its primary group and no supplementary
/// groups), then clears every capability set but what `keep` names (kept permitted and
/// effective; never inheritable or ambient, so no child gets it). Returns a description of
/// what was done.
pub fn drop_privileges(user: Option<&str>, keep: Keep) -> Result<String, String> {
    let kept: CapsHashSet = match keep {
        Keep::Nothing => CapsHashSet::new(),
        Keep::NetAdmin => [Capability::CAP_NET_ADMIN].into_iter().collect(),
    };
    if !kept.is_empty() {
        let permitted = caps::read(None, CapSet::Permitted)
            .map_err(|e| format!("cannot read capabilities: {e}"))?;
        if let Some(missing) = kept.iter().find(|c| !permitted.contains(c)) {
            return Err(format!(
                "{missing} is needed to throttle (a rule has action = \"throttle\"), but this process does not have it: run as root, add it to the service (AmbientCapabilities=CAP_NET_RAW CAP_NET_ADMIN and the same in CapabilityBoundingSet), to the container (--cap-add NET_ADMIN), or to the binary (setcap cap_net_raw,cap_net_admin=eip)"
            ));
        }
    }
    let mut done = Vec::new();
    if Uid::effective().is_root() {
        match user {
            Some(name) => {
                let u = User::from_name(name)
                    .map_err(|e| format!("cannot look up [capture] user {name:?}: {e}"))?
                    .ok_or_else(|| format!("[capture] user {name:?} does not exist"))?;
                if !kept.is_empty() {
                    // Without it, switching away from root clears the permitted set.
                    nix::sys::prctl::set_keepcaps(true)
                        .map_err(|e| format!("prctl(PR_SET_KEEPCAPS): {e}"))?;
                }
                setgroups(&[u.gid]).map_err(|e| format!("setgroups: {e}"))?;
                setgid(u.gid).map_err(|e| format!("setgid({}): {e}", u.gid))?;
                setuid(u.uid).map_err(|e| format!("setuid({}): {e}", u.uid))?;
                if !kept.is_empty() {
                    let _ = nix::sys::prctl::set_keepcaps(false);
                }
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
    for set in [CapSet::Ambient, CapSet::Inheritable] {
        // Ambient may be unsupported on old kernels: not fatal.
        if let Err(e) = caps::clear(None, set) {
            if matches!(set, CapSet::Ambient) {
                continue;
            }
            return Err(format!("cannot drop capabilities ({set:?}): {e}"));
        }
    }
    // Effective before permitted: effective must stay within permitted.
    for set in [CapSet::Effective, CapSet::Permitted] {
        caps::set(None, set, &kept)
            .map_err(|e| format!("cannot drop capabilities ({set:?}): {e}"))?;
    }
    if kept.is_empty() {
        done.push("dropped every capability".to_string());
    } else {
        done.push("dropped every capability but CAP_NET_ADMIN (for throttles)".to_string());
    }
    Ok(done.join("; "))
}

/// Makes CAP_NET_RAW and CAP_NET_ADMIN effective when this process holds them only as
/// permitted: a binary given them with `setcap cap_net_raw,cap_net_admin=p` (as in the
/// container image) starts with them permitted but not in force, so that it can also start
/// where they are not granted at all (a file with `=ep` caps would not start there). Returns
/// the capabilities raised.
pub fn raise_permitted() -> Vec<Capability> {
    let (Ok(permitted), Ok(mut effective)) = (
        caps::read(None, CapSet::Permitted),
        caps::read(None, CapSet::Effective),
    ) else {
        return Vec::new();
    };
    let raise: Vec<Capability> = [Capability::CAP_NET_RAW, Capability::CAP_NET_ADMIN]
        .into_iter()
        .filter(|c| permitted.contains(c) && !effective.contains(c))
        .collect();
    if raise.is_empty() {
        return raise;
    }
    effective.extend(raise.iter().copied());
    match caps::set(None, CapSet::Effective, &effective) {
        Ok(()) => raise,
        Err(e) => {
            tracing::warn!("cannot make the permitted capabilities effective: {e}");
            Vec::new()
        }
    }
}

/// Whether this process still holds a capability (for tests and diagnostics).
pub fn has_net_raw() -> bool {
    caps::has_cap(None, CapSet::Effective, Capability::CAP_NET_RAW).unwrap_or(false)
}

/// Whether this process may change traffic control now (CAP_NET_ADMIN effective).
pub fn has_net_admin() -> bool {
    caps::has_cap(None, CapSet::Effective, Capability::CAP_NET_ADMIN).unwrap_or(false)
}
