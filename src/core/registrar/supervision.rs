//! PE supervision (RFC 5352 §3.5, §3.6): keep-alive timers, keep-alive timeouts, and what the
//! registrar does after it did not run for a while (a stall) and on its periodic sweep (idle
//! connections, stale per-host entries, orphans left by a stall).

use super::*;

impl Registrar {
    /// Arms the PE's one keep-alive timer (replacing the one armed before).
    #[cfg(test)]
    pub(super) fn arm(&mut self, key: (PoolHandle, PeId), at: Micros, kind: TimerKind) {
        self.supervision.arm(&key, at, kind);
    }

    /// Sends a keep-alive to a PE at once, unless one is outstanding: used when another
    /// connection claims the PE, so that a dead owner is found within one keep-alive timeout.
    pub(super) fn probe(&mut self, key: &(PoolHandle, PeId), now: Micros) {
        if self.supervision.get(key).is_some_and(|s| !s.awaiting_ack) {
            self.supervision.arm(key, now, TimerKind::SendKeepAlive);
        }
    }

    /// Keep-alives and keep-alive timeouts due at `now` (at most [`MAX_WORK_PER_POLL`]), the
    /// due ones of one connection in a row (see `keepalive.rs`).
    pub(super) fn run_timers(&mut self, now: Micros, out: &mut Vec<Output>) {
        for _ in 0..MAX_WORK_PER_POLL {
            let Some((slot, kind)) = self.supervision.pop_due(now) else {
                return;
            };
            let sup = self.supervision.slot(slot).expect("a due timer's PE");
            let conn = sup.conn;
            match kind {
                TimerKind::SendKeepAlive => {
                    let msg = AsapMessage::new(AsapBody::EndpointKeepAlive {
                        server_id: self.cfg.id,
                        pool_handle: self.supervision.pool_handle(sup).clone(),
                        pe_id: Some(sup.pe),
                    });
                    push_send(out, conn, PPID_ASAP, msg.to_bytes());
                    let timeout = now + self.cfg.keepalive_timeout;
                    self.supervision
                        .arm_slot(slot, timeout, TimerKind::KeepAliveTimeout);
                }
                TimerKind::KeepAliveTimeout => {
                    self.counters.keepalive_timeouts += 1;
                    out.push(log(
                        LOG_ACTION,
                        format!(
                            "PE {} of pool \"{}\" did not answer its keep-alive: closing its connection",
                            sup.pe,
                            self.supervision.pool_handle(sup)
                        ),
                    ));
                    // As rsplib: the association is aborted, which removes all its PEs.
                    self.connection_down(now, conn, out);
                    out.push(Output::Close { conn });
                }
            }
        }
    }

    /// Notes that the process runs at `now`; after a gap longer than the stall gap, starts a
    /// recovery: every supervised PE gets a keep-alive now and one timeout to answer it,
    /// registrations do not expire, and PEs whose connection goes down are kept as orphans
    /// until the recovery ends, for them to register again over a new connection.
    pub(super) fn observe(&mut self, now: Micros, out: &mut Vec<Output>) {
        let last = self.last_seen.unwrap_or(now);
        if let Some(gap) = self.cfg.stall_gap {
            if now > last.saturating_add(gap) {
                self.enter_recovery(now, now - last, out);
            }
        }
        self.last_seen = Some(last.max(now));
    }

    fn enter_recovery(&mut self, now: Micros, stalled: Micros, out: &mut Vec<Output>) {
        let until = now + self.cfg.keepalive_interval + self.cfg.keepalive_timeout;
        self.recovering_until = Some(self.recovering_until.map_or(until, |t| t.max(until)));
        out.push(log(
            LOG_WARNING,
            format!(
                "the registrar did not run for {} ms (stopped or starved): every PE gets one \
                 keep-alive round before any is removed",
                stalled / 1000
            ),
        ));
        self.supervision.rearm_all(now);
    }

    /// Once a second: closes idle connections, forgets stale host entries and reporters,
    /// removes orphans whose time is up.
    pub(super) fn sweep(&mut self, now: Micros, out: &mut Vec<Output>) {
        let idle: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| {
                c.pes.is_empty()
                    && now.saturating_sub(c.last_activity) >= self.cfg.idle_timeout
                    && !self.cfg.peers.contains(&c.host)
            })
            .map(|(&id, _)| id)
            .collect();
        for conn in idle {
            out.push(log(
                LOG_VERBOSE,
                format!(
                    "connection {conn}: idle for {} s without a PE, closing it (auto-close)",
                    self.cfg.idle_timeout / 1_000_000
                ),
            ));
            self.connection_down(now, conn, out);
            out.push(Output::Close { conn });
        }
        self.hosts.retain(|_, h| !h.forgettable(now));
        let hs = &self.hs;
        self.reporters
            .retain(|(ph, id), _| hs.get(ph, *id).is_some());
        if self.recovering(now) {
            return;
        }
        let due: Vec<(PoolHandle, PeId)> = self
            .orphans
            .iter()
            .filter(|(_, &t)| t <= now)
            .map(|(k, _)| k.clone())
            .take(MAX_WORK_PER_POLL)
            .collect();
        for key in due {
            match self.hs.deregister(&key.0, key.1) {
                Some(pe) => self.removed(&key, &pe, out, |at| {
                    format!(
                        "removed PE {} of pool \"{}\" at {at}: it did not register again in time",
                        key.1, key.0
                    )
                }),
                None => self.pe_gone(&key),
            }
        }
    }
}
