//! The per-connection timer structure on its own (the registrar's behaviour with it is tested
//! in `registrar/tests.rs`).

use super::*;

const MS: Micros = 1_000;
const SEC: Micros = 1_000_000;

fn key(id: u32) -> PeKey {
    ("P".into(), PeId(id))
}

/// Everything due at `now`, as (PE id, kind), in the order handed out.
fn due(k: &mut KeepAlives, now: Micros) -> Vec<(u32, TimerKind)> {
    let mut v = Vec::new();
    while let Some((slot, kind)) = k.pop_due(now) {
        v.push((k.slot(slot).unwrap().pe.0, kind));
        // As the registrar does: a keep-alive sent arms the timeout; a timeout ends the PE.
        match kind {
            TimerKind::SendKeepAlive => {
                k.arm_slot(slot, now + 5 * SEC, TimerKind::KeepAliveTimeout)
            }
            TimerKind::KeepAliveTimeout => {
                let key = k.key(k.slot(slot).unwrap());
                k.remove(&key);
            }
        }
    }
    k.check().unwrap();
    v
}

#[test]
fn many_pes_of_one_connection_share_one_schedule_entry() {
    let mut k = KeepAlives::new(10 * MS, 1);
    for id in 1..=1000 {
        // Registered over 50 ms: five slots of 10 ms.
        k.supervise(key(id), 7, 5 * SEC + u64::from(id) * 50);
    }
    k.check().unwrap();
    assert_eq!(k.len(), 1000);
    assert_eq!(k.schedule.len(), 1, "one entry for the connection");
    assert_eq!(k.next_due(), Some(5 * SEC + 10 * MS));
    assert!(due(&mut k, 5 * SEC + 9 * MS).is_empty(), "nothing early");
    let first = due(&mut k, 5 * SEC + 10 * MS);
    assert_eq!(first.len(), 200, "the whole first slot at once");
    assert!(first
        .iter()
        .all(|&(_, kind)| kind == TimerKind::SendKeepAlive));
    assert_eq!(first.first().unwrap().0, 1);
    assert_eq!(next_slot(&k), 5 * SEC + 20 * MS);
    assert_eq!(due(&mut k, 5 * SEC + 60 * MS).len(), 800);
    // All wait for their acks now; still one schedule entry.
    assert_eq!(k.schedule.len(), 1);
    assert_eq!(k.next_due(), Some(10 * SEC + 10 * MS));
}

fn next_slot(k: &KeepAlives) -> Micros {
    k.next_due().unwrap()
}

#[test]
fn acks_late_and_missing() {
    let mut k = KeepAlives::new(1, 1);
    for id in 1..=3 {
        k.supervise(key(id), 1, 5 * SEC);
    }
    assert_eq!(due(&mut k, 5 * SEC).len(), 3);
    // PE 1 answers at once, PE 2 late (but within the timeout), PE 3 never.
    assert!(k.arm(&key(1), 5 * SEC + 5 * SEC, TimerKind::SendKeepAlive));
    assert!(due(&mut k, 9 * SEC).is_empty());
    assert!(k.arm(&key(2), 9 * SEC + 5 * SEC, TimerKind::SendKeepAlive));
    k.check().unwrap();
    // At 10 s: PE 3's timeout (first) and PE 1's next keep-alive, both due at 10 s.
    assert_eq!(
        due(&mut k, 10 * SEC),
        vec![
            (3, TimerKind::KeepAliveTimeout),
            (1, TimerKind::SendKeepAlive)
        ]
    );
    assert!(k.get(&key(3)).is_none());
    assert_eq!(
        next_slot(&k),
        14 * SEC,
        "PE 2's keep-alive 5 s after its late ack"
    );
    assert_eq!(due(&mut k, 14 * SEC), vec![(2, TimerKind::SendKeepAlive)]);
    assert!(k.get(&key(2)).unwrap().awaiting_ack);
}

#[test]
fn re_registration_moves_a_deadline_and_a_connection() {
    let mut k = KeepAlives::new(1, 1);
    k.supervise(key(1), 1, 5 * SEC);
    k.supervise(key(2), 1, 5 * SEC);
    // PE 1 registers again at 3 s: its keep-alive moves to 8 s; the old entry is stale.
    k.supervise(key(1), 1, 8 * SEC);
    k.check().unwrap();
    assert_eq!(due(&mut k, 5 * SEC), vec![(2, TimerKind::SendKeepAlive)]);
    assert!(due(&mut k, 7 * SEC).is_empty());
    assert_eq!(due(&mut k, 8 * SEC), vec![(1, TimerKind::SendKeepAlive)]);
    // PE 2 moves to connection 2 (registered there): connection 1 keeps PE 1 only.
    k.supervise(key(2), 2, 9 * SEC);
    k.check().unwrap();
    assert_eq!(k.get(&key(2)).unwrap().conn, 2);
    assert_eq!(k.conns[&1].members.len(), 1);
    assert_eq!(k.conns[&2].members.len(), 1);
    // PE 1 moves too: connection 1's timers (stale) are dropped with it.
    k.supervise(key(1), 2, 9 * SEC);
    assert!(!k.conns.contains_key(&1));
    assert_eq!(k.schedule.len(), 1);
    k.check().unwrap();
    assert_eq!(due(&mut k, 9 * SEC).len(), 2);
}

#[test]
fn a_probe_goes_before_later_keep_alives() {
    let mut k = KeepAlives::new(1, 1);
    for id in 1..=5 {
        k.supervise(key(id), 1, 5 * SEC + u64::from(id));
    }
    assert!(k.arm(&key(4), SEC, TimerKind::SendKeepAlive));
    k.check().unwrap();
    assert_eq!(next_slot(&k), SEC);
    assert_eq!(due(&mut k, SEC), vec![(4, TimerKind::SendKeepAlive)]);
    assert_eq!(next_slot(&k), 5 * SEC + 1);
}

#[test]
fn a_closed_connection_leaves_nothing_behind() {
    let mut k = KeepAlives::new(10 * MS, 1);
    for id in 1..=100 {
        k.supervise(key(id), 1, 5 * SEC);
        k.supervise(key(1000 + id), 2, 6 * SEC);
    }
    for id in 1..=100 {
        assert_eq!(k.remove(&key(id)).unwrap().conn, 1);
    }
    k.check().unwrap();
    assert!(!k.conns.contains_key(&1));
    assert_eq!(k.next_due(), Some(6 * SEC));
    // Slots are reused; old entries of a reused slot are stale.
    k.supervise(key(1), 3, 7 * SEC);
    assert_eq!(k.slots.len(), 200);
    k.check().unwrap();
    for id in 1..=100 {
        k.remove(&key(1000 + id));
    }
    k.remove(&key(1));
    assert!(k.is_empty() && k.schedule.is_empty() && k.conns.is_empty());
    assert!(
        k.pool_index.is_empty(),
        "the last PE of a pool takes its number with it"
    );
    k.check().unwrap();
}

#[test]
fn stale_entries_are_bounded() {
    // A PE registering again and again does not grow its connection's queue without bound.
    let mut k = KeepAlives::new(1, 1);
    k.supervise(key(1), 1, 5 * SEC);
    k.supervise(key(2), 1, 5 * SEC);
    for i in 0..10_000 {
        k.supervise(key(2), 1, 5 * SEC + i);
    }
    let q = &k.conns[&1];
    assert!(q.send.len() + q.timeout.len() <= 2 * 2 + COMPACT_SLACK + 1);
    k.check().unwrap();
}

#[test]
fn rearm_all_sends_every_keep_alive_now() {
    let mut k = KeepAlives::new(1, 1);
    for id in 1..=4 {
        k.supervise(key(id), u64::from(id % 2), 5 * SEC);
    }
    due(&mut k, 5 * SEC);
    assert!(k.get(&key(1)).unwrap().awaiting_ack);
    k.rearm_all(20 * SEC);
    k.check().unwrap();
    assert!(k.iter().all(|s| !s.awaiting_ack && s.due == 20 * SEC));
    let all = due(&mut k, 20 * SEC);
    assert_eq!(all.len(), 4);
    assert!(all
        .iter()
        .all(|&(_, kind)| kind == TimerKind::SendKeepAlive));
}

#[test]
fn pools_are_interned_and_released() {
    let mut k = KeepAlives::new(1, 1);
    let a: PeKey = ("A".into(), PeId(1));
    let b: PeKey = ("B".into(), PeId(1));
    k.supervise(a.clone(), 1, SEC);
    k.supervise(b.clone(), 1, SEC);
    assert_eq!(k.pool_index.len(), 2);
    assert_eq!(k.get(&a).unwrap().pe, PeId(1));
    assert_eq!(k.key(k.get(&b).unwrap()), b);
    assert!(k.get(&("C".into(), PeId(1))).is_none());
    k.remove(&a);
    assert!(k.get(&a).is_none() && k.get(&b).is_some());
    assert_eq!(k.pool_index.len(), 1);
    // A new pool reuses the number.
    k.supervise(("C".into(), PeId(1)), 1, SEC);
    assert_eq!(k.pools.len(), 2);
    k.check().unwrap();
}

#[test]
fn an_ack_counts_only_on_its_own_connection_and_when_awaited() {
    let mut k = KeepAlives::new(1, 1);
    k.supervise(key(1), 1, 5 * SEC);
    k.supervise(key(2), 2, 5 * SEC);
    assert!(!k.ack(&key(1), 1, 6 * SEC), "no keep-alive outstanding");
    assert_eq!(due(&mut k, 5 * SEC).len(), 2);
    assert!(!k.ack(&key(1), 2, 6 * SEC), "another connection's ack");
    assert!(!k.ack(&key(3), 1, 6 * SEC), "an unknown PE");
    assert!(
        !k.ack(&("Q".into(), PeId(1)), 1, 6 * SEC),
        "an unknown pool"
    );
    assert!(k.ack(&key(1), 1, 11 * SEC));
    assert!(!k.ack(&key(1), 1, 12 * SEC), "answered already");
    k.check().unwrap();
    assert_eq!(
        due(&mut k, 10 * SEC),
        vec![(2, TimerKind::KeepAliveTimeout)]
    );
    assert_eq!(due(&mut k, 11 * SEC), vec![(1, TimerKind::SendKeepAlive)]);
}
