//! The ENRP side (RFC 5353) that answers other registrars' and tools' (hsdump) queries.
//!
//! Only configured peers (`-peer=`) and hosts allowed by `-enrpallow=` (loopback by default)
//! may speak ENRP to the registrar; anyone else's connection is closed. Tools get the handle
//! table without the PEs' registrar-side ports (their ASAP transports carry
//! [`HIDDEN_ASAP_PORT`]).

use super::asap_service::{element_size, to_wire_element};
use super::*;

impl Registrar {
    pub(super) fn receive_enrp(
        &mut self,
        now: Micros,
        conn: ConnId,
        data: &[u8],
        out: &mut Vec<Output>,
    ) {
        let Some(host) = self.conns.get(&conn).map(|c| c.host) else {
            return;
        };
        let peer = self.cfg.peers.contains(&host);
        if !peer && !self.cfg.enrp_allow.iter().any(|p| p.contains(&host)) {
            self.refuse(Refusal::EnrpAccess, now, out, || {
                format!(
                    "refused ENRP from {host}: neither a peer nor allowed by -enrpallow; \
                     connection closed"
                )
            });
            self.connection_down(now, conn, out);
            out.push(Output::Close { conn });
            return;
        }
        let decoded = match EnrpMessage::decode(data) {
            Ok(d) => d,
            Err(e) => {
                out.push(log(
                    LOG_WARNING,
                    format!("connection {conn}: bad ENRP message: {e}"),
                ));
                if let Some(reply) = wire::enrp_error_reply(&e, data, self.cfg.id, RegistrarId(0)) {
                    push_send(out, conn, PPID_ENRP, &reply.to_bytes());
                }
                return;
            }
        };
        let m = decoded.message;
        if m.sender == self.cfg.id {
            return;
        }
        match m.body {
            EnrpBody::Presence { .. } => {
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.enrp_peer = Some(m.sender);
                }
                if m.flags & enrp::FLAG_REPLY_REQUIRED != 0 || m.receiver.0 == 0 {
                    let reply = self.presence(m.sender);
                    push_send(out, conn, PPID_ENRP, &reply.to_bytes());
                }
            }
            EnrpBody::ListRequest => {
                let msg =
                    self.enrp_message(0, m.sender, EnrpBody::ListResponse { servers: vec![] });
                push_send(out, conn, PPID_ENRP, &msg.to_bytes());
            }
            EnrpBody::HandleTableRequest => {
                let known = self
                    .conns
                    .get(&conn)
                    .map(|c| c.enrp_peer.is_some())
                    .unwrap_or(false);
                if !known {
                    let msg = self.enrp_message(
                        enrp::FLAG_REJECT,
                        m.sender,
                        EnrpBody::HandleTableResponse { pools: vec![] },
                    );
                    push_send(out, conn, PPID_ENRP, &msg.to_bytes());
                    return;
                }
                let own_only = m.flags & enrp::FLAG_OWN_CHILDREN_ONLY != 0;
                for msg in self.handle_table(m.sender, own_only, peer) {
                    push_send(out, conn, PPID_ENRP, &msg.to_bytes());
                }
            }
            other => out.push(log(
                LOG_VERBOSE,
                format!(
                    "connection {conn}: ENRP {} from {} not handled (no ENRP peering yet)",
                    enrp::message_name(other.msg_type()),
                    m.sender
                ),
            )),
        }
    }

    fn enrp_message(&self, flags: u8, receiver: RegistrarId, body: EnrpBody) -> EnrpMessage {
        EnrpMessage {
            flags,
            sender: self.cfg.id,
            receiver,
            body,
            skipped: Vec::new(),
        }
    }

    /// A Presence carrying our ownership checksum and Server Information.
    fn presence(&self, receiver: RegistrarId) -> EnrpMessage {
        let checksum = checksum::to_wire(self.hs.ownership_checksum(self.cfg.id));
        let transports = self.cfg.enrp_transport.iter().cloned().collect();
        self.enrp_message(
            0,
            receiver,
            EnrpBody::Presence {
                checksum,
                server_info: ServerInformation::new(self.cfg.id, transports),
            },
        )
    }

    /// The whole handlespace (or our own PEs) as Handle Table Responses of at most
    /// [`HT_MAX_PES`] PEs and about [`HT_MAX_BYTES`] bytes each; M set on all but the last.
    /// Registrar-side ports go to peers only (`with_ports`); tools get [`HIDDEN_ASAP_PORT`].
    fn handle_table(
        &self,
        receiver: RegistrarId,
        own_only: bool,
        with_ports: bool,
    ) -> Vec<EnrpMessage> {
        let owner = own_only.then_some(self.cfg.id);
        let mut messages = Vec::new();
        let mut cursor = None;
        loop {
            let page = self.hs.walk(cursor.as_ref(), owner, HT_MAX_PES);
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
            cursor = page.cursor_after(taken.wrapping_sub(1));
            let flags = if more { enrp::FLAG_MORE } else { 0 };
            messages.push(self.enrp_message(
                flags,
                receiver,
                EnrpBody::HandleTableResponse { pools },
            ));
            if !more || cursor.is_none() {
                break;
            }
        }
        messages
    }
}
