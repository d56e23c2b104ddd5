//! `streamwarden demo`: the whole pipeline with nothing but this repository. A simulated
//! Plex server on loopback lists a handful of streams; simulated traffic, paced in real
//! time, goes through the same meter as captured packets; the example rules are applied and
//! kills land on the simulated server, which shows their messages.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use etherparse::PacketBuilder;

use crate::Failure;
use crate::capture::Packet;
use crate::capture::decode::LINKTYPE_ETHERNET;
use crate::config::Config;
use crate::daemon::{self, Control, Feed, Setup, SystemClock, View};
use crate::enforce::AuditLog;
use crate::fakeplex::FakePlex;
use crate::lock;
use crate::meter::Metering;
use crate::plex::{PlexClient, PlexSettings};
use crate::rules::RuleSet;

/// The rules the demo applies: the repository's example, compiled in.
const EXAMPLE: &str = include_str!("../../rules.example.toml");

/// A demo ready to run: the fake server is up.
pub struct Demo {
    config: Config,
    rules: RuleSet,
    plex: Arc<FakePlex>,
}

/// What the demo did.
#[derive(Debug)]
pub struct Report {
    /// (user, Session id, message the player showed) of every stream stopped.
    pub stopped: Vec<(String, String, String)>,
    /// (user, reason) of every kill that failed.
    pub failures: Vec<(String, String)>,
}

impl Demo {
    /// Compiles the example rules and starts the simulated server.
    pub fn start() -> Result<Self, Failure> {
        let mut config = Config::parse(EXAMPLE, Some("rules.example.toml".into()))
            .map_err(|e| Failure::Usage(e.to_string()))?;
        let rules = crate::engine::open::compile(&config)?;
        // Kills land on the simulated server: enforce, and keep no audit file.
        config.enforce.dry_run = false;
        config.enforce.audit_log = None;
        let token = format!("demo-{}", uuid::Uuid::new_v4().simple());
        let mut body = format!("<MediaContainer size=\"{}\">\n", streams().len());
        for st in streams() {
            body.push_str(st.xml);
            body.push('\n');
        }
        body.push_str("</MediaContainer>\n");
        let plex = FakePlex::spawn(&body, &token)
            .map_err(|e| Failure::Failed(format!("cannot start the simulated Plex server: {e}")))?;
        plex.set(|st| {
            st.announce = true;
            for s in streams() {
                let key = s.rating_key();
                if let Some(m) = metadata(key) {
                    st.metadata.insert(key.to_string(), m.to_string());
                }
            }
        });
        Ok(Self {
            config,
            rules,
            plex: Arc::new(plex),
        })
    }

    /// Serves the daemon's HTTP endpoint and page on `listen` while the demo runs, with
    /// `token` required when given. Anything but a loopback address needs a token.
    pub fn listen(
        &mut self,
        listen: std::net::SocketAddr,
        token: Option<crate::config::Secret>,
    ) -> Result<(), Failure> {
        if !listen.ip().is_loopback() && token.is_none() {
            return Err(Failure::Usage(format!(
                "--listen {listen} is reachable from other hosts, so it needs a token: set {}",
                crate::config::http::TOKEN_ENV
            )));
        }
        self.config.http.listen = Some(listen);
        self.config.http.token = token;
        Ok(())
    }

    /// What the demo is about to do, for the user.
    pub fn intro(&self, duration: Duration) -> String {
        let page = self
            .config
            .http
            .listen
            .map_or_else(String::new, |a| format!("\nthe owner's page: http://{a}/"));
        format!(
            "streamwarden demo: a simulated Plex server at {} with {} streams, simulated traffic, the rules of rules.example.toml; {} s{page}",
            self.plex.url,
            streams().len(),
            duration.as_secs()
        )
    }

    /// Runs the daemon against the simulated server and traffic for `duration`.
    pub async fn run(self, duration: Duration, view: View) -> Result<Report, Failure> {
        let client = PlexClient::new(PlexSettings {
            url: self.plex.url.clone(),
            token: self.plex.token.clone(),
            client_identifier: "streamwarden-demo".into(),
            timeout: Duration::from_secs(5),
            tls_verify: true,
            max_response: crate::plex::DEFAULT_MAX_RESPONSE,
        })
        .map_err(|e| Failure::Failed(e.to_string()))?;
        let feed = Feed::new(Metering::new(LINKTYPE_ETHERNET, Some(vec![32400])));
        let stop = Arc::new(AtomicBool::new(false));
        let generator = {
            let (plex, feed, stop) = (self.plex.clone(), feed.clone(), stop.clone());
            std::thread::spawn(move || traffic(streams(), plex, feed, stop))
        };
        let http = match self.config.http.listen {
            Some(addr) => Some(
                tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|e| Failure::Usage(format!("cannot listen on {addr}: {e}")))?,
            ),
            None => None,
        };
        let (control, rx) = tokio::sync::mpsc::channel(1);
        // The duration, or SIGTERM/SIGINT first: a stop, so the demo's state is removed.
        let mut signals = daemon::signals().ok();
        tokio::spawn(async move {
            let signalled = async {
                match signals.as_mut() {
                    Some(s) => while s.recv().await.is_some_and(|c| c != Control::Stop) {},
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(duration) => {}
                () = signalled => {}
            }
            let _ = control.send(Control::Stop).await;
        });
        // A state of its own, with 30 days of invented usage so the Usage view has a past;
        // removed at the end.
        let folder = std::env::temp_dir().join(format!("streamwarden-demo-{}", std::process::id()));
        let state = seeded_state(&folder)?;
        let summary = daemon::run(
            Setup {
                rules: self.rules,
                enforce: self.config.enforce.clone(),
                plex: Arc::new(client),
                state,
                audit: AuditLog::none(),
                notify: None,
                ports: vec![32400],
                poll_interval: Duration::from_secs(2),
                events: true,
                fallback_interval: Duration::from_secs(2),
                usage: Default::default(),
                feed,
                clock: Arc::new(SystemClock),
                view,
                http,
                http_token: self.config.http.token.clone(),
                http_hosts: Vec::new(),
                webhook: None,
                reload: None,
                tick: Duration::from_secs(1),
                shaper: Err("the demo throttles nothing: its traffic is generated".into()),
            },
            rx,
        )
        .await;
        stop.store(true, Ordering::SeqCst);
        let _ = generator.join();
        let _ = std::fs::remove_dir_all(&folder);
        let user_of = |id: &str| {
            streams()
                .into_iter()
                .find(|s| s.session_id == Some(id))
                .map_or_else(|| "?".to_string(), |s| s.user.to_string())
        };
        Ok(Report {
            stopped: self
                .plex
                .terminates()
                .into_iter()
                .map(|(id, message)| (user_of(&id), id, message))
                .collect(),
            failures: summary
                .failures
                .into_iter()
                .map(|(d, r)| (d.session.user.unwrap_or_else(|| "?".into()), r))
                .collect(),
        })
    }
}

/// A new state database in `folder` holding 30 days of invented hourly usage for the demo's
/// users (evenings heavier, bob the heaviest).
fn seeded_state(folder: &std::path::Path) -> Result<crate::state::State, Failure> {
    use crate::state::usage::UsageRow;
    let _ = std::fs::remove_dir_all(folder);
    let mut state = crate::state::State::open(&folder.join("state.db"))
        .map_err(|e| Failure::Failed(format!("the demo's state: {e}")))?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let this_hour = now - now.rem_euclid(3600);
    let users: [(&str, f64, &str); 4] = [
        ("bob", 2.4, "transcode"),
        ("alice", 1.1, "direct play"),
        ("carol", 0.6, "direct play"),
        ("dave", 0.3, "transcode"),
    ];
    let mut rows = Vec::new();
    for h in 1..=(30 * 24) {
        let start = this_hour - h * 3600;
        let hour_of_day = start.rem_euclid(86_400) / 3600;
        let evening = (18..23).contains(&hour_of_day);
        for (i, (user, gb_an_evening_hour, decision)) in users.iter().enumerate() {
            // Not every evening: a pattern of its own per user.
            if !evening || (start / 86_400 + i as i64) % 3 == 0 {
                continue;
            }
            rows.push(UsageRow {
                start,
                span: 3600,
                user: user.to_string(),
                stream: format!("demo:{user}:{}", start / 86_400),
                title: Some("A film".into()),
                player: Some("Living Room TV".into()),
                location: Some("wan".into()),
                decision: Some(decision.to_string()),
                rate_source: Some("packets".into()),
                bytes: (gb_an_evening_hour * 1e9) as i64,
                seconds: 3600,
                ..UsageRow::default()
            });
        }
    }
    state
        .record_usage(&rows)
        .map_err(|e| Failure::Failed(format!("the demo's state: {e}")))?;
    Ok(state)
}

/// One simulated stream.
#[derive(Debug, Clone)]
pub struct SimStream {
    pub session_id: Option<&'static str>,
    pub user: &'static str,
    pub client: [u8; 4],
    pub client_port: u16,
    /// What the client sends at the start of its connection (plaintext HTTP), if anything.
    pub request: Option<&'static str>,
    pub kbps: u64,
    /// The `<Video>`/`<Track>` element Plex would list for it.
    pub xml: &'static str,
}

impl SimStream {
    /// The item's ratingKey, as its XML gives it.
    fn rating_key(&self) -> &'static str {
        self.xml
            .split("ratingKey=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or("")
    }
}

/// The simulated server's address of its own end of every connection.
pub const SERVER: [u8; 4] = [10, 0, 0, 2];

/// The demo's streams: a direct play, a 4K transcode, two viewers behind one address and a
/// music track without a Session element.
pub fn streams() -> Vec<SimStream> {
    vec![
        SimStream {
            session_id: Some("demo-alice"),
            user: "alice",
            client: [192, 168, 1, 20],
            client_port: 51000,
            request: Some(
                "GET /library/parts/101/1700000000/file.mkv HTTP/1.1\r\nHost: plex\r\n\r\n",
            ),
            kbps: 8_000,
            xml: r#"<Video sessionKey="11" ratingKey="101" type="movie" title="Big Buck Bunny" librarySectionTitle="Movies">
  <Media id="1101" bitrate="8000" videoResolution="1080" selected="1"><Part id="101" decision="directplay" selected="1"/></Media>
  <User id="2" title="alice"/>
  <Player address="192.168.1.20" title="Living Room TV" platform="Roku" product="Plex for Roku" state="playing" local="1" relayed="0"/>
  <Session id="demo-alice" bandwidth="8500" location="lan"/>
</Video>"#,
        },
        SimStream {
            session_id: Some("demo-bob"),
            user: "bob",
            client: [198, 51, 100, 20],
            client_port: 52000,
            request: None,
            kbps: 12_000,
            xml: r#"<Video sessionKey="12" ratingKey="102" type="movie" title="Planet Earth II" librarySectionTitle="4K Movies">
  <Media id="1102" bitrate="12000" videoResolution="1080" selected="1">
    <Part id="102" decision="transcode" selected="1"><Stream streamType="1" decision="transcode"/><Stream streamType="2" decision="copy"/></Part>
  </Media>
  <User id="3" title="bob"/>
  <Player address="198.51.100.20" title="Bob's Phone" platform="Android" product="Plex for Android (Mobile)" state="playing" local="0" relayed="0"/>
  <Session id="demo-bob" bandwidth="13000" location="wan"/>
  <TranscodeSession key="/transcode/sessions/demo-bob-tc" videoDecision="transcode" audioDecision="copy" throttled="0" speed="1.4"/>
</Video>"#,
        },
        SimStream {
            session_id: Some("demo-carol"),
            user: "carol",
            client: [203, 0, 113, 5],
            client_port: 53001,
            request: Some(
                "GET /library/parts/103/1700000000/file.mkv HTTP/1.1\r\nHost: plex\r\n\r\n",
            ),
            kbps: 4_000,
            xml: r#"<Video sessionKey="13" ratingKey="103" type="episode" title="Pilot" grandparentTitle="The Office" librarySectionTitle="TV Shows">
  <Media id="1103" bitrate="4000" videoResolution="1080" selected="1"><Part id="103" decision="directplay" selected="1"/></Media>
  <User id="4" title="carol"/>
  <Player address="203.0.113.5" title="Carol's Laptop" platform="Chrome" product="Plex Web" state="playing" local="0" relayed="0"/>
  <Session id="demo-carol" bandwidth="4500" location="wan"/>
</Video>"#,
        },
        SimStream {
            session_id: Some("demo-dave"),
            user: "dave",
            client: [203, 0, 113, 5],
            client_port: 53002,
            request: Some(
                "GET /video/:/transcode/universal/session/demo-dave-tc/base/00001.ts HTTP/1.1\r\nHost: plex\r\n\r\n",
            ),
            kbps: 3_000,
            xml: r#"<Video sessionKey="14" ratingKey="104" type="episode" title="Good News About Hell" grandparentTitle="Severance" librarySectionTitle="TV Shows">
  <Media id="1104" bitrate="3000" videoResolution="720" selected="1"><Part id="104" decision="transcode" selected="1"/></Media>
  <User id="5" title="dave"/>
  <Player address="203.0.113.5" title="Dave's Tablet" platform="iOS" product="Plex for iOS" state="playing" local="0" relayed="0"/>
  <Session id="demo-dave" bandwidth="3500" location="wan"/>
  <TranscodeSession key="/transcode/sessions/demo-dave-tc" videoDecision="transcode" audioDecision="transcode" throttled="0" speed="2.0"/>
</Video>"#,
        },
        SimStream {
            session_id: None,
            user: "erin",
            client: [192, 168, 1, 30],
            client_port: 54000,
            request: None,
            kbps: 320,
            xml: r#"<Track sessionKey="15" ratingKey="105" type="track" title="Clair de Lune" grandparentTitle="Debussy" librarySectionTitle="Music">
  <Media id="1105" bitrate="320" selected="1"><Part id="105" decision="directplay" selected="1"/></Media>
  <User id="6" title="erin"/>
  <Player address="192.168.1.30" title="Plexamp" platform="Linux" product="Plexamp" state="playing" local="1" relayed="0"/>
</Track>"#,
        },
    ]
}

/// The library's view of each item's source file.
fn metadata(rating_key: &str) -> Option<&'static str> {
    Some(match rating_key {
        "101" => {
            r#"<MediaContainer size="1"><Video ratingKey="101"><Media id="1101" bitrate="8000" videoResolution="1080"/></Video></MediaContainer>"#
        }
        "102" => {
            r#"<MediaContainer size="1"><Video ratingKey="102"><Media id="1102" bitrate="60000" videoResolution="4k"/></Video></MediaContainer>"#
        }
        "103" => {
            r#"<MediaContainer size="1"><Video ratingKey="103"><Media id="1103" bitrate="4000" videoResolution="1080"/></Video></MediaContainer>"#
        }
        "104" => {
            r#"<MediaContainer size="1"><Video ratingKey="104"><Media id="1104" bitrate="2500" videoResolution="1080"/></Video></MediaContainer>"#
        }
        "105" => {
            r#"<MediaContainer size="1"><Track ratingKey="105"><Media id="1105" bitrate="320"/></Track></MediaContainer>"#
        }
        _ => return None,
    })
}

fn frame(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, payload: &[u8]) -> Vec<u8> {
    let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 2], [2, 0, 0, 0, 0, 1])
        .ipv4(src, dst, 64)
        .tcp(sport, dport, 1, 65535)
        .ack(1);
    let mut out = Vec::with_capacity(b.size(payload.len()));
    // Writing into a Vec cannot fail.
    let _ = b.write(&mut out, payload);
    out
}

/// Generates every listed stream's traffic in real time into `feed` (Ethernet frames,
/// 1500-byte IP packets) until `stop`. A stream the server stopped sends nothing more.
pub fn traffic(streams: Vec<SimStream>, plex: Arc<FakePlex>, feed: Feed, stop: Arc<AtomicBool>) {
    const IP_LEN: usize = 1500;
    let data: HashMap<u16, Vec<u8>> = streams
        .iter()
        .map(|s| {
            (
                s.client_port,
                frame(SERVER, 32400, s.client, s.client_port, &[0u8; IP_LEN - 40]),
            )
        })
        .collect();
    let mut owed: HashMap<u16, f64> = HashMap::new();
    let mut requested: HashMap<u16, Instant> = HashMap::new();
    let mut last = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(10));
        let elapsed = last.elapsed().as_secs_f64();
        last = Instant::now();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as i64);
        let alive = streams
            .iter()
            .filter(|s| s.session_id.is_none_or(|id| plex.lists(id)));
        let mut m = lock(&feed.metering);
        for s in alive {
            // The client's request, again every 10 s as a player fetches its next segments.
            if let Some(req) = s.request
                && requested
                    .get(&s.client_port)
                    .is_none_or(|t| t.elapsed() >= Duration::from_secs(10))
            {
                requested.insert(s.client_port, Instant::now());
                let f = frame(s.client, s.client_port, SERVER, 32400, req.as_bytes());
                m.ingest(&Packet {
                    ts_micros: now,
                    orig_len: f.len() as u32,
                    data: &f,
                });
            }
            let o = owed.entry(s.client_port).or_insert(0.0);
            *o += s.kbps as f64 * 125.0 * elapsed;
            let Some(f) = data.get(&s.client_port) else {
                continue;
            };
            while *o >= IP_LEN as f64 {
                *o -= IP_LEN as f64;
                m.ingest(&Packet {
                    ts_micros: now,
                    orig_len: f.len() as u32,
                    data: f,
                });
            }
        }
    }
}
