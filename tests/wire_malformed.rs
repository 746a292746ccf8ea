//! Malformed input yields typed errors, never panics.

use rsplib::core::wire::*;

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn asap_err(s: &str) -> WireError {
    AsapMessage::decode(&hex(s)).expect_err(s)
}

const DEREG: &str = "02000018 0009000c 4563686f 506f6f6c 000e0008 0000e001";

#[test]
fn truncated_and_lying_message_lengths() {
    assert!(matches!(
        asap_err("0100"),
        WireError::Truncated {
            what: "message header",
            ..
        }
    ));
    assert!(matches!(
        asap_err("01000002"),
        WireError::BadLength {
            what: "message",
            len: 2,
            ..
        }
    ));
    assert!(matches!(
        asap_err("02000040 0009000c 4563686f 506f6f6c"),
        WireError::Truncated {
            what: "message",
            need: 64,
            have: 16
        }
    ));
    assert!(matches!(
        asap_err(&format!("{DEREG} 00000000")),
        WireError::TrailingBytes { extra: 4 }
    ));
    // Length field shorter than the parameters: the PE id no longer fits → missing.
    assert!(matches!(
        asap_err("02000010 0009000c 4563686f 506f6f6c 000e0008 0000e001"),
        WireError::TrailingBytes { .. }
    ));
    assert!(matches!(
        EnrpMessage::decode(&hex("05000008 22222222")).unwrap_err(),
        WireError::Truncated {
            what: "receiver server id",
            ..
        }
    ));
    assert!(matches!(
        asap_err("07000008 11111111"),
        WireError::MissingParameter {
            what: "pool handle"
        }
    ));
    assert!(matches!(
        asap_err("0a000006 1111"),
        WireError::Truncated { .. }
    ));
}

#[test]
fn lying_parameter_lengths() {
    // TLV length below 4.
    assert!(matches!(
        asap_err("02000018 00090002 4563686f 506f6f6c 000e0008 0000e001"),
        WireError::BadLength {
            what: "parameter",
            len: 2,
            ..
        }
    ));
    // TLV length beyond the message.
    assert!(matches!(
        asap_err("02000018 00090040 4563686f 506f6f6c 000e0008 0000e001"),
        WireError::NestedOverflow {
            parent: "message",
            param_type: 0x0009,
            len: 64,
            ..
        }
    ));
    // PE identifier with a wrong fixed size (not a multiple of 4 / too long).
    assert!(matches!(
        asap_err("02000017 0009000c 4563686f 506f6f6c 000e0007 0000e0"),
        WireError::BadLength {
            what: "PE identifier",
            ..
        }
    ));
    // Policy value not a multiple of 4.
    let e = asap_err(
        "06000024 0009000c 4563686f506f6f6c 0008000a 00000002 0007 0000 000e0008 00000001",
    );
    assert!(
        matches!(
            e,
            WireError::BadLength {
                what: "member selection policy",
                ..
            }
        ),
        "{e:?}"
    );
    // WRR without its weight.
    assert!(matches!(
        asap_err("06000018 0009000c 4563686f506f6f6c 00080008 00000002"),
        WireError::BadLength {
            what: "member selection policy",
            ..
        }
    ));
    // PE checksum must have length 6.
    assert!(matches!(
        EnrpMessage::decode(&hex("01000014 11111111 00000000 000f0008 ffff0000")).unwrap_err(),
        WireError::BadLength {
            what: "PE checksum",
            ..
        }
    ));
}

#[test]
fn nested_parameter_overflowing_its_parent() {
    // Pool element of length 0x1c whose SCTP transport claims 0x20 bytes.
    let e = asap_err(
        "01000030 0009000c 4563686f 506f6f6c 000a001c 0000e001 00000000 00015f90
         00040020 13880001 00010008 0aff0001",
    );
    assert!(
        matches!(
            e,
            WireError::NestedOverflow {
                parent: "pool element",
                param_type: 0x0004,
                len: 0x20,
                room: 12
            }
        ),
        "{e:?}"
    );
    // Address inside a transport overflowing it.
    let e = asap_err(
        "01000038 0009000c 4563686f 506f6f6c 000a0024 0000e001 00000000 00015f90
         0004000c 13880001 00010008 0aff0001 00080008 00000001",
    );
    assert!(
        matches!(
            e,
            WireError::NestedOverflow {
                parent: "transport parameter",
                ..
            }
        ),
        "{e:?}"
    );
    // Error cause overflowing the Operation Error.
    let e = asap_err("0e000010 000c000c 00010010 01230004");
    assert!(
        matches!(
            e,
            WireError::NestedOverflow {
                parent: "operation error",
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn absurd_address_count() {
    let n = 65;
    let transport_len = 8 + 8 * n;
    let pe_len = 4 + 12 + transport_len + 8;
    let msg_len = 4 + 12 + pe_len;
    let mut s = format!(
        "0100{msg_len:04x} 0009000c 4563686f 506f6f6c 000a{pe_len:04x} 0000e001 00000000 00015f90 0004{transport_len:04x} 13880001"
    );
    for i in 0..n {
        s += &format!(" 00010008 0aff00{i:02x}");
    }
    s += " 00080008 00000001";
    assert!(matches!(
        asap_err(&s),
        WireError::TooManyAddresses { max: 64, .. }
    ));
    // Exactly 64 is fine.
    let _ = MAX_ADDRESSES;
    let e = asap_err(
        "01000030 0009000c 4563686f 506f6f6c 000a001c 0000e001 00000000 00015f90
         00040008 13880001 00080008 00000001",
    );
    assert!(
        matches!(
            e,
            WireError::MissingParameter {
                what: "address parameter"
            }
        ),
        "{e:?}"
    );
}

#[test]
fn unknown_message_types() {
    let e = asap_err("0f000004");
    assert!(matches!(
        e,
        WireError::UnknownMessageType {
            protocol: Protocol::Asap,
            msg_type: 0x0f,
            ..
        }
    ));
    assert_eq!(e.cause_code(), cause::UNRECOGNIZED_MESSAGE);
    assert_eq!(&e.error_cause(&[]).info[..], &hex("0f000004")[..]);
    let e = EnrpMessage::decode(&hex("0b00000c 11111111 22222222")).unwrap_err();
    assert!(matches!(
        e,
        WireError::UnknownMessageType {
            protocol: Protocol::Enrp,
            msg_type: 0x0b,
            ..
        }
    ));
    assert!(matches!(
        EnrpMessage::decode(&hex("0000000c 11111111 22222222")).unwrap_err(),
        WireError::UnknownMessageType { msg_type: 0, .. }
    ));
}

/// Deregistration with an unknown TLV of type `t` (value "xyz") between PH and PE id.
fn dereg_with_unknown(t: u16) -> Vec<u8> {
    hex(&format!(
        "02000020 0009000c 4563686f 506f6f6c {t:04x}0007 78797a00 000e0008 0000e001"
    ))
}

#[test]
fn unknown_parameter_action_bits() {
    let tlv = hex("01230007 78797a");
    // 00: stop, silently.
    let e = AsapMessage::decode(&dereg_with_unknown(0x0123)).unwrap_err();
    assert!(matches!(
        e,
        WireError::UnrecognizedParameter {
            param_type: 0x0123,
            action: UnknownAction::Stop,
            ..
        }
    ));
    assert!(!e.should_report());
    assert_eq!(e.offending_bytes(), Some(&tlv[..]));
    // 01: stop and report, cause 1 with the TLV (padded).
    let e = AsapMessage::decode(&dereg_with_unknown(0x4123)).unwrap_err();
    assert!(matches!(
        e,
        WireError::UnrecognizedParameter {
            action: UnknownAction::StopAndReport,
            ..
        }
    ));
    assert!(e.should_report());
    let oe = e.operation_error(&dereg_with_unknown(0x4123));
    assert_eq!(oe.causes[0].code, cause::UNRECOGNIZED_PARAMETER);
    assert_eq!(&oe.causes[0].info[..], &hex("41230007 78797a00")[..]);
    let reply = AsapMessage::new(AsapBody::Error { error: oe })
        .to_bytes()
        .unwrap();
    assert_eq!(reply, hex("0e000014 000c0010 0001000c 41230007 78797a00"));
    // 10: skip silently, keep for re-encoding.
    let b = dereg_with_unknown(0x8123);
    let d = AsapMessage::decode(&b).unwrap();
    assert!(d.unrecognized.is_empty() && d.report().is_none());
    assert_eq!(d.message.skipped.len(), 1);
    assert_eq!(d.message.skipped[0].position, 1);
    assert_eq!(d.message.to_bytes().unwrap(), b);
    // 11: skip and report.
    let b = dereg_with_unknown(0xc123);
    let d = AsapMessage::decode(&b).unwrap();
    assert_eq!(d.unrecognized.len(), 1);
    assert_eq!(d.unrecognized[0].param_type(), 0xc123);
    assert_eq!(d.unrecognized[0].action(), UnknownAction::SkipAndReport);
    let report = d.report().unwrap();
    assert_eq!(&report.causes[0].info[..], &hex("c1230007 78797a00")[..]);
    assert_eq!(d.message.to_bytes().unwrap(), b);
}

#[test]
fn unknown_skip_parameters_nested_and_trailing() {
    // Inside a pool element (after the policy) and at the end of the message.
    let b = hex(
        "01000044 0009000c 4563686f 506f6f6c 000a0030 0000e001 00000000 00015f90
         00040010 13880001 00010008 0aff0001 00080008 00000001 c0010008 01020304
         80020004",
    );
    let d = AsapMessage::decode(&b).unwrap();
    assert_eq!(d.unrecognized.len(), 1);
    let AsapBody::Registration { element, .. } = &d.message.body else {
        panic!()
    };
    assert_eq!(element.skipped.len(), 1);
    assert_eq!(d.message.skipped.len(), 1);
    assert_eq!(d.message.skipped[0].position, 2);
    assert_eq!(d.message.to_bytes().unwrap(), b);
}

#[test]
fn order_missing_and_policy_errors() {
    assert!(matches!(
        asap_err("02000018 000e0008 0000e001 0009000c 4563686f 506f6f6c"),
        WireError::UnexpectedParameter {
            expected: "pool handle",
            found: 0x000e,
            ..
        }
    ));
    assert!(matches!(
        asap_err("01000010 0009000c 4563686f 506f6f6c"),
        WireError::MissingParameter {
            what: "pool element"
        }
    ));
    // A duplicate PE id after the expected one.
    let e = asap_err(&format!("02000020{} 000e0008 0000e002", &DEREG[8..]));
    assert!(
        matches!(
            e,
            WireError::UnexpectedParameter {
                expected: "no further parameter",
                ..
            }
        ),
        "{e:?}"
    );
    let e = asap_err("06000018 0009000c 4563686f506f6f6c 00080008 12345678");
    assert!(matches!(
        e,
        WireError::UnsupportedPolicy {
            policy: 0x12345678,
            ..
        }
    ));
    assert_eq!(e.cause_code(), cause::INVALID_VALUES);
    assert_eq!(&e.error_cause(&[]).info[..], &hex("00080008 12345678")[..]);
    // Extra policy words are accepted (rsplib does), and dropped on re-encoding.
    let d = AsapMessage::decode(&hex(
        "0600001c 0009000c 4563686f506f6f6c 0008000c 00000001 00000007",
    ))
    .unwrap();
    assert_eq!(
        d.message.to_bytes().unwrap(),
        hex("06000018 0009000c 4563686f506f6f6c 00080008 00000001")
    );
}

#[test]
fn random_and_mutated_bytes_never_panic() {
    let seeds = [
        hex(DEREG),
        hex("06000040 0009000c 4563686f506f6f6c 00080008 00000001 000a0028 0000e001 11111111 00015f90 00040010 8fba0001 00010008 0aff0001 00080008 00000001"),
        hex("04000058 11111111 22222222 0000 0000 0009000b 57727250 6f6f6c00 000a003c 0000a001 11111111 00015f90 00040010 9a0c0001 00010008 0aff0001 0008000c 00000002 00000007 00040010 a62d0000 00010008 0aff0001"),
    ];
    let mut x: u64 = 0x1234_5678_9abc_def0;
    let mut rnd = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for _ in 0..20_000 {
        let mut b = seeds[(rnd() % 3) as usize].clone();
        for _ in 0..(rnd() % 4 + 1) {
            let i = (rnd() as usize) % b.len();
            b[i] = rnd() as u8;
        }
        let cut = (rnd() as usize) % (b.len() + 1);
        b.truncate(cut.max(b.len() - (rnd() % 3) as usize));
        for p in [Protocol::Asap, Protocol::Enrp] {
            if let Ok(d) = decode(p, &b) {
                let again = d.message.to_bytes().unwrap();
                assert_eq!(decode(p, &again).unwrap().message, d.message);
            }
        }
    }
}

#[test]
fn error_replies() {
    let bad = hex("0f000004");
    let e = AsapMessage::decode(&bad).unwrap_err();
    let reply = asap_error_reply(&e, &bad).unwrap().to_bytes().unwrap();
    assert_eq!(reply, hex("0e000010 000c000c 00020008 0f000004"));
    let silent = dereg_with_unknown(0x0123);
    let e = AsapMessage::decode(&silent).unwrap_err();
    assert!(asap_error_reply(&e, &silent).is_none());
    let bad = hex("0a000010 11111111 22222222 00000000");
    let e = EnrpMessage::decode(&bad).unwrap_err();
    let r = enrp_error_reply(
        &e,
        &bad,
        rsplib::core::types::RegistrarId(2),
        rsplib::core::types::RegistrarId(1),
    )
    .unwrap();
    let b = r.to_bytes().unwrap();
    assert_eq!(&b[..12], &hex("0a000018 00000002 00000001")[..]);
    assert_eq!(EnrpMessage::decode(&b).unwrap().message, r);
}

#[test]
fn transports_the_decoder_refuses_are_not_encoded() {
    use rsplib::core::types::{PeId, PolicyInfo, PolicyType, TransportAddress, TransportProtocol};
    // Found by the asap_client fuzz target: a Registration whose user transport had no
    // address was encoded, and the registrar could not decode it.
    let registration = |n: usize| {
        let addresses = (0..n)
            .map(|i| std::net::IpAddr::from([10, 0, (i >> 8) as u8, i as u8]))
            .collect();
        let t = TransportAddress::new(TransportProtocol::Sctp, 7, addresses);
        AsapMessage::new(AsapBody::Registration {
            pool_handle: "P".into(),
            element: PoolElement::new(PeId(1), t, PolicyInfo::new(PolicyType::RoundRobin)),
        })
        .to_bytes()
    };
    assert!(matches!(
        registration(0),
        Err(WireError::MissingParameter { .. })
    ));
    assert!(AsapMessage::decode(&registration(MAX_ADDRESSES).unwrap()).is_ok());
    assert!(matches!(
        registration(MAX_ADDRESSES + 1),
        Err(WireError::TooManyAddresses { .. })
    ));
}
