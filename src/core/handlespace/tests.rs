//! Behaviour of the handlespace and of every policy.

use super::*;
use crate::core::types::{PolicyInfo, PolicyType, TRANSPORT_USE_DATA_PLUS_CONTROL};
use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr};

const R1: RegistrarId = RegistrarId(0x1111_1111);
const R2: RegistrarId = RegistrarId(0x2222_2222);
const SEC: Micros = 1_000_000;

fn ph(s: &str) -> PoolHandle {
    PoolHandle::from(s)
}

fn addr(i: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, i))
}

fn sctp() -> TransportAddress {
    let mut t = TransportAddress::new(TransportProtocol::Sctp, 4711, vec![addr(1)]);
    t.transport_use = TRANSPORT_USE_DATA_PLUS_CONTROL;
    t
}

fn reg_with(id: u32, policy: PolicyInfo) -> Registration {
    Registration {
        pe_id: PeId(id),
        home: R1,
        registration_life_ms: 90_000,
        user_transport: sctp(),
        policy,
        registrator_transport: None,
    }
}

fn reg(id: u32, p: PolicyType) -> Registration {
    reg_with(id, PolicyInfo::new(p))
}

fn hs() -> Handlespace {
    Handlespace::with_seed(Config::registrar(), 42)
}

fn pct(p: f64) -> u32 {
    (p / 100.0 * f64::from(u32::MAX)).round() as u32
}

fn ids(v: &[&PoolElement]) -> Vec<u32> {
    v.iter().map(|pe| pe.id().0).collect()
}

/// Counts selections of single PEs by id over `rounds` resolutions of 1.
fn histogram(h: &mut Handlespace, pool: &PoolHandle, rounds: usize) -> HashMap<u32, usize> {
    let mut counts = HashMap::new();
    for _ in 0..rounds {
        let r = h.handle_resolution(pool, 1).unwrap();
        *counts.entry(r[0].id().0).or_default() += 1;
    }
    counts
}

/// Pearson's chi-square of observed counts against expected probabilities.
fn chi_square(counts: &HashMap<u32, usize>, expected: &[(u32, f64)], total: usize) -> f64 {
    expected
        .iter()
        .map(|(id, p)| {
            let e = p * total as f64;
            let o = *counts.get(id).unwrap_or(&0) as f64;
            (o - e) * (o - e) / e
        })
        .sum()
}

// ---------------------------------------------------------------------------------------------
// Registration checks

#[test]
fn bad_registrations_are_refused_with_their_causes() {
    let mut h = hs();
    let p = ph("P");
    let e = h.register(&ph(""), reg(1, PolicyType::RoundRobin), 0);
    assert_eq!(e, Err(HandlespaceError::InvalidPoolHandle(0)));
    let long = PoolHandle::new(&[b'x'; 33]);
    let e = h
        .register(&long, reg(1, PolicyType::RoundRobin), 0)
        .unwrap_err();
    assert_eq!((e.cause_code(), e.rsperr()), (0x0003, 0xf00a));
    assert!(h
        .register(
            &PoolHandle::new(&[b'x'; 32]),
            reg(1, PolicyType::RoundRobin),
            0
        )
        .is_ok());

    let e = h
        .register(&p, reg(0, PolicyType::RoundRobin), 0)
        .unwrap_err();
    assert_eq!(e, HandlespaceError::InvalidPeId);
    assert_eq!((e.cause_code(), e.rsperr()), (0x0003, 0xf004));

    let mut r = reg(1, PolicyType::RoundRobin);
    r.registration_life_ms = 0;
    assert_eq!(
        h.register(&p, r, 0),
        Err(HandlespaceError::InvalidRegistrationLife)
    );

    let mut r = reg(1, PolicyType::RoundRobin);
    r.user_transport.addresses.clear();
    let e = h.register(&p, r, 0).unwrap_err();
    assert_eq!(
        (e.clone(), e.cause_code()),
        (HandlespaceError::NoAddresses, 3)
    );

    let mut r = reg(1, PolicyType::RoundRobin);
    r.user_transport.addresses = (0..65).map(addr).collect();
    assert_eq!(
        h.register(&p, r, 0),
        Err(HandlespaceError::TooManyAddresses(65))
    );
    let mut r = reg(1, PolicyType::RoundRobin);
    r.user_transport.addresses = (0..64).map(addr).collect();
    assert!(h.register(&p, r, 0).is_ok());

    let mut r = reg(2, PolicyType::RoundRobin);
    r.user_transport = TransportAddress::new(TransportProtocol::Tcp, 1, vec![addr(1), addr(2)]);
    let e = h.register(&ph("T"), r, 0).unwrap_err();
    assert_eq!(e.rsperr(), 0xf00b);

    let mut r = reg(2, PolicyType::RoundRobin);
    r.user_transport.port = 0;
    assert_eq!(h.register(&p, r, 0), Err(HandlespaceError::InvalidPort));
    assert_eq!(h.len(), 2);
}

#[test]
fn pools_are_homogeneous() {
    let mut h = hs();
    let p = ph("P");
    h.register(&p, reg(1, PolicyType::RoundRobin), 0).unwrap();

    let e = h
        .register(&p, reg(2, PolicyType::LeastUsed), 0)
        .unwrap_err();
    assert_eq!((e.cause_code(), e.rsperr()), (0x0005, 0xf008));

    let mut r = reg(2, PolicyType::RoundRobin);
    r.user_transport = TransportAddress::new(TransportProtocol::Tcp, 80, vec![addr(1)]);
    let e = h.register(&p, r, 0).unwrap_err();
    assert_eq!((e.cause_code(), e.rsperr()), (0x0007, 0xf006));

    let mut r = reg(2, PolicyType::RoundRobin);
    r.user_transport.transport_use = 0;
    let e = h.register(&p, r, 0).unwrap_err();
    assert_eq!((e.cause_code(), e.rsperr()), (0x0008, 0xf007));

    // The same checks apply to an update of the existing PE.
    assert!(h.register(&p, reg(1, PolicyType::Random), 0).is_err());
    assert_eq!(h.pool(&p).unwrap().len, 1);
    // Once the pool is gone, its attributes are free again.
    h.deregister(&p, PeId(1)).unwrap();
    assert_eq!(h.pool_count(), 0);
    h.register(&p, reg(2, PolicyType::LeastUsed), 0).unwrap();
    assert_eq!(h.pool(&p).unwrap().policy, PolicyType::LeastUsed);
}

#[test]
fn resource_caps() {
    let mut cfg = Config::registrar();
    cfg.max_pes_per_pool = 2;
    cfg.max_pes = 3;
    let mut h = Handlespace::with_seed(cfg, 1);
    let p = ph("P");
    h.register(&p, reg(1, PolicyType::RoundRobin), 0).unwrap();
    h.register(&p, reg(2, PolicyType::RoundRobin), 0).unwrap();
    let e = h
        .register(&p, reg(3, PolicyType::RoundRobin), 0)
        .unwrap_err();
    assert_eq!((e.cause_code(), e.rsperr()), (0x0006, 0xf002));
    // Updates are not new PEs.
    assert_eq!(
        h.register(&p, reg(2, PolicyType::RoundRobin), 0),
        Ok(RegisterOutcome::Updated)
    );
    h.register(&ph("Q"), reg(3, PolicyType::RoundRobin), 0)
        .unwrap();
    assert_eq!(
        h.register(&ph("R"), reg(4, PolicyType::RoundRobin), 0),
        Err(HandlespaceError::HandlespaceFull(3))
    );
}

#[test]
fn unknown_pool_resolution() {
    let mut h = hs();
    let e = h.handle_resolution(&ph("none"), 3).unwrap_err();
    assert_eq!((e.cause_code(), e.rsperr()), (0x0009, 0xf003));
}

#[test]
fn reregistration_updates_in_place() {
    let mut h = hs();
    let p = ph("P");
    let mut info = PolicyInfo::new(PolicyType::LeastUsedDegradation);
    info.load_degradation = pct(10.0);
    assert_eq!(
        h.register(&p, reg_with(1, info), 0),
        Ok(RegisterOutcome::Added)
    );
    h.handle_resolution(&p, 1).unwrap();
    assert_eq!(
        h.selection_state(h.get(&p, PeId(1)).unwrap()).degradation,
        pct(10.0)
    );
    let mut r = reg_with(1, info);
    r.home = R2;
    r.user_transport.port = 9999;
    r.registration_life_ms = 1000;
    assert_eq!(h.register(&p, r, 5 * SEC), Ok(RegisterOutcome::Updated));
    let pe = h.get(&p, PeId(1)).unwrap();
    assert_eq!(h.selection_state(pe).degradation, 0);
    assert_eq!(pe.user_transport().port, 9999);
    assert_eq!(pe.home(), R2);
    assert_eq!(pe.expiry(), 6 * SEC);
    assert_eq!(h.next_expiry(), Some(6 * SEC));
    assert_eq!(h.owned_count(R1), 0);
    assert_eq!(h.owned_count(R2), 1);
    assert_eq!(h.len(), 1);
}

// ---------------------------------------------------------------------------------------------
// Checksums, ownership, takeover

/// The six PEs of captures/hsdump-before.txt.
fn lab_handlespace() -> Handlespace {
    let mut h = hs();
    let pes = [
        ("LudPool", 0xc001, R2, PolicyType::LeastUsedDegradation),
        ("WrrPool", 0xa001, R1, PolicyType::WeightedRoundRobin),
        ("EchoPool", 0xe001, R1, PolicyType::RoundRobin),
        ("EchoPool", 0xe002, R2, PolicyType::RoundRobin),
        ("CalcAppPool", 0xca01, R1, PolicyType::LeastUsed),
        ("CalcAppPool", 0xca02, R2, PolicyType::LeastUsed),
    ];
    for (pool, id, home, p) in pes {
        let mut r = reg(id, p);
        r.home = home;
        h.register(&ph(pool), r, 0).unwrap();
    }
    h
}

#[test]
fn checksums_match_the_capture() {
    let mut h = lab_handlespace();
    assert_eq!(h.ownership_checksum(R2), 0x1f5f);
    assert_eq!(h.ownership_checksum(R1).to_le_bytes(), [0x66, 0x24]);
    assert_eq!(h.checksum(), 0x43c5);
    assert_eq!(h.ownership_checksum(RegistrarId(7)), 0xffff);
    h.deregister(&ph("EchoPool"), PeId(0xe001)).unwrap();
    assert_eq!(h.ownership_checksum(R1).to_le_bytes(), [0xb3, 0xd4]);
    assert_eq!(h.ownership_checksum(R2), 0x1f5f);
    assert_eq!(
        Handlespace::with_seed(Config::registrar(), 0).checksum(),
        0xffff
    );
}

#[test]
fn takeover_moves_ownership_and_checksum() {
    let mut h = lab_handlespace();
    let owned: Vec<_> = h
        .owned_by(R2)
        .map(|(p, pe)| (p.to_string(), pe.id().0))
        .collect();
    assert_eq!(
        owned,
        vec![
            ("CalcAppPool".to_string(), 0xca02),
            ("EchoPool".to_string(), 0xe002),
            ("LudPool".to_string(), 0xc001),
        ]
    );
    let me = RegistrarId(0x5c46_3c96);
    assert_eq!(h.take_over(R2, me), 3);
    assert_eq!(h.ownership_checksum(me), 0x1f5f);
    assert_eq!(h.ownership_checksum(R2), 0xffff);
    assert_eq!(h.get(&ph("LudPool"), PeId(0xc001)).unwrap().home(), me);
    assert!(h.set_home(&ph("LudPool"), PeId(0xc001), R2));
    assert_eq!(h.owned_count(me), 2);
    assert_eq!(h.checksum(), 0x43c5);
    let removed = h.remove_owned_by(R1);
    assert_eq!(removed.len(), 3);
    assert_eq!(h.len(), 3);
    assert_eq!(h.pool_count(), 3); // WrrPool went away
    assert_eq!(h.checksum(), 0x1f5f);
}

// ---------------------------------------------------------------------------------------------
// Timers and reports

#[test]
fn expiry_in_time_order() {
    let mut h = hs();
    for (id, life) in [(1, 3000), (2, 1000), (3, 2000)] {
        let mut r = reg(id, PolicyType::RoundRobin);
        r.registration_life_ms = life;
        h.register(&ph("P"), r, 10 * SEC).unwrap();
    }
    assert_eq!(h.next_expiry(), Some(11 * SEC));
    assert!(h.pop_expired(11 * SEC - 1).is_none());
    let (pool, pe) = h.pop_expired(12 * SEC).unwrap();
    assert_eq!((pool, pe.id()), (ph("P"), PeId(2)));
    assert_eq!(h.pop_expired(12 * SEC).unwrap().1.id(), PeId(3));
    assert!(h.pop_expired(12 * SEC).is_none());
    assert!(h.set_expiry(&ph("P"), PeId(1), 20 * SEC));
    assert_eq!(h.next_expiry(), Some(20 * SEC));
    assert!(!h.set_expiry(&ph("P"), PeId(9), 0));
    assert_eq!(h.pop_expired(u64::MAX).unwrap().1.id(), PeId(1));
    assert_eq!(h.next_expiry(), None);
    assert_eq!(h.pool_count(), 0);
}

#[test]
fn unreachable_reports_remove_after_threshold() {
    let mut h = hs();
    let p = ph("P");
    h.register(&p, reg(1, PolicyType::RoundRobin), 0).unwrap();
    assert_eq!(
        h.report_unreachable(&p, PeId(2)),
        UnreachableOutcome::Unknown
    );
    assert_eq!(
        h.report_unreachable(&p, PeId(1)),
        UnreachableOutcome::Counted(1)
    );
    assert_eq!(
        h.report_unreachable(&p, PeId(1)),
        UnreachableOutcome::Counted(2)
    );
    match h.report_unreachable(&p, PeId(1)) {
        UnreachableOutcome::Removed(pe) => assert_eq!(pe.id(), PeId(1)),
        other => panic!("{other:?}"),
    }
    assert!(h.is_empty());
}

// ---------------------------------------------------------------------------------------------
// Paged walk

#[test]
fn paged_walk_resumes_after_cursor() {
    let mut h = lab_handlespace();
    let all: Vec<(String, u32)> = {
        let mut v = Vec::new();
        let mut cursor = None;
        loop {
            let page = h.walk(cursor.as_ref(), None, 4);
            assert!(page.items.len() <= 4);
            v.extend(page.items.iter().map(|(p, pe)| (p.to_string(), pe.id().0)));
            cursor = page.next_cursor();
            if cursor.is_none() {
                break;
            }
        }
        v
    };
    let expect: Vec<(String, u32)> = [
        ("CalcAppPool", 0xca01),
        ("CalcAppPool", 0xca02),
        ("EchoPool", 0xe001),
        ("EchoPool", 0xe002),
        ("LudPool", 0xc001),
        ("WrrPool", 0xa001),
    ]
    .iter()
    .map(|(p, i)| (p.to_string(), *i))
    .collect();
    assert_eq!(all, expect);

    // Owner walk, 1 per page; the cursor survives removal of its own pool.
    let page = h.walk(None, Some(R2), 1);
    assert!(page.more);
    let c = page.next_cursor().unwrap();
    assert_eq!(
        (c.pool.to_string(), c.pe),
        ("CalcAppPool".into(), PeId(0xca02))
    );
    h.deregister(&ph("CalcAppPool"), PeId(0xca01));
    h.deregister(&ph("CalcAppPool"), PeId(0xca02));
    let page = h.walk(Some(&c), Some(R2), 5);
    assert!(!page.more);
    assert_eq!(
        ids(&page.items.iter().map(|x| x.1).collect::<Vec<_>>()),
        [0xe002, 0xc001]
    );
    assert!(h.walk(None, Some(RegistrarId(9)), 5).items.is_empty());
    // Exactly full page: more = false.
    let page = h.walk(None, None, 4);
    assert_eq!((page.items.len(), page.more), (4, false));
}

/// Walks the whole handlespace in pages of `page`, calling `between` after every page.
fn walk_all(
    h: &mut Handlespace,
    page: usize,
    mut between: impl FnMut(&mut Handlespace, usize),
) -> Vec<u32> {
    let mut seen = Vec::new();
    let mut cursor = None;
    for n in 0.. {
        let p = h.walk(cursor.as_ref(), None, page);
        assert!(p.items.len() <= page);
        seen.extend(p.items.iter().map(|(_, pe)| pe.id().0));
        cursor = p.next_cursor();
        if cursor.is_none() {
            break;
        }
        assert!(n < 10_000, "walk does not end");
        between(h, n);
    }
    seen
}

#[test]
fn walk_visits_every_pe_present_throughout_despite_compaction() {
    let mut h = hs();
    for id in 1..=100 {
        h.register(&ph("P"), reg(id, PolicyType::RoundRobin), 0)
            .unwrap();
    }
    // After the first page (ids 1..=10), 11..=70 go (the log is compacted: its places change)
    // and 101..=110 come: every id that stayed is still visited, exactly once.
    let seen = walk_all(&mut h, 10, |h, n| {
        if n == 0 {
            for id in 11..=70 {
                h.deregister(&ph("P"), PeId(id)).unwrap();
            }
            for id in 101..=110 {
                h.register(&ph("P"), reg(id, PolicyType::RoundRobin), 0)
                    .unwrap();
            }
        }
    });
    let want: Vec<u32> = (1..=10).chain(71..=110).collect();
    assert_eq!(seen, want);

    // The cursor's own PE (5, last of the first page) goes, then enough for a compaction: the
    // pool is walked again from its start (repeats allowed), so nothing that stayed is missed.
    let seen = walk_all(&mut h, 5, |h, n| {
        if n == 0 {
            for id in std::iter::once(5).chain(71..=95) {
                h.deregister(&ph("P"), PeId(id)).unwrap();
            }
        }
    });
    assert_eq!(&seen[..10], &[1, 2, 3, 4, 5, 1, 2, 3, 4, 6]);
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    let stayed_or_seen: Vec<u32> = (1..=10).chain(96..=110).collect();
    assert_eq!(unique, stayed_or_seen);
}

#[test]
fn walk_cursor_by_id_and_partial_pages() {
    let h = lab_handlespace();
    let first = h.walk(None, None, 3);
    let c = first.cursor_after(1).unwrap();
    let by_id = WalkCursor::new(c.pool.clone(), c.pe);
    let a: Vec<u32> = ids(&h
        .walk(Some(&c), None, 10)
        .items
        .iter()
        .map(|x| x.1)
        .collect::<Vec<_>>());
    let b: Vec<u32> = ids(&h
        .walk(Some(&by_id), None, 10)
        .items
        .iter()
        .map(|x| x.1)
        .collect::<Vec<_>>());
    assert_eq!(a, b);
    assert_eq!(a.len(), 4, "6 PEs, resumed after the second");
    assert!(first.cursor_after(3).is_none());
}

// ---------------------------------------------------------------------------------------------
// Policies

#[test]
fn round_robin_cycles() {
    let mut h = hs();
    let p = ph("RR");
    for id in 1..=3 {
        h.register(&p, reg(id, PolicyType::RoundRobin), 0).unwrap();
    }
    let seq: Vec<u32> = (0..6)
        .map(|_| ids(&h.handle_resolution(&p, 1).unwrap())[0])
        .collect();
    assert_eq!(seq, [1, 2, 3, 1, 2, 3]);
    // N = 3 with maxIncrement 1: the list rotates by one per request.
    assert_eq!(ids(&h.handle_resolution(&p, 3).unwrap()), [1, 2, 3]);
    assert_eq!(ids(&h.handle_resolution(&p, 3).unwrap()), [2, 3, 1]);
    // A re-registration keeps the position.
    h.register(&p, reg(3, PolicyType::RoundRobin), 0).unwrap();
    assert_eq!(ids(&h.handle_resolution(&p, 3).unwrap()), [3, 1, 2]);
}

#[test]
fn pu_cache_updates_every_returned_pe() {
    let mut h = Handlespace::with_seed(Config::pu_cache(), 3);
    let p = ph("RR");
    for id in 1..=4 {
        h.register(&p, reg(id, PolicyType::RoundRobin), 0).unwrap();
    }
    assert_eq!(ids(&h.handle_resolution(&p, 3).unwrap()), [1, 2, 3]);
    assert_eq!(ids(&h.handle_resolution(&p, 3).unwrap()), [4, 1, 2]);
}

#[test]
fn weighted_round_robin_gives_weight_shares_per_round() {
    let mut h = hs();
    let p = ph("WRR");
    for (id, w) in [(1, 1), (2, 2), (3, 7)] {
        let mut info = PolicyInfo::new(PolicyType::WeightedRoundRobin);
        info.weight = w;
        h.register(&p, reg_with(id, info), 0).unwrap();
    }
    for _round in 0..5 {
        let c = histogram(&mut h, &p, 10);
        assert_eq!((c[&1], c[&2], c[&3]), (1, 2, 7));
    }
    let c = histogram(&mut h, &p, 1000);
    assert_eq!((c[&1], c[&2], c[&3]), (100, 200, 700));
}

/// Past `SEQ_LIMIT` sequence numbers and `ROUND_LIMIT` WRR rounds (small in the unit tests) a
/// sorted pool renumbers them; the order stays that of unbounded numbers. In a ring and in a
/// B-tree, through resolutions and registrations.
#[test]
fn sorted_pools_renumber_without_changing_their_order() {
    for size in [3u32, 20] {
        // LU: the equal loads take turns; the higher loads never come first.
        let mut h = hs();
        let p = ph("LU");
        let lu = |load: f64| {
            let mut info = PolicyInfo::new(PolicyType::LeastUsed);
            info.load = pct(load);
            info
        };
        for id in 1..=size {
            h.register(&p, reg_with(id, lu(10.0)), 0).unwrap();
        }
        let mut next_id = 1000;
        for i in 0..3 * SEQ_LIMIT as u32 {
            let want = [1 + i % size, 1 + (i + 1) % size];
            assert_eq!(ids(&h.handle_resolution(&p, 2).unwrap()), want, "step {i}");
            if i % 700 == 0 {
                h.register(&p, reg_with(next_id, lu(20.0)), 0).unwrap();
                next_id += 1;
            }
        }
        assert!(h
            .pool_elements(&p)
            .all(|pe| h.selection_state(pe).seq < SEQ_LIMIT));

        // WRR 1:2:7 (and more PEs of weight 1): every round of Σ weights selections gives
        // each PE its weight, across round rebases.
        let mut h = hs();
        let p = ph("WRR");
        let weights: Vec<(u32, u32)> = (1..=size)
            .map(|id| (id, [1, 2, 7].get(id as usize - 1).copied().unwrap_or(1)))
            .collect();
        for &(id, w) in &weights {
            let mut info = PolicyInfo::new(PolicyType::WeightedRoundRobin);
            info.weight = w;
            h.register(&p, reg_with(id, info), 0).unwrap();
        }
        let per_round: u32 = weights.iter().map(|(_, w)| w).sum();
        for _ in 0..3 * SEQ_LIMIT as u32 / per_round {
            let c = histogram(&mut h, &p, per_round as usize);
            assert!(weights.iter().all(|(id, w)| c[id] == *w as usize), "{c:?}");
        }
        assert!(h.pool_elements(&p).all(|pe| {
            let st = h.selection_state(pe);
            st.seq < SEQ_LIMIT && st.round <= ROUND_LIMIT
        }));
    }
}

#[test]
fn priority_picks_highest_first() {
    let mut h = hs();
    let p = ph("PRIO");
    for (id, prio) in [(1, 1), (2, 5), (3, 3), (4, 5)] {
        let mut info = PolicyInfo::new(PolicyType::Priority);
        info.priority = prio;
        h.register(&p, reg_with(id, info), 0).unwrap();
    }
    assert_eq!(ids(&h.handle_resolution(&p, 4).unwrap()), [2, 4, 3, 1]);
    // Equal priorities take turns.
    assert_eq!(ids(&h.handle_resolution(&p, 2).unwrap()), [4, 2]);
}

#[test]
fn least_used_lowest_first_ties_round_robin() {
    let mut h = hs();
    let p = ph("LU");
    for (id, load) in [(1, 30.0), (2, 10.0), (3, 50.0), (4, 10.0)] {
        let mut info = PolicyInfo::new(PolicyType::LeastUsed);
        info.load = pct(load);
        h.register(&p, reg_with(id, info), 0).unwrap();
    }
    assert_eq!(ids(&h.handle_resolution(&p, 4).unwrap()), [2, 4, 1, 3]);
    let firsts: Vec<u32> = (0..4)
        .map(|_| ids(&h.handle_resolution(&p, 1).unwrap())[0])
        .collect();
    assert_eq!(firsts, [4, 2, 4, 2]);
    // A new load report re-sorts.
    let mut info = PolicyInfo::new(PolicyType::LeastUsed);
    info.load = 0;
    h.register(&p, reg_with(3, info), 0).unwrap();
    assert_eq!(ids(&h.handle_resolution(&p, 1).unwrap()), [3]);
}

#[test]
fn least_used_degradation_spreads_a_burst() {
    let mk = |policy| {
        let mut h = hs();
        for (id, load) in [(1, 0.0), (2, 5.0), (3, 5.0)] {
            let mut info = PolicyInfo::new(policy);
            info.load = pct(load);
            info.load_degradation = pct(10.0);
            h.register(&ph("P"), reg_with(id, info), 0).unwrap();
        }
        h
    };
    // Plain LU sends the whole burst to the least loaded PE...
    let mut lu = mk(PolicyType::LeastUsed);
    let burst: Vec<u32> = (0..3)
        .map(|_| ids(&lu.handle_resolution(&ph("P"), 1).unwrap())[0])
        .collect();
    assert_eq!(burst, [1, 1, 1]);
    // ... LUD raises each chosen PE's load by its degradation until it re-registers.
    let mut lud = mk(PolicyType::LeastUsedDegradation);
    let burst: Vec<u32> = (0..6)
        .map(|_| ids(&lud.handle_resolution(&ph("P"), 1).unwrap())[0])
        .collect();
    assert_eq!(burst, [1, 2, 3, 1, 2, 3]);
    assert_eq!(
        lud.selection_state(lud.get(&ph("P"), PeId(1)).unwrap())
            .degradation,
        2 * pct(10.0)
    );
    // Re-registration resets the degradation: PE 1 is best again.
    let mut info = PolicyInfo::new(PolicyType::LeastUsedDegradation);
    info.load_degradation = pct(10.0);
    lud.register(&ph("P"), reg_with(1, info), 0).unwrap();
    assert_eq!(ids(&lud.handle_resolution(&ph("P"), 1).unwrap()), [1]);
}

#[test]
fn priority_least_used_is_static() {
    let mut h = hs();
    let p = ph("PLU");
    for (id, load, inc) in [(1, 10.0, 20.0), (2, 20.0, 0.0), (3, 25.0, 0.0)] {
        let mut info = PolicyInfo::new(PolicyType::PriorityLeastUsed);
        info.load = pct(load);
        info.load_degradation = pct(inc);
        h.register(&p, reg_with(id, info), 0).unwrap();
    }
    for _ in 0..3 {
        assert_eq!(ids(&h.handle_resolution(&p, 3).unwrap()), [2, 3, 1]);
    }
    // PLUD accumulates the increment as degradation.
    let mut h = hs();
    for (id, load) in [(1, 0.0), (2, 15.0)] {
        let mut info = PolicyInfo::new(PolicyType::PriorityLeastUsedDegradation);
        info.load = pct(load);
        info.load_degradation = pct(10.0);
        h.register(&p, reg_with(id, info), 0).unwrap();
    }
    // 10 % vs 25 %, then 20 % vs 25 %, then 30 % vs 25 %, then 30 % vs 35 %.
    let burst: Vec<u32> = (0..4)
        .map(|_| ids(&h.handle_resolution(&p, 1).unwrap())[0])
        .collect();
    assert_eq!(burst, [1, 1, 2, 1]);
}

#[test]
fn least_used_dpf_penalises_distance() {
    let mut h = hs();
    let p = ph("DPF");
    let mut near = PolicyInfo::new(PolicyType::LeastUsedDpf);
    near.load = pct(10.0);
    near.load_dpf = pct(0.2); // 0.2 % per ms
    let mut far = near;
    far.load = 0;
    far.distance = 100; // + 20 %
    h.register(&p, reg_with(1, near), 0).unwrap();
    h.register(&p, reg_with(2, far), 0).unwrap();
    assert_eq!(ids(&h.handle_resolution(&p, 2).unwrap()), [1, 2]);

    // LUD-DPF: degradation on top of the penalty.
    let mut h = hs();
    let mut a = PolicyInfo::new(PolicyType::LeastUsedDegradationDpf);
    a.load_dpf = pct(0.1);
    a.load_degradation = pct(15.0);
    let mut b = a;
    a.distance = 100; // 10 %
    b.load = pct(20.0);
    h.register(&p, reg_with(1, a), 0).unwrap();
    h.register(&p, reg_with(2, b), 0).unwrap();
    let burst: Vec<u32> = (0..3)
        .map(|_| ids(&h.handle_resolution(&p, 1).unwrap())[0])
        .collect();
    assert_eq!(burst, [1, 2, 1]);
}

fn weighted_pool(policy: PolicyType, pes: &[(u32, PolicyInfo)], seed: u64) -> Handlespace {
    let mut h = Handlespace::with_seed(Config::registrar(), seed);
    for (id, mut info) in pes.iter().copied() {
        info.policy = policy;
        h.register(&ph("W"), reg_with(id, info), 0).unwrap();
    }
    h
}

/// χ² critical values at p = 0.001: df 2 → 13.82, df 3 → 16.27.
#[test]
fn weighted_random_matches_weights() {
    let pes: Vec<(u32, PolicyInfo)> = [1, 2, 3, 4]
        .iter()
        .map(|w| {
            let mut i = PolicyInfo::new(PolicyType::WeightedRandom);
            i.weight = *w * 1000;
            (*w, i)
        })
        .collect();
    let mut h = weighted_pool(PolicyType::WeightedRandom, &pes, 7);
    let n = 100_000;
    let c = histogram(&mut h, &ph("W"), n);
    let chi = chi_square(&c, &[(1, 0.1), (2, 0.2), (3, 0.3), (4, 0.4)], n);
    assert!(chi < 16.27, "chi^2 = {chi}, counts {c:?}");
    // maxIncrement 0: selections do not touch the state (every PE keeps the sequence number
    // of its insertion, 0..=3).
    assert!(h
        .pool_elements(&ph("W"))
        .all(|pe| h.selection_state(pe).seq < 4));
}

#[test]
fn weighted_random_zero_weight_never_chosen_and_no_duplicates() {
    let mut pes = Vec::new();
    for (id, w) in [(1, 0), (2, 5), (3, 5)] {
        let mut i = PolicyInfo::new(PolicyType::WeightedRandom);
        i.weight = w;
        pes.push((id, i));
    }
    let mut h = weighted_pool(PolicyType::WeightedRandom, &pes, 9);
    for _ in 0..200 {
        let mut got = ids(&h.handle_resolution(&ph("W"), 3).unwrap());
        got.sort();
        assert_eq!(got, [2, 3]);
    }
}

#[test]
fn random_is_uniform_without_replacement() {
    let pes: Vec<(u32, PolicyInfo)> = (1..=4)
        .map(|id| (id, PolicyInfo::new(PolicyType::Random)))
        .collect();
    let mut h = weighted_pool(PolicyType::Random, &pes, 11);
    let n = 40_000;
    let c = histogram(&mut h, &ph("W"), n);
    let chi = chi_square(&c, &[(1, 0.25), (2, 0.25), (3, 0.25), (4, 0.25)], n);
    assert!(chi < 16.27, "chi^2 = {chi}");
    for _ in 0..100 {
        let mut got = ids(&h.handle_resolution(&ph("W"), 4).unwrap());
        got.sort();
        assert_eq!(got, [1, 2, 3, 4]);
    }
}

#[test]
fn random_stays_uniform_over_a_log_with_tombstones() {
    let pes: Vec<(u32, PolicyInfo)> = (1..=300)
        .map(|id| (id, PolicyInfo::new(PolicyType::Random)))
        .collect();
    let mut h = weighted_pool(PolicyType::Random, &pes, 17);
    // 100 of 300 go: not enough to compact, so a third of the log is tombstones.
    for id in (1..=300).filter(|i| i % 3 == 0) {
        h.deregister(&ph("W"), PeId(id)).unwrap();
    }
    let rounds = 60_000;
    let mut counts: HashMap<u32, usize> = HashMap::new();
    for _ in 0..rounds {
        let got = ids(&h.handle_resolution(&ph("W"), 3).unwrap());
        assert_eq!(got.len(), 3);
        assert!(got[0] != got[1] && got[0] != got[2] && got[1] != got[2]);
        for id in got {
            assert!(id % 3 != 0, "removed PE {id} chosen");
            *counts.entry(id).or_default() += 1;
        }
    }
    assert_eq!(counts.len(), 200);
    let expected: Vec<(u32, f64)> = counts.keys().map(|&id| (id, 1.0 / 200.0)).collect();
    let chi = chi_square(&counts, &expected, 3 * rounds);
    assert!(chi < 270.0, "chi^2 = {chi} (df 199; p = 0.001 → 267.6)");
    // Asking for most of the pool takes the shuffle path: all distinct, all live.
    let mut got = ids(&h.handle_resolution(&ph("W"), 150).unwrap());
    got.sort();
    got.dedup();
    assert_eq!(got.len(), 150);
    assert!(got.iter().all(|id| id % 3 != 0));
}

#[test]
fn randomized_least_used_proportional_to_free_capacity() {
    let pes: Vec<(u32, PolicyInfo)> = [(1, 0.0), (2, 50.0), (3, 75.0)]
        .iter()
        .map(|(id, load)| {
            let mut i = PolicyInfo::new(PolicyType::RandomizedLeastUsed);
            i.load = pct(*load);
            (*id, i)
        })
        .collect();
    let mut h = weighted_pool(PolicyType::RandomizedLeastUsed, &pes, 13);
    let n = 70_000;
    let c = histogram(&mut h, &ph("W"), n);
    let chi = chi_square(&c, &[(1, 4.0 / 7.0), (2, 2.0 / 7.0), (3, 1.0 / 7.0)], n);
    assert!(chi < 13.82, "chi^2 = {chi}, {c:?}");
    // maxIncrement 1 by default: every resolution updates its pick, which takes the next
    // sequence number (the 3 PEs took 0..=2 on insertion, so the last update took n + 2).
    let last = h
        .pool_elements(&ph("W"))
        .map(|pe| h.selection_state(pe).seq)
        .max();
    assert_eq!(last, Some(n as u64 + 2));
}

#[test]
fn randomized_variants_use_load_increment_degradation() {
    // RPLU: weight ∝ 1 − load − increment.
    let pes: Vec<(u32, PolicyInfo)> = [(1, 0.0, 50.0), (2, 0.0, 0.0)]
        .iter()
        .map(|(id, load, inc)| {
            let mut i = PolicyInfo::new(PolicyType::RandomizedPriorityLeastUsed);
            i.load = pct(*load);
            i.load_degradation = pct(*inc);
            (*id, i)
        })
        .collect();
    let mut h = weighted_pool(PolicyType::RandomizedPriorityLeastUsed, &pes, 17);
    let n = 30_000;
    let c = histogram(&mut h, &ph("W"), n);
    let chi = chi_square(&c, &[(1, 1.0 / 3.0), (2, 2.0 / 3.0)], n);
    assert!(chi < 10.83, "chi^2 = {chi}");
    // RLUD never accumulates degradation (as rsplib): still 1:1 after many selections.
    let pes: Vec<(u32, PolicyInfo)> = (1..=2)
        .map(|id| {
            let mut i = PolicyInfo::new(PolicyType::RandomizedLeastUsedDegradation);
            i.load_degradation = pct(10.0);
            (id, i)
        })
        .collect();
    let mut h = weighted_pool(PolicyType::RandomizedLeastUsedDegradation, &pes, 19);
    let c = histogram(&mut h, &ph("W"), 20_000);
    let chi = chi_square(&c, &[(1, 0.5), (2, 0.5)], 20_000);
    assert!(chi < 10.83, "chi^2 = {chi}");
}

#[test]
fn weighted_random_dpf_penalises_distance() {
    let mut near = PolicyInfo::new(PolicyType::WeightedRandomDpf);
    near.weight = 1000;
    near.weight_dpf = pct(0.5); // 0.5 % per ms
    let mut far = near;
    far.distance = 100; // weight − 50 % → 500
    let mut h = weighted_pool(PolicyType::WeightedRandomDpf, &[(1, near), (2, far)], 23);
    let n = 30_000;
    let c = histogram(&mut h, &ph("W"), n);
    let chi = chi_square(&c, &[(1, 2.0 / 3.0), (2, 1.0 / 3.0)], n);
    assert!(chi < 10.83, "chi^2 = {chi}");
}

#[test]
fn value_tree_survives_removals() {
    let pes: Vec<(u32, PolicyInfo)> = (1..=50)
        .map(|id| {
            let mut i = PolicyInfo::new(PolicyType::WeightedRandom);
            i.weight = id;
            (id, i)
        })
        .collect();
    let mut h = weighted_pool(PolicyType::WeightedRandom, &pes, 29);
    for id in (1..=50).filter(|i| i % 3 != 0) {
        h.deregister(&ph("W"), PeId(id)).unwrap();
    }
    // Remaining: multiples of 3 with weight = id; re-weight 3 to 0.
    let mut zero = PolicyInfo::new(PolicyType::WeightedRandom);
    zero.weight = 0;
    h.register(&ph("W"), reg_with(3, zero), 0).unwrap();
    let c = histogram(&mut h, &ph("W"), 50_000);
    assert!(!c.contains_key(&3));
    assert!(c.keys().all(|id| id % 3 == 0));
    let total: f64 = (6..=48).step_by(3).map(f64::from).sum();
    let expected: Vec<(u32, f64)> = (6..=48)
        .step_by(3)
        .map(|id| (id, f64::from(id) / total))
        .collect();
    let chi = chi_square(&c, &expected, 50_000);
    assert!(chi < 40.0, "chi^2 = {chi} (df 14)"); // p = 0.001 → 36.12
}

/// The per-PE footprint is part of the design (docs/handlespace.md); keep it from creeping up.
#[cfg(target_pointer_width = "64")]
#[test]
fn entry_sizes() {
    assert_eq!(std::mem::size_of::<Option<PoolElement>>(), 96);
    // Beside the record: the selection state and the degradation step (`pes.rs`).
    assert_eq!(std::mem::size_of::<pes::Hot>(), 32);
    assert_eq!(std::mem::size_of::<SortEntry>(), 16);
}

/// A sort entry's order is that of its fields (primary, secondary, seq, slot), in turn.
#[test]
fn sort_entries_order_by_their_fields_in_turn() {
    let parts = [0, 1, 2, u32::MAX - 1, u32::MAX];
    let entries: Vec<SortEntry> = (0..parts.len().pow(4))
        .map(|mut i| {
            let mut f = [0u32; 4];
            for v in &mut f {
                *v = parts[i % parts.len()];
                i /= parts.len();
            }
            SortEntry {
                primary: f[0],
                secondary: f[1],
                seq: f[2],
                slot: f[3],
            }
        })
        .collect();
    let fields = |e: &SortEntry| (e.primary, e.secondary, e.seq, e.slot);
    for a in &entries {
        for b in &entries {
            assert_eq!(a.cmp(b), fields(a).cmp(&fields(b)));
            assert_eq!(a.partial_cmp(b), Some(fields(a).cmp(&fields(b))));
            assert_eq!(a < b, fields(a) < fields(b));
            assert_eq!(a <= b, fields(a) <= fields(b));
            assert_eq!(a > b, fields(a) > fields(b));
            assert_eq!(a >= b, fields(a) >= fields(b));
            assert_eq!(a == b, fields(a) == fields(b));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Model check: random operation sequences against a plain map

mod model {
    use super::*;
    use crate::core::checksum::{pe_sum, HandlespaceChecksum};
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    const POOLS: [(&str, PolicyType); 4] = [
        ("rr", PolicyType::RoundRobin),
        ("rand", PolicyType::Random),
        ("wrand", PolicyType::WeightedRandom),
        ("lu", PolicyType::LeastUsed),
    ];

    #[derive(Clone, Debug)]
    enum Op {
        Register { pool: usize, id: u32, home: u32 },
        Deregister { pool: usize, id: u32 },
        Resolve { pool: usize, n: usize },
        TakeOver { from: u32, to: u32 },
        Walk { page: usize, owner: Option<u32> },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0..4usize, 1..60u32, 1..4u32).prop_map(|(pool, id, home)| Op::Register { pool, id, home }),
            3 => (0..4usize, 1..60u32).prop_map(|(pool, id)| Op::Deregister { pool, id }),
            2 => (0..4usize, 1..8usize).prop_map(|(pool, n)| Op::Resolve { pool, n }),
            1 => (1..4u32, 1..4u32).prop_map(|(from, to)| Op::TakeOver { from, to }),
            1 => (1..7usize, proptest::option::of(1..4u32)).prop_map(|(page, owner)| Op::Walk { page, owner }),
        ]
    }

    fn registration(id: u32, home: u32, policy: PolicyType) -> Registration {
        let mut info = PolicyInfo::new(policy);
        info.weight = 1 + id % 5;
        info.load = id.wrapping_mul(0x9e37_79b1);
        let mut r = reg_with(id, info);
        r.home = RegistrarId(home);
        r
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        #[test]
        fn handlespace_matches_a_map(ops in proptest::collection::vec(op(), 1..300)) {
            let mut h = hs();
            // (pool, id) → home
            let mut m: BTreeMap<(usize, u32), u32> = BTreeMap::new();
            for op in ops {
                match op {
                    Op::Register { pool, id, home } => {
                        let (name, p) = POOLS[pool];
                        let out = h.register(&ph(name), registration(id, home, p), 0).unwrap();
                        let was = m.insert((pool, id), home);
                        prop_assert_eq!(out == RegisterOutcome::Updated, was.is_some());
                    }
                    Op::Deregister { pool, id } => {
                        let gone = h.deregister(&ph(POOLS[pool].0), PeId(id));
                        prop_assert_eq!(gone.map(|pe| pe.id().0), m.remove(&(pool, id)).map(|_| id));
                    }
                    Op::Resolve { pool, n } => {
                        let live = m.keys().filter(|k| k.0 == pool).count();
                        match h.handle_resolution(&ph(POOLS[pool].0), n) {
                            Err(_) => prop_assert_eq!(live, 0),
                            Ok(got) => {
                                let mut got = ids(&got);
                                prop_assert_eq!(got.len(), n.min(live));
                                got.sort();
                                got.dedup();
                                prop_assert_eq!(got.len(), n.min(live));
                                prop_assert!(got.iter().all(|id| m.contains_key(&(pool, *id))));
                            }
                        }
                    }
                    Op::TakeOver { from, to } => {
                        let n = m.values().filter(|&&o| o == from).count();
                        prop_assert_eq!(h.take_over(RegistrarId(from), RegistrarId(to)), n);
                        for o in m.values_mut() {
                            if *o == from {
                                *o = to;
                            }
                        }
                    }
                    Op::Walk { page, owner } => {
                        let mut seen = Vec::new();
                        let mut cursor = None;
                        loop {
                            let p = h.walk(cursor.as_ref(), owner.map(RegistrarId), page);
                            prop_assert!(p.items.len() <= page);
                            for (handle, pe) in &p.items {
                                let pool = POOLS.iter().position(|(n, _)| ph(n) == **handle).unwrap();
                                seen.push((pool, pe.id().0));
                            }
                            cursor = p.next_cursor();
                            if cursor.is_none() {
                                break;
                            }
                        }
                        let mut want: Vec<(usize, u32)> = m
                            .iter()
                            .filter(|(_, &o)| owner.is_none_or(|w| w == o))
                            .map(|(k, _)| *k)
                            .collect();
                        seen.sort();
                        want.sort();
                        prop_assert_eq!(seen, want);
                    }
                }
                // Invariants after every step.
                prop_assert_eq!(h.len(), m.len());
                let mut all = HandlespaceChecksum::new();
                for (pool, id) in m.keys() {
                    all.add_sum(pe_sum(POOLS[*pool].0.as_bytes(), PeId(*id)));
                }
                prop_assert_eq!(h.checksum(), all.value());
                for owner in 1..4u32 {
                    let mut c = HandlespaceChecksum::new();
                    let mut n = 0;
                    for ((pool, id), &o) in &m {
                        if o == owner {
                            c.add_sum(pe_sum(POOLS[*pool].0.as_bytes(), PeId(*id)));
                            n += 1;
                        }
                    }
                    prop_assert_eq!(h.owned_count(RegistrarId(owner)), n);
                    prop_assert_eq!(h.ownership_checksum(RegistrarId(owner)), c.value());
                }
                for (pool, (name, _)) in POOLS.iter().enumerate() {
                    let live = m.keys().filter(|k| k.0 == pool).count();
                    prop_assert_eq!(h.pool(&ph(name)).map_or(0, |s| s.len), live);
                    prop_assert_eq!(h.pool_elements(&ph(name)).count(), live);
                    for (&(p, id), &home) in m.range((pool, 0)..(pool + 1, 0)) {
                        let pe = h.get(&ph(POOLS[p].0), PeId(id));
                        prop_assert_eq!(pe.map(|pe| pe.home().0), Some(home));
                    }
                }
            }
            while h.pop_expired(u64::MAX).is_some() {}
            prop_assert!(h.is_empty());
        }
    }
}

#[test]
fn a_pool_that_shrinks_gives_its_id_table_and_log_back() {
    let mut h = hs();
    for id in 1..=5000 {
        h.register(&ph("P"), reg(id, PolicyType::RoundRobin), 0)
            .unwrap();
    }
    let pool = |h: &Handlespace| {
        let i = h.pool_slot(b"P").unwrap();
        let p = h.pools[i as usize].as_ref().unwrap();
        (
            p.ids.as_ref().map_or(0, |t| t.capacity()),
            p.log.capacity(),
            p.len(),
        )
    };
    assert!(pool(&h).0 >= 5000);
    for id in 11..=5000 {
        h.deregister(&ph("P"), PeId(id)).unwrap();
    }
    let (ids, log, len) = pool(&h);
    assert_eq!(len, 10);
    assert!(ids <= 64 && log <= 64, "id table {ids}, log {log}");
    assert_eq!(ids_of(&h), (1..=10).collect::<Vec<_>>());
}

fn ids_of(h: &Handlespace) -> Vec<u32> {
    h.pool_elements(&ph("P")).map(|pe| pe.id().0).collect()
}

#[test]
fn ids_are_scanned_in_small_pools_and_hashed_in_large_ones() {
    let mut h = hs();
    let hashed = |h: &Handlespace| {
        let i = h.pool_slot(b"P").unwrap();
        h.pools[i as usize].as_ref().unwrap().ids.is_some()
    };
    for id in 1..=40 {
        h.register(&ph("P"), reg(id, PolicyType::RoundRobin), 0)
            .unwrap();
        assert_eq!(hashed(&h), id as usize > HASHED_MIN, "after {id}");
        for known in 1..=id {
            assert_eq!(h.get(&ph("P"), PeId(known)).unwrap().id(), PeId(known));
        }
        assert!(h.get(&ph("P"), PeId(id + 1)).is_none());
    }
    // Down to one PE: the table goes below HASHED_MIN / 4, and the scan leaves tombstones (id 0
    // in `log_ids`) that a lookup of id 0 must not find.
    for id in 1..=39 {
        assert!(h.deregister(&ph("P"), PeId(id)).is_some());
        assert!(h.get(&ph("P"), PeId(id)).is_none());
        assert!(h.deregister(&ph("P"), PeId(0)).is_none());
        assert!(h.get(&ph("P"), PeId(0)).is_none());
        for known in id + 1..=40 {
            assert!(
                h.get(&ph("P"), PeId(known)).is_some(),
                "{known} after removing {id}"
            );
        }
    }
    assert!(!hashed(&h));
    assert_eq!(ids_of(&h), vec![40]);
    // And back up: rebuilt from the (compacted or not) log.
    for id in 41..=60 {
        h.register(&ph("P"), reg(id, PolicyType::RoundRobin), 0)
            .unwrap();
    }
    assert!(hashed(&h));
    assert_eq!(ids_of(&h), (40..=60).collect::<Vec<_>>());
    for id in 40..=60 {
        assert!(h.get(&ph("P"), PeId(id)).is_some());
    }
}

#[test]
fn a_pools_lookup_fields_share_its_first_cache_line() {
    use std::mem::{align_of, offset_of, size_of};
    assert_eq!(align_of::<Pool>(), 64);
    assert!(offset_of!(Pool, log) + size_of::<Vec<u32>>() <= 64);
    assert!(offset_of!(Pool, live) < 64 && offset_of!(Pool, policy) < 64);
    assert!(offset_of!(Pool, selection) + size_of::<Selection>() <= 128);
}

/// Round robin against a queue model through growth past the small rotation (into the
/// indexed one, with tombstones and renumbering) and back: inserts go last, a resolution of k
/// returns the first k and moves the first `max_increment` of them to the back, removals keep
/// the order, re-registrations keep places.
#[test]
fn round_robin_keeps_its_order_through_small_and_indexed_rotations() {
    for max_increment in [1, PU_CACHE_MAX_INCREMENT] {
        let mut config = Config::registrar();
        config.max_increment = max_increment;
        let mut h = Handlespace::with_seed(config, 5);
        let mut model: std::collections::VecDeque<u32> = Default::default();
        let mut next_id = 1;
        let mut x: u64 = 99;
        let (mut seen_small, mut seen_indexed, mut back_to_small) = (false, false, false);
        for step in 0..3000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let grow = (step / 300) % 2 == 0;
            match x % 4 {
                0 | 1 if grow || model.is_empty() => {
                    h.register(&ph("R"), reg(next_id, PolicyType::RoundRobin), 0)
                        .unwrap();
                    model.push_back(next_id);
                    next_id += 1;
                }
                0 | 1 => {
                    let id = model.remove((x >> 8) as usize % model.len()).unwrap();
                    assert!(h.deregister(&ph("R"), PeId(id)).is_some());
                }
                2 if !model.is_empty() => {
                    // A re-registration keeps the PE's place.
                    let id = model[(x >> 8) as usize % model.len()];
                    h.register(&ph("R"), reg(id, PolicyType::RoundRobin), 1)
                        .unwrap();
                }
                _ if !model.is_empty() => {
                    let k = 1 + (x >> 8) as usize % 3;
                    let got = ids(&h.handle_resolution(&ph("R"), k).unwrap());
                    let want: Vec<u32> = model.iter().take(k).copied().collect();
                    assert_eq!(got, want, "step {step}");
                    for _ in 0..(max_increment as usize).min(want.len()) {
                        let front = model.pop_front().unwrap();
                        model.push_back(front);
                    }
                }
                _ => {}
            }
            let i = h.pool_slot(b"R");
            match i.map(|i| &h.pools[i as usize].as_ref().unwrap().selection) {
                Some(Selection::Rotation(r)) if r.is_indexed() => seen_indexed = true,
                Some(Selection::Rotation(_)) => {
                    back_to_small |= seen_indexed;
                    seen_small = true;
                }
                Some(_) => panic!("a round-robin pool is a rotation"),
                None => assert!(model.is_empty()),
            }
        }
        assert!(seen_small && seen_indexed && back_to_small);
    }
}

/// Sorted pools against their PEs' own keys, through removals that leave stale entries
/// (`stale.rs`), conversions to the large set and back, re-registrations that move entries
/// across stale ones, and renumbering: every resolution returns exactly the PEs with the lowest
/// keys, in order; stale entries are counted right and never more than half of a ring.
#[test]
fn sorted_pools_resolve_in_key_order_across_stale_entries() {
    let policies = [
        PolicyType::LeastUsed,
        PolicyType::LeastUsedDegradation,
        PolicyType::WeightedRoundRobin,
        PolicyType::PriorityLeastUsed,
        PolicyType::LeastUsedDpf,
    ];
    let mut x: u64 = 0x5eed_1234_abcd_0001;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut stale_seen = (0, 0);
    let mut small_and_big = (false, false);
    for policy in policies {
        let mut h = hs();
        let pool = ph("sorted");
        // Ids up to 40, so that the pool passes SMALL_MAX (8 here) and falls back below it.
        let mut live: BTreeSet<u32> = BTreeSet::new();
        for step in 0..6000 {
            let r = next();
            // Phases that mostly fill and mostly empty the pool.
            let filling = (step / 500) % 2 == 0;
            let id = 1 + (r >> 8) as u32 % 40;
            match r % 10 {
                0..=3 if filling || live.len() < 3 => {
                    let mut info = PolicyInfo::new(policy);
                    info.load = ((r >> 20) as u32 % 8) * 0x1000_0000;
                    info.load_degradation = 0x0100_0000;
                    info.weight = 1 + (r >> 40) as u32 % 4;
                    info.load_dpf = 1 << 12;
                    info.distance = (r >> 44) as u32 % 20;
                    h.register(&pool, reg_with(id, info), step).unwrap();
                    live.insert(id);
                }
                0..=6 => {
                    let gone = h.deregister(&pool, PeId(id)).is_some();
                    assert_eq!(gone, live.remove(&id), "step {step}");
                }
                _ if !live.is_empty() => {
                    let n = 1 + (r >> 8) as usize % 4;
                    let mut want: Vec<(policy::SortKey, u32)> = h
                        .pool_elements(&pool)
                        .map(|pe| {
                            let k = policy::sort_key_of_wire(
                                pe.policy_type,
                                &pe.policy_values,
                                &h.selection_state(pe),
                            );
                            (k, pe.id().0)
                        })
                        .collect();
                    want.sort();
                    let want: Vec<u32> = want.iter().take(n).map(|w| w.1).collect();
                    let got = ids(&h.handle_resolution(&pool, n).unwrap());
                    assert_eq!(got, want, "{policy:?} step {step}");
                }
                _ => {}
            }
            let Some(i) = h.pool_slot(pool.as_bytes()) else {
                assert!(live.is_empty());
                continue;
            };
            let p = h.pools[i as usize].as_ref().unwrap();
            let Selection::Sorted(set) = &p.selection else {
                panic!("a sorted pool")
            };
            let stale_now = set
                .iter()
                .filter(|e| !stale::is_current(&h.pes, i, e))
                .count();
            assert_eq!(stale_now, p.stale as usize, "{policy:?} step {step}");
            assert_eq!(set.len() - stale_now, live.len(), "{policy:?} step {step}");
            assert!(2 * stale_now <= set.len(), "{policy:?} step {step}");
            if set.is_small() {
                small_and_big.0 = true;
                stale_seen.0 = stale_seen.0.max(stale_now);
            } else {
                small_and_big.1 = true;
                stale_seen.1 = stale_seen.1.max(stale_now);
            }
        }
    }
    assert!(
        stale_seen.0 >= 2 && stale_seen.1 >= 2,
        "removals left stale entries in small and large sets ({stale_seen:?})"
    );
    assert_eq!(small_and_big, (true, true));
}

/// Pool handles of every length up to 32 bytes that differ in one byte only (wherever it is)
/// are different pools: the lookup's word-wise comparison misses no byte.
#[test]
fn handles_differing_in_any_one_byte_are_different_pools() {
    for len in 1..=32usize {
        let mut h = hs();
        let base: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
        h.register(&PoolHandle::new(&base), reg(1, PolicyType::RoundRobin), 0)
            .unwrap();
        for at in 0..len {
            let mut other = base.clone();
            other[at] ^= 0x20;
            let other = PoolHandle::new(&other);
            assert!(h.get(&other, PeId(1)).is_none(), "len {len}, byte {at}");
            h.register(&other, reg(2 + at as u32, PolicyType::RoundRobin), 0)
                .unwrap();
            assert_eq!(h.pool_count(), 2 + at, "len {len}, byte {at}");
        }
        assert!(h.get(&PoolHandle::new(&base), PeId(1)).is_some());
        assert_eq!(h.pool(&PoolHandle::new(&base)).unwrap().len, 1, "len {len}");
    }
    assert!(same_bytes(b"0123456789", b"0123456789"));
    assert!(!same_bytes(b"0123456789", b"0123456788"));
}
