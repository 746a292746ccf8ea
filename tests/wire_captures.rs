//! Every ASAP/ENRP message of the real rsplib 3.4.4 capture decodes and re-encodes to the
//! identical bytes; the checksums of hsdump's output are reproduced.

use rsplib::core::checksum::{pe_checksum, HandlespaceChecksum};
use rsplib::core::pcap::extract_messages;
use rsplib::core::types::PeId;
use rsplib::core::wire::{decode, EnrpBody, Message, Protocol};

const CAPTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/captures/rsplib-3.4.4-scenario.pcapng"
);
const HSDUMP_BEFORE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/captures/hsdump-before.txt"
);
const HSDUMP_AFTER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/captures/hsdump-after.txt"
);

#[test]
fn capture_round_trips_byte_exactly() {
    let file = std::fs::read(CAPTURE).expect("capture file");
    let ex = extract_messages(&file).expect("pcapng parses");
    assert!(ex.warnings.is_empty(), "{:?}", ex.warnings);
    let (mut asap, mut enrp) = (0, 0);
    let mut types = std::collections::BTreeMap::new();
    for m in &ex.messages {
        let d = decode(m.protocol, &m.bytes)
            .unwrap_or_else(|e| panic!("frame {}: {e} ({:02x?})", m.frame, m.bytes));
        assert!(d.unrecognized.is_empty());
        let again = d.message.to_bytes().unwrap();
        assert_eq!(again, m.bytes, "frame {} re-encodes differently", m.frame);
        match m.protocol {
            Protocol::Asap => asap += 1,
            Protocol::Enrp => enrp += 1,
        }
        *types
            .entry((m.protocol.name(), d.message.name()))
            .or_insert(0usize) += 1;
    }
    // tshark counts 448 ASAP and 98 ENRP DATA chunks (README: 25+187+12 ASAP exchanges).
    assert_eq!(asap, 448, "{types:?}");
    assert_eq!(enrp, 98, "{types:?}");
    assert!(types[&("enrp", "Presence")] >= 62);
    assert!(types[&("enrp", "Handle Update")] >= 22);
}

#[test]
fn presence_checksums_match_handlespace() {
    // Wire values advertised by the two registrars (fact sheet §6).
    let file = std::fs::read(CAPTURE).unwrap();
    let ex = extract_messages(&file).unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for m in ex.messages.iter().filter(|m| m.protocol == Protocol::Enrp) {
        if let Message::Enrp(e) = decode(Protocol::Enrp, &m.bytes).unwrap().message {
            if let EnrpBody::Presence { checksum, .. } = e.body {
                seen.insert(checksum);
            }
        }
    }
    for v in [0x5f1f, 0x6624, 0xb3d4, 0xffff] {
        assert!(seen.contains(&v), "{v:04x} not in {seen:04x?}");
    }
}

/// (pool handle, PE id, home, printed chsum) of every PE in an hsdump output.
fn hsdump_pes(text: &str) -> Vec<(String, u32, u32, u16)> {
    let mut pool = String::new();
    let mut pe = None;
    let mut out = Vec::new();
    for line in text.lines() {
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("+-- Pool \"") {
            pool = rest.split('"').next().unwrap().to_string();
        } else if t.starts_with("- idx:#") && t.contains(" flags=") && !t.contains("upd=") {
            let id = t
                .split('$')
                .nth(1)
                .unwrap()
                .split_whitespace()
                .next()
                .unwrap();
            pe = Some(u32::from_str_radix(id, 16).unwrap());
        } else if let Some(rest) = t.strip_prefix("chsum=$") {
            let sum = u16::from_str_radix(&rest[4..8], 16).unwrap();
            let home = rest.split("home=$").nth(1).unwrap();
            let home = u32::from_str_radix(&home[..8], 16).unwrap();
            out.push((pool.clone(), pe.take().unwrap_or(0), home, sum));
        }
    }
    out
}

#[test]
fn hsdump_checksums_are_reproduced() {
    for (path, total) in [(HSDUMP_BEFORE, 0x43c5u16), (HSDUMP_AFTER, 0xf412)] {
        let text = std::fs::read_to_string(path).unwrap();
        let pes = hsdump_pes(&text);
        // The first listing (with PE ids) precedes a second one without; keep unique PEs.
        let pes: Vec<_> = pes.into_iter().filter(|p| p.1 != 0).collect();
        assert!(pes.len() >= 5, "{pes:?}");
        let mut all = HandlespaceChecksum::new();
        let mut by_home = std::collections::BTreeMap::new();
        for (pool, id, home, printed) in &pes {
            assert_eq!(
                pe_checksum(pool.as_bytes(), PeId(*id)),
                *printed,
                "{pool} {id:08x}"
            );
            all.add(pool.as_bytes(), PeId(*id));
            by_home
                .entry(*home)
                .or_insert_with(HandlespaceChecksum::new)
                .add(pool.as_bytes(), PeId(*id));
        }
        assert_eq!(all.value(), total, "{path}");
        if path == HSDUMP_BEFORE {
            assert_eq!(by_home[&0x2222_2222].value(), 0x1f5f);
            assert_eq!(by_home[&0x2222_2222].wire_value(), 0x5f1f);
            assert_eq!(by_home[&0x1111_1111].wire_value(), 0x6624);
            let mut owner1 = by_home[&0x1111_1111];
            owner1.remove(b"EchoPool", PeId(0xe001));
            assert_eq!(owner1.wire_value(), 0xb3d4);
        }
    }
}

/// Seeds the fuzzer (`make fuzz-seed`): one corpus file per captured message.
#[test]
#[ignore]
fn write_fuzz_corpus() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/corpus/decode");
    std::fs::create_dir_all(dir).unwrap();
    let file = std::fs::read(CAPTURE).unwrap();
    for (i, m) in extract_messages(&file).unwrap().messages.iter().enumerate() {
        std::fs::write(
            format!("{dir}/capture-{i:04}-{}", m.protocol.name()),
            &m.bytes,
        )
        .unwrap();
    }
}
