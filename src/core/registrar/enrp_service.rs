//! ENRP (RFC 5353) in: who may speak it, decoding, and where each message goes (the peer
//! table in `peers.rs`, synchronisation in `sync.rs`, takeover in `takeover.rs`).
//!
//! Only configured peers (`-peer=`), registrars learned from peers' List Responses or from
//! multicast Presence (the addresses we dial), and hosts allowed by `-enrpallow=` (loopback by
//! default) may speak ENRP to the registrar; anyone else's connection is closed. Tools get the handle
//! table without the PEs' registrar-side ports (their ASAP transports carry
//! [`HIDDEN_ASAP_PORT`]).

use super::*;

impl Registrar {
    pub(super) fn receive_enrp(
        &mut self,
        now: Micros,
        conn: ConnId,
        data: &[u8],
        out: &mut Vec<Output>,
    ) {
        let Some((host, dialled)) = self.conns.get(&conn).map(|c| (c.host, c.dialled)) else {
            return;
        };
        let peer = dialled
            || self.cfg.peers.contains(&host)
            || self
                .peers
                .values()
                .any(|p| p.addr.is_some_and(|a| a.ip() == host))
            || self.dials.keys().any(|a| a.ip() == host);
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
                    push_send(out, conn, PPID_ENRP, reply.to_bytes());
                }
                return;
            }
        };
        let m = decoded.message;
        if m.sender == self.cfg.id || m.sender.0 == 0 {
            return;
        }
        if let EnrpBody::Presence { .. } = m.body {
            return self.receive_presence(now, conn, &m, out);
        }
        if let EnrpBody::HandleTableRequest = m.body {
            // Tools (hsdump) ask after their Presence, as peers do.
            return self.receive_table_request(conn, m.flags, m.sender, out);
        }
        if let EnrpBody::ListRequest = m.body {
            return self.receive_list_request(conn, m.sender, out);
        }
        let name = enrp::message_name(m.msg_type());
        if !self.authenticated(now, conn, m.sender, name, out) {
            return;
        }
        if let Some(p) = self.peers.get_mut(&m.sender) {
            p.last_heard = now;
            p.registrar = true;
        }
        match m.body {
            EnrpBody::HandleUpdate {
                action,
                pool_handle,
                element,
                ..
            } => self.receive_update(now, m.sender, action, pool_handle, element, out),
            EnrpBody::HandleTableResponse { pools } => {
                self.receive_table_response(now, conn, m.sender, m.flags, pools, out)
            }
            EnrpBody::ListResponse { servers } => self.receive_list_response(now, servers),
            EnrpBody::InitTakeover { target } => {
                self.receive_init_takeover(now, conn, m.sender, target, out)
            }
            EnrpBody::InitTakeoverAck { target } => {
                self.receive_takeover_ack(now, m.sender, target, out)
            }
            EnrpBody::TakeoverServer { target } => {
                self.receive_takeover_server(m.sender, target, out)
            }
            EnrpBody::Error { error } => out.push(log(
                LOG_WARNING,
                format!(
                    "ENRP Error from peer {}: cause 0x{:04x}",
                    m.sender,
                    error.code()
                ),
            )),
            EnrpBody::Presence { .. } | EnrpBody::HandleTableRequest | EnrpBody::ListRequest => {}
        }
    }

    pub(super) fn enrp_message(
        &self,
        flags: u8,
        receiver: RegistrarId,
        body: EnrpBody,
    ) -> EnrpMessage {
        EnrpMessage {
            flags,
            sender: self.cfg.id,
            receiver,
            body,
            skipped: Vec::new(),
        }
    }
}
