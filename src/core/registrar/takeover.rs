//! Takeover of a dead peer's PEs (RFC 5353 §3.9): Init Takeover to every other peer, an
//! acknowledgement from each, Takeover Server to all; the lower id wins when two registrars
//! start at once. The taker becomes home for the dead peer's PEs and gives each one keep-alive
//! round to show up (re-register with it or elsewhere); the others are removed as usual.

use super::peers::Takeover;
use super::*;

impl Registrar {
    /// A peer did not answer its Presence request in time.
    pub(super) fn peer_dead(&mut self, now: Micros, id: RegistrarId, out: &mut Vec<Output>) {
        let owned = self.hs.owned_count(id);
        let Some(p) = self.peers.get_mut(&id) else {
            return;
        };
        if let Some(taker) = p.taken_by {
            // We acknowledged another registrar's takeover and its Takeover Server did not
            // come. If the dead peer owns no PE here any more, the taker's updates (or its
            // handle table, after an audit) have re-homed them: it finished, and only its
            // Takeover Server was lost. A second takeover would claim a registrar already
            // taken over.
            if owned == 0 {
                out.push(log(
                    LOG_ACTION,
                    format!(
                        "registrar {taker} took over {id} (its PEs have new homes; its Takeover \
                         Server did not reach us)"
                    ),
                ));
                self.forget_peer(id);
                return;
            }
            out.push(log(
                LOG_WARNING,
                format!("registrar {taker} did not finish its takeover of {id}"),
            ));
            p.taken_by = None;
        }
        // A registrar (one that addressed us by id, or one we dial) is taken over even without
        // PEs, so that every survivor agrees it is gone; a tool that sent a Presence is just
        // forgotten.
        let registrar = p.registrar || self.dials.values().any(|d| d.peer == Some(id));
        if owned == 0 && !registrar {
            out.push(log(
                LOG_VERBOSE,
                format!("peer {id} is gone (it owned no PEs)"),
            ));
            self.forget_peer(id);
            return;
        }
        let expiry = self.cfg.enrp.takeover_expiry;
        let e = &self.cfg.enrp;
        // Every other peer that is alive must acknowledge.
        let pending: BTreeSet<RegistrarId> = self
            .peers
            .iter()
            .filter(|(&other, q)| {
                other != id
                    && q.registrar
                    && q.conn.is_some()
                    && q.asked_at
                        .is_none_or(|at| now < at + e.max_time_no_response)
            })
            .map(|(&other, _)| other)
            .collect();
        out.push(log(
            LOG_ACTION,
            format!(
                "peer {id} is dead (no answer for {} ms): taking over its {owned} PEs{}",
                self.cfg.enrp.max_time_no_response / 1000,
                if pending.is_empty() {
                    String::new()
                } else {
                    format!(" once {} peers agree", pending.len())
                }
            ),
        ));
        if pending.is_empty() {
            return self.finish_takeover(now, id, out);
        }
        if let Some(p) = self.peers.get_mut(&id) {
            p.takeover = Some(Takeover {
                pending,
                expires: now + expiry,
            });
        }
        self.send_to_all_peers(Some(id), out, || (0, EnrpBody::InitTakeover { target: id }));
    }

    /// Init Takeover from `sender` for `target`.
    pub(super) fn receive_init_takeover(
        &mut self,
        now: Micros,
        conn: ConnId,
        sender: RegistrarId,
        target: RegistrarId,
        out: &mut Vec<Output>,
    ) {
        let ack = |r: &Registrar, out: &mut Vec<Output>| {
            let msg = r.enrp_message(0, sender, EnrpBody::InitTakeoverAck { target });
            push_send(out, conn, PPID_ENRP, msg.to_bytes());
        };
        if target == self.cfg.id {
            // We are alive: say so to everyone.
            out.push(log(
                LOG_WARNING,
                format!("registrar {sender} wants to take us over: sending Presence to all"),
            ));
            self.send_to_all_peers(None, out, || {
                let m = self.presence(RegistrarId(0), 0);
                (0, m.body)
            });
            return;
        }
        let us = self.cfg.id;
        let no_response = self.cfg.enrp.max_time_no_response;
        let Some(p) = self.peers.get_mut(&target) else {
            // Unknown to us: nothing to object to.
            return ack(self, out);
        };
        if p.takeover.is_some() {
            if sender.0 < us.0 {
                out.push(log(
                    LOG_ACTION,
                    format!("registrar {sender} takes over {target} (lower id): ours abandoned"),
                ));
                p.takeover = None;
                p.taken_by = Some(sender);
                p.asked_at = Some(now + no_response);
                ack(self, out);
            } else {
                out.push(log(
                    LOG_VERBOSE,
                    format!("registrar {sender} also takes over {target}; ours goes on (lower id)"),
                ));
            }
            return;
        }
        p.taken_by = Some(sender);
        // Its Takeover Server should come soon; if not, the liveness timer goes on.
        if p.asked_at.is_none() {
            p.asked_at = Some(now);
        }
        ack(self, out);
    }

    /// Init Takeover Ack from `sender` for our takeover of `target`.
    pub(super) fn receive_takeover_ack(
        &mut self,
        now: Micros,
        sender: RegistrarId,
        target: RegistrarId,
        out: &mut Vec<Output>,
    ) {
        let done = match self
            .peers
            .get_mut(&target)
            .and_then(|p| p.takeover.as_mut())
        {
            Some(t) => {
                t.pending.remove(&sender);
                t.pending.is_empty()
            }
            None => false,
        };
        if done {
            self.finish_takeover(now, target, out);
        }
    }

    /// Every peer agreed: we are home for `target`'s PEs.
    fn finish_takeover(&mut self, now: Micros, target: RegistrarId, out: &mut Vec<Output>) {
        self.send_to_all_peers(Some(target), out, || {
            (0, EnrpBody::TakeoverServer { target })
        });
        let keys: Vec<(PoolHandle, PeId)> = self
            .hs
            .owned_by(target)
            .map(|(h, pe)| (h.clone(), pe.id()))
            .collect();
        let moved = self.hs.take_over(target, self.cfg.id);
        // Each PE gets one keep-alive round to register again (with us or another registrar);
        // those that do not are removed and their removal published.
        let deadline = now + self.cfg.keepalive_interval + self.cfg.keepalive_timeout;
        for key in keys {
            self.orphans.insert(key, deadline);
        }
        self.counters.takeovers += 1;
        out.push(log(
            LOG_ACTION,
            format!(
                "took over registrar {target}: now home for its {moved} PEs; they have {} ms to \
                 register again",
                (deadline - now) / 1000
            ),
        ));
        self.forget_peer(target);
    }

    /// Takeover Server: `sender` is now home for `target`'s PEs.
    pub(super) fn receive_takeover_server(
        &mut self,
        sender: RegistrarId,
        target: RegistrarId,
        out: &mut Vec<Output>,
    ) {
        if target == self.cfg.id {
            out.push(log(
                LOG_WARNING,
                format!("registrar {sender} took us over; our PEs will register again"),
            ));
            return;
        }
        let moved = self.hs.take_over(target, sender);
        out.push(log(
            LOG_ACTION,
            format!("registrar {sender} took over {target} ({moved} PEs)"),
        ));
        self.forget_peer(target);
    }
}
