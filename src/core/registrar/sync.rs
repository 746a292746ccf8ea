//! Handlespace synchronisation (RFC 5353 §3.4–3.8): Handle Updates out and in, the handle
//! table (one page per request, continued by the next request while M is set), the mentor's
//! table for a joining registrar, the audit of each peer's PEs by its Presence checksum, and
//! List Request/Response.

use super::peers::Startup;
use super::*;

/// Handle resolutions held while a joining registrar fetches its mentor's table.
const MAX_DEFERRED: usize = 4096;

impl Registrar {
    /// Tells every peer that one of our PEs was added or changed (`ADD_PE`) or removed.
    pub(super) fn publish(
        &self,
        action: u16,
        ph: &PoolHandle,
        element: wire::PoolElement,
        out: &mut Vec<Output>,
    ) {
        if self.peers.is_empty() || element.home_registrar != self.cfg.id {
            return;
        }
        self.send_to_all_peers(None, out, || {
            (
                0,
                EnrpBody::HandleUpdate {
                    action,
                    reserved: 0,
                    pool_handle: ph.clone(),
                    element: element.clone(),
                },
            )
        });
    }

    /// Publishes the current state of one of our PEs.
    pub(super) fn publish_pe(&self, key: &(PoolHandle, PeId), out: &mut Vec<Output>) {
        if let Some(pe) = self.hs.get(&key.0, key.1) {
            let element = to_wire_element(pe, true);
            self.publish(enrp::UPDATE_ADD_PE, &key.0, element, out);
        }
    }

    /// Publishes the removal of a PE (if it was ours).
    pub(super) fn publish_removal(
        &self,
        ph: &PoolHandle,
        pe: &handlespace::PoolElement,
        out: &mut Vec<Output>,
    ) {
        if self.peers.is_empty() {
            return;
        }
        let element = to_wire_element(pe, true);
        self.publish(enrp::UPDATE_DEL_PE, ph, element, out);
    }

    /// Whether `conn` speaks for the peer `sender` (it sent its Presence there); if not, one
    /// log line (at most one per 10 s) and `false`.
    pub(super) fn authenticated(
        &mut self,
        now: Micros,
        conn: ConnId,
        sender: RegistrarId,
        what: &str,
        out: &mut Vec<Output>,
    ) -> bool {
        let bound = self.conns.get(&conn).and_then(|c| c.enrp_peer);
        if bound == Some(sender) && self.peers.contains_key(&sender) {
            return true;
        }
        self.refuse(Refusal::EnrpForged, now, out, || match bound {
            Some(b) => format!(
                "ignored {what} claiming to be from {sender} on connection {conn}, which speaks \
                 for {b}"
            ),
            None => format!(
                "ignored {what} from {sender} on connection {conn}: no Presence from it yet"
            ),
        });
        false
    }

    /// A Handle Update from a peer: applied only for PEs that peer owns.
    pub(super) fn receive_update(
        &mut self,
        now: Micros,
        sender: RegistrarId,
        action: u16,
        ph: PoolHandle,
        element: wire::PoolElement,
        out: &mut Vec<Output>,
    ) {
        let key = (ph, element.id);
        match action {
            enrp::UPDATE_ADD_PE if element.home_registrar == sender => {
                self.apply_peer_pe(now, &key.0, element, out);
            }
            enrp::UPDATE_DEL_PE => {
                let owner = self.hs.get(&key.0, key.1).map(|pe| pe.home());
                if owner == Some(sender) {
                    self.hs.deregister(&key.0, key.1);
                    self.pe_gone(&key);
                    out.push(log(
                        LOG_VERBOSE,
                        format!("peer {sender} removed PE {} of pool \"{}\"", key.1, key.0),
                    ));
                } else if owner.is_some() {
                    self.refuse(Refusal::EnrpNotOwner, now, out, || {
                        format!(
                            "ignored a Handle Update from {sender} deleting PE {} of pool \
                             \"{}\", whose home is {}",
                            key.1,
                            key.0,
                            owner.unwrap_or_default()
                        )
                    });
                }
            }
            enrp::UPDATE_ADD_PE => self.refuse(Refusal::EnrpNotOwner, now, out, || {
                format!(
                    "ignored a Handle Update from {sender} adding PE {} of pool \"{}\" with \
                     home {}",
                    key.1, key.0, element.home_registrar
                )
            }),
            other => out.push(log(
                LOG_WARNING,
                format!("ignored a Handle Update from {sender} with unknown action {other}"),
            )),
        }
    }

    /// Stores a PE a peer is home for (from an update or a handle table). A PE we supervise
    /// moves to the peer: it registered there since.
    fn apply_peer_pe(
        &mut self,
        now: Micros,
        ph: &PoolHandle,
        element: wire::PoolElement,
        out: &mut Vec<Output>,
    ) -> bool {
        let key = (ph.clone(), element.id);
        let reg = Registration {
            pe_id: element.id,
            home: element.home_registrar,
            registration_life_ms: element.registration_life,
            user_transport: element.user_transport,
            policy: element.policy,
            registrator_transport: element.asap_transport,
        };
        match self.hs.register(ph, reg, now) {
            Ok(_) => {
                if self.supervision.contains_key(&key) || self.orphans.contains_key(&key) {
                    out.push(log(
                        LOG_VERBOSE,
                        format!(
                            "PE {} of pool \"{ph}\" is now at registrar {}",
                            key.1, element.home_registrar
                        ),
                    ));
                    self.forget_supervision(&key);
                    self.orphans.remove(&key);
                }
                true
            }
            Err(e) => {
                out.push(log(
                    LOG_WARNING,
                    format!(
                        "cannot store PE {} of pool \"{ph}\" from registrar {}: {e}",
                        key.1, element.home_registrar
                    ),
                ));
                false
            }
        }
    }

    /// What to do after a peer's Presence: fetch the mentor's table while joining, audit its
    /// PEs otherwise.
    pub(super) fn after_presence(
        &mut self,
        now: Micros,
        id: RegistrarId,
        checksum: u16,
        out: &mut Vec<Output>,
    ) {
        if let Some(Startup::Hunting { .. }) = self.startup {
            self.startup = Some(Startup::Fetching {
                mentor: id,
                until: now + self.cfg.enrp.mentor_discovery_timeout,
            });
            out.push(log(
                LOG_ACTION,
                format!("registrar {id} is our mentor: fetching its handle table"),
            ));
            self.request_table(id, 0, out);
            return;
        }
        let Some(p) = self.peers.get(&id) else {
            return;
        };
        if p.requesting.is_some() || p.takeover.is_some() {
            return;
        }
        let local = checksum::to_wire(self.hs.ownership_checksum(id));
        if local == checksum {
            if let Some(p) = self.peers.get_mut(&id) {
                p.failed_audits = 0;
            }
            return;
        }
        let failed = p.failed_audits;
        let flags = if failed >= 1 {
            0
        } else {
            enrp::FLAG_OWN_CHILDREN_ONLY
        };
        out.push(log(
            LOG_VERBOSE,
            format!(
                "peer {id}'s PEs differ (checksum {checksum:#06x}, ours {local:#06x}): \
                 requesting its {}handle table",
                if flags != 0 { "own " } else { "whole " }
            ),
        ));
        let owned: BTreeSet<(PoolHandle, PeId)> = self
            .hs
            .owned_by(id)
            .map(|(h, pe)| (h.clone(), pe.id()))
            .collect();
        if let Some(p) = self.peers.get_mut(&id) {
            p.unconfirmed = Some(owned);
            p.failed_audits += 1;
        }
        self.request_table(id, flags, out);
    }

    fn request_table(&mut self, id: RegistrarId, flags: u8, out: &mut Vec<Output>) {
        if let Some(p) = self.peers.get_mut(&id) {
            p.requesting = Some(flags);
        }
        let msg = self.enrp_message(flags, id, EnrpBody::HandleTableRequest);
        self.send_to_peer(id, &msg, out);
    }

    /// A Handle Table Request: the next page of the table for this connection.
    pub(super) fn receive_table_request(
        &mut self,
        conn: ConnId,
        flags: u8,
        sender: RegistrarId,
        out: &mut Vec<Output>,
    ) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        // Whoever sent a Presence may ask (rsplib: anyone in the peer list); so may a peer we
        // know whose request came over a connection its Presence has not come over yet (two
        // registrars that dialled each other at once).
        if c.enrp_peer.is_none() && !self.peers.contains_key(&sender) {
            let msg = self.enrp_message(
                enrp::FLAG_REJECT,
                sender,
                EnrpBody::HandleTableResponse { pools: vec![] },
            );
            push_send(out, conn, PPID_ENRP, msg.to_bytes());
            return;
        }
        let own_only = flags & enrp::FLAG_OWN_CHILDREN_ONLY != 0;
        // Registrar-side ports go to configured or dialled peers only; anyone else (a tool
        // such as hsdump) gets HIDDEN_ASAP_PORT.
        let with_ports = self.cfg.peers.contains(&c.host)
            || c.dialled
            || self.dials.values().any(|d| d.peer == Some(sender));
        let cursor = match &c.ht_cursor {
            Some((o, cur)) if *o == own_only => Some(cur.clone()),
            _ => None,
        };
        let (msg, next) = self.table_page(sender, own_only, with_ports, cursor.as_ref());
        if let Some(c) = self.conns.get_mut(&conn) {
            c.ht_cursor = next.map(|n| (own_only, n));
        }
        push_send(out, conn, PPID_ENRP, msg.to_bytes());
    }

    /// One Handle Table Response of at most `ht_max_pes` PEs and [`HT_MAX_BYTES`] bytes after
    /// `cursor`, and the cursor to continue from (M set) if more follow.
    pub(super) fn table_page(
        &self,
        receiver: RegistrarId,
        own_only: bool,
        with_ports: bool,
        cursor: Option<&handlespace::WalkCursor>,
    ) -> (EnrpMessage, Option<handlespace::WalkCursor>) {
        let owner = own_only.then_some(self.cfg.id);
        let page = self.hs.walk(cursor, owner, self.cfg.enrp.ht_max_pes);
        let mut pools: Vec<PoolEntries> = Vec::new();
        let mut bytes = 12;
        let mut taken = 0;
        for (ph, pe) in &page.items {
            let mut element = to_wire_element(pe, true);
            if !with_ports {
                if let Some(t) = element.asap_transport.as_mut() {
                    t.port = HIDDEN_ASAP_PORT;
                }
            }
            let size = element_size(&element)
                + if pools.last().map(|p| &p.pool_handle) == Some(*ph) {
                    0
                } else {
                    4 + ph.len().div_ceil(4) * 4
                };
            if taken > 0 && bytes + size > HT_MAX_BYTES {
                break;
            }
            bytes += size;
            taken += 1;
            match pools.last_mut() {
                Some(p) if p.pool_handle == **ph => p.elements.push(element),
                _ => pools.push(PoolEntries {
                    pool_handle: (*ph).clone(),
                    elements: vec![element],
                }),
            }
        }
        let more = page.more || taken < page.items.len();
        let next = if more {
            page.cursor_after(taken.wrapping_sub(1))
        } else {
            None
        };
        let flags = if next.is_some() { enrp::FLAG_MORE } else { 0 };
        let msg = self.enrp_message(flags, receiver, EnrpBody::HandleTableResponse { pools });
        (msg, next)
    }

    /// A Handle Table Response to our request: store its PEs, ask for the next page or finish
    /// (purge what an audit did not see confirmed; a joining registrar starts serving).
    pub(super) fn receive_table_response(
        &mut self,
        now: Micros,
        conn: ConnId,
        sender: RegistrarId,
        flags: u8,
        pools: Vec<PoolEntries>,
        out: &mut Vec<Output>,
    ) {
        if self.peers.get(&sender).and_then(|p| p.conn) != Some(conn) {
            // An answer on a connection that was replaced by another: the request was sent
            // again over that one.
            return;
        }
        let Some(request) = self.peers.get(&sender).and_then(|p| p.requesting) else {
            return self.refuse(Refusal::EnrpUnsolicited, now, out, || {
                format!("ignored a Handle Table Response from {sender}: none was asked for")
            });
        };
        if flags & enrp::FLAG_REJECT != 0 {
            out.push(log(
                LOG_WARNING,
                format!("registrar {sender} rejected our Handle Table Request"),
            ));
            if let Some(p) = self.peers.get_mut(&sender) {
                p.requesting = None;
                p.unconfirmed = None;
            }
            return self.table_done(now, sender, false, out);
        }
        let own_only = request & enrp::FLAG_OWN_CHILDREN_ONLY != 0;
        let mut foreign = 0;
        for pool in pools {
            for element in pool.elements {
                let key = (pool.pool_handle.clone(), element.id);
                let home = element.home_registrar;
                if own_only && home != sender {
                    // More than asked: we asked for the sender's own PEs only.
                    foreign += 1;
                    continue;
                }
                if home == self.cfg.id || home.0 == 0 {
                    continue;
                }
                // A PE we supervise stays ours: it registered with us after the table was
                // made. Other registrars' PEs come from their own updates as well.
                if self.supervision.contains_key(&key) {
                    continue;
                }
                if self.apply_peer_pe(now, &pool.pool_handle, element, out) {
                    if let Some(u) = self
                        .peers
                        .get_mut(&home)
                        .and_then(|p| p.unconfirmed.as_mut())
                    {
                        u.remove(&key);
                    }
                }
            }
        }
        if foreign > 0 {
            self.refuse(Refusal::EnrpUnsolicited, now, out, || {
                format!(
                    "ignored {foreign} PEs of other registrars in {sender}'s answer to a request \
                     for its own PEs"
                )
            });
        }
        if flags & enrp::FLAG_MORE != 0 {
            let msg = self.enrp_message(request, sender, EnrpBody::HandleTableRequest);
            self.send_to_peer(sender, &msg, out);
            return;
        }
        if let Some(p) = self.peers.get_mut(&sender) {
            p.requesting = None;
        }
        self.table_done(now, sender, true, out);
    }

    /// A table transfer from `sender` ended.
    fn table_done(&mut self, now: Micros, sender: RegistrarId, ok: bool, out: &mut Vec<Output>) {
        let stale = self
            .peers
            .get_mut(&sender)
            .and_then(|p| p.unconfirmed.take())
            .filter(|_| ok);
        if let Some(stale) = stale {
            let mut purged = 0;
            for key in stale {
                if self.hs.get(&key.0, key.1).map(|pe| pe.home()) == Some(sender) {
                    self.hs.deregister(&key.0, key.1);
                    self.pe_gone(&key);
                    purged += 1;
                }
            }
            if purged > 0 {
                out.push(log(
                    LOG_ACTION,
                    format!("audit of peer {sender}: removed {purged} PEs it no longer has"),
                ));
            }
        }
        if let Some(Startup::Fetching { mentor, .. }) = self.startup {
            if mentor == sender {
                self.end_startup(now, out);
            }
        }
    }

    /// The joining registrar becomes a full member: it answers the resolutions it held.
    pub(super) fn end_startup(&mut self, now: Micros, out: &mut Vec<Output>) {
        let Some(state) = self.startup.take() else {
            return;
        };
        let text = match state {
            Startup::Hunting { .. } => "no mentor answered: serving alone".to_string(),
            Startup::Fetching { mentor, .. } => format!(
                "handle table from mentor {mentor} complete ({} PEs in {} pools)",
                self.hs.len(),
                self.hs.pool_count()
            ),
        };
        out.push(log(LOG_ACTION, text));
        for (conn, ph, items) in std::mem::take(&mut self.deferred) {
            if self.conns.contains_key(&conn) {
                self.handle_resolution(now, conn, ph.as_bytes(), items, out);
            }
        }
    }

    pub(super) fn expire_startup(&mut self, now: Micros, out: &mut Vec<Output>) {
        let until = match self.startup {
            Some(Startup::Hunting { until }) | Some(Startup::Fetching { until, .. }) => until,
            None => return,
        };
        if now >= until {
            if let Some(Startup::Fetching { mentor, .. }) = self.startup {
                out.push(log(
                    LOG_WARNING,
                    format!("mentor {mentor}'s handle table did not arrive in time"),
                ));
            }
            self.end_startup(now, out);
        }
    }

    /// While the mentor's table is on its way, a handle resolution waits for it (`true`).
    pub(super) fn defer_resolution(&mut self, conn: ConnId, ph: &[u8], items: Option<u32>) -> bool {
        if !matches!(self.startup, Some(Startup::Fetching { .. }))
            || self.deferred.len() >= MAX_DEFERRED
        {
            return false;
        }
        self.deferred.push((conn, PoolHandle::new(ph), items));
        true
    }

    /// A List Request: the peers we know, with their ENRP endpoints.
    pub(super) fn receive_list_request(
        &mut self,
        conn: ConnId,
        sender: RegistrarId,
        out: &mut Vec<Output>,
    ) {
        let servers = self
            .peers
            .iter()
            .filter(|(&id, p)| id != sender && p.registrar)
            .filter_map(|(&id, p)| {
                let a = p.addr?;
                Some(ServerInformation::new(
                    id,
                    vec![TransportAddress::new(
                        self.cfg
                            .enrp_transport
                            .as_ref()
                            .map_or(TransportProtocol::Tcp, |t| t.protocol),
                        a.port(),
                        vec![a.ip()],
                    )],
                ))
            })
            .collect();
        let msg = self.enrp_message(0, sender, EnrpBody::ListResponse { servers });
        push_send(out, conn, PPID_ENRP, msg.to_bytes());
    }

    /// A List Response: peers of our peer become ours to dial.
    pub(super) fn receive_list_response(&mut self, now: Micros, servers: Vec<ServerInformation>) {
        for s in servers.into_iter().take(peers::MAX_PEERS) {
            if let Some(addr) = peers::enrp_endpoint(&s, None).filter(|_| s.server_id.0 != 0) {
                self.learn_peer_address(now, s.server_id, addr);
            }
        }
    }
}
