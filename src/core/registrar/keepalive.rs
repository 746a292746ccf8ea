//! The supervised PEs and their keep-alive timers, kept per connection (issue #18).
//!
//! Every PE this registrar is home for has one [`Supervision`] (its pool as a number, its id,
//! its connection, whether an ack is awaited, when its one timer is due) in a slab. Pool
//! handles are interned (a PE holds its pool's number, not a copy of the handle), so a PE is
//! found by one integer key, (pool number, PE id), in a hash table that holds the key beside
//! the slab index: a lookup touches one bucket, not the slab entry and the handle's bytes.
//!
//! The timers are not one per PE in a global ordered map. Each connection has two FIFO queues
//! of small entries (due time, slab index, generation): the keep-alives to send and the acks
//! awaited. A timer is always armed `now` + a fixed interval (`now` never goes back), so an
//! entry goes to the back of its queue and the queues stay sorted by due time; the rare
//! earlier one (a probe "now") is inserted in order. Re-arming a PE bumps its generation
//! instead of searching for the old entry, which becomes stale and is dropped when it reaches
//! the front (or when stale entries outnumber the live ones: a compaction). The registrar's one
//! ordered schedule holds one entry per connection: the earliest front of its two queues,
//! rounded up to the slot width ([`KeepAlives::new`]), so that the PEs of one connection whose
//! times fall into one slot are handled in one wake-up, one after another. Arming a PE whose
//! connection already has earlier entries does not touch the schedule at all.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::hash::BuildHasher;

use hashbrown::HashTable;

use super::{ConnId, TimerKind};
use crate::core::handlespace::Micros;
use crate::core::types::{PeId, PoolHandle};

/// A PE as the registrar names it.
pub(super) type PeKey = (PoolHandle, PeId);

type KeyHasher = foldhash::fast::FixedState;

/// Keep-alive supervision of one PE this registrar is home for.
#[derive(Debug)]
pub(super) struct Supervision {
    /// Its pool's number ([`KeepAlives::pool_handle`]).
    pool: u32,
    pub(super) pe: PeId,
    pub(super) conn: ConnId,
    /// A keep-alive was sent and its ack is awaited (the timer armed is the timeout).
    pub(super) awaiting_ack: bool,
    /// When the PE's armed timer is due.
    pub(super) due: Micros,
}

/// A timer in a connection's queue; current while the slot's generation is `gen`.
#[derive(Clone, Copy, Debug)]
struct Entry {
    at: Micros,
    slot: u32,
    gen: u32,
}

/// The timers of one connection's PEs.
#[derive(Debug, Default)]
struct ConnTimers {
    /// Keep-alives to send (PEs not awaiting an ack), sorted by due time.
    send: VecDeque<Entry>,
    /// Acks awaited, sorted by due time.
    timeout: VecDeque<Entry>,
    /// Its supervised PEs: (integer key, slab index). An ack is looked up here, in the
    /// connection it must come from: a small table, warm while a burst of acks arrives,
    /// instead of the big one (two cache misses).
    members: HashTable<(u64, u32)>,
    /// This connection's key in [`KeepAlives::schedule`].
    scheduled: Option<Micros>,
}

/// An interned pool handle and how many supervised PEs use it.
struct Pool {
    handle: PoolHandle,
    pes: u32,
}

/// The supervised PEs, their timers per connection and the schedule of the connections.
pub(super) struct KeepAlives {
    slots: Vec<Option<Supervision>>,
    pools: Vec<Option<Pool>>,
    free_pools: Vec<u32>,
    pool_index: HashMap<PoolHandle, u32, KeyHasher>,
    /// Generation of each slot: bumped whenever its timer is armed or it is freed.
    gens: Vec<u32>,
    free: Vec<u32>,
    /// ((pool number << 32) | PE id, slab index).
    index: HashTable<(u64, u32)>,
    hasher: KeyHasher,
    conns: HashMap<ConnId, ConnTimers, KeyHasher>,
    /// (when, connection): one entry per connection with timers.
    schedule: BTreeSet<(Micros, ConnId)>,
    /// Connection wake-ups are rounded up to a multiple of this.
    slot_width: Micros,
    len: usize,
}

/// Entries beyond this many more than twice the live ones trigger a compaction of a queue pair.
const COMPACT_SLACK: usize = 32;

impl KeepAlives {
    /// Empty; connections wake up at multiples of `slot_width` µs (1 = exactly at each due time).
    pub(super) fn new(slot_width: Micros, seed: u64) -> Self {
        KeepAlives {
            slots: Vec::new(),
            pools: Vec::new(),
            free_pools: Vec::new(),
            pool_index: HashMap::with_hasher(KeyHasher::with_seed(seed ^ 0x5eed)),
            gens: Vec::new(),
            free: Vec::new(),
            index: HashTable::new(),
            hasher: KeyHasher::with_seed(seed),
            conns: HashMap::with_hasher(KeyHasher::with_seed(seed ^ 0xc0)),
            schedule: BTreeSet::new(),
            slot_width: slot_width.max(1),
            len: 0,
        }
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.len
    }

    #[cfg(test)]
    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn hash(&self, ikey: u64) -> u64 {
        self.hasher.hash_one(ikey)
    }

    /// The integer key of a PE whose pool is interned.
    fn ikey(&self, key: &PeKey) -> Option<u64> {
        let pool = *self.pool_index.get(&key.0)?;
        Some(u64::from(pool) << 32 | u64::from(key.1 .0))
    }

    fn find(&self, key: &PeKey) -> Option<u32> {
        let ikey = self.ikey(key)?;
        self.index
            .find(self.hash(ikey), |e| e.0 == ikey)
            .map(|e| e.1)
    }

    /// The pool handle of a supervised PE.
    pub(super) fn pool_handle(&self, s: &Supervision) -> &PoolHandle {
        &self.pools[s.pool as usize]
            .as_ref()
            .expect("interned")
            .handle
    }

    /// A supervised PE's key.
    pub(super) fn key(&self, s: &Supervision) -> PeKey {
        (self.pool_handle(s).clone(), s.pe)
    }

    /// The number of a pool handle, interned now if new (one more PE uses it).
    fn intern(&mut self, handle: &PoolHandle) -> u32 {
        let i = match self.pool_index.get(handle) {
            Some(&i) => i,
            None => {
                let pool = Pool {
                    handle: handle.clone(),
                    pes: 0,
                };
                let i = match self.free_pools.pop() {
                    Some(i) => {
                        self.pools[i as usize] = Some(pool);
                        i
                    }
                    None => {
                        self.pools.push(Some(pool));
                        (self.pools.len() - 1) as u32
                    }
                };
                self.pool_index.insert(handle.clone(), i);
                i
            }
        };
        self.pools[i as usize].as_mut().expect("interned").pes += 1;
        i
    }

    /// One PE less uses pool `i`: the last one takes the pool's number with it.
    fn release(&mut self, i: u32) {
        let pool = self.pools[i as usize].as_mut().expect("interned");
        pool.pes -= 1;
        if pool.pes == 0 {
            let pool = self.pools[i as usize].take().expect("interned");
            self.pool_index.remove(&pool.handle);
            self.free_pools.push(i);
        }
    }

    pub(super) fn get(&self, key: &PeKey) -> Option<&Supervision> {
        self.find(key).and_then(|i| self.slot(i))
    }

    pub(super) fn contains_key(&self, key: &PeKey) -> bool {
        self.find(key).is_some()
    }

    /// The supervision in slab slot `i`.
    pub(super) fn slot(&self, i: u32) -> Option<&Supervision> {
        self.slots.get(i as usize).and_then(Option::as_ref)
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &Supervision> + '_ {
        self.slots.iter().flatten()
    }

    /// Supervises `key` over `conn` (a new PE, or one moving from another connection) with
    /// its keep-alive due at `at`.
    pub(super) fn supervise(&mut self, key: PeKey, conn: ConnId, at: Micros) {
        let slot = match self.find(&key) {
            Some(i) => {
                let sup = self.slots[i as usize].as_mut().expect("indexed");
                let old = sup.conn;
                if old != conn {
                    sup.conn = conn;
                    let ikey = ikey_of(sup);
                    self.conn_pe_gone(old, ikey);
                    self.conn_pe_added(conn, ikey, i);
                }
                i
            }
            None => {
                let pool = self.intern(&key.0);
                let ikey = u64::from(pool) << 32 | u64::from(key.1 .0);
                let hash = self.hash(ikey);
                let sup = Supervision {
                    pool,
                    pe: key.1,
                    conn,
                    awaiting_ack: false,
                    due: at,
                };
                let i = match self.free.pop() {
                    Some(i) => {
                        self.slots[i as usize] = Some(sup);
                        i
                    }
                    None => {
                        self.slots.push(Some(sup));
                        self.gens.push(0);
                        (self.slots.len() - 1) as u32
                    }
                };
                let hasher = &self.hasher;
                self.index
                    .insert_unique(hash, (ikey, i), |e| hasher.hash_one(e.0));
                self.conn_pe_added(conn, ikey, i);
                self.len += 1;
                i
            }
        };
        self.arm_slot(slot, at, TimerKind::SendKeepAlive);
    }

    /// Arms the PE's one timer (replacing the one armed before); false if it is not supervised.
    pub(super) fn arm(&mut self, key: &PeKey, at: Micros, kind: TimerKind) -> bool {
        match self.find(key) {
            Some(i) => {
                self.arm_slot(i, at, kind);
                true
            }
            None => false,
        }
    }

    /// An ack from `conn` for `key`: if the PE is supervised over `conn` and its ack is
    /// awaited, its next keep-alive is armed at `next`; true then.
    pub(super) fn ack(&mut self, key: &PeKey, conn: ConnId, next: Micros) -> bool {
        let Some(ikey) = self.ikey(key) else {
            return false;
        };
        let hash = self.hash(ikey);
        let Some(&(_, i)) = self
            .conns
            .get(&conn)
            .and_then(|q| q.members.find(hash, |e| e.0 == ikey))
        else {
            return false;
        };
        let s = self.slots[i as usize].as_ref().expect("a member");
        if s.conn != conn || !s.awaiting_ack {
            return false;
        }
        self.arm_slot(i, next, TimerKind::SendKeepAlive);
        true
    }

    /// [`KeepAlives::arm`] by slab slot.
    pub(super) fn arm_slot(&mut self, slot: u32, at: Micros, kind: TimerKind) {
        let gen = self.gens[slot as usize].wrapping_add(1);
        self.gens[slot as usize] = gen;
        let sup = self.slots[slot as usize].as_mut().expect("live slot");
        sup.awaiting_ack = kind == TimerKind::KeepAliveTimeout;
        sup.due = at;
        let conn = sup.conn;
        let q = self
            .conns
            .get_mut(&conn)
            .expect("a supervised PE's connection");
        let queue = match kind {
            TimerKind::SendKeepAlive => &mut q.send,
            TimerKind::KeepAliveTimeout => &mut q.timeout,
        };
        let entry = Entry { at, slot, gen };
        if queue.back().is_none_or(|b| b.at <= at) {
            queue.push_back(entry);
        } else {
            let pos = queue.partition_point(|e| e.at <= at);
            queue.insert(pos, entry);
        }
        let gens = &self.gens;
        trim(&mut q.send, gens);
        trim(&mut q.timeout, gens);
        if q.send.len() + q.timeout.len() > 2 * q.members.len() + COMPACT_SLACK {
            let current = |e: &Entry| gens[e.slot as usize] == e.gen;
            q.send.retain(current);
            q.timeout.retain(current);
        }
        self.reschedule(conn);
    }

    /// Stops supervising a PE; its supervision is returned.
    pub(super) fn remove(&mut self, key: &PeKey) -> Option<Supervision> {
        let ikey = self.ikey(key)?;
        let i = match self.index.find_entry(self.hash(ikey), |e| e.0 == ikey) {
            Ok(e) => e.remove().0 .1,
            Err(_) => return None,
        };
        let sup = self.slots[i as usize].take().expect("indexed");
        self.gens[i as usize] = self.gens[i as usize].wrapping_add(1);
        self.free.push(i);
        self.len -= 1;
        self.conn_pe_gone(sup.conn, ikey);
        self.release(sup.pool);
        Some(sup)
    }

    fn conn_pe_added(&mut self, conn: ConnId, ikey: u64, slot: u32) {
        let hasher = &self.hasher;
        let q = self.conns.entry(conn).or_default();
        q.members
            .insert_unique(hasher.hash_one(ikey), (ikey, slot), |e| {
                hasher.hash_one(e.0)
            });
    }

    /// One PE less on `conn`: without PEs its timers (all stale then) are dropped.
    fn conn_pe_gone(&mut self, conn: ConnId, ikey: u64) {
        let hash = self.hash(ikey);
        let Some(q) = self.conns.get_mut(&conn) else {
            return;
        };
        if let Ok(e) = q.members.find_entry(hash, |e| e.0 == ikey) {
            e.remove();
        }
        if q.members.is_empty() {
            if let Some(at) = q.scheduled {
                self.schedule.remove(&(at, conn));
            }
            self.conns.remove(&conn);
        }
    }

    /// Puts `conn` into the schedule at its earliest entry (rounded up to the slot width).
    fn reschedule(&mut self, conn: ConnId) {
        let Some(q) = self.conns.get_mut(&conn) else {
            return;
        };
        let earliest = [q.send.front(), q.timeout.front()]
            .into_iter()
            .flatten()
            .map(|e| e.at)
            .min();
        let w = self.slot_width;
        let new = earliest.map(|at| at.div_ceil(w).saturating_mul(w));
        if new != q.scheduled {
            if let Some(old) = q.scheduled {
                self.schedule.remove(&(old, conn));
            }
            if let Some(at) = new {
                self.schedule.insert((at, conn));
            }
            q.scheduled = new;
        }
    }

    /// When the earliest connection is due.
    pub(super) fn next_due(&self) -> Option<Micros> {
        self.schedule.first().map(|&(at, _)| at)
    }

    /// The next timer due at `now` (slab slot and kind), taken off its queue: the PE has no
    /// timer armed until the caller arms one. Of one connection, all timers due are handed
    /// out in a row, timeouts before keep-alives.
    pub(super) fn pop_due(&mut self, now: Micros) -> Option<(u32, TimerKind)> {
        loop {
            let &(at, conn) = self.schedule.first()?;
            if at > now {
                return None;
            }
            let q = self
                .conns
                .get_mut(&conn)
                .expect("scheduled connections have timers");
            trim(&mut q.send, &self.gens);
            trim(&mut q.timeout, &self.gens);
            let send = q.send.front().filter(|e| e.at <= now).map(|e| e.at);
            let timeout = q.timeout.front().filter(|e| e.at <= now).map(|e| e.at);
            let taken = match (send, timeout) {
                (_, Some(t)) if send.is_none_or(|s| t <= s) => q
                    .timeout
                    .pop_front()
                    .map(|e| (e.slot, TimerKind::KeepAliveTimeout)),
                (Some(_), _) => q
                    .send
                    .pop_front()
                    .map(|e| (e.slot, TimerKind::SendKeepAlive)),
                _ => None,
            };
            match taken {
                Some(t) => return Some(t),
                None => self.reschedule(conn),
            }
        }
    }

    /// Every supervised PE gets a keep-alive at `now` (stall recovery): its ack no longer
    /// awaited, its old timers dropped. O(PEs).
    pub(super) fn rearm_all(&mut self, now: Micros) {
        for q in self.conns.values_mut() {
            q.send.clear();
            q.timeout.clear();
        }
        for (i, s) in self.slots.iter_mut().enumerate() {
            let Some(s) = s else {
                continue;
            };
            let gen = self.gens[i].wrapping_add(1);
            self.gens[i] = gen;
            s.awaiting_ack = false;
            s.due = now;
            let q = self
                .conns
                .get_mut(&s.conn)
                .expect("a supervised PE's connection");
            q.send.push_back(Entry {
                at: now,
                slot: i as u32,
                gen,
            });
        }
        let conns: Vec<ConnId> = self.conns.keys().copied().collect();
        for conn in conns {
            self.reschedule(conn);
        }
    }

    /// Checks the structure (for [`super::Registrar::check_invariants`]): the index finds every
    /// supervision; each has exactly one current entry, in the queue of its connection that
    /// matches `awaiting_ack`, due at `due`; queues are sorted; connections count their PEs
    /// and are scheduled at their earliest entry, rounded up to the slot width.
    pub(super) fn check(&self) -> Result<(), String> {
        let mut current: HashMap<u32, (ConnId, TimerKind, Micros)> = HashMap::new();
        let mut pes: HashMap<ConnId, usize> = HashMap::new();
        for (conn, q) in &self.conns {
            for (queue, kind) in [
                (&q.send, TimerKind::SendKeepAlive),
                (&q.timeout, TimerKind::KeepAliveTimeout),
            ] {
                if queue
                    .iter()
                    .zip(queue.iter().skip(1))
                    .any(|(a, b)| a.at > b.at)
                {
                    return Err(format!("connection {conn}: {kind:?} timers out of order"));
                }
                for e in queue {
                    if self.gens[e.slot as usize] != e.gen {
                        continue;
                    }
                    if current.insert(e.slot, (*conn, kind, e.at)).is_some() {
                        return Err(format!("slot {}: two current timers", e.slot));
                    }
                }
            }
            let earliest = [q.send.front(), q.timeout.front()]
                .into_iter()
                .flatten()
                .map(|e| e.at)
                .min()
                .map(|at| at.div_ceil(self.slot_width).saturating_mul(self.slot_width));
            if q.scheduled != earliest
                || earliest.is_some_and(|at| !self.schedule.contains(&(at, *conn)))
            {
                return Err(format!(
                    "connection {conn}: scheduled at {:?}, its earliest timer is due at {earliest:?}",
                    q.scheduled
                ));
            }
        }
        let scheduled = self
            .conns
            .values()
            .filter(|q| q.scheduled.is_some())
            .count();
        if scheduled != self.schedule.len() {
            return Err(format!(
                "{} connections scheduled, {scheduled} connections with timers",
                self.schedule.len()
            ));
        }
        let mut live = 0;
        for (i, s) in self.slots.iter().enumerate() {
            let Some(s) = s else {
                continue;
            };
            live += 1;
            let (ph, id) = &self.key(s);
            if self.find(&self.key(s)) != Some(i as u32) {
                return Err(format!("PE {id} of pool \"{ph}\" is not found by its key"));
            }
            *pes.entry(s.conn).or_default() += 1;
            let ikey = ikey_of(s);
            let member = self
                .conns
                .get(&s.conn)
                .and_then(|q| q.members.find(self.hash(ikey), |e| e.0 == ikey));
            if member != Some(&(ikey, i as u32)) {
                return Err(format!(
                    "PE {id} of pool \"{ph}\" is not a member of its connection {}",
                    s.conn
                ));
            }
            let expected = if s.awaiting_ack {
                TimerKind::KeepAliveTimeout
            } else {
                TimerKind::SendKeepAlive
            };
            match current.remove(&(i as u32)) {
                None => return Err(format!("PE {id} of pool \"{ph}\" has no timer armed")),
                Some((conn, kind, at)) => {
                    if conn != s.conn {
                        return Err(format!(
                            "PE {id} of pool \"{ph}\" of connection {} has its timer with connection {conn}",
                            s.conn
                        ));
                    }
                    if kind != expected {
                        return Err(format!(
                            "PE {id} of pool \"{ph}\": timer {kind:?} armed, awaiting ack = {}",
                            s.awaiting_ack
                        ));
                    }
                    if at != s.due {
                        return Err(format!(
                            "PE {id} of pool \"{ph}\": timer due at {at}, supervision says {}",
                            s.due
                        ));
                    }
                }
            }
        }
        if let Some(slot) = current.keys().next() {
            return Err(format!("a current timer of free slot {slot}"));
        }
        if live != self.len || self.index.len() != self.len {
            return Err(format!(
                "{live} supervisions, counted {}, indexed {}",
                self.len,
                self.index.len()
            ));
        }
        for (conn, q) in &self.conns {
            let n = pes.remove(conn).unwrap_or(0);
            if n != q.members.len() || n == 0 {
                return Err(format!(
                    "connection {conn} counts {} supervised PEs, has {n}",
                    q.members.len()
                ));
            }
        }
        if let Some(conn) = pes.keys().next() {
            return Err(format!("connection {conn} has PEs and no timers"));
        }
        Ok(())
    }
}

/// Ways to break the structure, for the tests of [`KeepAlives::check`].
#[cfg(test)]
impl KeepAlives {
    pub(super) fn get_mut(&mut self, key: &PeKey) -> Option<&mut Supervision> {
        let i = self.find(key)?;
        self.slots[i as usize].as_mut()
    }

    /// Takes the PE's current timer off its queue (as if it had never been armed).
    pub(super) fn drop_timer(&mut self, key: &PeKey) {
        let i = self.find(key).expect("supervised");
        let gen = self.gens[i as usize];
        let conn = self.slots[i as usize].as_ref().expect("live").conn;
        let q = self.conns.get_mut(&conn).expect("timers");
        q.send.retain(|e| (e.slot, e.gen) != (i, gen));
        q.timeout.retain(|e| (e.slot, e.gen) != (i, gen));
        self.reschedule(conn);
    }

    /// Drops a connection from the schedule.
    pub(super) fn unschedule(&mut self, conn: ConnId) {
        if let Some(at) = self.conns.get(&conn).and_then(|q| q.scheduled) {
            self.schedule.remove(&(at, conn));
        }
    }
}

/// A supervision's integer key: (pool number << 32) | PE id.
fn ikey_of(s: &Supervision) -> u64 {
    u64::from(s.pool) << 32 | u64::from(s.pe.0)
}

/// Drops stale entries from the front of a queue.
fn trim(queue: &mut VecDeque<Entry>, gens: &[u32]) {
    while queue
        .front()
        .is_some_and(|e| gens[e.slot as usize] != e.gen)
    {
        queue.pop_front();
    }
}

#[cfg(test)]
mod tests;
