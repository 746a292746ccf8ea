//! The ASAP service (RFC 5352): registration, deregistration, handle resolution, keep-alive
//! acks and unreachable reports from pool elements and pool users.

use super::*;

impl Registrar {
    pub(super) fn receive_asap(
        &mut self,
        now: Micros,
        conn: ConnId,
        data: &[u8],
        out: &mut Vec<Output>,
    ) {
        let decoded = match AsapMessage::decode(data) {
            Ok(d) => d,
            Err(e) => {
                out.push(log(
                    LOG_WARNING,
                    format!("connection {conn}: bad ASAP message: {e}"),
                ));
                if let Some(reply) = wire::asap_error_reply(&e, data) {
                    push_send(out, conn, PPID_ASAP, &reply.to_bytes());
                }
                return;
            }
        };
        if let Some(error) = decoded.report() {
            let msg = AsapMessage::new(AsapBody::Error { error });
            push_send(out, conn, PPID_ASAP, &msg.to_bytes());
        }
        match decoded.message.body {
            AsapBody::Registration {
                pool_handle,
                element,
            } => self.registration(now, conn, pool_handle, element, out),
            AsapBody::Deregistration { pool_handle, pe_id } => {
                self.deregistration(conn, pool_handle, pe_id, out)
            }
            AsapBody::HandleResolution { pool_handle, items } => {
                self.handle_resolution(now, conn, pool_handle, items, out)
            }
            AsapBody::EndpointKeepAliveAck { pool_handle, pe_id } => {
                // Only an ack to an outstanding keep-alive, on the PE's own connection, counts.
                let key = (pool_handle, pe_id);
                if let Some(s) = self.supervision.get_mut(&key) {
                    if s.conn == conn && s.awaiting_ack {
                        s.awaiting_ack = false;
                        let at = now + self.cfg.keepalive_interval;
                        self.arm(key, at, TimerKind::SendKeepAlive);
                    }
                }
            }
            AsapBody::EndpointUnreachable { pool_handle, pe_id } => {
                let limit = self.cfg.max_eu_rate;
                let allowed = self
                    .conns
                    .get_mut(&conn)
                    .map(|c| c.eu_rate.allow(now, limit))
                    .unwrap_or(false);
                if !allowed {
                    return;
                }
                match self.hs.report_unreachable(&pool_handle, pe_id) {
                    UnreachableOutcome::Removed(_) => {
                        self.forget_supervision(&pool_handle, pe_id);
                        out.push(log(
                            LOG_ACTION,
                            format!("removed PE {pe_id} of pool \"{pool_handle}\" after unreachable reports"),
                        ));
                    }
                    UnreachableOutcome::Counted(n) => out.push(log(
                        LOG_VERBOSE,
                        format!("PE {pe_id} of pool \"{pool_handle}\" reported unreachable ({n})"),
                    )),
                    UnreachableOutcome::Unknown => {}
                }
            }
            AsapBody::Error { error } => out.push(log(
                LOG_WARNING,
                format!(
                    "connection {conn}: ASAP Error from peer, cause 0x{:04x}",
                    error.code()
                ),
            )),
            other => {
                // Messages a registrar never receives (responses, announces, cookies …).
                out.push(log(
                    LOG_WARNING,
                    format!(
                        "connection {conn}: unexpected ASAP message {} (type {})",
                        asap::message_name(other.msg_type()),
                        other.msg_type()
                    ),
                ));
                let msg = AsapMessage::new(AsapBody::Error {
                    error: OperationError {
                        causes: vec![ErrorCause::with_tlv(cause::UNRECOGNIZED_MESSAGE, data)],
                    },
                });
                push_send(out, conn, PPID_ASAP, &msg.to_bytes());
            }
        }
    }

    fn registration(
        &mut self,
        now: Micros,
        conn: ConnId,
        pool_handle: PoolHandle,
        element: wire::PoolElement,
        out: &mut Vec<Output>,
    ) {
        let pe_id = element.id;
        let reject = |out: &mut Vec<Output>, error: OperationError, why: String| {
            out.push(log(
                LOG_ACTION,
                format!("rejected registration of PE {pe_id} in pool \"{pool_handle}\": {why}"),
            ));
            let msg = AsapMessage::with_flags(
                AsapBody::RegistrationResponse {
                    pool_handle: pool_handle.clone(),
                    pe_id,
                    error: Some(error),
                },
                asap::FLAG_REJECT,
            );
            push_send(out, conn, PPID_ASAP, &msg.to_bytes());
        };
        let c = self.conns.get(&conn).expect("checked by receive");
        if c.peer.is_empty() {
            out.push(log(
                LOG_WARNING,
                format!("connection {conn}: peer addresses unknown, registration ignored"),
            ));
            return;
        }
        if element.asap_transport.is_some() {
            return reject(
                out,
                OperationError::new(cause::RSPLIB_INVALID_REGISTRATOR, &[]),
                "ASAP transport in a registration".into(),
            );
        }
        // User addresses: only those the PE really has (its association's addresses) and of
        // sufficient scope. Over TCP the one peer address is all we know.
        let min = self.cfg.min_address_scope;
        let peer_ips: Vec<IpAddr> = c.peer.iter().map(|a| a.ip()).collect();
        let mut user = element.user_transport.clone();
        user.addresses
            .retain(|a| AddressScope::of(a) >= min && peer_ips.contains(&canonical(a)));
        if user.addresses.is_empty() {
            return reject(
                out,
                OperationError::new(cause::RSPLIB_NO_USABLE_USER_ADDRESSES, &[]),
                "no usable user transport addresses".into(),
            );
        }
        let asap_addrs: Vec<IpAddr> = peer_ips
            .iter()
            .copied()
            .filter(|a| AddressScope::of(a) >= min)
            .collect();
        if asap_addrs.is_empty() {
            return reject(
                out,
                OperationError::new(cause::RSPLIB_NO_USABLE_ASAP_ADDRESSES, &[]),
                "no usable ASAP addresses".into(),
            );
        }
        let registrator = TransportAddress {
            protocol: c.protocol,
            port: c.peer[0].port(),
            transport_use: TRANSPORT_USE_DATA_ONLY,
            dccp_service_code: 0,
            addresses: asap_addrs,
        };
        // Only the PE's own connection may re-register it (RFC 5355 registration spoofing);
        // a new connection from the same host takes over (the PE reconnected).
        let key = (pool_handle.clone(), pe_id);
        if let Some(sup) = self.supervision.get(&key) {
            if sup.conn != conn {
                let old_ips: Vec<IpAddr> = self
                    .conns
                    .get(&sup.conn)
                    .map(|o| o.peer.iter().map(|a| a.ip()).collect())
                    .unwrap_or_default();
                if !old_ips.is_empty() && !old_ips.iter().any(|ip| peer_ips.contains(ip)) {
                    return reject(
                        out,
                        OperationError::new(cause::REJECTED_SECURITY, &[]),
                        "PE identifier registered by another host".into(),
                    );
                }
                let old = sup.conn;
                if let Some(o) = self.conns.get_mut(&old) {
                    o.pes.remove(&key);
                }
                if let Some(s) = self.supervision.get_mut(&key) {
                    s.conn = conn;
                }
            }
        }
        let reg = Registration {
            pe_id,
            home: self.cfg.id,
            registration_life_ms: element.registration_life,
            user_transport: user,
            policy: element.policy,
            registrator_transport: Some(registrator),
        };
        match self.hs.register(&pool_handle, reg, now) {
            Ok(outcome) => {
                out.push(log(
                    LOG_VERBOSE,
                    format!("{outcome:?} PE {pe_id} in pool \"{pool_handle}\" (connection {conn})"),
                ));
                self.conns
                    .get_mut(&conn)
                    .expect("checked")
                    .pes
                    .insert(key.clone());
                let sup = self.supervision.entry(key.clone()).or_insert(Supervision {
                    conn,
                    timer: None,
                    awaiting_ack: false,
                });
                sup.conn = conn;
                sup.awaiting_ack = false;
                let at = now + self.cfg.keepalive_interval;
                self.arm(key, at, TimerKind::SendKeepAlive);
                let msg = AsapMessage::new(AsapBody::RegistrationResponse {
                    pool_handle,
                    pe_id,
                    error: None,
                });
                push_send(out, conn, PPID_ASAP, &msg.to_bytes());
            }
            Err(e) => {
                let error = registration_error(&e, &element);
                reject(out, error, e.to_string());
            }
        }
    }

    fn deregistration(
        &mut self,
        conn: ConnId,
        pool_handle: PoolHandle,
        pe_id: PeId,
        out: &mut Vec<Output>,
    ) {
        let key = (pool_handle.clone(), pe_id);
        let owner = self.supervision.get(&key).map(|s| s.conn);
        let error = match owner {
            Some(owner) if owner != conn => {
                Some(OperationError::new(cause::REJECTED_SECURITY, &[]))
            }
            _ => {
                if self.hs.deregister(&pool_handle, pe_id).is_some() {
                    out.push(log(
                        LOG_VERBOSE,
                        format!("deregistered PE {pe_id} of pool \"{pool_handle}\""),
                    ));
                }
                self.forget_supervision(&pool_handle, pe_id);
                None
            }
        };
        let msg = AsapMessage::new(AsapBody::DeregistrationResponse {
            pool_handle,
            pe_id,
            error,
        });
        push_send(out, conn, PPID_ASAP, &msg.to_bytes());
    }

    fn handle_resolution(
        &mut self,
        now: Micros,
        conn: ConnId,
        pool_handle: PoolHandle,
        items: Option<u32>,
        out: &mut Vec<Output>,
    ) {
        let limit = self.cfg.max_hr_rate;
        let allowed = self
            .conns
            .get_mut(&conn)
            .map(|c| c.hr_rate.allow(now, limit))
            .unwrap_or(false);
        let wanted = match items {
            Some(0) | None => self.cfg.max_hr_items,
            Some(n) => n,
        }
        .min(MAX_HR_ITEMS) as usize;
        let found = if allowed {
            self.hs.handle_resolution(&pool_handle, wanted).map(|pes| {
                pes.into_iter()
                    .map(|pe| to_wire_element(pe, false))
                    .collect::<Vec<_>>()
            })
        } else {
            Err(HandlespaceError::UnknownPoolHandle)
        };
        let body = match found {
            Ok(elements) if !elements.is_empty() => AsapBody::HandleResolutionResponse {
                pool_handle,
                policy: Some(elements[0].policy),
                elements,
                error: None,
            },
            _ => AsapBody::HandleResolutionResponse {
                pool_handle,
                policy: None,
                elements: Vec::new(),
                error: Some(OperationError::new(cause::UNKNOWN_POOL_HANDLE, &[])),
            },
        };
        push_send(out, conn, PPID_ASAP, &AsapMessage::new(body).to_bytes());
    }
}

/// The operation error for a refused registration: the RFC cause, with the offending TLV where
/// Wireshark expects one (policy for 0x0005, user transport for 0x0007).
fn registration_error(e: &HandlespaceError, element: &wire::PoolElement) -> OperationError {
    let code = e.cause_code();
    let mut tlv = Vec::new();
    let ok = match code {
        cause::INCONSISTENT_POOLING_POLICY => {
            wire::param::emit_policy(&mut tlv, &element.policy).is_ok()
        }
        cause::INCONSISTENT_TRANSPORT_TYPE | cause::INVALID_VALUES => {
            wire::param::emit_transport(&mut tlv, &element.user_transport).is_ok()
        }
        _ => false,
    };
    if ok {
        OperationError {
            causes: vec![ErrorCause::with_tlv(code, &tlv)],
        }
    } else {
        OperationError::new(code, &[])
    }
}

/// A stored PE as a Pool Element parameter (with its ASAP transport for ENRP).
pub(super) fn to_wire_element(pe: &handlespace::PoolElement, with_asap: bool) -> wire::PoolElement {
    let policy: PolicyInfo = pe.policy();
    let mut e = wire::PoolElement::new(pe.id(), pe.user_transport().clone(), policy);
    e.home_registrar = pe.home();
    e.registration_life = pe.registration_life_ms();
    if with_asap {
        e.asap_transport = pe.registrator_transport().cloned();
    }
    e
}

/// Encoded size of a Pool Element parameter.
pub(super) fn element_size(e: &wire::PoolElement) -> usize {
    let mut buf = Vec::new();
    let _ = e.emit(&mut buf);
    buf.len()
}
