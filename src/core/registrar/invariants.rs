//! Consistency checks of the registrar's state, for fuzzing and tests (issue #14): the
//! supervision map, the connections' PE sets and the keep-alive timers must agree with each
//! other and with the handlespace, and the handlespace must agree with itself (walks, lookups,
//! pool sizes, checksums, ownership, expiry).
//!
//! Everything here only reads; a check costs O(n log n) in the PEs, so it is meant for small
//! states (the fuzz targets call it after every step).

use super::*;
use crate::core::checksum::HandlespaceChecksum;
use crate::core::handlespace::RandomSource;

/// Walk page size of the checks: small, so that cursors are exercised too.
const WALK_PAGE: usize = 7;

impl Registrar {
    /// Checks the registrar's invariants; the first violation found, described, as `Err`.
    ///
    /// * Every supervised PE exists in the handlespace and has this registrar as its home; every
    ///   PE homed here is supervised.
    /// * Supervision and the connections' PE sets agree both ways: a supervised PE is in its
    ///   supervising connection's set (and that connection is open), and every PE in a
    ///   connection's set is supervised by that connection.
    /// * Every supervision has exactly its one timer armed in its connection's queues (the
    ///   keep-alive timeout while an ack is awaited, the next keep-alive otherwise), and each
    ///   connection with timers is scheduled at its earliest (see `keepalive.rs`).
    /// * The handlespace is consistent with itself ([`check_handlespace`]), and the ownership
    ///   checksum this registrar advertises equals one recomputed from all its PEs.
    #[doc(hidden)]
    pub fn check_invariants(&self) -> Result<(), String> {
        let me = self.cfg.id;
        for sup in self.supervision.iter() {
            let key = &self.supervision.key(sup);
            let (ph, id) = key;
            let Some(pe) = self.hs.get(ph, *id) else {
                return Err(format!(
                    "supervised PE {id} of pool \"{ph}\" is not in the handlespace"
                ));
            };
            if pe.home() != me {
                return Err(format!(
                    "supervised PE {id} of pool \"{ph}\" has home {}, not this registrar",
                    pe.home()
                ));
            }
            let Some(conn) = self.conns.get(&sup.conn) else {
                return Err(format!(
                    "PE {id} of pool \"{ph}\" is supervised by connection {}, which is not open",
                    sup.conn
                ));
            };
            if !conn.pes.contains(key) {
                return Err(format!(
                    "PE {id} of pool \"{ph}\" is supervised by connection {}, which does not list it",
                    sup.conn
                ));
            }
        }
        // Every supervision has exactly its one timer armed, of the kind its ack state asks
        // for, with its connection's timers; connections are scheduled at their earliest.
        self.supervision.check()?;
        for (cid, conn) in &self.conns {
            for key in &conn.pes {
                match self.supervision.get(key) {
                    Some(sup) if sup.conn == *cid => {}
                    Some(sup) => {
                        let by = sup.conn;
                        return Err(format!(
                            "connection {cid} lists PE {} of pool \"{}\", supervised by {by}",
                            key.1, key.0
                        ));
                    }
                    None => {
                        return Err(format!(
                            "connection {cid} lists PE {} of pool \"{}\", which is not supervised",
                            key.1, key.0
                        ))
                    }
                }
            }
        }
        check_handlespace(&self.hs)?;
        // Every PE homed here is supervised (the converse of the first check).
        let mut own = HandlespaceChecksum::new();
        let mut own_count = 0;
        for (ph, pe) in walk_all(&self.hs, None) {
            if pe.home() == me {
                own.add(ph.as_bytes(), pe.id());
                own_count += 1;
                let key = (ph.clone(), pe.id());
                if !self.supervision.contains_key(&key) && !self.orphans.contains_key(&key) {
                    return Err(format!(
                        "PE {} of pool \"{ph}\" is homed here but neither supervised nor an orphan",
                        pe.id()
                    ));
                }
            }
        }
        self.check_limits_state()?;
        if self.hs.ownership_checksum(me) != own.value() {
            return Err(format!(
                "ownership checksum 0x{:04x}, recomputed 0x{:04x} over {own_count} PEs",
                self.hs.ownership_checksum(me),
                own.value()
            ));
        }
        Ok(())
    }
}

impl Registrar {
    /// The state behind the limits and the stall recovery: per-host counts equal a recount
    /// over the open connections; orphans are in the handlespace and not supervised; unreachable
    /// reporters are kept only for PEs that exist, each host once, at most the threshold.
    fn check_limits_state(&self) -> Result<(), String> {
        let mut recount: HashMap<IpAddr, (u32, u32)> = HashMap::new();
        for c in self.conns.values() {
            let e = recount.entry(c.host).or_default();
            e.0 += 1;
            e.1 += c.pes.len() as u32;
        }
        for (host, &(conns, pes)) in &recount {
            let h = self.hosts.get(host).map_or((0, 0), |h| (h.conns, h.pes));
            if h != (conns, pes) {
                return Err(format!(
                    "host {host}: counted {h:?} (connections, PEs), recounted {:?}",
                    (conns, pes)
                ));
            }
        }
        for (host, h) in &self.hosts {
            if !recount.contains_key(host) && (h.conns, h.pes) != (0, 0) {
                return Err(format!(
                    "host {host} without connections counts {} connections and {} PEs",
                    h.conns, h.pes
                ));
            }
        }
        for key in self.orphans.keys() {
            if self.hs.get(&key.0, key.1).is_none() {
                return Err(format!(
                    "orphan PE {} of pool \"{}\" is not in the handlespace",
                    key.1, key.0
                ));
            }
            if self.supervision.contains_key(key) {
                return Err(format!(
                    "orphan PE {} of pool \"{}\" is supervised too",
                    key.1, key.0
                ));
            }
        }
        for (key, hosts) in &self.reporters {
            if self.hs.get(&key.0, key.1).is_none() {
                return Err(format!(
                    "unreachable reporters kept for PE {} of pool \"{}\", which is gone",
                    key.1, key.0
                ));
            }
            let mut unique = hosts.clone();
            unique.sort();
            unique.dedup();
            if unique.len() != hosts.len()
                || hosts.len() > self.cfg.max_bad_pe_reports.max(1) as usize
            {
                return Err(format!(
                    "PE {} of pool \"{}\": reporters {hosts:?}",
                    key.1, key.0
                ));
            }
        }
        Ok(())
    }
}

/// Every PE of the handlespace (or of one owner), by a paged walk of [`WALK_PAGE`] PEs a page.
fn walk_all<R: RandomSource>(
    hs: &Handlespace<R>,
    owner: Option<RegistrarId>,
) -> Vec<(&PoolHandle, &handlespace::PoolElement)> {
    let mut all = Vec::new();
    let mut cursor = None;
    loop {
        let page = hs.walk(cursor.as_ref(), owner, WALK_PAGE);
        cursor = page.next_cursor();
        all.extend(page.items);
        if cursor.is_none() {
            return all;
        }
    }
}

/// Checks a handlespace against itself through its public API (it has no internal check of its
/// own): the paged walk visits every PE once, in pool handle order; pool sizes, lookups by id,
/// per-pool listings and pool attributes agree with it; the handlespace checksum and every
/// owner's count, checksum, PE list and owner walk match a recomputation; the next expiry is
/// the earliest PE expiry.
#[doc(hidden)]
pub(crate) fn check_handlespace<R: RandomSource>(hs: &Handlespace<R>) -> Result<(), String> {
    let all = walk_all(hs, None);
    if all.len() != hs.len() {
        return Err(format!(
            "walk found {} PEs, len() is {}",
            all.len(),
            hs.len()
        ));
    }
    let mut seen = BTreeSet::new();
    let mut total = HandlespaceChecksum::new();
    let mut owners: BTreeMap<RegistrarId, (usize, HandlespaceChecksum)> = BTreeMap::new();
    let mut earliest: Option<Micros> = None;
    for (ph, pe) in &all {
        let id = pe.id();
        if !seen.insert(((*ph).clone(), id)) {
            return Err(format!("walk visits PE {id} of pool \"{ph}\" twice"));
        }
        match hs.get(ph, id) {
            Some(found) if std::ptr::eq(found, *pe) => {}
            _ => {
                return Err(format!(
                    "walked PE {id} of pool \"{ph}\" is not found by its id"
                ))
            }
        }
        if hs.pool_handle_of(pe) != *ph {
            return Err(format!(
                "walked PE {id} of pool \"{ph}\" says its pool is \"{}\"",
                hs.pool_handle_of(pe)
            ));
        }
        let Some(pool) = hs.pool(ph) else {
            return Err(format!("walked PE {id} of unknown pool \"{ph}\""));
        };
        if pe.policy().policy != pool.policy
            || pe.user_transport().protocol != pool.protocol
            || pe.has_control_channel() != pool.control_channel
        {
            return Err(format!(
                "PE {id} of pool \"{ph}\" ({:?}, {:?}, control {}) differs from its pool {pool:?}",
                pe.policy().policy,
                pe.user_transport().protocol,
                pe.has_control_channel()
            ));
        }
        total.add(ph.as_bytes(), id);
        let o = owners.entry(pe.home()).or_default();
        o.0 += 1;
        o.1.add(ph.as_bytes(), id);
        earliest = Some(earliest.map_or(pe.expiry(), |e| e.min(pe.expiry())));
    }
    if all.windows(2).any(|w| w[0].0 > w[1].0) {
        return Err("walk is not in pool handle order".into());
    }
    if hs.checksum() != total.value() {
        return Err(format!(
            "handlespace checksum 0x{:04x}, recomputed 0x{:04x}",
            hs.checksum(),
            total.value()
        ));
    }
    // Pools: every listed pool is non-empty and lists exactly the walk's PEs, in walk order.
    let handles: Vec<&PoolHandle> = hs.pool_handles().collect();
    if handles.len() != hs.pool_count() {
        return Err(format!(
            "{} pool handles listed, pool_count() is {}",
            handles.len(),
            hs.pool_count()
        ));
    }
    let mut sum = 0;
    for h in &handles {
        let Some(pool) = hs.pool(h) else {
            return Err(format!("listed pool \"{h}\" is not found"));
        };
        if pool.len == 0 {
            return Err(format!("pool \"{h}\" is listed but empty"));
        }
        sum += pool.len;
        let listed: Vec<PeId> = hs.pool_elements(h).map(|pe| pe.id()).collect();
        let walked: Vec<PeId> = all
            .iter()
            .filter(|(p, _)| p == h)
            .map(|(_, pe)| pe.id())
            .collect();
        if listed.len() != pool.len || listed != walked {
            return Err(format!(
                "pool \"{h}\": len {}, elements {listed:?}, walked {walked:?}",
                pool.len
            ));
        }
    }
    if sum != hs.len() {
        return Err(format!("pool sizes sum to {sum}, len() is {}", hs.len()));
    }
    // Owners.
    let listed: BTreeSet<RegistrarId> = hs.owners().collect();
    let counted: BTreeSet<RegistrarId> = owners.keys().copied().collect();
    if listed != counted {
        return Err(format!(
            "owners listed {listed:?}, homes of PEs {counted:?}"
        ));
    }
    for (owner, (count, sum)) in &owners {
        if hs.owned_count(*owner) != *count {
            return Err(format!(
                "owner {owner}: owned_count {}, counted {count}",
                hs.owned_count(*owner)
            ));
        }
        if hs.ownership_checksum(*owner) != sum.value() {
            return Err(format!(
                "owner {owner}: ownership checksum 0x{:04x}, recomputed 0x{:04x}",
                hs.ownership_checksum(*owner),
                sum.value()
            ));
        }
        let expected: Vec<(&PoolHandle, PeId)> = all
            .iter()
            .filter(|(_, pe)| pe.home() == *owner)
            .map(|(h, pe)| (*h, pe.id()))
            .collect();
        let by: Vec<(&PoolHandle, PeId)> =
            hs.owned_by(*owner).map(|(h, pe)| (h, pe.id())).collect();
        if by != expected {
            return Err(format!(
                "owner {owner}: owned_by lists {by:?}, expected {expected:?}"
            ));
        }
        let walked: Vec<(&PoolHandle, PeId)> = walk_all(hs, Some(*owner))
            .into_iter()
            .map(|(h, pe)| (h, pe.id()))
            .collect();
        if walked != expected {
            return Err(format!(
                "owner {owner}: owner walk finds {walked:?}, expected {expected:?}"
            ));
        }
    }
    if hs.next_expiry() != earliest {
        return Err(format!(
            "next expiry {:?}, earliest PE expiry {earliest:?}",
            hs.next_expiry()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::types::PolicyType;

    const A: ConnId = 1;
    const B: ConnId = 2;
    const SEC: Micros = 1_000_000;

    fn registrar() -> Registrar {
        let mut cfg = RegistrarConfig::new(RegistrarId(0x1111_1111));
        cfg.min_address_scope = AddressScope::Loopback;
        cfg.stall_gap = None; // the clock jumps here
        let mut r = Registrar::new(cfg, 7, 0);
        for (conn, peer) in [(A, "127.0.0.1:40000"), (B, "127.0.0.2:40001")] {
            r.connection_up(
                0,
                conn,
                TransportProtocol::Tcp,
                vec![peer.parse().unwrap()],
                &mut Vec::new(),
            );
        }
        r
    }

    fn send(r: &mut Registrar, now: Micros, conn: ConnId, body: AsapBody) -> Vec<Output> {
        let mut out = Vec::new();
        let bytes = AsapMessage::new(body).to_bytes().unwrap();
        r.receive(now, conn, PPID_ASAP, &bytes, &mut out);
        out
    }

    fn registration(pool: &str, id: u32, ip: &str, life: u32) -> AsapBody {
        let t = TransportAddress::new(TransportProtocol::Tcp, 7000, vec![ip.parse().unwrap()]);
        let mut e = wire::PoolElement::new(PeId(id), t, PolicyInfo::new(PolicyType::RoundRobin));
        e.registration_life = life;
        AsapBody::Registration {
            pool_handle: pool.into(),
            element: e,
        }
    }

    /// Two PEs of connection A in two pools, one of B.
    fn populated() -> Registrar {
        let mut r = registrar();
        send(&mut r, 0, A, registration("P", 1, "127.0.0.1", 30_000));
        send(&mut r, 0, A, registration("Q", 2, "127.0.0.1", 30_000));
        send(&mut r, 0, B, registration("P", 3, "127.0.0.2", 30_000));
        assert_eq!(r.hs.len(), 3);
        r.check_invariants().unwrap();
        r
    }

    fn key(pool: &str, id: u32) -> (PoolHandle, PeId) {
        (pool.into(), PeId(id))
    }

    #[test]
    fn real_sequences_keep_the_invariants() {
        let mut r = populated();
        let mut out = Vec::new();
        let check = |r: &Registrar| r.check_invariants().unwrap();
        // Keep-alives go out, A acks, B does not: B is closed at the timeout.
        r.poll(5 * SEC, &mut out);
        check(&r);
        for (pool, id) in [("P", 1), ("Q", 2)] {
            send(
                &mut r,
                5 * SEC + 1,
                A,
                AsapBody::EndpointKeepAliveAck {
                    pool_handle: pool.into(),
                    pe_id: PeId(id),
                },
            );
            check(&r);
        }
        r.poll(10 * SEC, &mut out);
        check(&r);
        assert!(out.contains(&Output::Close { conn: B }));
        assert_eq!(r.hs.len(), 2);
        // Re-registration, handle resolution, unreachable reports, deregistration.
        send(
            &mut r,
            11 * SEC,
            A,
            registration("P", 1, "127.0.0.1", 1_000),
        );
        check(&r);
        send(
            &mut r,
            11 * SEC,
            A,
            AsapBody::HandleResolution {
                pool_handle: "P".into(),
                items: Some(5),
            },
        );
        check(&r);
        // Reports from three hosts (repeats from one host count once).
        for (conn, peer) in [(3, "127.0.0.3:1"), (4, "127.0.0.4:1")] {
            r.connection_up(
                11 * SEC,
                conn,
                TransportProtocol::Tcp,
                vec![peer.parse().unwrap()],
                &mut out,
            );
        }
        for conn in [A, A, 3, 4] {
            send(
                &mut r,
                11 * SEC,
                conn,
                AsapBody::EndpointUnreachable {
                    pool_handle: "Q".into(),
                    pe_id: PeId(2),
                },
            );
            check(&r);
        }
        assert!(r.hs.get(&"Q".into(), PeId(2)).is_none());
        // Expiry of a short registration life.
        r.poll(12 * SEC, &mut out);
        check(&r);
        assert!(r.hs.is_empty());
        send(
            &mut r,
            13 * SEC,
            A,
            registration("P", 4, "127.0.0.1", 30_000),
        );
        send(
            &mut r,
            13 * SEC,
            A,
            AsapBody::Deregistration {
                pool_handle: "P".into(),
                pe_id: PeId(4),
            },
        );
        check(&r);
        r.connection_down(14 * SEC, A, &mut out);
        check(&r);
        assert!(r.supervision.is_empty() && r.supervision.next_due().is_none());
    }

    #[test]
    fn a_supervised_pe_missing_from_the_handlespace_is_found() {
        let mut r = populated();
        r.hs.deregister(&"P".into(), PeId(1));
        let e = r.check_invariants().unwrap_err();
        assert!(e.contains("not in the handlespace"), "{e}");
    }

    #[test]
    fn an_unsupervised_pe_homed_here_is_found() {
        let mut r = populated();
        r.supervision.remove(&key("P", 1)).unwrap();
        r.conns.get_mut(&A).unwrap().pes.remove(&key("P", 1));
        let e = r.check_invariants().unwrap_err();
        assert!(e.contains("neither supervised nor an orphan"), "{e}");
    }

    #[test]
    fn limits_state_must_agree_with_a_recount() {
        // A host's PE count off by one.
        let mut r = populated();
        let host: IpAddr = "127.0.0.1".parse().unwrap();
        r.hosts.get_mut(&host).unwrap().pes += 1;
        let e = r.check_invariants().unwrap_err();
        assert!(e.contains("host 127.0.0.1"), "{e}");
        // An orphan that is supervised too.
        let mut r = populated();
        r.orphans.insert(key("P", 1), 99 * SEC);
        let e = r.check_invariants().unwrap_err();
        assert!(e.contains("supervised too"), "{e}");
        // Reporters kept for a PE that is gone, or a host counted twice.
        let mut r = populated();
        r.reporters.insert(key("P", 77), vec![host]);
        let e = r.check_invariants().unwrap_err();
        assert!(e.contains("which is gone"), "{e}");
        let mut r = populated();
        r.reporters.insert(key("P", 1), vec![host, host]);
        let e = r.check_invariants().unwrap_err();
        assert!(e.contains("reporters"), "{e}");
    }

    #[test]
    fn supervision_and_connection_sets_must_agree() {
        // The supervising connection does not list the PE.
        let mut r = populated();
        r.conns.get_mut(&A).unwrap().pes.remove(&key("P", 1));
        let e = r.check_invariants().unwrap_err();
        assert!(e.contains("does not list it"), "{e}");
        // A connection lists a PE supervised by another one.
        let mut r = populated();
        r.conns.get_mut(&B).unwrap().pes.insert(key("P", 1));
        let e = r.check_invariants().unwrap_err();
        assert!(e.contains("supervised by 1"), "{e}");
        // A connection lists a PE nobody supervises.
        let mut r = populated();
        r.conns.get_mut(&B).unwrap().pes.insert(key("P", 99));
        let e = r.check_invariants().unwrap_err();
        assert!(e.contains("not supervised"), "{e}");
        // The supervising connection is gone (its state dropped without connection_down).
        let mut r = populated();
        r.conns.remove(&B);
        let e = r.check_invariants().unwrap_err();
        assert!(e.contains("not open"), "{e}");
    }

    #[test]
    fn timers_and_supervision_must_agree() {
        // The armed timer is missing.
        let mut r = populated();
        r.supervision.drop_timer(&key("P", 1));
        let e = r.check_invariants().unwrap_err();
        assert!(e.contains("no timer armed"), "{e}");
        // The timer's kind does not match the ack state.
        let mut r = populated();
        r.supervision.get_mut(&key("P", 1)).unwrap().awaiting_ack = true;
        let e = r.check_invariants().unwrap_err();
        assert!(e.contains("awaiting ack"), "{e}");
        // The supervision's due time is not its timer's.
        let mut r = populated();
        r.supervision.get_mut(&key("P", 1)).unwrap().due += 1;
        let e = r.check_invariants().unwrap_err();
        assert!(e.contains("supervision says"), "{e}");
        // A connection with timers is missing from the schedule.
        let mut r = populated();
        let conn = r.supervision.get(&key("P", 1)).unwrap().conn;
        r.supervision.unschedule(conn);
        let e = r.check_invariants().unwrap_err();
        assert!(e.contains("scheduled"), "{e}");
    }

    #[test]
    fn a_pe_of_another_home_under_supervision_is_found() {
        let mut r = populated();
        r.hs.set_home(&"P".into(), PeId(1), RegistrarId(5));
        let e = r.check_invariants().unwrap_err();
        assert!(e.contains("has home"), "{e}");
    }

    #[test]
    fn handlespace_checks_pass_on_foreign_owners_and_expiry() {
        let mut r = populated();
        // A PE of another registrar, unsupervised, is fine for the handlespace check.
        let reg = Registration {
            pe_id: PeId(9),
            home: RegistrarId(5),
            registration_life_ms: 10,
            user_transport: TransportAddress::new(
                TransportProtocol::Tcp,
                1,
                vec!["10.0.0.1".parse().unwrap()],
            ),
            policy: PolicyInfo::new(PolicyType::RoundRobin),
            registrator_transport: None,
        };
        r.hs.register(&"P".into(), reg, 0).unwrap();
        check_handlespace(&r.hs).unwrap();
        r.check_invariants().unwrap();
        r.hs.take_over(RegistrarId(5), RegistrarId(6));
        check_handlespace(&r.hs).unwrap();
        assert_eq!(r.hs.next_expiry(), Some(10_000));
    }
}
