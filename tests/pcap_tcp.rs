//! The capture reader reassembles our unframed TCP mapping (messages back to back, split
//! across segments) and handles classic pcap, Ethernet, raw IPv6 and Linux SLL.

use rsplib::core::pcap::{extract_messages, Carrier};
use rsplib::core::wire::{decode, Protocol};

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn tcp(sport: u16, dport: u16, seq: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut t = Vec::new();
    t.extend_from_slice(&sport.to_be_bytes());
    t.extend_from_slice(&dport.to_be_bytes());
    t.extend_from_slice(&seq.to_be_bytes());
    t.extend_from_slice(&0u32.to_be_bytes());
    t.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    t.extend_from_slice(payload);
    t
}

fn ipv4(seg: &[u8]) -> Vec<u8> {
    let mut ip = vec![
        0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
    ];
    ip[2..4].copy_from_slice(&((20 + seg.len()) as u16).to_be_bytes());
    ip.extend_from_slice(seg);
    ip
}

fn ipv6(seg: &[u8]) -> Vec<u8> {
    let mut ip = vec![0x60, 0, 0, 0, 0, 0, 6, 64];
    ip[4..6].copy_from_slice(&(seg.len() as u16).to_be_bytes());
    ip.extend_from_slice(&[0; 15]);
    ip.push(1);
    ip.extend_from_slice(&[0; 15]);
    ip.push(2);
    ip.extend_from_slice(seg);
    ip
}

fn pcap(link_type: u32, frames: &[Vec<u8>]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    f.extend_from_slice(&[2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0]);
    f.extend_from_slice(&link_type.to_le_bytes());
    for (i, d) in frames.iter().enumerate() {
        f.extend_from_slice(&(1000 + i as u32).to_le_bytes());
        f.extend_from_slice(&500u32.to_le_bytes());
        f.extend_from_slice(&(d.len() as u32).to_le_bytes());
        f.extend_from_slice(&(d.len() as u32).to_le_bytes());
        f.extend_from_slice(d);
    }
    f
}

fn ether(ip: Vec<u8>, v6: bool) -> Vec<u8> {
    let mut e = vec![0; 12];
    e.extend_from_slice(if v6 { &[0x86, 0xdd] } else { &[0x08, 0x00] });
    e.extend(ip);
    e
}

fn sll(ip: Vec<u8>) -> Vec<u8> {
    let mut e = vec![0; 14];
    e.extend_from_slice(&[0x08, 0x00]);
    e.extend(ip);
    e
}

#[test]
fn tcp_stream_reassembly() {
    let a = hex("05000018 0009000b 57727250 6f6f6c00 803f0008 00000001");
    let b = hex("08000018 0009000b 57727250 6f6f6c00 000e0008 0000a001");
    let mut stream = a.clone();
    stream.extend_from_slice(&b);
    let (p1, p2) = stream.split_at(a.len() + 10);
    let isn = 0xffff_fff0; // wraps around
    let segs = [
        tcp(40000, 3863, isn, 0x02, &[]),
        tcp(40000, 3863, isn.wrapping_add(1), 0x18, p1),
        tcp(40000, 3863, isn.wrapping_add(1), 0x18, p1), // retransmission
        tcp(40000, 3863, isn.wrapping_add(1 + p1.len() as u32), 0x18, p2),
        tcp(40001, 9901, 7, 0x18, &hex("0500000c 22222222 11111111")),
    ];
    for (link, frames) in [
        (
            1u32,
            segs.iter()
                .map(|s| ether(ipv4(s), false))
                .collect::<Vec<_>>(),
        ),
        (1, segs.iter().map(|s| ether(ipv6(s), true)).collect()),
        (101, segs.iter().map(|s| ipv6(s)).collect()),
        (113, segs.iter().map(|s| sll(ipv4(s))).collect()),
    ] {
        let ex = extract_messages(&pcap(link, &frames)).unwrap();
        assert!(ex.warnings.is_empty(), "{:?}", ex.warnings);
        assert_eq!(ex.messages.len(), 3, "link type {link}");
        assert_eq!(ex.messages[0].bytes, a);
        assert_eq!(ex.messages[0].frame, 2);
        assert_eq!(ex.messages[1].bytes, b);
        assert_eq!(ex.messages[1].frame, 4);
        assert_eq!(ex.messages[0].carrier, Carrier::Tcp);
        assert_eq!(ex.messages[2].protocol, Protocol::Enrp);
        assert_eq!(
            (ex.messages[0].ts_sec, ex.messages[0].ts_nsec),
            (1001, 500_000)
        );
        for m in &ex.messages {
            decode(m.protocol, &m.bytes).unwrap();
        }
    }
}

#[test]
fn garbage_captures_are_errors_not_panics() {
    assert!(extract_messages(b"").is_err());
    assert!(extract_messages(b"hello world, not a capture").is_err());
    let mut f = pcap(
        1,
        &[ether(
            ipv4(&tcp(1, 3863, 0, 0x18, b"\x01\x00\x00\x02")),
            false,
        )],
    );
    let ex = extract_messages(&f).unwrap();
    assert_eq!(ex.warnings.len(), 1); // length 2 < 4 desynchronises the stream
    f.truncate(f.len() - 3);
    assert!(extract_messages(&f).is_err());
}
