//! Test vectors of wire-format-detailed.md §3, §4 and §9.2: decode, check fields, re-encode.

use rsplib::core::types::*;
use rsplib::core::wire::*;

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn asap(s: &str) -> AsapMessage {
    let b = hex(s);
    let d = AsapMessage::decode(&b).unwrap();
    assert_eq!(d.message.to_bytes().unwrap(), b, "{s}");
    d.message
}

fn enrp(s: &str) -> EnrpMessage {
    let b = hex(s);
    let d = EnrpMessage::decode(&b).unwrap();
    assert_eq!(d.message.to_bytes().unwrap(), b, "{s}");
    d.message
}

#[test]
fn real_registration() {
    let m = asap(
        "01000040 0009000f 43616c63417070506f6f6c00 000a002c 0000ca02 00000000 00015f90
         00040010 e89e 0001 00010008 0aff0001  0008000c 40000001 00000000",
    );
    let AsapBody::Registration {
        pool_handle,
        element,
    } = m.body
    else {
        panic!()
    };
    assert_eq!(pool_handle.as_printable(), Some("CalcAppPool"));
    assert_eq!(element.id, PeId(0xca02));
    assert_eq!(element.registration_life, 90000);
    assert_eq!(element.user_transport.port, 59550);
    assert!(element.user_transport.has_control_channel());
    assert_eq!(
        element.user_transport.addresses,
        vec!["10.255.0.1".parse::<std::net::IpAddr>().unwrap()]
    );
    assert_eq!(element.policy, PolicyInfo::new(PolicyType::LeastUsed));
    assert!(element.asap_transport.is_none());
}

#[test]
fn real_asap_messages() {
    asap("03000018 0009000b 57727250 6f6f6c00 000e0008 0000a001");
    let hr = asap("05000018 0009000c 4563686f506f6f6c 803f0008 00000001");
    assert!(matches!(
        hr.body,
        AsapBody::HandleResolution { items: Some(1), .. }
    ));
    let hrr = asap(
        "06000040 0009000c 4563686f506f6f6c 00080008 00000001
         000a0028 0000e001 11111111 00015f90 00040010 8fba0001 00010008 0aff0001 00080008 00000001",
    );
    let AsapBody::HandleResolutionResponse {
        elements, policy, ..
    } = hrr.body
    else {
        panic!()
    };
    assert_eq!(policy.unwrap().policy, PolicyType::RoundRobin);
    assert_eq!(elements[0].home_registrar, RegistrarId(0x11111111));
    let ka = asap("0700001c 11111111 0009000b 57727250 6f6f6c00 000e0008 0000a001");
    assert!(matches!(
        ka.body,
        AsapBody::EndpointKeepAlive {
            server_id: RegistrarId(0x11111111),
            pe_id: Some(PeId(0xa001)),
            ..
        }
    ));
    asap("08000018 0009000b 57727250 6f6f6c00 000e0008 0000a001");
}

#[test]
fn constructed_asap_vectors() {
    let sa = asap("0a000008 11111111");
    assert!(
        matches!(sa.body, AsapBody::ServerAnnounce { ref transports, .. } if transports.is_empty())
    );
    asap("02000018 0009000c 4563686f 506f6f6c 000e0008 0000e001");
    asap("04000018 0009000c 4563686f 506f6f6c 000e0008 0000e001");
    asap("09000018 0009000c 4563686f 506f6f6c 000e0008 0000e001");
    asap("05000018 0009000c 4563686f 506f6f6c 803f0008 ffffffff");
    let nf = asap("06000018 0009000c 4563686f 506f6f6c 000c0008 00090004");
    let AsapBody::HandleResolutionResponse { error, .. } = nf.body else {
        panic!()
    };
    assert_eq!(error.unwrap().code(), cause::UNKNOWN_POOL_HANDLE);
    let rej = asap(
        "03010028 0009000c 4563686f 506f6f6c 000e0008 0000e001 000c0010 0005000c 00080008 00000001",
    );
    assert_eq!(rej.flags, asap::FLAG_REJECT);
    let ka = asap("0701001c 22222222 0009000c 4563686f 506f6f6c 000e0008 0000e001");
    assert_eq!(ka.flags, asap::FLAG_HOME);
    let c = asap("0b000010 000d0009 61626364 65000000");
    assert!(matches!(c.body, AsapBody::Cookie { ref cookie } if &cookie[..] == b"abcde"));
    asap("0c000010 000d000c 61626364 65666768");
    let e = asap("0e000014 000c0010 0001000c 01230007 78797a00");
    let AsapBody::Error { error } = e.body else {
        panic!()
    };
    assert_eq!(error.causes[0].code, cause::UNRECOGNIZED_PARAMETER);
    assert_eq!(&error.causes[0].info[..], &hex("01230007 78797a00")[..]);
}

#[test]
fn enrp_vectors() {
    let p = enrp("0100002c 11111111 00000000  000f0006 ffff 0000   000b0018 11111111 00040010 26ad 0000 00010008 0aff0001");
    assert!(matches!(
        p.body,
        EnrpBody::Presence {
            checksum: 0xffff,
            ..
        }
    ));
    let p = enrp("0101002c 22222222 11111111  000f0006 ffff0000  000b0018 22222222 00040010 26ae0000 00010008 0aff0001");
    assert_eq!(p.flags, enrp::FLAG_REPLY_REQUIRED);
    enrp("0500000c 22222222 11111111");
    enrp("06000024 22222222 11111111 000b0018 11111111 00040010 26ad0000 00010008 0aff0001");
    enrp("0200000c 5c463c96 00000000");
    let hu = enrp(
        "04000058 11111111 22222222 0000 0000 0009000b 57727250 6f6f6c00
         000a003c 0000a001 11111111 00015f90 00040010 9a0c0001 00010008 0aff0001
         0008000c 00000002 00000007 00040010 a62d0000 00010008 0aff0001",
    );
    let EnrpBody::HandleUpdate {
        element, action, ..
    } = hu.body
    else {
        panic!()
    };
    assert_eq!(action, enrp::UPDATE_ADD_PE);
    assert_eq!(element.policy.weight, 7);
    assert_eq!(element.asap_transport.unwrap().port, 42541);
    let it = enrp("07000010 11111111 22222222 33333333");
    assert!(matches!(
        it.body,
        EnrpBody::InitTakeover {
            target: RegistrarId(0x33333333)
        }
    ));
    enrp("08000010 22222222 11111111 33333333");
    enrp("09000010 11111111 22222222 33333333");
    enrp("0a00001c 11111111 22222222 000c0010 0003000c 000e0008 00000001");
    let ht = enrp(
        "03020054 11111111 22222222 0009000c 4563686f 506f6f6c 000a003c 0000e001 11111111
         00015f90 00040010 13880001 00010008 0aff0001 0008000c 40000001 40000000 00040010
         9c400000 00010008 0aff0001",
    );
    assert_eq!(ht.flags, enrp::FLAG_MORE);
}

#[test]
fn built_messages_encode_canonically() {
    let mut pe = PoolElement::new(
        PeId(0xe001),
        TransportAddress::new(
            TransportProtocol::Sctp,
            5000,
            vec!["10.255.0.1".parse().unwrap()],
        ),
        PolicyInfo::new(PolicyType::RoundRobin),
    );
    pe.user_transport.transport_use = TRANSPORT_USE_DATA_PLUS_CONTROL;
    pe.registration_life = 90000;
    let m = AsapMessage::new(AsapBody::Registration {
        pool_handle: "EchoPool".into(),
        element: pe,
    });
    let b = m.to_bytes().unwrap();
    assert_eq!(
        b,
        hex(
            "01000038 0009000c 4563686f506f6f6c 000a0028 0000e001 00000000 00015f90
             00040010 13880001 00010008 0aff0001 00080008 00000001"
        )
    );
}

/// Prints "asap|enrp HEX" lines of messages covering every policy, transport and message type,
/// for a manual cross-check with tshark (see the codec commit message).
#[test]
#[ignore]
fn print_tshark_samples() {
    let a4 = || vec!["10.255.0.1".parse().unwrap()];
    let mut out = Vec::new();
    for (i, p) in PolicyType::ALL.iter().enumerate() {
        let proto = [
            TransportProtocol::Sctp,
            TransportProtocol::Tcp,
            TransportProtocol::Udp,
            TransportProtocol::UdpLite,
            TransportProtocol::Dccp,
        ][i % 5];
        let mut t = TransportAddress::new(proto, 1000 + i as u16, a4());
        t.dccp_service_code = 42;
        let mut pi = PolicyInfo::new(*p);
        for (k, v) in p.wire_values().iter().enumerate() {
            pi.set(*v, 0x1000_0000 * (k as u32 + 1));
        }
        let mut pe = PoolElement::new(PeId(0x100 + i as u32), t, pi);
        pe.home_registrar = RegistrarId(0x11111111);
        pe.registration_life = 90000;
        let m = AsapMessage::new(AsapBody::HandleResolutionResponse {
            pool_handle: "EchoPool".into(),
            policy: Some(pi),
            elements: vec![pe],
            error: None,
        });
        out.push(("asap", m.to_bytes().unwrap()));
    }
    let mut pe = PoolElement::new(
        PeId(0xe001),
        TransportAddress::new(
            TransportProtocol::Sctp,
            5000,
            vec!["::1".parse().unwrap(), "10.0.0.1".parse().unwrap()],
        ),
        PolicyInfo::new(PolicyType::RoundRobin),
    );
    pe.asap_transport = Some(TransportAddress::new(TransportProtocol::Sctp, 40000, a4()));
    pe.home_registrar = RegistrarId(0x11111111);
    let r1 = RegistrarId(0x11111111);
    let r2 = RegistrarId(0x22222222);
    let si = ServerInformation::new(
        r1,
        vec![TransportAddress::new(TransportProtocol::Sctp, 9901, a4())],
    );
    for body in [
        EnrpBody::Presence {
            checksum: 0x5f1f,
            server_info: si.clone(),
        },
        EnrpBody::HandleTableRequest,
        EnrpBody::HandleTableResponse {
            pools: vec![PoolEntries {
                pool_handle: "EchoPool".into(),
                elements: vec![pe.clone()],
            }],
        },
        EnrpBody::HandleUpdate {
            action: 1,
            reserved: 0,
            pool_handle: "EchoPool".into(),
            element: pe.clone(),
        },
        EnrpBody::ListRequest,
        EnrpBody::ListResponse {
            servers: vec![si.clone(), si],
        },
        EnrpBody::InitTakeover { target: r2 },
        EnrpBody::Error {
            error: OperationError::new(cause::INVALID_VALUES, &hex("000e0008 00000001")),
        },
    ] {
        out.push(("enrp", EnrpMessage::new(r1, r2, body).to_bytes().unwrap()));
    }
    let mut reg_pe = pe.clone();
    reg_pe.asap_transport = None;
    for body in [
        AsapBody::Registration {
            pool_handle: "EchoPool".into(),
            element: reg_pe,
        },
        AsapBody::HandleResolution {
            pool_handle: "EchoPool".into(),
            items: Some(3),
        },
        AsapBody::ServerAnnounce {
            server_id: r1,
            transports: vec![TransportAddress::new(TransportProtocol::Sctp, 3863, a4())],
        },
        AsapBody::Cookie {
            cookie: b"abcde".to_vec().into(),
        },
        AsapBody::EndpointKeepAlive {
            server_id: r1,
            pool_handle: "EchoPool".into(),
            pe_id: Some(PeId(1)),
        },
        AsapBody::RegistrationResponse {
            pool_handle: "EchoPool".into(),
            pe_id: PeId(1),
            error: Some(OperationError {
                causes: vec![ErrorCause::with_tlv(
                    cause::INCONSISTENT_POOLING_POLICY,
                    &hex("00080008 00000001"),
                )],
            }),
        },
    ] {
        out.push(("asap", AsapMessage::new(body).to_bytes().unwrap()));
    }
    for (p, b) in out {
        println!(
            "SAMPLE {p} {}",
            b.iter().map(|x| format!("{x:02x}")).collect::<String>()
        );
    }
}
