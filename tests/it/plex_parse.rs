//! Parsing the real /status/sessions responses in tests/fixtures/plex.

use streamwarden::plex::PlayState;
use streamwarden::plex::session::{parse_sessions, parse_source_facts};

use crate::common::fixture;

#[test]
fn movie_with_session_and_stream_decisions() {
    let body = fixture("ha_session_base.xml").replace("{user_id}", "7");
    let s = parse_sessions(&body).unwrap();
    assert_eq!(s.len(), 1);
    let s = &s[0];
    assert_eq!(s.session_id.as_deref(), Some("session_id_1"));
    assert_eq!(s.session_key.as_deref(), Some("1"));
    assert_eq!(s.user.as_deref(), Some("User 7"));
    assert_eq!(s.user_id, Some(7));
    assert_eq!(s.address.as_deref(), Some("1.2.3.11"));
    assert_eq!(s.remote_public_address.as_deref(), Some("10.20.30.40"));
    assert_eq!(s.location.as_deref(), Some("lan"));
    assert_eq!(s.bandwidth_kbps, Some(7000));
    assert_eq!(s.stream_bitrate_kbps, Some(6000));
    assert_eq!(s.video_resolution.as_deref(), Some("720"));
    // No TranscodeSession: the Part says transcode, its video stream copy, its audio transcode.
    assert_eq!(s.video_decision.as_deref(), Some("copy"));
    assert_eq!(s.audio_decision.as_deref(), Some("transcode"));
    assert_eq!(s.transcode_decision.as_deref(), Some("transcode"));
    assert_eq!(s.media_type.as_deref(), Some("movie"));
    assert_eq!(s.library.as_deref(), Some("Movies"));
    assert_eq!(s.state, Some(PlayState::Playing));
    assert_eq!(s.local, Some(true));
    assert_eq!(s.relayed, Some(false));
    assert_eq!(s.part_ids, vec!["4631".to_string()]);
    assert!(s.killable());
}

#[test]
fn old_server_without_session_is_listed_but_not_killable() {
    let s = parse_sessions(&fixture("go_plex_client_sessions_track_and_transcode.xml")).unwrap();
    assert_eq!(s.len(), 2);
    assert!(s.iter().all(|s| !s.killable()));
    let track = &s[0];
    assert_eq!(track.media_type.as_deref(), Some("track"));
    assert_eq!(track.grandparent_title.as_deref(), Some("Drake"));
    assert_eq!(track.video_decision, None);
    assert_eq!(track.transcode_decision.as_deref(), Some("direct play"));
    let ep = &s[1];
    assert_eq!(ep.video_decision.as_deref(), Some("copy"));
    assert_eq!(ep.audio_decision.as_deref(), Some("transcode"));
    assert_eq!(ep.transcode_decision.as_deref(), Some("transcode"));
    assert_eq!(ep.transcode_key.as_deref(), Some("abc123"));
    assert_eq!(ep.video_resolution.as_deref(), Some("720"));
    assert_eq!(ep.state, Some(PlayState::Paused));
    assert_eq!(ep.address.as_deref(), Some("192.168.1.1"));
}

#[test]
fn modern_transcode_with_sentinel_size() {
    let s = parse_sessions(&fixture("homarr_sessions_transcode_audio_only.xml")).unwrap();
    assert_eq!(s.len(), 1);
    let s = &s[0];
    assert_eq!(s.session_id.as_deref(), Some("2894294r2jf2038fj3098jgf3gt"));
    assert_eq!(s.bandwidth_kbps, Some(21560));
    assert_eq!(s.stream_bitrate_kbps, Some(20231));
    assert_eq!(s.video_resolution.as_deref(), Some("1080"));
    assert_eq!(s.video_decision.as_deref(), Some("copy"));
    assert_eq!(s.audio_decision.as_deref(), Some("transcode"));
    assert_eq!(s.transcode_decision.as_deref(), Some("transcode"));
    assert_eq!(s.transcode_key.as_deref(), Some("example-session"));
    assert_eq!(s.user_id, Some(1));
}

#[test]
fn direct_play_track() {
    let s = parse_sessions(&fixture("plexopedia_sessions_track_directplay.xml")).unwrap();
    let s = &s[0];
    assert_eq!(s.session_id.as_deref(), Some("rxiscwekkvkpukgi3pm9nklp"));
    assert_eq!(s.audio_decision.as_deref(), Some("direct play"));
    assert_eq!(s.transcode_decision.as_deref(), Some("direct play"));
    assert_eq!(s.stream_bitrate_kbps, Some(920));
    assert_eq!(s.bandwidth_kbps, Some(990));
    assert_eq!(s.video_resolution, None);
    assert_eq!(s.title.as_deref(), Some("Beautiful Day"));
}

#[test]
fn preroll_clip_sd() {
    let s = parse_sessions(&fixture("ha_session_transient.xml")).unwrap();
    let s = &s[0];
    assert_eq!(s.media_type.as_deref(), Some("clip"));
    assert_eq!(s.video_resolution.as_deref(), Some("sd"));
    assert_eq!(s.video_decision.as_deref(), Some("transcode"));
    assert_eq!(s.bandwidth_kbps, Some(1981));
}

#[test]
fn sentinels_and_mapped_addresses_and_nested_transcode() {
    let body = r#"<MediaContainer size="2">
      <Video sessionKey="5" ratingKey="9" type="episode" title="Live" live="1">
        <Media bitrate="2147483647" videoResolution="1080p" selected="1">
          <Part id="77" decision="transcode"/>
          <TranscodeSession key="/transcode/sessions/live-1" videoDecision="transcode" audioDecision="copy"/>
        </Media>
        <User id="3" title="carol"/>
        <Player address="::ffff:192.0.2.7" state="buffering" local="0"/>
        <Session id="s-live" bandwidth="10000000" location="wan"/>
      </Video>
      <Track sessionKey="6" guid="library://theme/1" title="Theme"/>
    </MediaContainer>"#;
    let s = parse_sessions(body).unwrap();
    assert_eq!(s.len(), 1, "theme music is skipped");
    let s = &s[0];
    assert!(s.live);
    assert_eq!(s.stream_bitrate_kbps, None);
    assert_eq!(s.bandwidth_kbps, None);
    assert_eq!(s.address.as_deref(), Some("192.0.2.7"));
    assert_eq!(s.video_decision.as_deref(), Some("transcode"));
    assert_eq!(s.audio_decision.as_deref(), Some("copy"));
    assert_eq!(s.transcode_key.as_deref(), Some("live-1"));
    assert_eq!(s.location.as_deref(), Some("wan"));
}

#[test]
fn empty_and_malformed() {
    assert!(
        parse_sessions(r#"<MediaContainer size="0"></MediaContainer>"#)
            .unwrap()
            .is_empty()
    );
    assert!(
        parse_sessions(r#"<MediaContainer size="0"/>"#)
            .unwrap()
            .is_empty()
    );
    assert!(parse_sessions("<MediaContainer><Video").is_err());
    let e = parse_sessions("<html><body>401 Unauthorized</body></html>").unwrap_err();
    assert!(e.to_string().contains("<html>"), "{e}");
    assert!(parse_sessions("").is_err());
}

#[test]
fn source_facts_pick_the_matching_media() {
    let body = r#"<MediaContainer size="1"><Video ratingKey="1" title="M">
        <Media id="10" bitrate="60000" videoResolution="4k"/>
        <Media id="11" bitrate="8000" videoResolution="1080"/>
      </Video></MediaContainer>"#;
    let f = parse_source_facts(body, Some("11")).unwrap();
    assert_eq!(f.bitrate_kbps, Some(8000));
    assert_eq!(f.resolution.as_deref(), Some("1080"));
    let f = parse_source_facts(body, None).unwrap();
    assert_eq!(f.resolution.as_deref(), Some("4k"));
}

#[test]
fn implausible_reserved_bandwidth_is_unknown() {
    let body = |bandwidth: &str| {
        format!(
            r#"<MediaContainer size="1">
      <Video sessionKey="12" ratingKey="40" type="episode" title="News" live="1">
        <Media bitrate="8000" videoResolution="1080" selected="1"><Part id="3" decision="transcode"/></Media>
        <User id="1" title="owner"/>
        <Player address="192.168.1.20" product="Plex Web" platform="Chrome" state="playing" local="1"/>
        <Session id="web-live" bandwidth="{bandwidth}" location="lan"/>
      </Video>
    </MediaContainer>"#
        )
    };
    let bandwidth = |b: &str| parse_sessions(&body(b)).unwrap()[0].bandwidth_kbps;
    // Seen from a Plex Web LAN live session: 10.5 Gbit/s is no reservation.
    assert_eq!(bandwidth("10500000"), None);
    assert_eq!(bandwidth("10000000"), None);
    assert_eq!(bandwidth("99999999999"), None);
    // Below 10 Gbit/s it is taken as given, a 4K remux included.
    assert_eq!(bandwidth("9999999"), Some(9_999_999));
    assert_eq!(bandwidth("200000"), Some(200_000));
}
