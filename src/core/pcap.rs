//! A small capture-file reader for tests and tools: pcapng (SHB/IDB/EPB/SPB) and classic pcap
//! files (their blocks and records read by the pcap-file crate), link types null/loop,
//! Ethernet, raw IP and Linux cooked (SLL/SLL2), IPv4/IPv6, and the ASAP/ENRP payloads of SCTP DATA chunks (PPID 11/12), of UDP (ports 3863/9901) and of TCP
//! streams on ports 3863/9901 (our unframed TCP mapping, reassembled in order per direction).
//!
//! It only parses bytes; reading the file is the caller's business.

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::IpAddr;

use super::wire::{message_length, Protocol, ASAP_PORT, ENRP_PORT};

/// Capture-file level errors (packet-level problems are skipped or reported as warnings).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PcapError {
    #[error("not a pcap or pcapng file")]
    BadMagic,
    #[error("truncated capture file at offset {0}")]
    Truncated(usize),
    #[error("bad block length {len} at offset {at}")]
    BadBlock { at: usize, len: usize },
}

/// One captured frame.
#[derive(Debug, Clone)]
pub struct Packet<'a> {
    /// 1-based frame number (as Wireshark counts).
    pub frame: usize,
    /// Timestamp: seconds and nanoseconds since the epoch (0 if the block has none).
    pub ts_sec: u64,
    pub ts_nsec: u32,
    pub link_type: u32,
    pub data: Cow<'a, [u8]>,
}

/// How a message was carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carrier {
    Sctp,
    Tcp,
    Udp,
}

/// One ASAP or ENRP message found in a capture.
#[derive(Debug, Clone)]
pub struct CapturedMessage {
    /// Frame that completed the message.
    pub frame: usize,
    pub ts_sec: u64,
    pub ts_nsec: u32,
    pub protocol: Protocol,
    pub carrier: Carrier,
    pub src: Option<(IpAddr, u16)>,
    pub dst: Option<(IpAddr, u16)>,
    pub bytes: Vec<u8>,
}

/// All messages of a capture plus per-frame problems that were skipped.
#[derive(Debug, Clone, Default)]
pub struct Extracted {
    pub messages: Vec<CapturedMessage>,
    pub warnings: Vec<(usize, String)>,
}

fn u16_at(b: &[u8], at: usize, le: bool) -> Option<u16> {
    let s = b.get(at..at + 2)?;
    let a = [s[0], s[1]];
    Some(if le {
        u16::from_le_bytes(a)
    } else {
        u16::from_be_bytes(a)
    })
}

fn u32_at(b: &[u8], at: usize, le: bool) -> Option<u32> {
    let s = b.get(at..at + 4)?;
    let a = [s[0], s[1], s[2], s[3]];
    Some(if le {
        u32::from_le_bytes(a)
    } else {
        u32::from_be_bytes(a)
    })
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    u16_at(b, at, false)
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    u32_at(b, at, false)
}

/// Splits a capture file into frames (the file formats are pcap-file's).
pub fn packets(file: &[u8]) -> Result<Vec<Packet<'_>>, PcapError> {
    match file.get(0..4) {
        Some([0x0a, 0x0d, 0x0d, 0x0a]) => pcapng_packets(file),
        Some(_) => pcap_packets(file),
        None => Err(PcapError::BadMagic),
    }
}

/// A pcap-file error at `rest` (the unparsed tail of `file`) as ours.
fn error_at(file: &[u8], rest: &[u8], e: pcap_file::PcapError) -> PcapError {
    let at = file.len() - rest.len();
    match e {
        pcap_file::PcapError::IncompleteBuffer => PcapError::Truncated(at),
        _ => PcapError::BadBlock {
            at,
            len: rest.len(),
        },
    }
}

fn pcap_packets(file: &[u8]) -> Result<Vec<Packet<'_>>, PcapError> {
    let (mut rest, parser) =
        pcap_file::pcap::PcapParser::new(file).map_err(|_| PcapError::BadMagic)?;
    let link_type = u32::from(parser.header().datalink);
    let mut out = Vec::new();
    while !rest.is_empty() {
        let (next, p) = parser
            .next_packet(rest)
            .map_err(|e| error_at(file, rest, e))?;
        out.push(Packet {
            frame: out.len() + 1,
            ts_sec: p.timestamp.as_secs(),
            ts_nsec: p.timestamp.subsec_nanos(),
            link_type,
            data: p.data,
        });
        rest = next;
    }
    Ok(out)
}

struct Interface {
    link_type: u32,
    /// Timestamp units per second (the if_tsresol option; microseconds without it).
    units: u64,
}

fn pcapng_packets(file: &[u8]) -> Result<Vec<Packet<'_>>, PcapError> {
    use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption;
    use pcap_file::pcapng::{Block, PcapNgParser};
    let (mut rest, mut parser) = PcapNgParser::new(file).map_err(|_| PcapError::BadMagic)?;
    let mut out = Vec::new();
    let mut ifaces: Vec<Interface> = Vec::new();
    while !rest.is_empty() {
        let (next, block) = parser
            .next_block(rest)
            .map_err(|e| error_at(file, rest, e))?;
        rest = next;
        let (iface, raw_ts, data) = match block {
            Block::SectionHeader(_) => {
                ifaces.clear();
                continue;
            }
            Block::InterfaceDescription(idb) => {
                let units = idb
                    .options
                    .iter()
                    .find_map(|o| match o {
                        InterfaceDescriptionOption::IfTsResol(r) => Some(*r),
                        _ => None,
                    })
                    .map_or(1_000_000, |r| {
                        let exp = u32::from(r & 0x7f);
                        if r & 0x80 != 0 {
                            1u64.checked_shl(exp).unwrap_or(1)
                        } else {
                            10u64.checked_pow(exp).unwrap_or(1)
                        }
                    });
                ifaces.push(Interface {
                    link_type: u32::from(idb.linktype),
                    units,
                });
                continue;
            }
            // pcap-file hands the raw timestamp over as nanoseconds; its unit is the
            // interface's.
            Block::EnhancedPacket(epb) => (
                ifaces.get(epb.interface_id as usize),
                epb.timestamp.as_nanos() as u64,
                epb.data,
            ),
            Block::SimplePacket(spb) => (ifaces.first(), 0, spb.data),
            _ => continue,
        };
        let (link_type, units) = iface.map_or((1, 1_000_000), |i| (i.link_type, i.units));
        let units = units.max(1);
        out.push(Packet {
            frame: out.len() + 1,
            ts_sec: raw_ts / units,
            ts_nsec: ((u128::from(raw_ts % units) * 1_000_000_000) / u128::from(units)) as u32,
            link_type,
            data,
        });
    }
    Ok(out)
}

/// The IP packet inside a link-layer frame.
fn ip_payload(link_type: u32, data: &[u8]) -> Option<&[u8]> {
    match link_type {
        // DLT_NULL (host-order AF) / DLT_LOOP (network-order AF): any AF, the IP version says.
        0 | 108 => data.get(4..),
        // Ethernet (with optional VLAN tags).
        1 => {
            let mut at = 12;
            let mut et = be16(data, at)?;
            while et == 0x8100 || et == 0x88a8 {
                at += 4;
                et = be16(data, at)?;
            }
            match et {
                0x0800 | 0x86dd => data.get(at + 2..),
                _ => None,
            }
        }
        // Raw IP.
        12 | 14 | 101 | 228 | 229 => Some(data),
        // Linux cooked v1: protocol at 14, header 16.
        113 => match be16(data, 14)? {
            0x0800 | 0x86dd => data.get(16..),
            _ => None,
        },
        // Linux cooked v2: protocol at 0, header 20.
        276 => match be16(data, 0)? {
            0x0800 | 0x86dd => data.get(20..),
            _ => None,
        },
        _ => None,
    }
}

/// (source, destination, IP protocol, transport payload) of an unfragmented IP packet.
fn transport_payload(ip: &[u8]) -> Option<(IpAddr, IpAddr, u8, &[u8])> {
    match ip.first()? >> 4 {
        4 => {
            let ihl = ((ip[0] & 0x0f) as usize) * 4;
            let total = be16(ip, 2)? as usize;
            let frag = be16(ip, 6)?;
            if frag & 0x3fff != 0 || ihl < 20 {
                return None; // fragments are not reassembled
            }
            let src: [u8; 4] = ip.get(12..16)?.try_into().ok()?;
            let dst: [u8; 4] = ip.get(16..20)?.try_into().ok()?;
            let end = total.min(ip.len());
            Some((src.into(), dst.into(), ip[9], ip.get(ihl..end)?))
        }
        6 => {
            let plen = be16(ip, 4)? as usize;
            let src: [u8; 16] = ip.get(8..24)?.try_into().ok()?;
            let dst: [u8; 16] = ip.get(24..40)?.try_into().ok()?;
            let mut next = *ip.get(6)?;
            let end = (40 + plen).min(ip.len());
            let mut at = 40;
            // Skip hop-by-hop, routing and destination options; give up on fragments.
            while matches!(next, 0 | 43 | 60) {
                next = *ip.get(at)?;
                at += (*ip.get(at + 1)? as usize + 1) * 8;
            }
            if next == 44 {
                return None;
            }
            Some((src.into(), dst.into(), next, ip.get(at..end)?))
        }
        _ => None,
    }
}

type Flow = (IpAddr, u16, IpAddr, u16);

#[derive(Default)]
struct TcpStream {
    next_seq: Option<u32>,
    buf: Vec<u8>,
}

/// Extracts every ASAP/ENRP message of a capture file, in capture order.
pub fn extract_messages(file: &[u8]) -> Result<Extracted, PcapError> {
    let mut ex = Extracted::default();
    let mut tcp: HashMap<Flow, TcpStream> = HashMap::new();
    // SCTP fragments: (flow, stream id) -> (ppid, bytes so far).
    let mut frags: HashMap<(Flow, u16), (u32, Vec<u8>)> = HashMap::new();
    for p in packets(file)? {
        let Some(ip) = ip_payload(p.link_type, &p.data) else {
            continue;
        };
        let Some((src, dst, proto, seg)) = transport_payload(ip) else {
            continue;
        };
        let (Some(sport), Some(dport)) = (be16(seg, 0), be16(seg, 2)) else {
            continue;
        };
        let flow = (src, sport, dst, dport);
        let push = |ex: &mut Extracted, protocol, carrier, bytes: Vec<u8>| {
            ex.messages.push(CapturedMessage {
                frame: p.frame,
                ts_sec: p.ts_sec,
                ts_nsec: p.ts_nsec,
                protocol,
                carrier,
                src: Some((src, sport)),
                dst: Some((dst, dport)),
                bytes,
            })
        };
        let by_port = if sport == ASAP_PORT || dport == ASAP_PORT {
            Some(Protocol::Asap)
        } else if sport == ENRP_PORT || dport == ENRP_PORT {
            Some(Protocol::Enrp)
        } else {
            None
        };
        match proto {
            132 => {
                let mut at = 12;
                while let (Some(ctype), Some(cflags), Some(clen)) =
                    (seg.get(at), seg.get(at + 1), be16(seg, at + 2))
                {
                    let clen = clen as usize;
                    if clen < 4 || at + clen > seg.len() {
                        ex.warnings
                            .push((p.frame, format!("bad SCTP chunk length {clen}")));
                        break;
                    }
                    let chunk = &seg[at..at + clen];
                    at += (clen + 3) & !3;
                    if *ctype != 0 || clen < 16 {
                        continue;
                    }
                    let sid = be16(chunk, 8).unwrap_or(0);
                    let ppid = be32(chunk, 12).unwrap_or(0);
                    let data = &chunk[16..];
                    let (b, e) = (cflags & 0x02 != 0, cflags & 0x01 != 0);
                    let whole = match (b, e) {
                        (true, true) => Some((ppid, data.to_vec())),
                        (true, false) => {
                            frags.insert((flow, sid), (ppid, data.to_vec()));
                            None
                        }
                        (false, more_end) => match frags.get_mut(&(flow, sid)) {
                            Some((_, buf)) => {
                                buf.extend_from_slice(data);
                                if more_end {
                                    frags.remove(&(flow, sid))
                                } else {
                                    None
                                }
                            }
                            None => {
                                ex.warnings
                                    .push((p.frame, "SCTP fragment without start".into()));
                                None
                            }
                        },
                    };
                    if let Some((ppid, bytes)) = whole {
                        if let Some(protocol) = Protocol::from_ppid(ppid) {
                            push(&mut ex, protocol, Carrier::Sctp, bytes);
                        }
                    }
                }
            }
            17 => {
                if let (Some(protocol), Some(data)) = (by_port, seg.get(8..)) {
                    push(&mut ex, protocol, Carrier::Udp, data.to_vec());
                }
            }
            6 => {
                let Some(protocol) = by_port else { continue };
                let (Some(seq), Some(off)) = (be32(seg, 4), seg.get(12)) else {
                    continue;
                };
                let flags = seg.get(13).copied().unwrap_or(0);
                let Some(payload) = seg.get(((off >> 4) as usize) * 4..) else {
                    continue;
                };
                let st = tcp.entry(flow).or_default();
                if flags & 0x02 != 0 {
                    st.next_seq = Some(seq.wrapping_add(1));
                    st.buf.clear();
                    continue;
                }
                if payload.is_empty() {
                    continue;
                }
                let next = *st.next_seq.get_or_insert(seq);
                let ahead = seq.wrapping_sub(next) as i32;
                let data = if ahead > 0 {
                    ex.warnings
                        .push((p.frame, "TCP gap, stream resynced".into()));
                    st.buf.clear();
                    payload
                } else {
                    let skip = next.wrapping_sub(seq) as usize;
                    if skip >= payload.len() {
                        continue; // retransmission
                    }
                    &payload[skip..]
                };
                st.buf.extend_from_slice(data);
                st.next_seq = Some(
                    seq.wrapping_add(payload.len() as u32)
                        .max_wrapping(next.wrapping_add(data.len() as u32)),
                );
                loop {
                    match message_length(&st.buf) {
                        Ok(Some(n)) => {
                            let msg: Vec<u8> = st.buf.drain(..n).collect();
                            push(&mut ex, protocol, Carrier::Tcp, msg);
                        }
                        Ok(None) => break,
                        Err(e) => {
                            ex.warnings
                                .push((p.frame, format!("TCP stream desynchronised: {e}")));
                            st.buf.clear();
                            break;
                        }
                    }
                }
            }
            _ => {}
        }
    }
    Ok(ex)
}

trait MaxWrapping {
    fn max_wrapping(self, other: Self) -> Self;
}

impl MaxWrapping for u32 {
    /// The later of two sequence numbers (serial number arithmetic).
    fn max_wrapping(self, other: u32) -> u32 {
        if (other.wrapping_sub(self) as i32) > 0 {
            other
        } else {
            self
        }
    }
}
