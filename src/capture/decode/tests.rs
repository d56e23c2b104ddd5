//! Unit tests of the frame decoder.

use super::*;

fn ipv4_tcp(total_len: u16) -> Vec<u8> {
    let mut p = vec![
        0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
    ];
    p[2..4].copy_from_slice(&total_len.to_be_bytes());
    // ports 32400 -> 50000, seq, ack, data offset 5, flags SYN|ACK
    p.extend_from_slice(&32400u16.to_be_bytes());
    p.extend_from_slice(&50000u16.to_be_bytes());
    p.extend_from_slice(&[0; 8]);
    p.extend_from_slice(&[0x50, 0x12, 0xff, 0xff, 0, 0, 0, 0]);
    p
}

#[test]
fn raw_ipv4_truncated_keeps_true_length() {
    let p = ipv4_tcp(1500);
    let seg = decode(LINKTYPE_RAW, &p).unwrap();
    assert_eq!(seg.ip_len, 1500);
    assert_eq!(seg.payload_len, 1460);
    assert!(seg.payload.is_empty());
    assert_eq!((seg.sport, seg.dport), (32400, 50000));
    assert!(seg.syn && !seg.fin && !seg.rst);
    assert_eq!(decode(LINKTYPE_RAW, &p[..23]), Err(Skip::Truncated));
    assert_eq!(decode(LINKTYPE_RAW, &p[..24]).unwrap().dport, 50000);
}

#[test]
fn null_family_either_byte_order() {
    let mut f = 2u32.to_be_bytes().to_vec();
    f.extend(ipv4_tcp(40));
    assert!(decode(LINKTYPE_NULL, &f).is_ok());
    f[..4].copy_from_slice(&2u32.to_le_bytes());
    assert!(decode(LINKTYPE_LOOP, &f).is_ok());
    f[..4].copy_from_slice(&7u32.to_le_bytes());
    assert_eq!(decode(LINKTYPE_NULL, &f), Err(Skip::NotIp));
}

#[test]
fn vlan_tag_loop_is_bounded() {
    let mut f = vec![0u8; 12];
    for _ in 0..10 {
        f.extend_from_slice(&[0x81, 0x00, 0, 1]);
    }
    f.extend_from_slice(&[0x81, 0x00]);
    assert_eq!(decode(LINKTYPE_ETHERNET, &f), Err(Skip::Malformed));
}

#[test]
fn unsupported_linktype_is_named() {
    let e = check_linktype(127).unwrap_err().to_string();
    assert!(e.contains("IEEE802_11_RADIO (127)"), "{e}");
    assert!(check_linktype(LINKTYPE_LINUX_SLL2).is_ok());
}
