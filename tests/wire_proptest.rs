//! encode → decode identity for arbitrary valid messages of every type.

use std::net::IpAddr;

use proptest::collection::vec;
use proptest::prelude::*;
use rsplib::core::types::*;
use rsplib::core::wire::*;

fn pool_handle() -> impl Strategy<Value = PoolHandle> {
    vec(any::<u8>(), 0..40).prop_map(|b| PoolHandle::new(&b))
}

fn addr() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(IpAddr::from),
        any::<[u8; 16]>().prop_map(IpAddr::from),
    ]
}

fn protocol() -> impl Strategy<Value = TransportProtocol> {
    prop_oneof![
        Just(TransportProtocol::Sctp),
        Just(TransportProtocol::Tcp),
        Just(TransportProtocol::Udp),
        Just(TransportProtocol::UdpLite),
        Just(TransportProtocol::Dccp),
    ]
}

fn transport() -> impl Strategy<Value = TransportAddress> {
    (
        protocol(),
        any::<u16>(),
        any::<u16>(),
        any::<u32>(),
        vec(addr(), 1..5),
    )
        .prop_map(
            |(protocol, port, transport_use, code, addresses)| TransportAddress {
                protocol,
                port,
                transport_use,
                dccp_service_code: if protocol == TransportProtocol::Dccp {
                    code
                } else {
                    0
                },
                addresses,
            },
        )
}

fn policy() -> impl Strategy<Value = PolicyInfo> {
    (0..PolicyType::ALL.len(), any::<[u32; 4]>()).prop_map(|(i, v)| {
        let p = PolicyType::ALL[i];
        PolicyInfo::from_wire_values(p, &v[..p.wire_values().len()]).unwrap()
    })
}

fn element() -> impl Strategy<Value = PoolElement> {
    (
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        transport(),
        policy(),
        proptest::option::of(transport()),
    )
        .prop_map(|(id, home, life, user, policy, asap)| {
            let mut pe = PoolElement::new(PeId(id), user, policy);
            pe.home_registrar = RegistrarId(home);
            pe.registration_life = life;
            pe.asap_transport = asap;
            pe
        })
}

fn op_error() -> impl Strategy<Value = OperationError> {
    vec((any::<u16>(), vec(any::<u8>(), 0..24)), 0..4).prop_map(|c| OperationError {
        causes: c
            .into_iter()
            .map(|(code, info)| ErrorCause::new(code, &info))
            .collect(),
    })
}

fn server_info() -> impl Strategy<Value = ServerInformation> {
    (any::<u32>(), vec(transport(), 0..3))
        .prop_map(|(id, t)| ServerInformation::new(RegistrarId(id), t))
}

fn asap_body() -> impl Strategy<Value = AsapBody> {
    let ph = pool_handle;
    let pe = || any::<u32>().prop_map(PeId);
    prop_oneof![
        (ph(), element()).prop_map(|(pool_handle, element)| AsapBody::Registration {
            pool_handle,
            element
        }),
        (ph(), pe())
            .prop_map(|(pool_handle, pe_id)| AsapBody::Deregistration { pool_handle, pe_id }),
        (ph(), pe(), proptest::option::of(op_error())).prop_map(|(pool_handle, pe_id, error)| {
            AsapBody::RegistrationResponse {
                pool_handle,
                pe_id,
                error,
            }
        }),
        (ph(), pe(), proptest::option::of(op_error())).prop_map(|(pool_handle, pe_id, error)| {
            AsapBody::DeregistrationResponse {
                pool_handle,
                pe_id,
                error,
            }
        }),
        (ph(), proptest::option::of(any::<u32>()))
            .prop_map(|(pool_handle, items)| AsapBody::HandleResolution { pool_handle, items }),
        (
            ph(),
            proptest::option::of(policy()),
            vec(element(), 0..4),
            proptest::option::of(op_error())
        )
            .prop_map(|(pool_handle, policy, elements, error)| {
                AsapBody::HandleResolutionResponse {
                    pool_handle,
                    policy,
                    elements,
                    error,
                }
            }),
        (any::<u32>(), ph(), proptest::option::of(pe())).prop_map(|(s, pool_handle, pe_id)| {
            AsapBody::EndpointKeepAlive {
                server_id: RegistrarId(s),
                pool_handle,
                pe_id,
            }
        }),
        (ph(), pe())
            .prop_map(|(pool_handle, pe_id)| AsapBody::EndpointKeepAliveAck { pool_handle, pe_id }),
        (ph(), pe())
            .prop_map(|(pool_handle, pe_id)| AsapBody::EndpointUnreachable { pool_handle, pe_id }),
        (any::<u32>(), vec(transport(), 0..3)).prop_map(|(s, transports)| {
            AsapBody::ServerAnnounce {
                server_id: RegistrarId(s),
                transports,
            }
        }),
        vec(any::<u8>(), 0..64).prop_map(|c| AsapBody::Cookie { cookie: c.into() }),
        vec(any::<u8>(), 0..64).prop_map(|c| AsapBody::CookieEcho { cookie: c.into() }),
        (ph(), proptest::option::of(policy()), vec(element(), 1..4)).prop_map(
            |(pool_handle, policy, elements)| AsapBody::BusinessCard {
                pool_handle,
                policy,
                elements
            }
        ),
        op_error().prop_map(|error| AsapBody::Error { error }),
    ]
}

fn enrp_body() -> impl Strategy<Value = EnrpBody> {
    let id = || any::<u32>().prop_map(RegistrarId);
    prop_oneof![
        (any::<u16>(), server_info()).prop_map(|(checksum, server_info)| EnrpBody::Presence {
            checksum,
            server_info
        }),
        Just(EnrpBody::HandleTableRequest),
        vec((pool_handle(), vec(element(), 1..3)), 0..3).prop_map(|p| {
            EnrpBody::HandleTableResponse {
                pools: p
                    .into_iter()
                    .map(|(pool_handle, elements)| PoolEntries {
                        pool_handle,
                        elements,
                    })
                    .collect(),
            }
        }),
        (any::<u16>(), any::<u16>(), pool_handle(), element()).prop_map(
            |(action, reserved, pool_handle, element)| EnrpBody::HandleUpdate {
                action,
                reserved,
                pool_handle,
                element
            }
        ),
        Just(EnrpBody::ListRequest),
        vec(server_info(), 0..4).prop_map(|servers| EnrpBody::ListResponse { servers }),
        id().prop_map(|target| EnrpBody::InitTakeover { target }),
        id().prop_map(|target| EnrpBody::InitTakeoverAck { target }),
        id().prop_map(|target| EnrpBody::TakeoverServer { target }),
        op_error().prop_map(|error| EnrpBody::Error { error }),
    ]
}

/// Unknown parameters with "skip" action bits (never 0x803f, the HR option).
fn skipped() -> impl Strategy<Value = Vec<SkippedParam>> {
    vec(
        (
            0usize..4,
            any::<bool>(),
            0x100u16..0x3fff,
            vec(any::<u8>(), 0..9),
        ),
        0..3,
    )
    .prop_map(|v| {
        let mut v: Vec<SkippedParam> = v
            .into_iter()
            .map(|(position, report, t, value)| SkippedParam {
                position,
                param: RawParam::new(if report { 0xc000 } else { 0x8000 } | t, &value).unwrap(),
            })
            .collect();
        v.sort_by_key(|s| s.position);
        v
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn asap_identity(flags in any::<u8>(), body in asap_body()) {
        let m = AsapMessage::with_flags(body, flags);
        let b = m.to_bytes().unwrap();
        prop_assert_eq!(b.len() % 4, 0);
        prop_assert_eq!(u16::from_be_bytes([b[2], b[3]]) as usize, b.len());
        let d = AsapMessage::decode(&b).unwrap();
        prop_assert!(d.unrecognized.is_empty());
        prop_assert_eq!(d.message, m);
    }

    #[test]
    fn enrp_identity(flags in any::<u8>(), s in any::<u32>(), r in any::<u32>(), body in enrp_body()) {
        let mut m = EnrpMessage::new(RegistrarId(s), RegistrarId(r), body);
        m.flags = flags;
        let b = m.to_bytes().unwrap();
        prop_assert_eq!(b.len() % 4, 0);
        let d = EnrpMessage::decode(&b).unwrap();
        prop_assert_eq!(d.message, m);
    }

    /// Skipped unknown parameters survive: re-encoding the decoded message gives the same bytes
    /// and every "report" one is listed.
    #[test]
    fn skipped_parameters_survive(body in asap_body(), ebody in enrp_body(), sk in skipped()) {
        let reports = sk.iter().filter(|s| s.param.action().reports()).count();
        let mut m = AsapMessage::new(body);
        m.skipped = sk.clone();
        let b = m.to_bytes().unwrap();
        let d = AsapMessage::decode(&b).unwrap();
        prop_assert_eq!(d.unrecognized.len(), reports);
        prop_assert_eq!(d.message.to_bytes().unwrap(), b);
        let mut e = EnrpMessage::new(RegistrarId(1), RegistrarId(2), ebody);
        e.skipped = sk;
        let b = e.to_bytes().unwrap();
        let d = EnrpMessage::decode(&b).unwrap();
        prop_assert_eq!(d.unrecognized.len(), reports);
        prop_assert_eq!(d.message.to_bytes().unwrap(), b);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    /// Arbitrary bytes (and arbitrary bytes behind a plausible header) never panic; whatever
    /// decodes re-encodes to bytes that decode to the same message.
    #[test]
    fn arbitrary_bytes_never_panic(t in 0u8..16, f in any::<u8>(), body in vec(any::<u8>(), 0..200), raw in any::<bool>()) {
        let mut b = if raw { body.clone() } else { vec![t, f, 0, 0] };
        if !raw {
            b.extend_from_slice(&body);
            let len = b.len() as u16;
            b[2..4].copy_from_slice(&len.to_be_bytes());
        }
        for p in [Protocol::Asap, Protocol::Enrp] {
            if let Ok(d) = decode(p, &b) {
                let again = d.message.to_bytes().unwrap();
                prop_assert_eq!(&decode(p, &again).unwrap().message, &d.message);
            }
        }
    }
}

/// A Handle Resolution with the flags, pool handle, option and unknown parameters given.
fn handle_resolution(
    flags: u8,
    ph: &PoolHandle,
    items: Option<u32>,
    sk: Vec<SkippedParam>,
) -> Vec<u8> {
    let mut m = AsapMessage::with_flags(
        AsapBody::HandleResolution {
            pool_handle: ph.clone(),
            items,
        },
        flags,
    );
    m.skipped = sk;
    m.to_bytes().unwrap()
}

/// What `peek_handle_resolution` reads must be what `decode` reads, with nothing to report.
fn peek_agrees_with_decode(b: &[u8]) -> Result<bool, TestCaseError> {
    let Some((ph, items)) = asap::peek_handle_resolution(b) else {
        return Ok(false);
    };
    let d = AsapMessage::decode(b);
    prop_assert!(d.is_ok(), "peeked, but decode fails: {:?}", d);
    let d = d.unwrap();
    prop_assert!(d.unrecognized.is_empty());
    prop_assert!(d.report().is_none());
    match d.message.body {
        AsapBody::HandleResolution {
            pool_handle,
            items: decoded_items,
        } => {
            prop_assert_eq!(pool_handle.as_bytes(), ph);
            prop_assert_eq!(decoded_items, items);
        }
        other => prop_assert!(false, "peeked, but decoded {:?}", other),
    }
    Ok(true)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// The registrar's direct encoding of a Handle Resolution Response (from borrowed fields)
    /// gives the bytes of the equivalent AsapMessage.
    #[test]
    fn direct_handle_resolution_response_is_byte_identical(
        ph in pool_handle(),
        elements in vec(element(), 1..6),
        prefix in vec(any::<[u8; 4]>(), 0..3),
    ) {
        let prefix: Vec<u8> = prefix.concat();
        let elements: Vec<PoolElement> = elements
            .into_iter()
            .map(|mut e| {
                e.asap_transport = None;
                e
            })
            .collect();
        let expected = AsapMessage::new(AsapBody::HandleResolutionResponse {
            pool_handle: ph.clone(),
            policy: Some(elements[0].policy),
            elements: elements.clone(),
            error: None,
        })
        .to_bytes()
        .unwrap();
        // Appended after what the buffer already holds (whole words, as with emit).
        let mut buf = prefix.clone();
        asap::emit_handle_resolution_response(
            &mut buf,
            ph.as_bytes(),
            elements.iter().map(|e| param::PoolElementRef {
                id: e.id,
                home_registrar: e.home_registrar,
                registration_life: e.registration_life,
                user_transport: &e.user_transport,
                policy: e.policy,
                asap_transport: None,
            }),
        )
        .unwrap();
        prop_assert_eq!(&buf[..prefix.len()], &prefix[..]);
        prop_assert_eq!(&buf[prefix.len()..], &expected[..]);
    }

    /// Handle Resolutions as sent (any flags, with or without the option) are read in place;
    /// with unknown parameters they are left to decode; either way the reading agrees.
    #[test]
    fn peeked_handle_resolutions_agree_with_decode(
        flags in any::<u8>(),
        ph in pool_handle(),
        items in proptest::option::of(any::<u32>()),
        sk in skipped(),
    ) {
        let plain = handle_resolution(flags, &ph, items, Vec::new());
        prop_assert!(peek_agrees_with_decode(&plain)?, "plain form not peeked");
        let with_unknown = handle_resolution(flags, &ph, items, sk.clone());
        let peeked = peek_agrees_with_decode(&with_unknown)?;
        prop_assert_eq!(peeked, sk.is_empty());
    }

    /// Damaged Handle Resolutions (a byte changed, cut, extended): whatever is read in place
    /// is what decode reads.
    #[test]
    fn damaged_handle_resolutions_peek_as_decode_reads_them(
        ph in pool_handle(),
        items in proptest::option::of(any::<u32>()),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        cut in 0usize..8,
        tail in vec(any::<u8>(), 0..12),
        fix_length in any::<bool>(),
    ) {
        let mut b = handle_resolution(0, &ph, items, Vec::new());
        let i = at.index(b.len());
        b[i] = byte;
        b.truncate(b.len().saturating_sub(cut));
        b.extend_from_slice(&tail);
        if fix_length && b.len() >= 4 && b.len() <= 0xffff {
            let len = b.len() as u16;
            b[2..4].copy_from_slice(&len.to_be_bytes());
        }
        peek_agrees_with_decode(&b)?;
    }
}
