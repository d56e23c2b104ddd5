//! The savefile reader: any bytes written to a file, opened with `PacketSource::open_file`
//! (inputs of odd length with a BPF filter) and read to the end, each packet decoded.
//! A savefile never idles, and once it has ended (or failed) it stays ended.

#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use streamwarden::capture::{Next, PacketSource, decode};

fn scratch() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let dir = if std::path::Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        dir.join(format!("streamwarden-fuzz-{}.pcap", std::process::id()))
    })
}

fuzz_target!(|data: &[u8]| {
    let path = scratch();
    if std::fs::write(path, data).is_err() {
        return;
    }
    let filter = (data.len() % 2 == 1).then_some("tcp");
    let Ok(mut source) = PacketSource::open_file(path, filter) else {
        return;
    };
    let linktype = source.linktype();
    // Records take at least 16 bytes (12 in pcapng): the input bounds their number.
    let bound = data.len() / 12 + 2;
    let mut reads = 0;
    loop {
        reads += 1;
        assert!(reads <= bound, "more reads than the input can hold records");
        match source.next_packet() {
            Ok(Next::Packet(p)) => {
                let _ = decode(linktype, p.data);
            }
            Ok(Next::Idle) => panic!("a savefile never idles"),
            Ok(Next::Eof) | Err(_) => break,
        }
    }
    assert!(
        matches!(source.next_packet(), Ok(Next::Eof)),
        "a savefile stays ended"
    );
    for warning in source.warnings() {
        let _ = warning.to_string();
    }
});
