//! What contrib/ gives owners to run the image with (the compose file, its env file, the
//! Unraid template, the Synology note) read as Compose, Unraid and an owner would, and checked
//! against the image as contrib/docker/Containerfile builds it: its name, its command's config
//! path, its state folder, the capabilities it may use, the variables the program reads.

use std::collections::BTreeSet;

use serde::Deserialize;
use yaml_rust2::{Yaml, YamlLoader};

use crate::common::*;

const REPO: &str = env!("CARGO_MANIFEST_DIR");

fn read(path: &str) -> String {
    std::fs::read_to_string(format!("{REPO}/{path}")).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// What the Containerfile says the image is.
struct ImageSpec {
    name: String,
    config: String,
    state: String,
    capabilities: BTreeSet<String>,
}

fn image_spec() -> ImageSpec {
    let text = read("contrib/docker/Containerfile");
    // Instructions, with continued lines joined.
    let joined = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
        .replace("\\\n", " ");
    let instruction = |name: &str| -> String {
        joined
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} in the Containerfile"))
            .trim()
            .to_string()
    };
    let cmd: Vec<String> = serde_json::from_str(&instruction("CMD")).unwrap();
    let config = cmd
        .iter()
        .skip_while(|a| *a != "--config")
        .nth(1)
        .expect("the image's command names its config")
        .clone();
    let state = instruction("ENV")
        .strip_prefix("STATE_DIRECTORY=")
        .expect("ENV STATE_DIRECTORY=")
        .to_string();
    let volume: Vec<String> = serde_json::from_str(&instruction("VOLUME")).unwrap();
    assert_eq!(
        volume,
        std::slice::from_ref(&state),
        "the VOLUME is the state folder"
    );
    let label = instruction("LABEL");
    let caps = label
        .split("io.containers.capabilities=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("the image names the capabilities it may use");
    ImageSpec {
        // What scripts/build-image names it.
        name: format!("localhost/streamwarden:{}", env!("CARGO_PKG_VERSION")),
        config,
        state,
        capabilities: caps.split(',').map(String::from).collect(),
    }
}

/// The environment variables the program reads.
const READ_ENV: [&str; 3] = ["PLEX_URL", "PLEX_TOKEN", "STREAMWARDEN_HTTP_TOKEN"];

#[test]
fn the_compose_file_runs_the_image_as_it_is_built() {
    let image = image_spec();
    let docs = YamlLoader::load_from_str(&read("contrib/docker/compose.yaml")).unwrap();
    let s = &docs[0]["services"]["streamwarden"];
    assert_eq!(s["image"].as_str(), Some(image.name.as_str()));
    assert_eq!(s["network_mode"].as_str(), Some("host"), "host networking");
    let list = |y: &Yaml| -> BTreeSet<String> {
        y.as_vec()
            .map(|v| {
                v.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(list(&s["cap_drop"]), BTreeSet::from(["ALL".to_string()]));
    let added = list(&s["cap_add"]);
    assert!(added.contains("NET_RAW"), "{added:?}");
    assert!(
        added.is_subset(&image.capabilities),
        "compose grants {added:?}, the image uses {:?}",
        image.capabilities
    );
    // no-new-privileges would keep the binary from taking NET_RAW through its file caps.
    assert!(
        !list(&s["security_opt"])
            .iter()
            .any(|o| o.contains("no-new-privileges")),
        "no-new-privileges is set"
    );
    assert!(s["privileged"].as_bool() != Some(true));
    // Its own user (or none given): never root.
    if let Some(u) = s["user"].as_str() {
        assert!(!u.starts_with('0') && !u.starts_with("root"), "user {u}");
    }
    let targets: Vec<(String, String)> = s["volumes"]
        .as_vec()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .map(|v| {
            let mut parts = v.split(':');
            (
                parts.next().unwrap().to_string(),
                parts.next().unwrap().to_string(),
            )
        })
        .collect();
    let target = |t: &str| targets.iter().find(|(_, target)| target == t);
    assert!(
        target(&image.config).is_some(),
        "the config at {}",
        image.config
    );
    let (volume, _) = target(&image.state).expect("the state folder is a volume");
    assert!(
        !docs[0]["volumes"][volume.as_str()].is_badvalue(),
        "the named volume {volume} is not declared"
    );
    // The env file it names exists as an example, setting only what the program reads.
    for file in list(&s["env_file"]) {
        let example = read(&format!("contrib/docker/{file}.example"));
        let keys: Vec<&str> = example
            .lines()
            .filter(|l| !l.trim_start().starts_with('#') && l.contains('='))
            .map(|l| l.split('=').next().unwrap().trim())
            .collect();
        assert!(
            keys.contains(&"PLEX_URL") && keys.contains(&"PLEX_TOKEN"),
            "{keys:?}"
        );
        for k in keys {
            assert!(
                READ_ENV.contains(&k),
                "{file}: {k} is not read by streamwarden"
            );
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Template {
    repository: String,
    network: String,
    privileged: bool,
    extra_params: String,
    #[serde(rename = "WebUI")]
    web_ui: String,
    #[serde(default)]
    config: Vec<TemplateConfig>,
}

#[derive(Deserialize)]
struct TemplateConfig {
    #[serde(rename = "@Target")]
    target: String,
    #[serde(rename = "@Type")]
    kind: String,
    #[serde(rename = "@Mask")]
    mask: String,
    #[serde(rename = "@Mode")]
    mode: String,
}

#[test]
fn the_unraid_template_runs_the_image_as_it_is_built() {
    let image = image_spec();
    let t: Template = quick_xml::de::from_str(&read("contrib/unraid/streamwarden.xml")).unwrap();
    assert_eq!(t.repository, image.name);
    assert_eq!(t.network, "host");
    assert!(!t.privileged);
    let params: Vec<&str> = t.extra_params.split_whitespace().collect();
    let given = |flag: &str| -> BTreeSet<String> {
        params
            .windows(2)
            .filter(|w| w[0] == flag)
            .map(|w| w[1].to_string())
            .collect()
    };
    assert_eq!(given("--cap-drop"), BTreeSet::from(["ALL".to_string()]));
    let added = given("--cap-add");
    assert!(
        added.contains("NET_RAW") && added.is_subset(&image.capabilities),
        "{added:?}"
    );
    assert!(!t.extra_params.contains("no-new-privileges"));
    let paths: Vec<&TemplateConfig> = t.config.iter().filter(|c| c.kind == "Path").collect();
    let path = |target: &str| paths.iter().find(|c| c.target == target);
    assert_eq!(path(&image.config).map(|c| c.mode.as_str()), Some("ro"));
    assert_eq!(path(&image.state).map(|c| c.mode.as_str()), Some("rw"));
    for v in t.config.iter().filter(|c| c.kind == "Variable") {
        assert!(READ_ENV.contains(&v.target.as_str()), "{}", v.target);
        // Tokens are masked in Unraid's form.
        assert_eq!(v.mask == "true", v.target.contains("TOKEN"), "{}", v.target);
    }
    assert!(t.web_ui.contains(":9090]"), "{}", t.web_ui);
}

#[test]
fn the_synology_note_names_files_that_exist_and_the_images_name() {
    let note = read("contrib/synology/README.md");
    for file in [
        "contrib/docker/compose.yaml",
        "contrib/docker/streamwarden.env.example",
        "rules.example.toml",
    ] {
        let name = file.rsplit('/').next().unwrap();
        assert!(note.contains(name), "the note does not name {name}");
        assert!(std::path::Path::new(REPO).join(file).exists(), "{file}");
    }
    assert!(note.contains(&image_spec().name));
    // The release's file names, as scripts/release makes them.
    let release = read("scripts/release");
    let version = env!("CARGO_PKG_VERSION");
    for (arch, file) in [
        ("x86_64", format!("streamwarden-{version}-image-x86_64.tar")),
        (
            "aarch64",
            format!("streamwarden-{version}-image-aarch64.tar"),
        ),
        ("x86_64", format!("streamwarden-{version}-x86_64-linux")),
    ] {
        let pattern = file.replace(version, "$version").replace(arch, "$arch");
        assert!(
            release.contains(&pattern),
            "scripts/release makes no {pattern}"
        );
        assert!(note.contains(&file), "the note does not name {file}");
    }
}

#[test]
fn the_images_default_config_passes_check_with_the_env_example() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(
        dir.path(),
        "http://127.0.0.1:32400",
        "a-token",
        &["check", "--config", &format!("{REPO}/rules.example.toml")],
    );
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
}
