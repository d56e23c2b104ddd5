//! streamwarden's own reader for classic pcap savefiles, and a block walker for pcapng.
//!
//! libpcap stays the reader of savefiles ([`super::PacketSource::open_file`]); this module is
//! what [`super::PacketSource`] falls back on when libpcap refuses a classic pcap whose records
//! are sound (a header snaplen smaller than the records, which libpcap cuts or refuses), and
//! what finds where a file that is still being written was cut short. It reads the classic
//! format of both byte orders with microsecond (magic `0xa1b2c3d4`) or nanosecond
//! (`0xa1b23c4d`) timestamps. It never panics on any input and never allocates more than
//! [`MAX_CAPLEN`] bytes for a record.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

use crate::micros::Micros;

/// The largest captured length accepted for one record: libpcap's limit for the link types
/// streamwarden decodes (256 KiB). A record claiming more is damage, not data.
pub const MAX_CAPLEN: u32 = 262_144;
/// Length of the classic pcap file header.
pub const FILE_HEADER_LEN: usize = 24;
/// Length of a classic pcap record header.
pub const RECORD_HEADER_LEN: usize = 16;

const MAGIC_MICROS: u32 = 0xa1b2_c3d4;
const MAGIC_NANOS: u32 = 0xa1b2_3c4d;
const PCAPNG_SHB: u32 = 0x0a0d_0d0a;
const PCAPNG_BYTE_ORDER_MAGIC: u32 = 0x1a2b_3c4d;
/// `LINKTYPE_RAW` in a file is `DLT_RAW` once libpcap has opened it.
const LINKTYPE_RAW: u32 = 101;
const DLT_RAW: i32 = 12;
/// How many records [`snaplen_exceeded`] looks at, and up to how many bytes into the file.
const PEEK_RECORDS: u64 = 16;
const PEEK_BYTES: u64 = 1 << 20;
/// Read buffer of the classic reader.
const BUFFER_SIZE: usize = 64 * 1024;

/// What a savefile is, from its first bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Classic pcap with one of the two standard magics.
    Classic(ClassicHeader),
    /// pcapng (starts with a Section Header Block).
    Pcapng,
    /// Anything else (libpcap may still know it, e.g. the modified pcap format), or not
    /// looked at (a pipe, which cannot be read twice).
    Other,
}

/// The parsed header of a classic pcap file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClassicHeader {
    /// Fields are stored big-endian.
    pub big_endian: bool,
    /// Timestamps hold nanoseconds rather than microseconds.
    pub nanos: bool,
    /// Format version (major, minor).
    pub version: (u16, u16),
    /// The snaplen the header claims (0 means none).
    pub snaplen: u32,
    /// The link type field as stored (upper bits may carry FCS information).
    pub linktype_field: u32,
}

impl ClassicHeader {
    /// Parses the 24-byte file header; `None` when the magic is not a classic pcap one.
    pub fn parse(bytes: &[u8; FILE_HEADER_LEN]) -> Option<Self> {
        let magic = [bytes[0], bytes[1], bytes[2], bytes[3]];
        let (big_endian, nanos) = match (u32::from_le_bytes(magic), u32::from_be_bytes(magic)) {
            (MAGIC_MICROS, _) => (false, false),
            (MAGIC_NANOS, _) => (false, true),
            (_, MAGIC_MICROS) => (true, false),
            (_, MAGIC_NANOS) => (true, true),
            _ => return None,
        };
        let u16_at = |at: usize| {
            let b = [bytes[at], bytes[at + 1]];
            if big_endian {
                u16::from_be_bytes(b)
            } else {
                u16::from_le_bytes(b)
            }
        };
        Some(ClassicHeader {
            big_endian,
            nanos,
            version: (u16_at(4), u16_at(6)),
            snaplen: endian_u32(big_endian, bytes, 16),
            linktype_field: endian_u32(big_endian, bytes, 20),
        })
    }

    /// The link type as libpcap reports it once it has opened the file (`LINKTYPE_RAW`
    /// becomes `DLT_RAW`; FCS bits are dropped).
    pub fn linktype(&self) -> i32 {
        let linktype = self.linktype_field & 0x03ff_ffff;
        if linktype == LINKTYPE_RAW {
            DLT_RAW
        } else {
            // masked to 26 bits: always fits
            i32::try_from(linktype).unwrap_or(i32::MAX)
        }
    }
}

/// A `u32` at `at` in `bytes` (which must hold 4 bytes there) in the given byte order.
fn endian_u32(big_endian: bool, bytes: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    if let Some(src) = bytes.get(at..at + 4) {
        b.copy_from_slice(src);
    }
    if big_endian {
        u32::from_be_bytes(b)
    } else {
        u32::from_le_bytes(b)
    }
}

/// Reads until `buf` is full or the input ends; the number of bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Skips up to `n` bytes; the number skipped (fewer when the input ends).
fn skip(r: &mut impl Read, n: u64) -> io::Result<u64> {
    io::copy(&mut r.take(n), &mut io::sink())
}

/// Tells a savefile's format from its first bytes. A file too short to tell is [`Format::Other`].
pub fn sniff(path: &Path) -> io::Result<Format> {
    let mut header = [0u8; FILE_HEADER_LEN];
    let got = read_full(&mut File::open(path)?, &mut header)?;
    if got >= 4 && endian_u32(false, &header, 0) == PCAPNG_SHB {
        return Ok(Format::Pcapng);
    }
    if got < FILE_HEADER_LEN {
        return Ok(Format::Other);
    }
    Ok(ClassicHeader::parse(&header).map_or(Format::Other, Format::Classic))
}

/// Where and how a savefile ends in the middle of a record (or block).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cut {
    /// Complete records before the cut.
    pub complete: u64,
    /// Byte offset where the cut record or block starts.
    pub offset: u64,
    /// What is missing, e.g. "record 5's header announces 100 captured bytes but only 90
    /// follow".
    pub detail: String,
}

/// One record header of a classic pcap file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordHeader {
    /// Timestamp in microseconds since the epoch (nanoseconds truncated).
    pub ts_micros: i64,
    /// Captured length (the record's data length).
    pub caplen: u32,
    /// Length on the wire.
    pub orig_len: u32,
}

/// The outcome of reading one record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// A whole record; its bytes are [`ClassicReader::data`].
    Record(RecordHeader),
    /// The file ends cleanly after the last record.
    End,
    /// The file ends in the middle of a record.
    Cut(Cut),
}

/// A sequential reader of classic pcap records.
pub struct ClassicReader {
    file: BufReader<File>,
    header: ClassicHeader,
    /// Records read so far.
    records: u64,
    /// Byte offset of the next record.
    offset: u64,
    data: Vec<u8>,
}

impl ClassicReader {
    /// Opens a classic pcap file and reads its header. The error says what is wrong without
    /// the path (callers add it).
    pub fn open(path: &Path) -> Result<Self, String> {
        let file = File::open(path).map_err(|e| e.to_string())?;
        let mut file = BufReader::with_capacity(BUFFER_SIZE, file);
        let mut bytes = [0u8; FILE_HEADER_LEN];
        let got = read_full(&mut file, &mut bytes).map_err(|e| e.to_string())?;
        if got < FILE_HEADER_LEN {
            return Err(format!(
                "the {FILE_HEADER_LEN}-byte pcap file header is cut after {got} bytes"
            ));
        }
        let header = ClassicHeader::parse(&bytes)
            .ok_or_else(|| "not a classic pcap file (unknown magic number)".to_owned())?;
        if header.version.0 != 2 {
            return Err(format!(
                "pcap format version {}.{} is not supported (only 2.x)",
                header.version.0, header.version.1
            ));
        }
        Ok(ClassicReader {
            file,
            header,
            records: 0,
            offset: FILE_HEADER_LEN as u64,
            data: Vec::new(),
        })
    }

    /// The file header.
    pub fn header(&self) -> &ClassicHeader {
        &self.header
    }

    /// Records read so far (the number of the last one read, counting from 1).
    pub fn records(&self) -> u64 {
        self.records
    }

    /// The captured bytes of the last record read.
    #[inline]
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// Reads the next record. Errors (a record over [`MAX_CAPLEN`], an I/O error) name the
    /// record and its byte offset, not the path.
    pub fn next_record(&mut self) -> Result<Step, String> {
        let number = self.records + 1;
        let at = self.offset;
        let io_err = |e: io::Error| format!("reading record {number} at byte {at}: {e}");
        let mut h = [0u8; RECORD_HEADER_LEN];
        let got = read_full(&mut self.file, &mut h).map_err(io_err)?;
        if got == 0 {
            return Ok(Step::End);
        }
        if got < RECORD_HEADER_LEN {
            return Ok(Step::Cut(Cut {
                complete: self.records,
                offset: at,
                detail: format!(
                    "record {number}'s {RECORD_HEADER_LEN}-byte header is cut after {got} bytes"
                ),
            }));
        }
        let be = self.header.big_endian;
        // libpcap reads both timestamp fields as signed 32-bit integers.
        let sec = i64::from(endian_u32(be, &h, 0) as i32);
        let frac = i64::from(endian_u32(be, &h, 4) as i32);
        let caplen = endian_u32(be, &h, 8);
        let orig_len = endian_u32(be, &h, 12);
        if caplen > MAX_CAPLEN {
            return Err(format!(
                "record {number} at byte {at} claims {caplen} captured bytes, over the \
                 {MAX_CAPLEN}-byte maximum: the file is damaged"
            ));
        }
        // caplen <= MAX_CAPLEN: fits in usize
        let len = caplen as usize;
        self.data.resize(len, 0);
        let got = read_full(&mut self.file, &mut self.data).map_err(io_err)?;
        if got < len {
            self.data.clear();
            return Ok(Step::Cut(Cut {
                complete: self.records,
                offset: at,
                detail: format!(
                    "record {number}'s header announces {caplen} captured bytes but only \
                     {got} follow"
                ),
            }));
        }
        let frac_micros = if self.header.nanos { frac / 1000 } else { frac };
        self.records = number;
        self.offset = at + (RECORD_HEADER_LEN as u64) + u64::from(caplen);
        Ok(Step::Record(RecordHeader {
            ts_micros: Micros::from_parts(sec, frac_micros).0,
            caplen,
            orig_len,
        }))
    }
}

/// A record among the first few of a classic pcap file that holds more bytes than the
/// header's snaplen: `(record number, its caplen)`. libpcap cuts such records to the snaplen
/// (or, in some versions, refuses the file); tshark reads them whole. Looks at no more than
/// 16 records or the first MiB; `None` also when the file cannot be read (libpcap then says
/// why).
pub fn snaplen_exceeded(path: &Path) -> Option<(u64, u32)> {
    let mut reader = ClassicReader::open(path).ok()?;
    let snaplen = reader.header.snaplen;
    if snaplen == 0 || snaplen >= MAX_CAPLEN {
        return None;
    }
    while reader.records < PEEK_RECORDS && reader.offset < PEEK_BYTES {
        match reader.next_record() {
            Ok(Step::Record(h)) if h.caplen > snaplen => return Some((reader.records, h.caplen)),
            Ok(Step::Record(_)) => {}
            _ => return None,
        }
    }
    None
}

/// Walks the blocks of a pcapng file and finds where it is cut short: `Ok(None)` when every
/// block is whole or the structure is not understood (a damaged block length is not a cut).
pub fn pcapng_cut(path: &Path) -> io::Result<Option<Cut>> {
    let mut file = BufReader::with_capacity(BUFFER_SIZE, File::open(path)?);
    let mut offset: u64 = 0;
    let mut packets: u64 = 0;
    let mut big_endian = false;
    loop {
        let mut head = [0u8; 12];
        let got = read_full(&mut file, &mut head[..8])?;
        if got == 0 {
            return Ok(None);
        }
        let cut = |detail: String| {
            Ok(Some(Cut {
                complete: packets,
                offset,
                detail,
            }))
        };
        if got < 8 {
            return cut(format!(
                "the block header there is cut after {got} of 8 bytes"
            ));
        }
        let mut consumed: u64 = 8;
        let block_type_le = endian_u32(false, &head, 0);
        if block_type_le == PCAPNG_SHB {
            let got = read_full(&mut file, &mut head[8..12])?;
            if got < 4 {
                return cut(format!(
                    "the section header block there is cut after {} bytes",
                    8 + got
                ));
            }
            consumed = 12;
            big_endian = match endian_u32(false, &head, 8) {
                PCAPNG_BYTE_ORDER_MAGIC => false,
                m if m.swap_bytes() == PCAPNG_BYTE_ORDER_MAGIC => true,
                _ => return Ok(None),
            };
        }
        let block_type = endian_u32(big_endian, &head, 0);
        let total = endian_u32(big_endian, &head, 4);
        if total < 12 || !total.is_multiple_of(4) || u64::from(total) < consumed {
            return Ok(None);
        }
        let rest = u64::from(total) - consumed;
        let skipped = skip(&mut file, rest)?;
        if skipped < rest {
            let what = match block_type {
                2 | 3 | 6 => format!("record {}'s block", packets + 1),
                t => format!("a block of type {t:#x} after record {packets}"),
            };
            return cut(format!(
                "{what} announces {total} bytes but only {} follow",
                consumed + skipped
            ));
        }
        // Packet Block (obsolete), Simple Packet Block, Enhanced Packet Block.
        if matches!(block_type, 2 | 3 | 6) {
            packets += 1;
        }
        offset += u64::from(total);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(magic: u32, big_endian: bool, snaplen: u32, linktype: u32) -> [u8; 24] {
        let mut h = [0u8; 24];
        let put = |h: &mut [u8; 24], at: usize, v: u32| {
            let b = if big_endian {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            };
            h[at..at + 4].copy_from_slice(&b);
        };
        put(&mut h, 0, magic);
        let version = if big_endian {
            [0, 2, 0, 4]
        } else {
            [2, 0, 4, 0]
        };
        h[4..8].copy_from_slice(&version);
        put(&mut h, 16, snaplen);
        put(&mut h, 20, linktype);
        h
    }

    #[test]
    fn both_byte_orders_and_precisions() {
        for (magic, nanos) in [(MAGIC_MICROS, false), (MAGIC_NANOS, true)] {
            for big_endian in [false, true] {
                let h = ClassicHeader::parse(&header(magic, big_endian, 64, 101)).unwrap();
                assert_eq!((h.big_endian, h.nanos), (big_endian, nanos));
                assert_eq!((h.version, h.snaplen), ((2, 4), 64));
                assert_eq!(h.linktype(), DLT_RAW);
            }
        }
        assert_eq!(ClassicHeader::parse(&[0u8; 24]), None);
        let fcs = ClassicHeader::parse(&header(MAGIC_MICROS, false, 0, 0x1400_0001)).unwrap();
        assert_eq!(fcs.linktype(), 1);
    }

    #[test]
    fn reads_records_and_finds_cuts() {
        let dir = std::env::temp_dir().join(format!("sw-pcapfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.pcap");
        let mut bytes = header(MAGIC_NANOS, true, 0, 1).to_vec();
        for (sec, nanos, data) in [(5u32, 1_500u32, &[1u8, 2, 3][..]), (6, 999_999_999, &[4])] {
            for v in [sec, nanos, data.len() as u32, 60] {
                bytes.extend(v.to_be_bytes());
            }
            bytes.extend_from_slice(data);
        }
        std::fs::write(&path, &bytes).unwrap();
        let mut r = ClassicReader::open(&path).unwrap();
        let Ok(Step::Record(h)) = r.next_record() else {
            panic!()
        };
        assert_eq!((h.ts_micros, h.caplen, h.orig_len), (5_000_001, 3, 60));
        assert_eq!(r.data(), &[1, 2, 3]);
        let Ok(Step::Record(h)) = r.next_record() else {
            panic!()
        };
        assert_eq!((h.ts_micros, r.data()), (6_999_999, &[4][..]));
        assert_eq!(r.next_record(), Ok(Step::End));

        std::fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
        let mut r = ClassicReader::open(&path).unwrap();
        assert!(matches!(r.next_record(), Ok(Step::Record(_))));
        let Ok(Step::Cut(cut)) = r.next_record() else {
            panic!()
        };
        assert_eq!((cut.complete, cut.offset), (1, 24 + 16 + 3));
        assert!(cut.detail.contains("record 2"), "{}", cut.detail);

        std::fs::write(&path, &bytes[..10]).unwrap();
        let err = ClassicReader::open(&path).err().unwrap();
        assert!(err.contains("cut after 10"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
