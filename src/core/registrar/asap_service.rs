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
        // The most frequent request, read in place (decode gives the same for this form).
        if let Some((pool_handle, items)) = asap::peek_handle_resolution(data) {
            return self.handle_resolution(now, conn, pool_handle, items, out);
        }
        let decoded = match AsapMessage::decode(data) {
            Ok(d) => d,
            Err(e) => {
                out.push(log(
                    LOG_WARNING,
                    format!("connection {conn}: bad ASAP message: {e}"),
                ));
                if let Some(reply) = wire::asap_error_reply(&e, data) {
                    push_send(out, conn, PPID_ASAP, reply.to_bytes());
                }
                return;
            }
        };
        if let Some(error) = decoded.report() {
            let error = wire::fitted(error, wire::ASAP_ERROR_BUDGET);
            let msg = AsapMessage::new(AsapBody::Error { error });
            push_send(out, conn, PPID_ASAP, msg.to_bytes());
        }
        match decoded.message.body {
            AsapBody::Registration {
                pool_handle,
                element,
            } => self.registration(now, conn, pool_handle, element, out),
            AsapBody::Deregistration { pool_handle, pe_id } => {
                self.deregistration(now, conn, pool_handle, pe_id, out)
            }
            AsapBody::HandleResolution { pool_handle, items } => {
                self.handle_resolution(now, conn, pool_handle.as_bytes(), items, out)
            }
            AsapBody::EndpointKeepAliveAck { pool_handle, pe_id } => {
                // Only an ack to an outstanding keep-alive, on the PE's own connection, counts.
                let key = (pool_handle, pe_id);
                let at = now + self.cfg.keepalive_interval;
                self.supervision.ack(&key, conn, at);
            }
            AsapBody::EndpointUnreachable { pool_handle, pe_id } => {
                self.unreachable(now, conn, pool_handle, pe_id, out)
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
                let error = OperationError {
                    causes: vec![ErrorCause::with_tlv(cause::UNRECOGNIZED_MESSAGE, data)],
                };
                let msg = AsapMessage::new(AsapBody::Error {
                    error: wire::fitted(error, wire::ASAP_ERROR_BUDGET),
                });
                push_send(out, conn, PPID_ASAP, msg.to_bytes());
            }
        }
    }

    /// The host of `conn` and whether one of its per-host rates (`-maxhrrate`, `-maxeurate`)
    /// allows one more event now; `None` for an unknown connection.
    fn host_rate(
        &mut self,
        now: Micros,
        conn: ConnId,
        limit: Option<u32>,
        rate: fn(&mut Host) -> &mut Rate,
    ) -> Option<(IpAddr, bool)> {
        let host = self.conns.get(&conn)?.host;
        let allowed = rate(self.hosts.entry(host).or_default()).allow(now, limit);
        Some((host, allowed))
    }

    /// Whether `conn` comes from one of the PE's registered transport addresses (its user
    /// transport, or the ASAP transport it registered over).
    fn comes_from_registered_address(&self, key: &(PoolHandle, PeId), conn: ConnId) -> bool {
        let (Some(c), Some(pe)) = (self.conns.get(&conn), self.hs.get(&key.0, key.1)) else {
            return false;
        };
        let registered = pe
            .user_transport()
            .addresses
            .iter()
            .chain(
                pe.registrator_transport()
                    .into_iter()
                    .flat_map(|t| &t.addresses),
            )
            .map(canonical)
            .collect::<Vec<_>>();
        c.peer
            .iter()
            .any(|a| registered.contains(&canonical(&a.ip())))
    }

    /// Ownership (RFC 5355 §3, RFC 5352 §3.1): may `conn` re-register or deregister the
    /// existing PE `key`? `Err` says why not.
    ///
    /// A PE is owned by the connection that registered it. Another connection may take it
    /// over only when it comes from one of the PE's registered addresses and the owner is
    /// gone: the PE has no supervising connection (an orphan after a stall, or a PE whose
    /// home is another registrar), or the registrar recovers from a stall, when the owner's
    /// connection may be dead without the registrar knowing yet.
    fn may_take(&self, now: Micros, key: &(PoolHandle, PeId), conn: ConnId) -> Result<(), String> {
        if self.hs.get(&key.0, key.1).is_none() {
            return Ok(());
        }
        match self.supervision.get(key).map(|s| s.conn) {
            Some(owner) if owner == conn => Ok(()),
            Some(owner) => {
                if self.recovering(now) && self.comes_from_registered_address(key, conn) {
                    Ok(())
                } else {
                    Err(format!("it is registered over connection {owner}"))
                }
            }
            None if self.comes_from_registered_address(key, conn) => Ok(()),
            None => Err("the request does not come from one of its addresses".into()),
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
        let reject = |out: &mut Vec<Output>, error: OperationError| {
            let msg = AsapMessage::with_flags(
                AsapBody::RegistrationResponse {
                    pool_handle: pool_handle.clone(),
                    pe_id,
                    error: Some(error),
                },
                asap::FLAG_REJECT,
            );
            push_send(out, conn, PPID_ASAP, msg.to_bytes());
        };
        let rejected = |out: &mut Vec<Output>, why: String| {
            out.push(log(
                LOG_ACTION,
                format!("rejected registration of PE {pe_id} in pool \"{pool_handle}\": {why}"),
            ));
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
            rejected(out, "ASAP transport in a registration".into());
            return reject(
                out,
                OperationError::new(cause::RSPLIB_INVALID_REGISTRATOR, &[]),
            );
        }
        // User addresses: only those the PE really has (its association's addresses) and of
        // sufficient scope. Over TCP the one peer address is all we know.
        let min = self.cfg.min_address_scope;
        let peer_ips: Vec<IpAddr> = c.peer.iter().map(|a| a.ip()).collect();
        let host = c.host;
        let mut user = element.user_transport.clone();
        user.addresses
            .retain(|a| AddressScope::of(a) >= min && peer_ips.contains(&canonical(a)));
        if user.addresses.is_empty() {
            rejected(out, "no usable user transport addresses".into());
            return reject(
                out,
                OperationError::new(cause::RSPLIB_NO_USABLE_USER_ADDRESSES, &[]),
            );
        }
        let asap_addrs: Vec<IpAddr> = peer_ips
            .iter()
            .copied()
            .filter(|a| AddressScope::of(a) >= min)
            .collect();
        if asap_addrs.is_empty() {
            rejected(out, "no usable ASAP addresses".into());
            return reject(
                out,
                OperationError::new(cause::RSPLIB_NO_USABLE_ASAP_ADDRESSES, &[]),
            );
        }
        let registrator = TransportAddress {
            protocol: c.protocol,
            port: c.peer[0].port(),
            transport_use: TRANSPORT_USE_DATA_ONLY,
            dccp_service_code: 0,
            addresses: asap_addrs,
        };
        let reg = Registration {
            pe_id,
            home: self.cfg.id,
            registration_life_ms: element.registration_life,
            user_transport: user,
            policy: element.policy,
            registrator_transport: Some(registrator),
        };
        // What the message says is judged first (0x0003, 0x0005, 0x0007 …): such a refusal
        // depends on nobody's ownership and changes nothing.
        if let Err(e) = self.hs.check_registration(&pool_handle, &reg) {
            rejected(out, e.to_string());
            return reject(out, registration_error(&e, &element));
        }
        let key = (pool_handle.clone(), pe_id);
        if let Err(why) = self.may_take(now, &key, conn) {
            // A live owner: make sure it still is (a dead one is found within one timeout).
            self.probe(&key, now);
            self.refuse(Refusal::Ownership, now, out, || {
                format!(
                    "rejected registration of PE {pe_id} in pool \"{pool_handle}\" from \
                     connection {conn} ({host}): {why}"
                )
            });
            return reject(out, OperationError::new(cause::REJECTED_SECURITY, &[]));
        }
        let exists = self.hs.get(&pool_handle, pe_id).is_some();
        if !exists {
            let host_pes = self.hosts.get(&host).map_or(0, |h| h.pes);
            let pool_pes = self.hs.pool(&pool_handle).map_or(0, |p| p.len);
            let refusal = if over(host_pes as usize, self.cfg.max_pes_per_host) {
                Some((
                    Refusal::PesPerHost,
                    format!("{host} has {host_pes} PEs registered, the limit (-maxpesperhost)"),
                ))
            } else if over(pool_pes, self.cfg.max_pes_per_pool) {
                Some((
                    Refusal::PesPerPool,
                    format!("the pool has {pool_pes} PEs, the limit (-maxpesperpool)"),
                ))
            } else {
                None
            };
            if let Some((kind, why)) = refusal {
                self.refuse(kind, now, out, || {
                    format!("rejected registration of PE {pe_id} in pool \"{pool_handle}\": {why}")
                });
                return reject(out, OperationError::new(cause::LACK_OF_RESOURCES, &[]));
            }
        }
        match self.hs.register(&pool_handle, reg, now) {
            Ok(outcome) => {
                match outcome {
                    RegisterOutcome::Added => {
                        self.counters.registrations += 1;
                        self.log_if(out, LOG_ACTION, || {
                            format!(
                                "registered PE {pe_id} in pool \"{pool_handle}\" from {host} \
                                 (connection {conn})"
                            )
                        });
                    }
                    RegisterOutcome::Updated => {
                        self.counters.reregistrations += 1;
                        self.log_if(out, LOG_VERBOSE, || {
                            format!(
                                "re-registered PE {pe_id} in pool \"{pool_handle}\" (connection {conn})"
                            )
                        });
                    }
                }
                // Only now, with the registration accepted, does the connection own the PE.
                if let Some(old) = self.supervision.get(&key).map(|s| s.conn) {
                    if old != conn {
                        self.detach(&key, old);
                    }
                }
                self.orphans.remove(&key);
                self.attach(&key, conn);
                let at = now + self.cfg.keepalive_interval;
                self.supervision.supervise(key.clone(), conn, at);
                self.publish_pe(&key, out);
                let msg = AsapMessage::new(AsapBody::RegistrationResponse {
                    pool_handle,
                    pe_id,
                    error: None,
                });
                push_send(out, conn, PPID_ASAP, msg.to_bytes());
            }
            Err(e) => {
                rejected(out, e.to_string());
                let error = registration_error(&e, &element);
                reject(out, error);
            }
        }
    }

    fn deregistration(
        &mut self,
        now: Micros,
        conn: ConnId,
        pool_handle: PoolHandle,
        pe_id: PeId,
        out: &mut Vec<Output>,
    ) {
        let key = (pool_handle.clone(), pe_id);
        let error = match self.may_take(now, &key, conn) {
            Err(why) => {
                let host = self.conns.get(&conn).map(|c| c.host);
                self.refuse(Refusal::Ownership, now, out, || {
                    format!(
                        "rejected deregistration of PE {pe_id} in pool \"{pool_handle}\" from \
                         connection {conn} ({host:?}): {why}"
                    )
                });
                Some(OperationError::new(cause::REJECTED_SECURITY, &[]))
            }
            Ok(()) => {
                match self.hs.deregister(&pool_handle, pe_id) {
                    Some(pe) => {
                        self.counters.deregistrations += 1;
                        self.removed(&key, &pe, out, |at| {
                            format!("deregistered PE {pe_id} of pool \"{pool_handle}\" at {at}")
                        });
                    }
                    None => self.pe_gone(&key),
                }
                None
            }
        };
        let msg = AsapMessage::new(AsapBody::DeregistrationResponse {
            pool_handle,
            pe_id,
            error,
        });
        push_send(out, conn, PPID_ASAP, msg.to_bytes());
    }

    /// An Endpoint Unreachable report: limited per host (`-maxeurate`), and a PE is removed
    /// after reports from `-maxbadpereports` distinct hosts (repeats from one host count once).
    fn unreachable(
        &mut self,
        now: Micros,
        conn: ConnId,
        pool_handle: PoolHandle,
        pe_id: PeId,
        out: &mut Vec<Output>,
    ) {
        let limit = self.cfg.max_eu_rate;
        let Some((host, allowed)) = self.host_rate(now, conn, limit, |h| &mut h.eu_rate) else {
            return;
        };
        if !allowed {
            return self.refuse(Refusal::UnreachableRate, now, out, || {
                format!("ignored unreachable reports from {host}: over -maxeurate")
            });
        }
        self.counters.unreachable_reports += 1;
        let key = (pool_handle, pe_id);
        if self.hs.get(&key.0, key.1).is_none() {
            return;
        }
        let max = self.cfg.max_bad_pe_reports as usize;
        let reporters = self.reporters.entry(key.clone()).or_default();
        if reporters.contains(&host) {
            self.log_if(out, LOG_VERBOSE, || {
                format!(
                    "PE {pe_id} of pool \"{}\" reported unreachable by {host} again (counted once)",
                    key.0
                )
            });
            return;
        }
        if reporters.len() < max {
            reporters.push(host);
        }
        match self.hs.report_unreachable(&key.0, pe_id) {
            UnreachableOutcome::Removed(pe) => {
                self.counters.removed_unreachable += 1;
                self.removed(&key, &pe, out, |at| {
                    format!(
                        "removed PE {pe_id} of pool \"{}\" at {at} after unreachable reports \
                         from {max} hosts",
                        key.0
                    )
                });
            }
            UnreachableOutcome::Counted(n) => self.log_if(out, LOG_VERBOSE, || {
                format!(
                    "PE {pe_id} of pool \"{}\" reported unreachable by {host} ({n})",
                    key.0
                )
            }),
            UnreachableOutcome::Unknown => {}
        }
    }

    /// A Handle Resolution for the pool `pool_handle` (its bytes): the answer is encoded
    /// straight from the handlespace into a recycled buffer ([`Registrar::recycle`]).
    pub(super) fn handle_resolution(
        &mut self,
        now: Micros,
        conn: ConnId,
        pool_handle: &[u8],
        items: Option<u32>,
        out: &mut Vec<Output>,
    ) {
        if self.defer_resolution(conn, pool_handle, items) {
            return;
        }
        let limit = self.cfg.max_hr_rate;
        let Some((host, allowed)) = self.host_rate(now, conn, limit, |h| &mut h.hr_rate) else {
            return;
        };
        if !allowed {
            self.refuse(Refusal::ResolutionRate, now, out, || {
                format!("refused handle resolutions from {host}: over -maxhrrate")
            });
            let body = AsapBody::HandleResolutionResponse {
                pool_handle: PoolHandle::new(pool_handle),
                policy: None,
                elements: Vec::new(),
                error: Some(OperationError::new(cause::REJECTED_SECURITY, &[])),
            };
            return push_send(out, conn, PPID_ASAP, AsapMessage::new(body).to_bytes());
        }
        self.counters.handle_resolutions += 1;
        let wanted = match items {
            Some(0) | None => self.cfg.max_hr_items,
            Some(n) => n,
        }
        .min(MAX_HR_ITEMS) as usize;
        let mut selected = std::mem::take(&mut self.selected);
        let found = self.hs.select_into(pool_handle, wanted, &mut selected);
        if found.is_ok() && !selected.is_empty() {
            let mut data = self.buffer();
            let hs = &self.hs;
            let encoded = asap::emit_handle_resolution_response(
                &mut data,
                pool_handle,
                selected.iter().map(|&r| wire_element(hs.pe(r))),
            );
            self.selected = selected;
            return push_send(out, conn, PPID_ASAP, encoded.map(|()| data));
        }
        self.selected = selected;
        let body = AsapBody::HandleResolutionResponse {
            pool_handle: PoolHandle::new(pool_handle),
            policy: None,
            elements: Vec::new(),
            error: Some(OperationError::new(cause::UNKNOWN_POOL_HANDLE, &[])),
        };
        push_send(out, conn, PPID_ASAP, AsapMessage::new(body).to_bytes());
    }
}

/// A stored PE as the Pool Element parameter of a Handle Resolution Response, borrowed: what
/// [`to_wire_element`] gives without an ASAP transport.
fn wire_element(pe: &handlespace::PoolElement) -> wire::param::PoolElementRef<'_> {
    wire::param::PoolElementRef {
        id: pe.id(),
        home_registrar: pe.home(),
        registration_life: pe.registration_life_ms(),
        user_transport: pe.user_transport(),
        policy: pe.policy(),
        asap_transport: None,
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
