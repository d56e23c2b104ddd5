//! Reads every real capture in `tests/fixtures/pcap` (tcpdump's test suite) through
//! `PacketSource::open_file` + `decode` + `Meter`, and compares the per-connection packet counts
//! and IP bytes of the innermost IP/TCP with what tshark dissects (reassembly off).

use std::path::{Path, PathBuf};
use std::process::Command;

use streamwarden::capture::{CaptureError, CaptureWarning, Next, PacketSource, decode};

use crate::common::tshark::{read_ours, read_tshark};

use crate::common::capture::{Cap, RawPcap, SERVER, T0, eth_tcp};

/// Files on which tshark and the decoder legitimately differ, and why: none. (geneve.pcap,
/// SSH inside Geneve, differed until tunnels were decoded.)
const DISAGREE: &[&str] = &[];

fn fixtures_dir() -> PathBuf {
    crate::common::fixtures_dir("pcap")
}

fn fixture_files() -> Vec<PathBuf> {
    let files = crate::common::pcap_fixtures();
    assert!(
        files.len() >= 10,
        "expected the tcpdump fixtures, found {files:?}"
    );
    files
}

#[test]
fn every_fixture_reads_without_panic() {
    for path in fixture_files() {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        match read_ours(&path) {
            Ok(r) => {
                assert_eq!(r.stats.read, r.stats.decoded + r.stats.skipped, "{name}");
                let metered: u64 = r.meter.flows().map(|(_, f)| f.packets).sum();
                assert_eq!(metered, r.stats.decoded, "{name}");
                let now = r.meter.latest_micros().unwrap_or(0);
                for (_, flow) in r.meter.flows() {
                    let rates = flow.rates(now);
                    assert!(
                        rates.kbps_10s.is_finite() && rates.kbps_10s >= 0.0,
                        "{name}"
                    );
                }
                println!(
                    "{name}: {:?} flows={} tail_error={:?}",
                    r.stats,
                    r.meter.len(),
                    r.tail_error.map(|e| e.to_string())
                );
            }
            Err(CaptureError::UnsupportedLinkType { .. }) if name.starts_with("radiotap") => {}
            Err(e) => panic!("{name}: {e}"),
        }
    }
}

#[test]
fn radiotap_is_a_clear_unsupported_link_type_error() {
    let path = fixtures_dir().join("radiotap-heapoverflow.pcap");
    let err = PacketSource::open_file(&path, None)
        .err()
        .expect("radiotap must be refused");
    assert!(
        matches!(err, CaptureError::UnsupportedLinkType { linktype: 127, .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(msg.contains("IEEE802_11_RADIO (127)"), "{msg}");
    assert!(msg.contains("Ethernet"), "{msg}");
}

#[test]
fn not_a_capture_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    std::fs::write(&path, b"this is not a capture file at all").unwrap();
    let err = PacketSource::open_file(&path, None)
        .err()
        .expect("a text file is not a capture");
    assert!(matches!(err, CaptureError::File { .. }), "{err:?}");
    assert!(err.to_string().contains("notes.txt"), "{err}");
    let missing = dir.path().join("missing.pcap");
    let err = PacketSource::open_file(&missing, None).err().unwrap();
    assert!(err.to_string().contains("missing.pcap"), "{err}");
}

#[test]
fn per_connection_counts_match_tshark() {
    let mut compared = 0;
    let mut mismatches = Vec::new();
    let mut tcp_packets = 0;
    for path in fixture_files() {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let (ours, our_bytes) = match read_ours(&path) {
            Ok(r) => (r.counts, r.bytes),
            Err(CaptureError::UnsupportedLinkType { .. }) => continue,
            Err(e) => panic!("{name}: {e}"),
        };
        let (theirs, their_bytes) = match read_tshark(&path) {
            Some(Ok(c)) => c,
            Some(Err(e)) => panic!("{name}: tshark: {e}"),
            None => {
                if std::env::var_os("CI").is_some() {
                    panic!("tshark is not installed and CI is set");
                }
                println!("skipping: tshark is not installed");
                return;
            }
        };
        if DISAGREE.contains(&name.as_str()) {
            println!(
                "{name}: not compared (documented disagreement): ours {ours:?} tshark {theirs:?}"
            );
            continue;
        }
        if ours != theirs {
            mismatches.push(format!("{name}: ours {ours:?}\n  tshark {theirs:?}"));
        } else if our_bytes != their_bytes {
            mismatches.push(format!(
                "{name}: IP bytes: ours {our_bytes:?}\n  tshark {their_bytes:?}"
            ));
        }
        compared += 1;
        tcp_packets += theirs.values().sum::<u64>();
    }
    assert!(
        mismatches.is_empty(),
        "per-connection packet counts differ from tshark:\n{}",
        mismatches.join("\n")
    );
    assert!(compared >= 15, "compared only {compared} files");
    assert!(tcp_packets > 500, "only {tcp_packets} TCP packets compared");
}

#[test]
fn nanosecond_file_keeps_microsecond_timestamps() {
    // tcp-handshake-nano.pcap is a nanosecond savefile: its timestamps must come out in
    // microseconds, the same as tshark's epoch times truncated.
    let path = fixtures_dir().join("tcp-handshake-nano.pcap");
    let mut source = PacketSource::open_file(&path, None).unwrap();
    let mut ours = Vec::new();
    while let Next::Packet(p) = source.next_packet().unwrap() {
        ours.push(p.ts_micros);
    }
    let Ok(out) = Command::new("tshark")
        .arg("-r")
        .arg(&path)
        .args(["-T", "fields", "-e", "frame.time_epoch"])
        .output()
    else {
        assert!(std::env::var_os("CI").is_none(), "tshark missing under CI");
        println!("skipping: tshark is not installed");
        return;
    };
    let theirs: Vec<i64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let (s, frac) = l.trim().split_once('.').unwrap();
            let frac = format!("{frac:0<9}");
            s.parse::<i64>().unwrap() * 1_000_000 + frac[..6].parse::<i64>().unwrap()
        })
        .collect();
    assert_eq!(ours, theirs);
    assert!(ours.len() == 3);
}

/// Reads a savefile to its end: the packets' (timestamp, captured bytes), or the first error
/// with the packets read before it.
fn read_all(source: &mut PacketSource) -> (Vec<(i64, Vec<u8>)>, Option<CaptureError>) {
    let mut packets = Vec::new();
    loop {
        match source.next_packet() {
            Ok(Next::Packet(p)) => packets.push((p.ts_micros, p.data.to_vec())),
            Ok(Next::Eof) => return (packets, None),
            Ok(Next::Idle) => panic!("a savefile never idles"),
            Err(e) => return (packets, Some(e)),
        }
    }
}

/// Five Ethernet/IPv4/TCP packets of 100, 110, ... 140 IP bytes, written by libpcap.
fn five_packet_capture(path: &Path) -> Vec<usize> {
    let mut cap = Cap::default();
    let mut sizes = Vec::new();
    for i in 0..5 {
        let frame = eth_tcp(SERVER, 32400, [10, 0, 0, 9], 50000, &vec![7u8; 60 + 10 * i]);
        sizes.push(frame.len());
        cap.packet(i as i64 * 1000, frame);
    }
    cap.write(path);
    sizes
}

#[test]
fn truncated_last_record_is_a_warning_not_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("growing.pcap");
    let sizes = five_packet_capture(&path);
    let whole = std::fs::read(&path).unwrap();
    // 24-byte file header, then 16-byte record headers.
    let last_record_at = 24 + sizes[..4].iter().map(|s| 16 + s).sum::<usize>();
    assert_eq!(whole.len(), last_record_at + 16 + sizes[4]);

    // The last record's data cut short, then its header cut short.
    for (cut_to, detail) in [(whole.len() - 10, "only"), (last_record_at + 7, "header")] {
        std::fs::write(&path, &whole[..cut_to]).unwrap();
        for filter in [None, Some("tcp")] {
            let mut source = PacketSource::open_file(&path, filter).unwrap();
            let (packets, error) = read_all(&mut source);
            assert!(error.is_none(), "cut at {cut_to}: {error:?}");
            assert_eq!(packets.len(), 4, "cut at {cut_to}, filter {filter:?}");
            for (p, size) in packets.iter().zip(&sizes) {
                assert_eq!(p.1.len(), *size);
            }
            // The end stays the end.
            assert!(matches!(source.next_packet(), Ok(Next::Eof)));
            let cut = source.truncated().expect("a truncation warning");
            assert_eq!((cut.record, cut.complete), (5, 4), "{cut:?}");
            assert_eq!(cut.offset, Some(last_record_at as u64), "{cut:?}");
            assert_eq!(source.warnings().len(), 1, "{:?}", source.warnings());
            let text = cut.to_string();
            assert!(text.contains("growing.pcap"), "{text}");
            assert!(text.contains("record 5"), "{text}");
            assert!(text.contains(&format!("byte {last_record_at}")), "{text}");
            assert!(text.contains(detail), "{text}");
        }
    }

    // An intact file has no warning.
    std::fs::write(&path, &whole).unwrap();
    let mut source = PacketSource::open_file(&path, None).unwrap();
    let (packets, error) = read_all(&mut source);
    assert!(error.is_none());
    assert_eq!(packets.len(), 5);
    assert!(source.truncated().is_none() && source.warnings().is_empty());
}

#[test]
fn truncated_pcapng_is_a_warning_not_an_error() {
    // of13_ericsson.pcapng: 174 packets, the last an Enhanced Packet Block of 100 bytes at
    // byte 119640.
    let whole = std::fs::read(fixtures_dir().join("of13_ericsson.pcapng")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cut.pcapng");
    std::fs::write(&path, &whole[..whole.len() - 30]).unwrap();
    let mut source = PacketSource::open_file(&path, None).unwrap();
    let (packets, error) = read_all(&mut source);
    assert!(error.is_none(), "{error:?}");
    assert_eq!(packets.len(), 173);
    let cut = source.truncated().expect("a truncation warning");
    assert_eq!((cut.complete, cut.offset), (173, Some(119_640)), "{cut:?}");
    assert!(cut.to_string().contains("cut.pcapng"), "{cut}");
}

/// A 100-byte Ethernet/IPv4/TCP frame.
fn frame_100(n: u8) -> Vec<u8> {
    let frame = eth_tcp(SERVER, 32400, [10, 0, 0, 9], 50000, &[n; 46]);
    assert_eq!(frame.len(), 100);
    frame
}

#[test]
fn records_over_the_snaplen_are_read_whole() {
    let dir = tempfile::tempdir().unwrap();
    let recs: Vec<(i64, Vec<u8>)> = (0..3)
        .map(|i| (T0 * 1_000_000 + i * 250_001, frame_100(i as u8)))
        .collect();
    for big_endian in [false, true] {
        for nanos in [false, true] {
            let raw = RawPcap {
                big_endian,
                nanos,
                snaplen: 64,
                linktype: 1,
            };
            let path = dir.path().join(format!("snap64-{big_endian}-{nanos}.pcap"));
            std::fs::write(&path, raw.bytes(&recs)).unwrap();
            let mut source = PacketSource::open_file(&path, None).unwrap();
            assert_eq!(source.linktype(), 1);
            let (packets, error) = read_all(&mut source);
            assert!(error.is_none(), "{raw:?}: {error:?}");
            assert_eq!(packets, recs, "{raw:?}");
            assert!(source.truncated().is_none());
            // Said once: which record and why.
            let [
                CaptureWarning::Fallback {
                    record: 1, reason, ..
                },
            ] = source.warnings()
            else {
                panic!("{:?}", source.warnings());
            };
            assert!(reason.contains("snaplen of 64"), "{reason}");
            let seg = decode(1, &packets[2].1).unwrap();
            assert_eq!(
                (seg.ip_len, seg.payload, seg.sport),
                (86, &[2u8; 46][..], 32400)
            );
            // With a filter the same.
            let mut source = PacketSource::open_file(&path, Some("tcp port 32400")).unwrap();
            assert_eq!(read_all(&mut source).0.len(), 3, "{raw:?}");
            let mut source = PacketSource::open_file(&path, Some("udp")).unwrap();
            assert_eq!(read_all(&mut source).0.len(), 0, "{raw:?}");
        }
    }
}

#[test]
fn oversized_record_is_an_error_naming_the_record() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("damaged.pcap");
    let recs = vec![
        (T0 * 1_000_000, frame_100(1)),
        (T0 * 1_000_000 + 1, vec![0u8; 300_000]),
        (T0 * 1_000_000 + 2, frame_100(3)),
    ];
    for snaplen in [64, 65535] {
        let raw = RawPcap {
            big_endian: false,
            nanos: false,
            snaplen,
            linktype: 1,
        };
        std::fs::write(&path, raw.bytes(&recs)).unwrap();
        let mut source = PacketSource::open_file(&path, None).unwrap();
        let (packets, error) = read_all(&mut source);
        assert_eq!(packets.len(), 1);
        let error = error.expect("a 300000-byte record is refused");
        let text = error.to_string();
        assert!(text.contains("damaged.pcap"), "{text}");
        assert!(text.contains("record 2"), "{text}");
        assert!(text.contains("300000"), "{text}");
        assert!(matches!(source.next_packet(), Ok(Next::Eof)));
    }
}

#[test]
fn a_fifo_is_read_by_libpcap_untouched() {
    // A pipe can be read once: nothing may peek at it before libpcap.
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("live.pcap");
    let status = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(status.success());
    let file = dir.path().join("file.pcap");
    five_packet_capture(&file);
    let bytes = std::fs::read(&file).unwrap();
    let writer = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::write(fifo, bytes).unwrap())
    };
    let mut source = PacketSource::open_file(&fifo, None).unwrap();
    let (packets, error) = read_all(&mut source);
    assert!(error.is_none(), "{error:?}");
    assert_eq!(packets.len(), 5);
    writer.join().unwrap();
}
