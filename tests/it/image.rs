//! The container image, checked as a container engine would run it. scripts/build-image
//! builds it from the static binary with buildah; podman cannot start containers on these
//! machines, so the test exports the image's filesystem (`podman create` + `podman export`)
//! and enters it the way a runtime does: its own root (chroot, /proc mounted), the image's
//! user, environment, working folder, entrypoint and command, and a bounding set of only the
//! capabilities granted (`--cap-add NET_RAW --cap-add NET_ADMIN`, or none), in a network
//! namespace where "Plex" streams to two viewers across a veth pair.
//!
//! Needs root, podman and buildah, and STREAMWARDEN_STATIC (.ci/run sets it). Outside CI it
//! is skipped without them; under `CI` it fails.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use caps::{CapSet, Capability};
use serde_json::Value;

use crate::common::need::{Need, have};
use crate::common::netns::{Lab, Netns, stop, tx_ip_bytes};
use crate::common::*;

/// What a runtime reads from the image's config to start it.
struct Image {
    root: tempfile::TempDir,
    user: (u32, u32),
    env: Vec<(String, String)>,
    workdir: String,
    argv: Vec<String>,
}

fn sh(program: &str, args: &[&str]) -> String {
    let o = Command::new(program).args(args).output().unwrap();
    assert!(
        o.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// Builds the image from `binary` and unpacks its filesystem, keeping file capabilities.
fn build_and_export(binary: &Path) -> (String, Value, Image) {
    let repo = env!("CARGO_MANIFEST_DIR");
    let out = Command::new(format!("{repo}/scripts/build-image"))
        .args(["--binary", binary.to_str().unwrap()])
        .current_dir(repo)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "build-image: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let name = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap()
        .to_string();
    let inspect: Value = serde_json::from_str(&sh("podman", &["image", "inspect", &name])).unwrap();
    let config = inspect[0].clone();
    let id = sh("podman", &["create", &name]);
    let dir = tempfile::tempdir().unwrap();
    let tar = dir.path().join("fs.tar");
    sh("podman", &["export", "-o", tar.to_str().unwrap(), &id]);
    sh("podman", &["rm", &id]);
    let root = tempfile::tempdir().unwrap();
    sh(
        "tar",
        &[
            "--xattrs",
            "--xattrs-include=security.capability",
            "--numeric-owner",
            "-xpf",
            tar.to_str().unwrap(),
            "-C",
            root.path().to_str().unwrap(),
        ],
    );
    let c = &config["Config"];
    let user = c["User"].as_str().unwrap_or("0");
    let (uid, gid) = user.split_once(':').unwrap_or((user, user));
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let env = strings(&c["Env"])
        .iter()
        .filter_map(|e| e.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let mut argv = strings(&c["Entrypoint"]);
    argv.extend(strings(&c["Cmd"]));
    let image = Image {
        root,
        user: (uid.parse().unwrap(), gid.parse().unwrap()),
        env,
        workdir: c["WorkingDir"].as_str().unwrap_or("/").to_string(),
        argv,
    };
    (name, config, image)
}

/// /proc mounted in the image's root, as a runtime does; unmounted on drop.
struct Proc(PathBuf);

impl Proc {
    fn mount(root: &Path) -> Self {
        let at = root.join("proc");
        std::fs::create_dir_all(&at).unwrap();
        sh("mount", &["-t", "proc", "proc", at.to_str().unwrap()]);
        Proc(at)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

impl Image {
    /// The image's process with `args` instead of its command (none: its own), started in
    /// `ns` as a runtime would with only `granted` in its bounding set.
    fn start(
        &self,
        ns: &Netns,
        args: Option<&[&str]>,
        granted: &'static [Capability],
        extra_env: &[(&str, &str)],
    ) -> Child {
        let mut argv = self.argv.clone();
        if let Some(a) = args {
            argv.truncate(1);
            argv.extend(a.iter().map(|s| s.to_string()));
        }
        let root = self.root.path().to_path_buf();
        let (uid, gid) = self.user;
        let workdir = self.workdir.clone();
        let mut env = self.env.clone();
        env.extend(
            extra_env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        ns.run(move || {
            let mut cmd = Command::new(&argv[0]);
            cmd.args(&argv[1..])
                .env_clear()
                .envs(env)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            // SAFETY: only system calls between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    nix::unistd::chroot(&root)?;
                    nix::unistd::chdir(workdir.as_str())?;
                    for c in caps::all() {
                        if !granted.contains(&c) {
                            caps::drop(None, CapSet::Bounding, c).map_err(std::io::Error::other)?;
                        }
                    }
                    let gid = nix::unistd::Gid::from_raw(gid);
                    nix::unistd::setgroups(&[gid])?;
                    nix::unistd::setgid(gid)?;
                    // Root's capabilities go with the switch: what the process holds after
                    // exec is what its file grants, within the bounding set.
                    nix::unistd::setuid(nix::unistd::Uid::from_raw(uid))?;
                    Ok(())
                });
            }
            cmd.spawn().unwrap()
        })
        .join()
        .unwrap()
    }

    fn run(&self, ns: &Netns, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
        self.start(ns, Some(args), &[], env)
            .wait_with_output()
            .unwrap()
    }
}

#[test]
fn the_image_runs_unprivileged_captures_meters_and_kills_and_needs_no_capability_without_capture() {
    let Some(binary) = static_binary() else {
        return;
    };
    if !have(
        "the container image test",
        &[
            Need::Netns,
            Need::NetAdmin,
            Need::NetRaw,
            Need::Chroot,
            Need::SwitchUser,
            Need::Mount,
            Need::Tool("podman"),
            Need::Tool("buildah"),
        ],
    ) {
        return;
    }
    let (name, config, image) = build_and_export(&binary);

    // The image: under 30 MB, an unprivileged user, the binary with its capabilities
    // permitted (not forced), and nothing but the files it needs.
    let size = config["Size"].as_u64().unwrap();
    assert!(size < 30 * 1024 * 1024, "{name}: {size} bytes");
    assert_ne!(image.user.0, 0, "the image runs as root");
    let exe = image
        .root
        .path()
        .join(image.argv[0].trim_start_matches('/'));
    assert_eq!(
        sh("getcap", &[exe.to_str().unwrap()]),
        format!("{} cap_net_admin,cap_net_raw=p", exe.display())
    );
    let mut files: Vec<String> = sh("find", &[image.root.path().to_str().unwrap(), "-type", "f"])
        .lines()
        .map(|f| {
            f.trim_start_matches(image.root.path().to_str().unwrap())
                .to_string()
        })
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "/etc/group",
            "/etc/passwd",
            "/etc/streamwarden/config.toml",
            "/usr/local/bin/streamwarden"
        ],
        "the image's files"
    );
    let passwd = std::fs::read_to_string(image.root.path().join("etc/passwd")).unwrap();
    assert!(
        passwd.contains(&format!(":{}:{}:", image.user.0, image.user.1)),
        "{passwd}"
    );
    let state_dir = image.root.path().join("var/lib/streamwarden");
    assert_eq!(
        std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&state_dir).unwrap()),
        image.user.0,
        "the state folder belongs to the image's user"
    );
    let labels = &config["Config"]["Labels"];
    assert_eq!(labels["io.containers.capabilities"], "NET_RAW,NET_ADMIN");

    // bob (user 7) at 10.69.0.2 gets 20 Mbit/s, carol (example_usr) at 10.69.0.3 10 Mbit/s.
    let lab = Lab::new('i', "10.69.0");
    let plex = lab.fake_plex();
    let _proc = Proc::mount(image.root.path());
    let config_path = image.root.path().join("etc/streamwarden/config.toml");
    std::fs::write(
        &config_path,
        format!(
            "[plex]\npoll_interval = \"1s\"\n[capture]\ninterface = \"{}\"\n[enforce]\ndry_run = false\n\n[[rules]]\nname = \"heavy\"\nwhen = 'measured_kbps_10s > 15000'\nsustain = \"3s\"\nmessage = \"{{user}}: {{measured_kbps_10s_mbps}} Mbps\"\n",
            lab.dev
        ),
    )
    .unwrap();
    let plex_env = [("PLEX_URL", plex.url.as_str()), ("PLEX_TOKEN", TOKEN)];
    const GRANTED: &[Capability] = &[Capability::CAP_NET_RAW, Capability::CAP_NET_ADMIN];
    let daemon = image.start(&lab.plex_ns, None, GRANTED, &plex_env);
    thread::sleep(Duration::from_secs(2));
    let tx_before = tx_ip_bytes(&lab.plex_ns, &lab.dev);
    let halt = Arc::new(AtomicBool::new(false));
    let server = lab.serve([20_000_000, 10_000_000], halt.clone());
    let (_counts, clients) = lab.viewers(&halt);
    let started = Instant::now();
    while plex.terminates().is_empty() && started.elapsed() < Duration::from_secs(25) {
        thread::sleep(Duration::from_millis(200));
    }
    let killed_after = started.elapsed();
    thread::sleep(Duration::from_secs(5));
    halt.store(true, Ordering::Relaxed);
    for c in clients {
        let _ = c.join();
    }
    let _ = server.join();
    thread::sleep(Duration::from_millis(500));
    let sent = tx_ip_bytes(&lab.plex_ns, &lab.dev) - tx_before;
    let out = stop(daemon);
    let log = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(0), "{log}");
    // It took the capabilities it was granted, opened the capture and dropped them; the
    // kernel took the static build's filter (libpcap's own, linked in).
    assert!(log.contains("capture open"), "{log}");
    assert!(!log.contains("refused the capture filter"), "{log}");
    assert!(!log.contains("Kernel filter failed"), "{log}");
    // bob was killed through Plex, carol never.
    let killed: Vec<String> = plex.terminates().into_iter().map(|(id, _)| id).collect();
    assert_eq!(killed, ["session_id_1"], "after {killed_after:?}\n{log}");
    // What it metered is what the kernel sent, as with the dynamic build.
    let o = image.run(
        &lab.plex_ns,
        &[
            "usage",
            "--json",
            "--config",
            "/etc/streamwarden/config.toml",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let rows: Vec<Value> = serde_json::from_slice(&o.stdout).unwrap();
    let all: i64 = rows.iter().filter_map(|r| r["bytes"].as_i64()).sum();
    eprintln!(
        "kernel sent {sent} IP bytes; the image's usage has {all}; bob killed after {killed_after:?}"
    );
    let ratio = all as f64 / sent as f64;
    assert!(
        (0.99..=1.01).contains(&ratio),
        "usage {all} vs kernel {sent}\n{log}"
    );

    // With capture off it runs with no capability at all.
    std::fs::write(
        &config_path,
        "[plex]\npoll_interval = \"1s\"\n[capture]\nenabled = false\n",
    )
    .unwrap();
    let daemon = image.start(&lab.plex_ns, None, &[], &plex_env);
    thread::sleep(Duration::from_secs(3));
    let out = stop(daemon);
    let log = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(0), "{log}");
    assert!(log.contains("capture off"), "{log}");
    // With capture on and no capability granted, it says what to add.
    std::fs::write(
        &config_path,
        format!("[capture]\ninterface = \"{}\"\n", lab.dev),
    )
    .unwrap();
    let o = image.run(
        &lab.plex_ns,
        &["run", "--config", "/etc/streamwarden/config.toml"],
        &plex_env,
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--cap-add NET_RAW"), "{}", stderr(&o));
}
