//! The peer table (RFC 5353 §3.1–3.3): which registrars we know, over which connection, when we
//! last heard of them; connecting to configured and learned peers; Presence, the heartbeat and
//! the two liveness timers that end in a takeover (`takeover.rs`).
//!
//! A peer is identified by the sender id of its Presence. A connection speaks for one registrar
//! only; of two connections between the same pair (both dialled at once over TCP) the one
//! dialled by the lower id stays. SCTP needs no such rule: one-to-many sockets share one
//! association per pair of endpoints.

use super::*;

/// Most peers a registrar keeps (a Presence from yet another id is ignored).
pub const MAX_PEERS: usize = 256;
/// Replies to Presence with the reply-required flag, per peer and second.
const PRESENCE_REPLIES_PER_SECOND: u32 = 10;

/// ENRP timers (microseconds) and handle-table paging.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnrpSettings {
    pub heartbeat_cycle: Micros,
    pub max_time_last_heard: Micros,
    pub max_time_no_response: Micros,
    pub mentor_hunt_interval: Micros,
    pub mentor_discovery_timeout: Micros,
    pub takeover_expiry: Micros,
    /// PEs per Handle Table Response.
    pub ht_max_pes: usize,
}

impl Default for EnrpSettings {
    /// rsplib 3.4's defaults.
    fn default() -> Self {
        EnrpSettings {
            heartbeat_cycle: 2_444_444,
            max_time_last_heard: 5_000_000,
            max_time_no_response: 5_000_000,
            mentor_hunt_interval: 1_000_000,
            mentor_discovery_timeout: 5_000_000,
            takeover_expiry: 5_000_000,
            ht_max_pes: HT_MAX_PES,
        }
    }
}

/// What we know of one peer registrar.
#[derive(Debug)]
pub(super) struct Peer {
    /// The connection its messages go over.
    pub conn: Option<ConnId>,
    /// Its ENRP endpoint (from its Server Information, unspecified addresses replaced by the
    /// address it connected from), to dial when there is no connection.
    pub addr: Option<SocketAddr>,
    pub last_heard: Micros,
    /// The ownership checksum of its last Presence.
    pub checksum: u16,
    /// When we asked it for Presence (reply required) without an answer yet.
    pub asked_at: Option<Micros>,
    /// A Handle Table Request to it is outstanding (`Some(flags)` of that request).
    pub requesting: Option<u8>,
    /// Audit: the PEs we hold as its own that its table has not confirmed yet.
    pub unconfirmed: Option<BTreeSet<(PoolHandle, PeId)>>,
    /// Own-children resyncs that did not repair the checksum (then a full one follows).
    pub failed_audits: u32,
    /// Our takeover of this peer, when it is declared dead.
    pub takeover: Option<Takeover>,
    /// We acknowledged this registrar's takeover of this peer.
    pub taken_by: Option<RegistrarId>,
    pub replies: Rate,
    /// It behaves as a registrar: it addressed a Presence to us by id, or sent a message only
    /// registrars send. Tools (hsdump) send Presence to id 0 only; they are not asked to
    /// acknowledge takeovers, not listed to other peers, and not taken over.
    pub registrar: bool,
}

/// A takeover in progress (RFC 5353 §3.9): who must still acknowledge, until when.
#[derive(Debug)]
pub(super) struct Takeover {
    pub pending: BTreeSet<RegistrarId>,
    pub expires: Micros,
}

/// A configured (`-peer=`) or learned ENRP address to keep a connection to.
#[derive(Debug)]
pub(super) struct Dial {
    pub conn: Option<ConnId>,
    pub next_attempt: Micros,
    /// The registrar that answered there.
    pub peer: Option<RegistrarId>,
    /// From the command line (kept for ever) rather than learned.
    pub configured: bool,
    /// Connection attempts since a registrar last answered there (a learned dial is given
    /// up after [`MAX_LEARNED_ATTEMPTS`]).
    pub attempts: u32,
}

/// A registrar's ENRP endpoint from its Server Information: the first transport's port and
/// first specified address, else `fallback` (the address the message came from); `None`
/// without a port or an address.
pub(super) fn enrp_endpoint(
    info: &ServerInformation,
    fallback: Option<IpAddr>,
) -> Option<SocketAddr> {
    let t = info.transports.first().filter(|t| t.port != 0)?;
    let ip = t
        .addresses
        .iter()
        .find(|a| !a.is_unspecified())
        .copied()
        .or(fallback)?;
    Some(SocketAddr::new(ip, t.port))
}

/// A learned ENRP address that never answers is given up after this many attempts.
const MAX_LEARNED_ATTEMPTS: u32 = 5;

/// A snapshot of one peer for tools and tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerInfo {
    pub id: RegistrarId,
    pub addr: Option<SocketAddr>,
    pub connected: bool,
    pub last_heard: Micros,
    pub checksum: u16,
}

/// Where a starting registrar is (RFC 5353 §3.2, "mentor").
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Startup {
    /// Looking for a mentor until the deadline; serving alone meanwhile.
    Hunting { until: Micros },
    /// Fetching the handle table from the mentor; handle resolutions wait.
    Fetching { mentor: RegistrarId, until: Micros },
}

impl Registrar {
    /// The peers we know.
    pub fn peers(&self) -> Vec<PeerInfo> {
        self.peers
            .iter()
            .map(|(&id, p)| PeerInfo {
                id,
                addr: p.addr,
                connected: p.conn.is_some(),
                last_heard: p.last_heard,
                checksum: p.checksum,
            })
            .collect()
    }

    /// Whether the registrar is still joining (hunting for a mentor or fetching its table).
    pub fn joining(&self) -> bool {
        self.startup.is_some()
    }

    /// The transport connected an ENRP address we asked for ([`Output::Connect`]) at once
    /// (TCP): the connection is up from our side.
    pub fn connected(
        &mut self,
        now: Micros,
        conn: ConnId,
        protocol: TransportProtocol,
        to: SocketAddr,
        out: &mut Vec<Output>,
    ) {
        self.connection_up(now, conn, protocol, vec![to], out);
        if let Some(c) = self.conns.get_mut(&conn) {
            c.dialled = true;
            self.bind_dial(now, to, conn, out);
        }
    }

    /// Connecting to `to` failed at once; it is tried again after a heartbeat cycle.
    pub fn connect_failed(&mut self, now: Micros, to: SocketAddr, out: &mut Vec<Output>) {
        let retry = self.retry_interval();
        if let Some(d) = self.dials.get_mut(&to) {
            d.conn = None;
            d.next_attempt = now + retry;
        }
        out.push(log(
            LOG_VERBOSE,
            format!("cannot connect to ENRP peer {to}; trying again later"),
        ));
    }

    /// The dial table for `-peer=` addresses, and the start of the mentor hunt.
    pub(super) fn init_peers(&mut self, now: Micros) {
        for &addr in &self.cfg.static_peers {
            self.dials.insert(
                addr,
                Dial {
                    conn: None,
                    next_attempt: now,
                    peer: None,
                    configured: true,
                    attempts: 0,
                },
            );
        }
        if !self.cfg.static_peers.is_empty() {
            self.startup = Some(Startup::Hunting {
                until: now + self.cfg.enrp.mentor_discovery_timeout,
            });
        }
        self.next_heartbeat = now + self.cfg.enrp.heartbeat_cycle;
    }

    /// After a failed or lost connection, when to dial again.
    fn retry_interval(&self) -> Micros {
        if matches!(self.startup, Some(Startup::Hunting { .. })) {
            self.cfg.enrp.mentor_hunt_interval
        } else {
            self.cfg.enrp.heartbeat_cycle
        }
    }

    /// An SCTP association that came up to a dialled address, or a TCP connection we made:
    /// ask who is there.
    pub(super) fn bind_dial(
        &mut self,
        now: Micros,
        addr: SocketAddr,
        conn: ConnId,
        out: &mut Vec<Output>,
    ) {
        let Some(d) = self.dials.get_mut(&addr) else {
            return;
        };
        d.conn = Some(conn);
        let receiver = d.peer.unwrap_or(RegistrarId(0));
        if let Some(c) = self.conns.get_mut(&conn) {
            c.dial = Some(addr);
            c.last_activity = now;
        }
        let msg = self.presence(receiver, enrp::FLAG_REPLY_REQUIRED);
        push_send(out, conn, PPID_ENRP, msg.to_bytes());
    }

    /// A connection that carried ENRP went down: its peer (and dial) lose it.
    pub(super) fn enrp_connection_down(&mut self, now: Micros, c: &Conn, conn: ConnId) {
        if let Some(addr) = c.dial {
            let retry = self.retry_interval();
            if let Some(d) = self.dials.get_mut(&addr) {
                if d.conn == Some(conn) {
                    d.conn = None;
                    d.next_attempt = now + retry;
                }
            }
        }
        if let Some(id) = c.enrp_peer {
            if let Some(p) = self.peers.get_mut(&id) {
                if p.conn == Some(conn) {
                    p.conn = None;
                    p.requesting = None;
                    p.unconfirmed = None;
                }
            }
        }
    }

    /// A Presence from peer `sender` on `conn`.
    pub(super) fn receive_presence(
        &mut self,
        now: Micros,
        conn: ConnId,
        m: &EnrpMessage,
        out: &mut Vec<Output>,
    ) {
        let EnrpBody::Presence {
            checksum,
            server_info: info,
        } = &m.body
        else {
            return;
        };
        let (flags, sender, checksum) = (m.flags, m.sender, *checksum);
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        if let Some(bound) = c.enrp_peer.filter(|&b| b != sender) {
            return self.refuse(Refusal::EnrpForged, now, out, || {
                format!(
                    "ignored a Presence from {sender} on connection {conn}, which speaks for \
                     {bound}"
                )
            });
        }
        let host = c.host;
        let is_new = !self.peers.contains_key(&sender);
        if is_new && self.peers.len() >= MAX_PEERS {
            return self.refuse(Refusal::EnrpFlood, now, out, || {
                format!("ignored a Presence from {sender}: the peer table is full ({MAX_PEERS})")
            });
        }
        if let Some(c) = self.conns.get_mut(&conn) {
            c.enrp_peer = Some(sender);
        }
        let addr =
            enrp_endpoint(info, Some(host)).map(|a| SocketAddr::new(canonical(&a.ip()), a.port()));
        let peer = self.peers.entry(sender).or_insert_with(|| Peer {
            conn: None,
            addr: None,
            last_heard: now,
            checksum,
            asked_at: None,
            requesting: None,
            unconfirmed: None,
            failed_audits: 0,
            takeover: None,
            taken_by: None,
            replies: Rate::default(),
            registrar: false,
        });
        peer.last_heard = now;
        peer.checksum = checksum;
        peer.asked_at = None;
        peer.registrar |= m.receiver == self.cfg.id;
        peer.taken_by = None;
        if peer.takeover.take().is_some() {
            out.push(log(
                LOG_ACTION,
                format!("peer {sender} is alive after all: takeover abandoned"),
            ));
        }
        if addr.is_some() {
            peer.addr = addr;
        }
        let previous = peer.conn;
        self.choose_connection(now, sender, previous, conn, out);
        if let Some(dial) = self.conns.get(&conn).and_then(|c| c.dial) {
            if let Some(d) = self.dials.get_mut(&dial) {
                d.peer = Some(sender);
                d.attempts = 0;
            }
        }
        if is_new {
            out.push(log(
                LOG_ACTION,
                format!(
                    "ENRP peer {sender} ({}) joined",
                    addr.map_or_else(|| host.to_string(), |a| a.to_string())
                ),
            ));
            // Tell the new peer about us, and learn its peers.
            let reply = self.presence(sender, 0);
            self.send_to_peer(sender, &reply, out);
            let list = self.enrp_message(0, sender, EnrpBody::ListRequest);
            self.send_to_peer(sender, &list, out);
        }
        if flags & enrp::FLAG_REPLY_REQUIRED != 0 {
            let allowed = self
                .peers
                .get_mut(&sender)
                .is_some_and(|p| p.replies.allow(now, Some(PRESENCE_REPLIES_PER_SECOND)));
            if allowed {
                let reply = self.presence(sender, 0);
                push_send(out, conn, PPID_ENRP, reply.to_bytes());
            } else {
                self.refuse(Refusal::EnrpFlood, now, out, || {
                    format!("Presence flood from {sender}: replies limited")
                });
            }
        }
        self.after_presence(now, sender, checksum, out);
    }

    /// Of two connections to one peer, keeps the one dialled by the lower id (the newest
    /// otherwise) and closes the other.
    fn choose_connection(
        &mut self,
        now: Micros,
        id: RegistrarId,
        previous: Option<ConnId>,
        conn: ConnId,
        out: &mut Vec<Output>,
    ) {
        let Some(old) = previous.filter(|&o| o != conn && self.conns.contains_key(&o)) else {
            if let Some(p) = self.peers.get_mut(&id) {
                p.conn = Some(conn);
            }
            return;
        };
        let dialled = |r: &Registrar, c: ConnId| r.conns.get(&c).is_some_and(|c| c.dialled);
        // The connection the lower id dialled: ours if we are lower, else the peer's.
        let we_lower = self.cfg.id.0 < id.0;
        let keep_old = match (dialled(self, old), dialled(self, conn)) {
            (a, b) if a == b => false,
            (old_ours, _) => old_ours == we_lower,
        };
        let (keep, drop) = if keep_old { (old, conn) } else { (conn, old) };
        let mut resend = None;
        if let Some(p) = self.peers.get_mut(&id) {
            p.conn = Some(keep);
            resend = p.requesting;
        }
        // A table request may have gone over the connection that is closed now.
        if let Some(flags) = resend {
            let msg = self.enrp_message(flags, id, EnrpBody::HandleTableRequest);
            push_send(out, keep, PPID_ENRP, msg.to_bytes());
        }
        // A dial whose connection goes is still that registrar's: it is not dialled again
        // while the registrar is reached over the other connection.
        if let Some(addr) = self.conns.get(&drop).and_then(|c| c.dial) {
            if let Some(d) = self.dials.get_mut(&addr) {
                d.peer = Some(id);
                d.attempts = 0;
            }
        }
        out.push(log(
            LOG_VERBOSE,
            format!("two connections to peer {id}: keeping {keep}, closing {drop}"),
        ));
        self.connection_down(now, drop, out);
        out.push(Output::Close { conn: drop });
    }

    /// Sends `msg` to a peer over its connection (nothing if it has none).
    pub(super) fn send_to_peer(&self, id: RegistrarId, msg: &EnrpMessage, out: &mut Vec<Output>) {
        if let Some(conn) = self.peers.get(&id).and_then(|p| p.conn) {
            push_send(out, conn, PPID_ENRP, msg.to_bytes());
        }
    }

    /// Sends a message built per receiver to every connected peer but `except`.
    pub(super) fn send_to_all_peers(
        &self,
        except: Option<RegistrarId>,
        out: &mut Vec<Output>,
        body: impl Fn() -> (u8, EnrpBody),
    ) {
        for (&id, p) in &self.peers {
            if Some(id) == except {
                continue;
            }
            if let Some(conn) = p.conn {
                let (flags, b) = body();
                let msg = self.enrp_message(flags, id, b);
                push_send(out, conn, PPID_ENRP, msg.to_bytes());
            }
        }
    }

    /// A Presence carrying our ownership checksum and Server Information.
    pub(super) fn presence(&self, receiver: RegistrarId, flags: u8) -> EnrpMessage {
        let checksum = checksum::to_wire(self.hs.ownership_checksum(self.cfg.id));
        let transports = self.cfg.enrp_transport.iter().cloned().collect();
        self.enrp_message(
            flags,
            receiver,
            EnrpBody::Presence {
                checksum,
                server_info: ServerInformation::new(self.cfg.id, transports),
            },
        )
    }

    /// The earliest peer timer (heartbeat, dial, liveness, takeover, startup).
    pub(super) fn next_peer_wakeup(&self) -> Option<Micros> {
        if self.peers.is_empty() && self.dials.is_empty() && !self.cfg.enrp_announce {
            return None;
        }
        let e = &self.cfg.enrp;
        let peers = self.peers.values().map(|p| {
            let t = match p.asked_at {
                Some(at) => at + e.max_time_no_response,
                None => p.last_heard + e.max_time_last_heard,
            };
            p.takeover.as_ref().map_or(t, |tk| tk.expires.min(t))
        });
        let dials = self
            .dials
            .values()
            .filter(|d| d.conn.is_none())
            .map(|d| d.next_attempt);
        let startup = match self.startup {
            Some(Startup::Hunting { until }) | Some(Startup::Fetching { until, .. }) => Some(until),
            None => None,
        };
        peers
            .chain(dials)
            .chain(startup)
            .chain(Some(self.next_heartbeat))
            .min()
    }

    /// Peer timers due at `now`: heartbeat Presence, dialling, asking silent peers, declaring
    /// them dead, takeover expiry, the end of the mentor hunt.
    pub(super) fn run_peer_timers(&mut self, now: Micros, out: &mut Vec<Output>) {
        if self.peers.is_empty() && self.dials.is_empty() && !self.cfg.enrp_announce {
            return;
        }
        if now >= self.next_heartbeat {
            self.next_heartbeat = now + self.cfg.enrp.heartbeat_cycle;
            if self.cfg.enrp_announce {
                if let Ok(data) = self.presence(RegistrarId(0), 0).to_bytes() {
                    out.push(Output::EnrpAnnounce { data });
                }
            }
            self.send_to_all_peers(None, out, || {
                let m = self.presence(RegistrarId(0), 0);
                (0, m.body)
            });
        }
        // Dial what has no connection, unless its registrar is reached over another one (it
        // dialled us); then look again after the retry interval.
        let due: Vec<(SocketAddr, bool)> = self
            .dials
            .iter()
            .filter(|(_, d)| d.conn.is_none() && d.next_attempt <= now)
            .map(|(&a, d)| {
                let reached = d
                    .peer
                    .and_then(|id| self.peers.get(&id))
                    .is_some_and(|p| p.conn.is_some());
                (a, reached)
            })
            .collect();
        let retry = self.retry_interval();
        for (addr, reached) in due {
            let Some(d) = self.dials.get_mut(&addr) else {
                continue;
            };
            if reached {
                d.next_attempt = now + retry;
                continue;
            }
            if !d.configured && d.attempts >= MAX_LEARNED_ATTEMPTS {
                out.push(log(
                    LOG_VERBOSE,
                    format!("giving up the learned ENRP address {addr}: no registrar answers"),
                ));
                self.dials.remove(&addr);
                continue;
            }
            d.attempts += 1;
            d.next_attempt = now + retry;
            out.push(Output::Connect { to: addr });
        }
        self.check_liveness(now, out);
        self.expire_startup(now, out);
    }

    fn check_liveness(&mut self, now: Micros, out: &mut Vec<Output>) {
        let e = self.cfg.enrp.clone();
        let ids: Vec<RegistrarId> = self.peers.keys().copied().collect();
        for id in ids {
            let Some(p) = self.peers.get_mut(&id) else {
                continue;
            };
            if let Some(tk) = &p.takeover {
                if tk.expires <= now {
                    let missing: Vec<String> = tk.pending.iter().map(|r| r.to_string()).collect();
                    p.takeover = None;
                    p.asked_at = Some(now);
                    out.push(log(
                        LOG_WARNING,
                        format!(
                            "takeover of {id} expired without acknowledgements from {}; \
                             it is tried again",
                            missing.join(", ")
                        ),
                    ));
                }
                continue;
            }
            match p.asked_at {
                None if now >= p.last_heard + e.max_time_last_heard => {
                    p.asked_at = Some(now);
                    out.push(log(
                        LOG_VERBOSE,
                        format!(
                            "peer {id} not heard for {} ms: asking for Presence",
                            (now - p.last_heard) / 1000
                        ),
                    ));
                    let msg = self.presence(id, enrp::FLAG_REPLY_REQUIRED);
                    self.send_to_peer(id, &msg, out);
                }
                Some(at) if now >= at + e.max_time_no_response => {
                    self.peer_dead(now, id, out);
                }
                _ => {}
            }
        }
    }

    /// A Presence received by multicast from `from`: a registrar we do not reach yet is
    /// dialled.
    pub fn receive_announce(
        &mut self,
        now: Micros,
        data: &[u8],
        from: SocketAddr,
        out: &mut Vec<Output>,
    ) {
        self.observe(now, out);
        let Ok(d) = EnrpMessage::decode(data) else {
            return;
        };
        let m = d.message;
        let EnrpBody::Presence { server_info, .. } = &m.body else {
            return;
        };
        if m.sender == self.cfg.id || m.sender.0 == 0 {
            return;
        }
        let Some(a) = enrp_endpoint(server_info, Some(from.ip())) else {
            return;
        };
        let addr = SocketAddr::new(canonical(&a.ip()), a.port());
        if self.peers.get(&m.sender).is_some_and(|p| p.conn.is_some()) {
            return;
        }
        if !self.dials.contains_key(&addr) {
            out.push(log(
                LOG_VERBOSE,
                format!(
                    "registrar {} announces itself at {addr}: connecting",
                    m.sender
                ),
            ));
        }
        self.learn_peer_address(now, m.sender, addr);
    }

    /// A learned peer's address to keep a connection to (from a List Response).
    pub(super) fn learn_peer_address(&mut self, now: Micros, id: RegistrarId, addr: SocketAddr) {
        if id == self.cfg.id || self.peers.get(&id).is_some_and(|p| p.conn.is_some()) {
            return;
        }
        if self.dials.len() >= MAX_PEERS || self.dials.contains_key(&addr) {
            return;
        }
        self.dials.insert(
            addr,
            Dial {
                conn: None,
                next_attempt: now,
                peer: Some(id),
                configured: false,
                attempts: 0,
            },
        );
    }

    /// Forgets a peer (after a takeover, or one that owned nothing); a learned dial to it goes
    /// too, a configured one stays (the registrar may come back).
    pub(super) fn forget_peer(&mut self, id: RegistrarId) {
        self.peers.remove(&id);
        self.dials.retain(|_, d| d.configured || d.peer != Some(id));
        for d in self.dials.values_mut() {
            if d.peer == Some(id) {
                d.peer = None;
            }
        }
    }
}
