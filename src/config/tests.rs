//! Unit tests of the configuration loader.

use super::*;

#[test]
fn positions_are_one_based() {
    let m = SourceMap::new(None, "a = 1\nbb = 2\n");
    assert_eq!(m.position(0), (1, 1));
    assert_eq!(m.position(6), (2, 1));
    assert_eq!(m.position(8), (2, 3));
}

#[test]
fn env_overrides_file() {
    let mut c =
        Config::parse("[plex]\nurl = \"http://a:32400\"\ntoken = \"file\"\n", None).unwrap();
    c.apply_env(|k| (k == "PLEX_TOKEN").then(|| "env".to_string()));
    assert_eq!(c.plex.token.as_deref(), Some("env"));
    assert_eq!(c.plex.url.as_deref(), Some("http://a:32400"));
}

#[test]
fn bad_duration_is_located() {
    let e = Config::parse("[plex]\npoll_interval = \"soon\"\n", Some("c.toml".into())).unwrap_err();
    assert_eq!(e.position, Some((2, 17)));
    assert!(
        e.to_string().starts_with("c.toml:2:17: poll_interval"),
        "{e}"
    );
}

#[test]
fn measure_source_is_read_and_a_bad_one_is_located() {
    let c = Config::parse("[measure]\nsource = \"both\"\n", None).unwrap();
    assert_eq!(c.measure.source, MeasureSource::Both);
    assert_eq!(
        Config::parse("", None).unwrap().measure.source,
        MeasureSource::Packets
    );
    let e = Config::parse("[measure]\nsource = \"pcap\"\n", Some("c.toml".into())).unwrap_err();
    assert_eq!(e.position, Some((2, 10)), "{e}");
    assert!(e.message.contains("\"packets\""), "{e}");
    let e = Config::parse("[measure]\nsorce = \"plex\"\n", None).unwrap_err();
    assert!(e.message.contains("sorce"), "{e}");
}

#[test]
fn unknown_keys_are_errors() {
    let e = Config::parse("[enforce]\ndryrun = true\n", None).unwrap_err();
    assert!(e.message.contains("dryrun"), "{e}");
    assert_eq!(e.position.map(|p| p.0), Some(2));
}
