//! The handlespace: pools keyed by pool handle, PEs keyed by (pool, PE id), with per-policy
//! selection, expiry, per-registrar ownership (checksum, takeover) and a resumable paged walk.
//!
//! A registrar keeps the whole handlespace; a PU keeps a cache (a slice of it, built with
//! [`Config::pu_cache`]). Sans-I/O: time comes in as [`Micros`] arguments, randomness from the
//! injected [`RandomSource`]. Facts: `wire-format-detailed.md` §5.3, §6, §7, §8; the choice of
//! data structures is explained in `docs/handlespace.md`.
//!
//! Complexities (n = PEs in the handlespace or pool, k = items asked for): register, re-register,
//! deregister, unreachable report, expiry pop, home change: O(log n); handle resolution:
//! O(k log n); checksum: O(1); a walk page: O(k + log n).

mod error;
mod expiry;
mod fenwick;
mod idtable;
mod owners;
mod pes;
pub mod policy;
mod prefetch;
pub mod rng;
mod rotation;
mod slab;
mod sorted;
mod stale;

#[cfg(test)]
mod tests;

pub use error::{cause, rsperr, HandlespaceError, MAX_PE_TRANSPORT_ADDRESSES};
pub use rng::{RandomSource, SplitMix64};

use std::collections::BTreeMap;
use std::hash::BuildHasher;
use std::ops::Bound;

use hashbrown::HashTable;

use crate::core::checksum::{handle_sum, pe_sum_of, HandlespaceChecksum};
use crate::core::types::{
    PeId, PolicyInfo, PolicyType, PoolHandle, RegistrarId, TransportAddress, TransportProtocol,
    MAX_POOL_HANDLE_SIZE,
};
use expiry::ExpiryQueue;
use fenwick::Fenwick;
use idtable::IdTable;
use owners::{Owners, PoolOwners};
use pes::Pes;
use policy::{Engine, SelectionState};
use rotation::Rotation;
use slab::Slab;
use sorted::SortedSet;

/// A point in time: microseconds on the caller's monotonic clock.
pub type Micros = u64;

/// rsplib's MAX-BAD-PE-REPORT default: Endpoint Unreachable reports before a PE is removed.
pub const DEFAULT_MAX_BAD_PE_REPORTS: u32 = 3;

/// maxIncrement of a PU cache: every returned PE is "updated".
pub const PU_CACHE_MAX_INCREMENT: u32 = 1_000_000_000;

/// Tunables of a handlespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// How many of the PEs returned by a selection get "updated"; 0 = the policy's default
    /// (registrar option `-maxincrement`).
    pub max_increment: u32,
    /// Endpoint Unreachable reports before a PE is removed.
    pub max_bad_pe_reports: u32,
    /// Cap on the PEs of one pool (registration flood protection); beyond → lack of resources.
    pub max_pes_per_pool: usize,
    /// Cap on the PEs of the whole handlespace.
    pub max_pes: usize,
}

impl Config {
    /// A registrar's handlespace: policy-default maxIncrement, 3 bad reports, no caps.
    pub const fn registrar() -> Self {
        Config {
            max_increment: 0,
            max_bad_pe_reports: DEFAULT_MAX_BAD_PE_REPORTS,
            max_pes_per_pool: usize::MAX,
            max_pes: usize::MAX,
        }
    }

    /// A PU's cache: maxIncrement 1e9.
    pub const fn pu_cache() -> Self {
        Config {
            max_increment: PU_CACHE_MAX_INCREMENT,
            ..Config::registrar()
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config::registrar()
    }
}

/// What a (re-)registration carries: the content of a Pool Element parameter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registration {
    pub pe_id: PeId,
    /// The home registrar (the accepting registrar puts its own id here).
    pub home: RegistrarId,
    /// Registration life in milliseconds.
    pub registration_life_ms: u32,
    pub user_transport: TransportAddress,
    pub policy: PolicyInfo,
    /// The transport the PE uses towards its registrar (ENRP-imported PEs and the registrar's
    /// own PEs; absent in a PU cache).
    pub registrator_transport: Option<TransportAddress>,
}

/// A stable reference to a stored PE, valid until that PE is removed (the slot is then reused).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeRef(u32);

/// One pool element as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolElement {
    id: PeId,
    pool: u32,
    home: RegistrarId,
    registration_life_ms: u32,
    expiry: Micros,
    /// Value-tree position inside the pool (unused by sorted policies).
    pos: u32,
    unreachable_reports: u16,
    /// The policy type and its wire values (values a policy does not use are not kept).
    policy_type: PolicyType,
    policy_values: [u32; 4],
    user_transport: TransportAddress,
    registrator_transport: Option<Box<TransportAddress>>,
}

/// What a free slot of the PE slab holds (never seen outside it).
impl slab::Vacant for PoolElement {
    fn vacant() -> Self {
        PoolElement {
            id: PeId(0),
            pool: 0,
            home: RegistrarId(0),
            registration_life_ms: 0,
            expiry: 0,
            pos: 0,
            unreachable_reports: 0,
            policy_type: PolicyType::RoundRobin,
            policy_values: [0; 4],
            user_transport: TransportAddress::new(TransportProtocol::Sctp, 0, Vec::new()),
            registrator_transport: None,
        }
    }
}

impl Slab<PoolElement> {
    /// The slot holds a PE whose expiry is `at` (an expiry timer is current).
    #[inline]
    fn is_current(&self, slot: u32, at: Micros) -> bool {
        self.is_live(slot) && self.get(slot).expiry == at
    }
}

impl PoolElement {
    pub fn id(&self) -> PeId {
        self.id
    }
    pub fn home(&self) -> RegistrarId {
        self.home
    }
    pub fn registration_life_ms(&self) -> u32 {
        self.registration_life_ms
    }
    /// When the PE expires (registration life or cache staleness).
    pub fn expiry(&self) -> Micros {
        self.expiry
    }
    pub fn user_transport(&self) -> &TransportAddress {
        &self.user_transport
    }
    pub fn registrator_transport(&self) -> Option<&TransportAddress> {
        self.registrator_transport.as_deref()
    }
    /// The policy values as registered (the registrar sets `distance`); values the policy type
    /// does not carry on the wire read as 0.
    #[inline]
    pub fn policy(&self) -> PolicyInfo {
        let n = self.policy_type.wire_values().len();
        PolicyInfo::from_wire_values(self.policy_type, &self.policy_values[..n])
            .expect("enough values")
    }

    /// Sets the policy values. (A stored PE's policy changes through [`pes::Hot::set_policy`],
    /// so that its degradation step beside it follows.)
    #[inline]
    fn set_policy(&mut self, info: &PolicyInfo) {
        self.policy_type = info.policy;
        self.policy_values = [0; 4];
        for (slot, v) in self.policy_values.iter_mut().zip(info.wire_values()) {
            *slot = v;
        }
    }
    /// Endpoint Unreachable reports counted so far.
    pub fn unreachable_reports(&self) -> u32 {
        u32::from(self.unreachable_reports)
    }
    /// True if the PE takes ASAP control messages on its user transport.
    pub fn has_control_channel(&self) -> bool {
        self.user_transport.has_control_channel()
    }
}

/// Result of a successful registration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegisterOutcome {
    Added,
    Updated,
}

/// Result of an Endpoint Unreachable report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UnreachableOutcome {
    /// No such PE.
    Unknown,
    /// Counted; the PE stays (reports so far).
    Counted(u32),
    /// The threshold was reached; the PE was removed.
    Removed(PoolElement),
}

/// The attributes every PE of a pool shares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolSummary {
    pub policy: PolicyType,
    pub protocol: TransportProtocol,
    pub control_channel: bool,
    pub len: usize,
}

/// Where a paged walk resumes: after this PE of this pool.
///
/// Walks go in (pool handle, insertion order in the pool). The cursor remembers the PE's place
/// in its pool's insertion log; if the log was compacted since (or the pool re-created), the
/// place is found again through the PE id, and if that PE is gone too, the pool is walked again
/// from its start (items may repeat, none present throughout the walk is missed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalkCursor {
    pub pool: PoolHandle,
    pub pe: PeId,
    pos: u32,
    generation: u64,
}

impl WalkCursor {
    /// A cursor after PE `pe` of `pool`, found again by its id.
    pub fn new(pool: PoolHandle, pe: PeId) -> Self {
        WalkCursor {
            pool,
            pe,
            pos: u32::MAX,
            generation: u64::MAX,
        }
    }
}

/// One page of a walk, in (pool handle, insertion order) order.
#[derive(Debug)]
pub struct WalkPage<'a> {
    pub items: Vec<(&'a PoolHandle, &'a PoolElement)>,
    /// True if more items follow (ENRP Handle Table Response M flag).
    pub more: bool,
    /// Per item: its log position and its pool's log generation.
    places: Vec<(u32, u64)>,
}

impl WalkPage<'_> {
    /// The cursor to continue after this page's last item (`None` when the walk is complete).
    pub fn next_cursor(&self) -> Option<WalkCursor> {
        if !self.more {
            return None;
        }
        self.cursor_after(self.items.len().checked_sub(1)?)
    }

    /// The cursor to continue after item `i` of this page (a caller that used only part of
    /// the page).
    pub fn cursor_after(&self, i: usize) -> Option<WalkCursor> {
        let (h, pe) = self.items.get(i)?;
        let (pos, generation) = self.places[i];
        Some(WalkCursor {
            pool: (*h).clone(),
            pe: pe.id,
            pos,
            generation,
        })
    }
}

/// Sorted-engine entry: key then slot, 16 bytes (a B-tree node's keys span 3 cache lines,
/// not 4–5, and a ring of 100 entries 25 lines, not 38).
///
/// Every part fits 32 bits: loads saturate at `u32::MAX`, priorities are `u32`, and a sorted
/// pool's sequence numbers and WRR rounds are renumbered before they reach [`SEQ_LIMIT`] and
/// [`ROUND_LIMIT`] (`renumber_seqs`, `rebase_rounds`).
///
/// The order is (primary, secondary, seq, slot), compared as one 128-bit number: the fields lie
/// in memory from least to most significant (`repr(C)`), so on a little-endian machine the
/// number is the entry's 16 bytes as they are: a comparison is two 64-bit compares instead of up
/// to four dependent field compares (every search of a ring or tree does many).
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(C)]
struct SortEntry {
    slot: u32,
    seq: u32,
    secondary: u32,
    primary: u32,
}

impl Ord for SortEntry {
    #[inline]
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.rank().cmp(&other.rank())
    }
}

impl PartialOrd for SortEntry {
    #[inline]
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
    #[inline]
    fn lt(&self, other: &Self) -> bool {
        self.rank() < other.rank()
    }
    #[inline]
    fn le(&self, other: &Self) -> bool {
        self.rank() <= other.rank()
    }
    #[inline]
    fn gt(&self, other: &Self) -> bool {
        self.rank() > other.rank()
    }
    #[inline]
    fn ge(&self, other: &Self) -> bool {
        self.rank() >= other.rank()
    }
}

impl SortEntry {
    /// The entry as one number in its order.
    #[inline(always)]
    fn rank(&self) -> u128 {
        u128::from(self.primary) << 96
            | u128::from(self.secondary) << 64
            | u128::from(self.seq) << 32
            | u128::from(self.slot)
    }

    #[inline]
    fn of(pe: &PoolElement, state: &SelectionState, slot: u32) -> Self {
        let k = policy::sort_key_of_wire(pe.policy_type, &pe.policy_values, state);
        debug_assert!(k.primary <= u64::from(u32::MAX) && k.seq <= u64::from(u32::MAX));
        SortEntry {
            primary: k.primary.min(u64::from(u32::MAX)) as u32,
            secondary: k.secondary,
            seq: k.seq.min(u64::from(u32::MAX)) as u32,
            slot,
        }
    }
}

/// A sorted pool renumbers its PEs' sequence numbers (0, 1, … in their order) before the next
/// one would pass this: once per ~4·10⁹ selections and registrations of the pool.
#[cfg(not(test))]
const SEQ_LIMIT: u64 = u32::MAX as u64;
/// The unit tests renumber often, so that every test also runs through it.
#[cfg(test)]
const SEQ_LIMIT: u64 = 1 << 12;

/// A WRR pool's rounds are rebased (the lowest becomes 0) before one passes this.
#[cfg(not(test))]
const ROUND_LIMIT: u64 = u32::MAX as u64;
#[cfg(test)]
const ROUND_LIMIT: u64 = 1 << 6;

/// Gives a sorted pool's PEs the sequence numbers 0, 1, … in the order of their old ones (so
/// every order between them stays), and rebuilds its set from them. O(n log n), once per
/// [`SEQ_LIMIT`] − n sequence numbers.
fn renumber_seqs(set: &mut SortedSet<SortEntry>, next_seq: &mut u64, pes: &mut Pes) {
    let mut by_seq: Vec<(u32, u32)> = set.iter().map(|e| (e.seq, e.slot)).collect();
    by_seq.sort_unstable();
    for (rank, &(_, slot)) in by_seq.iter().enumerate() {
        pes.state_mut(slot).seq = rank as u64;
    }
    *next_seq = by_seq.len() as u64;
    // The keys' other parts are unchanged and equal keys keep their order: still sorted.
    let renumbered = set.iter().map(|e| entry_of(pes, e.slot));
    *set = SortedSet::from_sorted(renumbered);
}

/// Renumbers a sorted pool's sequence numbers if the next `k` would reach [`SEQ_LIMIT`] (its
/// stale entries dropped first: they have no PE to renumber, and renumbered PEs could take
/// their numbers). `stale`, `pidx`: the pool's count of stale entries and its slot.
#[inline]
fn make_room_for_seqs(
    set: &mut SortedSet<SortEntry>,
    (stale, pidx): (&mut u32, u32),
    next_seq: &mut u64,
    pes: &mut Pes,
    k: usize,
) {
    if *next_seq + k as u64 >= SEQ_LIMIT {
        stale::drop_stale(set, stale, pes, pidx);
        renumber_seqs(set, next_seq, pes);
    }
}

/// Lowers every round of a WRR pool by the lowest one (the head's), keeping their order.
fn rebase_rounds(set: &mut SortedSet<SortEntry>, (stale, pidx): (&mut u32, u32), pes: &mut Pes) {
    stale::drop_stale(set, stale, pes, pidx);
    let Some(low) = set.first().map(|e| e.primary) else {
        return;
    };
    let rebased = set.iter().map(|e| {
        pes.state_mut(e.slot).round -= u64::from(low);
        SortEntry {
            primary: e.primary - low,
            ..*e
        }
    });
    *set = SortedSet::from_sorted(rebased);
}

enum Selection {
    /// Round robin: the slots in selection order, front = next (`rotation.rs`).
    Rotation(Rotation),
    Sorted(SortedSet<SortEntry>),
    /// Sum tree of weights by log position (removed PEs weigh 0 until the log is compacted).
    ValueTree(Fenwick),
    /// Random: every PE weighs 1, so a draw picks a log position directly.
    Uniform,
}

/// A removed PE's place in a pool's log, until the log is compacted.
const TOMB: u32 = u32::MAX;

/// A log is compacted when its tombstones outnumber its PEs and are at least this many (the
/// unit tests compact early, so that every test also exercises compaction).
#[cfg(not(test))]
const COMPACT_MIN_DEAD: u32 = 16;
#[cfg(test)]
const COMPACT_MIN_DEAD: u32 = 2;

/// A pool handle's bytes, inline (the pool table compares against these without following a
/// pointer: one cache miss less per lookup).
#[derive(Clone, Copy)]
struct InlineHandle {
    len: u8,
    bytes: [u8; MAX_POOL_HANDLE_SIZE],
}

impl InlineHandle {
    #[inline]
    fn of(h: &PoolHandle) -> Self {
        let b = h.as_bytes();
        let mut bytes = [0; MAX_POOL_HANDLE_SIZE];
        bytes[..b.len()].copy_from_slice(b);
        InlineHandle {
            len: b.len() as u8,
            bytes,
        }
    }

    #[inline]
    fn is(&self, b: &[u8]) -> bool {
        usize::from(self.len) == b.len() && same_bytes(&self.bytes[..b.len()], b)
    }
}

/// `a == b` for slices of one length: from 8 to 16 bytes (a usual pool handle) as two 8-byte
/// words each (which may overlap), not a call of `memcmp`.
#[inline(always)]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    debug_assert_eq!(a.len(), b.len());
    let n = a.len();
    if (8..=16).contains(&n) {
        let word = |s: &[u8], at: usize| u64::from_ne_bytes(s[at..at + 8].try_into().unwrap());
        (word(a, 0) ^ word(b, 0)) | (word(a, n - 8) ^ word(b, n - 8)) == 0
    } else {
        a == b
    }
}

/// The hash of a pool handle in the pool table: its bytes only (the table compares handles
/// whole, so their lengths need not be hashed too, as `Hash for [u8]` would).
#[inline]
fn handle_hash(hasher: &IdHasher, b: &[u8]) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = hasher.build_hasher();
    h.write(b);
    h.finish()
}

/// Hot fields first (`repr(C)` keeps the order), and every pool starts on a cache line: the
/// first line holds all that a lookup and a uniform draw read (handle, attributes, size, log),
/// the second the selection index and the id scan array.
#[repr(C, align(64))]
struct Pool {
    key: InlineHandle,
    policy: PolicyType,
    protocol: TransportProtocol,
    control_channel: bool,
    live: u32,
    /// The pool's PEs (slots) in insertion order; a PE's `pos` is its place here. Removal
    /// leaves a [`TOMB`]; the log is compacted when tombstones outnumber PEs.
    log: Vec<u32>,
    next_seq: u64,
    selection: Selection,
    /// The PE ids in log order (`log_ids[p]` is the id of `log[p]`; 0 at a tombstone): a small
    /// pool finds a PE by scanning these (a few contiguous cache lines), not through a table.
    log_ids: Vec<PeId>,
    /// PE id → slot, hashed with the handlespace's keyed hasher: only while the pool has more
    /// than [`HASHED_MIN`] PEs (built then, dropped below a quarter of that).
    ids: Option<IdTable>,
    dead: u32,
    /// Entries of removed PEs still in the sorted set (`stale.rs`).
    stale: u32,
    /// The pool handle's part of every PE checksum of this pool.
    handle_sum: u32,
    handle: PoolHandle,
    /// Changes whenever log places change (compaction) and differs between pool incarnations.
    generation: u64,
    /// PEs of this pool per home registrar (a handful of entries; two inline).
    owners: PoolOwners,
}

/// Handlespaces of at least this many PEs prefetch a sorted pool's ring before searching it.
///
/// Below, the rings (16 bytes a PE) and the PEs themselves (about 200 bytes a PE with their
/// indexes) fit in a 4 MiB second-level cache, and a prefetch of a cached ring only costs: 30 %
/// of a least-used registration, re-registration and deregistration in 10 pools of 100 PEs,
/// measured. Above, a pool's ring is mostly not cached, and asking for all its lines at once
/// turns a search's chain of misses into one wait (15–30 % faster in 10³ pools of 100).
const COLD_MIN_PES: usize = 1 << 14;

/// Whether a sorted pool's ring is probably not cached in a handlespace of `pes` PEs.
#[inline]
fn rings_cold(pes: usize) -> bool {
    pes >= COLD_MIN_PES
}

/// Pool size from which the PE ids are hashed; below, lookups scan the pool's `log_ids`.
#[cfg(not(test))]
const HASHED_MIN: usize = 128;
#[cfg(test)]
const HASHED_MIN: usize = 8;

/// The place of `x` in `xs` (a scan in blocks the compiler vectorizes).
#[inline]
fn scan<T: Copy + PartialEq>(xs: &[T], x: T) -> Option<usize> {
    const BLOCK: usize = 16;
    for (b, chunk) in xs.chunks(BLOCK).enumerate() {
        if chunk.iter().fold(false, |hit, y| hit | (*y == x)) {
            return chunk.iter().position(|y| *y == x).map(|p| b * BLOCK + p);
        }
    }
    None
}

impl Pool {
    #[inline]
    fn len(&self) -> usize {
        self.live as usize
    }

    #[inline]
    fn find(&self, hasher: &IdHasher, id: PeId) -> Option<u32> {
        if id.0 == 0 {
            return None;
        }
        match &self.ids {
            Some(t) => t.find(hasher.hash_one(id.0), id.0),
            None => scan(&self.log_ids, id).map(|p| self.log[p]),
        }
    }

    /// Appends a PE to the log and the id index.
    fn index_push(&mut self, hasher: &IdHasher, id: PeId, slot: u32) {
        self.log.push(slot);
        self.log_ids.push(id);
        self.live += 1;
        let hash = |id: u32| hasher.hash_one(id);
        match &mut self.ids {
            Some(t) => t.insert_unique(hash(id.0), id.0, slot, hash),
            None if self.live as usize > HASHED_MIN => {
                let mut t = IdTable::with_capacity(2 * self.live as usize);
                for (p, &slot) in self.log.iter().enumerate() {
                    if slot != TOMB {
                        let id = self.log_ids[p].0;
                        t.insert_unique(hash(id), id, slot, hash);
                    }
                }
                self.ids = Some(t);
            }
            None => {}
        }
    }

    /// Takes the PE at log place `pos` out of the log and the id index.
    fn index_remove(&mut self, hasher: &IdHasher, pos: usize) {
        let id = std::mem::replace(&mut self.log_ids[pos], PeId(0));
        self.log[pos] = TOMB;
        self.dead += 1;
        self.live -= 1;
        if let Some(t) = &mut self.ids {
            if self.live as usize * 4 < HASHED_MIN {
                self.ids = None;
            } else {
                t.remove(hasher.hash_one(id.0), id.0, |id| hasher.hash_one(id));
            }
        }
    }

    /// Live slots in log order, with their places.
    fn members(&self) -> impl Iterator<Item = (usize, u32)> + '_ {
        self.log
            .iter()
            .enumerate()
            .filter(|(_, &s)| s != TOMB)
            .map(|(p, &s)| (p, s))
    }
}

/// The keyed hasher of PE ids, pool handles and registrar ids (seeded from the injected random
/// source: these are chosen by peers, so an unkeyed hash would let them collide on purpose).
type IdHasher = foldhash::fast::FixedState;

/// A handlespace (registrar) or handlespace cache (PU).
pub struct Handlespace<R = SplitMix64> {
    config: Config,
    rng: R,
    pools: Vec<Option<Pool>>,
    free_pools: Vec<u32>,
    /// Pool handle → pool slot, ordered (walks).
    pool_index: BTreeMap<PoolHandle, u32>,
    /// The same, hashed: pool slots, compared against the pools' inline handles.
    pool_table: HashTable<u32>,
    pes: Pes,
    pe_count: usize,
    expiry: ExpiryQueue,
    owners: Owners,
    checksum: HandlespaceChecksum,
    scratch: Vec<(usize, u32)>,
    /// The entries a sorted selection picked (scratch).
    picked: Vec<SortEntry>,
    hasher: IdHasher,
    /// Source of pool log generations.
    generations: u64,
}

/// Checks a registration on its own (before looking at the pool).
pub fn validate(handle: &PoolHandle, reg: &Registration) -> Result<(), HandlespaceError> {
    use HandlespaceError::*;
    if !handle.is_valid() {
        return Err(InvalidPoolHandle(handle.len()));
    }
    if reg.pe_id.0 == 0 {
        return Err(InvalidPeId);
    }
    if reg.registration_life_ms == 0 {
        return Err(InvalidRegistrationLife);
    }
    let t = &reg.user_transport;
    let n = t.addresses.len();
    if n == 0 {
        return Err(NoAddresses);
    }
    if n > MAX_PE_TRANSPORT_ADDRESSES {
        return Err(TooManyAddresses(n));
    }
    if n > 1 && t.protocol != TransportProtocol::Sctp {
        return Err(MultihomedNonSctp(t.protocol, n));
    }
    if t.port == 0 {
        return Err(InvalidPort);
    }
    Ok(())
}

#[inline]
fn pool_mut(pools: &mut [Option<Pool>], idx: u32) -> &mut Pool {
    pools[idx as usize].as_mut().expect("live pool index")
}

#[inline]
fn pe_mut(pes: &mut Pes, slot: u32) -> &mut PoolElement {
    pes.get_mut(slot)
}

/// The sort entry of the live PE in `slot`.
#[inline]
fn entry_of(pes: &Pes, slot: u32) -> SortEntry {
    SortEntry::of(pes.get(slot), pes.state(slot), slot)
}

/// Drops a pool's tombstones: live PEs keep their order and get their new places (and the
/// value tree is rebuilt over them). O(length · log₈ length) at most, spread over the more than
/// length / 2 removals that made the tombstones.
fn compact(pool: &mut Pool, pes: &mut Pes, generation: u64) {
    let mut tree = match &pool.selection {
        Selection::ValueTree(_) => Some(Fenwick::default()),
        _ => None,
    };
    let mut w = 0;
    for r in 0..pool.log.len() {
        let slot = pool.log[r];
        if slot == TOMB {
            continue;
        }
        pool.log[w] = slot;
        pool.log_ids[w] = pool.log_ids[r];
        pe_mut(pes, slot).pos = w as u32;
        if let (Some(t), Selection::ValueTree(old)) = (&mut tree, &pool.selection) {
            t.push(old.get(r));
        }
        w += 1;
    }
    pool.log.truncate(w);
    pool.log_ids.truncate(w);
    if pool.log.capacity() > 2 * w + 16 {
        pool.log.shrink_to(w + w / 2);
        pool.log_ids.shrink_to(w + w / 2);
    }
    if let Some(t) = tree {
        pool.selection = Selection::ValueTree(t);
    }
    pool.dead = 0;
    pool.generation = generation;
}

impl Handlespace<SplitMix64> {
    /// A handlespace with the built-in generator seeded with `seed`.
    pub fn with_seed(config: Config, seed: u64) -> Self {
        Handlespace::new(config, SplitMix64::new(seed))
    }
}

impl<R: RandomSource> Handlespace<R> {
    /// An empty handlespace.
    pub fn new(config: Config, mut rng: R) -> Self {
        let hasher = IdHasher::with_seed(rng.next_u64());
        Handlespace {
            config,
            rng,
            pools: Vec::new(),
            free_pools: Vec::new(),
            pool_index: BTreeMap::new(),
            pool_table: HashTable::new(),
            pes: Pes::new(),
            pe_count: 0,
            expiry: ExpiryQueue::default(),
            owners: Owners::new(hasher.clone()),
            checksum: HandlespaceChecksum::new(),
            scratch: Vec::new(),
            picked: Vec::new(),
            hasher,
            generations: 0,
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn config_mut(&mut self) -> &mut Config {
        &mut self.config
    }

    /// Number of PEs.
    pub fn len(&self) -> usize {
        self.pe_count
    }

    pub fn is_empty(&self) -> bool {
        self.pe_count == 0
    }

    /// Number of (non-empty) pools.
    pub fn pool_count(&self) -> usize {
        self.pool_index.len()
    }

    /// Pool handles in order.
    pub fn pool_handles(&self) -> impl Iterator<Item = &PoolHandle> + '_ {
        self.pool_index.keys()
    }

    /// A pool's shared attributes and size.
    pub fn pool(&self, handle: &PoolHandle) -> Option<PoolSummary> {
        let p = self.pools[self.pool_slot(handle.as_bytes())? as usize].as_ref()?;
        Some(PoolSummary {
            policy: p.policy,
            protocol: p.protocol,
            control_channel: p.control_channel,
            len: p.len(),
        })
    }

    /// A pool's PEs in insertion order (empty for an unknown pool).
    pub fn pool_elements<'a>(
        &'a self,
        handle: &PoolHandle,
    ) -> impl Iterator<Item = &'a PoolElement> + 'a {
        let pool = self
            .pool_slot(handle.as_bytes())
            .and_then(|i| self.pools[i as usize].as_ref());
        pool.into_iter()
            .flat_map(|p| p.members())
            .map(|(_, s)| self.pe(PeRef(s)))
    }

    /// The slot of pool `handle`.
    fn pool_slot(&self, b: &[u8]) -> Option<u32> {
        let pools = &self.pools;
        self.pool_table
            .find(handle_hash(&self.hasher, b), |&i| {
                pools[i as usize].as_ref().is_some_and(|p| p.key.is(b))
            })
            .copied()
    }

    fn lookup(&self, handle: &PoolHandle, id: PeId) -> Option<u32> {
        let p = self.pools[self.pool_slot(handle.as_bytes())? as usize].as_ref()?;
        p.find(&self.hasher, id)
    }

    /// The stored PE `(handle, id)`.
    pub fn get(&self, handle: &PoolHandle, id: PeId) -> Option<&PoolElement> {
        self.lookup(handle, id).map(|s| self.pe(PeRef(s)))
    }

    /// The selection state of a PE of this handlespace: sequence number, degradation, WRR
    /// counters. (A round-robin pool of at most 32 PEs keeps its order in its rotation alone;
    /// its PEs' sequence numbers are assigned when it grows past that.)
    ///
    /// Panics if `pe` is not a PE stored here.
    pub fn selection_state(&self, pe: &PoolElement) -> SelectionState {
        let slot = self.pools[pe.pool as usize]
            .as_ref()
            .and_then(|p| p.find(&self.hasher, pe.id))
            .expect("a PE of this handlespace");
        *self.pes.state(slot)
    }

    /// The PE behind a reference from [`Handlespace::select_into`].
    ///
    /// Panics if the PE has been removed since.
    pub fn pe(&self, r: PeRef) -> &PoolElement {
        self.pes.get(r.0)
    }

    /// The pool handle of a stored PE.
    pub fn pool_handle_of(&self, pe: &PoolElement) -> &PoolHandle {
        &self.pools[pe.pool as usize]
            .as_ref()
            .expect("live pool")
            .handle
    }

    /// Registers or re-registers a PE; it expires `registration_life_ms` after `now`.
    pub fn register(
        &mut self,
        handle: &PoolHandle,
        reg: Registration,
        now: Micros,
    ) -> Result<RegisterOutcome, HandlespaceError> {
        let expiry = now.saturating_add(u64::from(reg.registration_life_ms) * 1000);
        self.register_until(handle, reg, expiry)
    }

    /// Whether [`Handlespace::register`] would refuse `reg` for what it says (its values, or
    /// attributes inconsistent with its pool's), without changing anything. Capacity is not
    /// checked here.
    pub fn check_registration(
        &self,
        handle: &PoolHandle,
        reg: &Registration,
    ) -> Result<(), HandlespaceError> {
        validate(handle, reg)?;
        let Some(pidx) = self.pool_slot(handle.as_bytes()) else {
            return Ok(());
        };
        let pool = self.pools[pidx as usize].as_ref().expect("live pool");
        let ctrl = reg.user_transport.has_control_channel();
        let protocol = reg.user_transport.protocol;
        if pool.policy != reg.policy.policy {
            return Err(HandlespaceError::InconsistentPolicy {
                pool: pool.policy,
                requested: reg.policy.policy,
            });
        }
        if pool.protocol != protocol {
            return Err(HandlespaceError::InconsistentTransport {
                pool: pool.protocol,
                requested: protocol,
            });
        }
        if pool.control_channel != ctrl {
            return Err(HandlespaceError::InconsistentControlChannel {
                pool: pool.control_channel,
                requested: ctrl,
            });
        }
        Ok(())
    }

    /// Registers or re-registers a PE with an explicit expiry time (a PU cache uses its stale
    /// cache value here).
    ///
    /// A new PE is checked against the pool's policy type, transport protocol and control-channel
    /// flag; so is an update (a pool's attributes are fixed while it has PEs). An update replaces
    /// transport, policy values, life and home, resets the accumulated degradation and keeps the
    /// PE's position (sequence number) and unreachable count.
    pub fn register_until(
        &mut self,
        handle: &PoolHandle,
        reg: Registration,
        expiry: Micros,
    ) -> Result<RegisterOutcome, HandlespaceError> {
        self.check_registration(handle, &reg)?;
        let pidx = match self.pool_slot(handle.as_bytes()) {
            Some(pidx) => {
                let pool = self.pools[pidx as usize].as_ref().expect("live pool");
                if let Some(slot) = pool.find(&self.hasher, reg.pe_id) {
                    self.update(slot, reg, expiry);
                    return Ok(RegisterOutcome::Updated);
                }
                if pool.len() >= self.config.max_pes_per_pool {
                    return Err(HandlespaceError::PoolFull(pool.len()));
                }
                self.check_capacity()?;
                pidx
            }
            None => {
                self.check_capacity()?;
                if self.config.max_pes_per_pool == 0 {
                    return Err(HandlespaceError::PoolFull(0));
                }
                let ctrl = reg.user_transport.has_control_channel();
                self.new_pool(handle, reg.policy.policy, reg.user_transport.protocol, ctrl)
            }
        };
        self.insert(pidx, reg, expiry);
        Ok(RegisterOutcome::Added)
    }

    fn check_capacity(&self) -> Result<(), HandlespaceError> {
        if self.pe_count >= self.config.max_pes {
            Err(HandlespaceError::HandlespaceFull(self.pe_count))
        } else {
            Ok(())
        }
    }

    fn new_pool(
        &mut self,
        handle: &PoolHandle,
        policy: PolicyType,
        protocol: TransportProtocol,
        control_channel: bool,
    ) -> u32 {
        let selection = match policy::engine(policy) {
            Engine::Sorted if policy == PolicyType::RoundRobin => {
                Selection::Rotation(Rotation::new())
            }
            Engine::Sorted => Selection::Sorted(SortedSet::new()),
            Engine::ValueTree if policy == PolicyType::Random => Selection::Uniform,
            Engine::ValueTree => Selection::ValueTree(Fenwick::default()),
        };
        self.generations += 1;
        let pool = Pool {
            key: InlineHandle::of(handle),
            handle: handle.clone(),
            handle_sum: handle_sum(handle.as_bytes()),
            policy,
            protocol,
            control_channel,
            next_seq: 0,
            log_ids: Vec::new(),
            ids: None,
            live: 0,
            log: Vec::new(),
            dead: 0,
            stale: 0,
            generation: self.generations,
            selection,
            owners: PoolOwners::new(),
        };
        let idx = match self.free_pools.pop() {
            Some(i) => {
                self.pools[i as usize] = Some(pool);
                i
            }
            None => {
                self.pools.push(Some(pool));
                (self.pools.len() - 1) as u32
            }
        };
        self.pool_index.insert(handle.clone(), idx);
        let Handlespace {
            pool_table,
            pools,
            hasher,
            ..
        } = self;
        pool_table.insert_unique(handle_hash(hasher, handle.as_bytes()), idx, |&i| {
            let p = pools[i as usize].as_ref().expect("live pool");
            handle_hash(hasher, p.handle.as_bytes())
        });
        idx
    }

    fn insert(&mut self, pidx: u32, reg: Registration, expiry: Micros) {
        let cold = rings_cold(self.pe_count);
        let slot = self.pes.next_slot();
        let Handlespace {
            pools,
            pes,
            owners,
            checksum,
            expiry: timers,
            hasher,
            ..
        } = self;
        let pool = pool_mut(pools, pidx);
        if let Selection::Sorted(set) = &mut pool.selection {
            make_room_for_seqs(set, (&mut pool.stale, pidx), &mut pool.next_seq, pes, 1);
            if pool.policy == PolicyType::WeightedRoundRobin {
                // The head entry must be a PE's: it tells the round (below).
                stale::drop_stale_first(set, &mut pool.stale, pes, pidx, 1);
            }
        }
        let seq = pool.next_seq;
        pool.next_seq += 1;
        // Only WRR keys use the round, and a WRR key's primary part is the round: the head
        // entry tells it without a visit to the head PE.
        let head_round = match &pool.selection {
            Selection::Sorted(set) if pool.policy == PolicyType::WeightedRoundRobin => {
                let round = set.first().map_or(0, |e| u64::from(e.primary));
                debug_assert_eq!(round, set.first().map_or(0, |e| pes.state(e.slot).round));
                round
            }
            _ => 0,
        };
        let mut pe = PoolElement {
            id: reg.pe_id,
            pool: pidx,
            home: reg.home,
            registration_life_ms: reg.registration_life_ms,
            expiry,
            pos: pool.log.len() as u32,
            unreachable_reports: 0,
            policy_type: reg.policy.policy,
            policy_values: [0; 4],
            user_transport: reg.user_transport,
            registrator_transport: reg.registrator_transport.map(Box::new),
        };
        pe.set_policy(&reg.policy);
        let state = policy::on_insert(&reg.policy, seq, head_round);
        match &mut pool.selection {
            // Once the PE is in the slab (below).
            Selection::Rotation(_) => {}
            Selection::Sorted(set) => {
                set.insert(SortEntry::of(&pe, &state, slot), cold);
            }
            Selection::ValueTree(tree) => tree.push(policy::weight_value(&reg.policy, &state)),
            Selection::Uniform => {}
        }
        pool.index_push(hasher, pe.id, slot);
        timers.arm(expiry, slot);
        let partial = pe_sum_of(pool.handle_sum, pe.id);
        owners.add(&mut pool.owners, &pool.handle, pidx, pe.home, partial);
        checksum.add_sum(partial);
        let stored = pes.insert(pe, state);
        debug_assert_eq!(stored, slot);
        // The new PE has the pool's highest sequence number: it goes last.
        if let Selection::Rotation(r) = &mut pool.selection {
            r.push(slot, pool.live as usize, pool.next_seq, pes);
        }
        self.pe_count += 1;
    }

    fn update(&mut self, slot: u32, reg: Registration, expiry: Micros) {
        let cold = rings_cold(self.pe_count);
        let Handlespace {
            pools,
            pes,
            owners,
            expiry: timers,
            ..
        } = self;
        let (pe, hot) = pes.both_mut(slot);
        let pool = pool_mut(pools, pe.pool);
        let old_entry = match &pool.selection {
            Selection::Sorted(_) => Some(SortEntry::of(pe, &hot.state, slot)),
            _ => None,
        };
        let rearmed = pe.expiry != expiry;
        if rearmed {
            timers.rearm(pe.expiry, expiry, slot);
            pe.expiry = expiry;
        }
        if pe.home != reg.home {
            let partial = pe_sum_of(pool.handle_sum, pe.id);
            owners.remove(&mut pool.owners, &pool.handle, pe.home, partial);
            owners.add(&mut pool.owners, &pool.handle, pe.pool, reg.home, partial);
            pe.home = reg.home;
        }
        policy::on_reregistration(&pe.policy(), &reg.policy, &mut hot.state);
        hot.set_policy(pe, &reg.policy);
        pe.registration_life_ms = reg.registration_life_ms;
        pe.user_transport = reg.user_transport;
        pe.registrator_transport = reg.registrator_transport.map(Box::new);
        match &mut pool.selection {
            Selection::Sorted(set) => {
                // Most updates keep the key (round robin keeps its place; a load that did not
                // change): then the set is not touched.
                let new_entry = SortEntry::of(pe, &hot.state, slot);
                let old_entry = old_entry.expect("sorted pool");
                if new_entry != old_entry {
                    set.replace(&old_entry, new_entry, cold);
                }
            }
            Selection::ValueTree(tree) => {
                tree.set(
                    pe.pos as usize,
                    policy::weight_value(&pe.policy(), &hot.state),
                );
            }
            // A round-robin PE keeps its place (its sequence number) on re-registration.
            Selection::Rotation(_) | Selection::Uniform => {}
        }
        if rearmed {
            timers.clean(|at, s| pes.is_current(s, at));
        }
    }

    fn remove_slot(&mut self, slot: u32) -> PoolElement {
        let cold = rings_cold(self.pe_count);
        let Handlespace {
            pools,
            pes,
            owners,
            checksum,
            expiry: timers,
            hasher,
            ..
        } = self;
        let (pe, state) = pes.remove(slot);
        let pidx = pe.pool;
        let pool = pool_mut(pools, pidx);
        let pos = pe.pos as usize;
        match &mut pool.selection {
            Selection::Rotation(r) => {
                r.remove(slot, state.seq, pool.live as usize - 1, pool.next_seq, pes);
            }
            Selection::Sorted(set) => {
                let e = SortEntry::of(&pe, &state, slot);
                stale::remove(set, &mut pool.stale, pes, pidx, &e, cold);
            }
            Selection::ValueTree(tree) => tree.set(pos, 0),
            Selection::Uniform => {}
        }
        pool.index_remove(hasher, pos);
        timers.disarm(pe.expiry, slot);
        timers.clean(|at, s| pes.is_current(s, at));
        let partial = pe_sum_of(pool.handle_sum, pe.id);
        owners.remove(&mut pool.owners, &pool.handle, pe.home, partial);
        checksum.remove_sum(partial);
        if pool.live == 0 {
            let pool = pools[pidx as usize].take().expect("live pool");
            self.pool_index.remove(&pool.handle);
            let b = pool.handle.as_bytes();
            if let Ok(e) = self
                .pool_table
                .find_entry(handle_hash(&self.hasher, b), |&i| i == pidx)
            {
                e.remove();
            }
            self.free_pools.push(pidx);
        } else if pool.dead >= COMPACT_MIN_DEAD && pool.dead as usize > pool.len() {
            self.generations += 1;
            compact(pool, pes, self.generations);
        }
        self.pe_count -= 1;
        pe
    }

    /// Removes a PE; `None` if it was not there (deregistration of an unknown PE succeeds).
    pub fn deregister(&mut self, handle: &PoolHandle, id: PeId) -> Option<PoolElement> {
        let slot = self.lookup(handle, id)?;
        Some(self.remove_slot(slot))
    }

    /// Selects up to `n` PEs of the pool by its policy (best first) into `out`, updating the
    /// selection state of the first maxIncrement of them. References stay valid until the next
    /// removal. `handle`: a [`PoolHandle`] or its bytes.
    pub fn select_into(
        &mut self,
        handle: &(impl AsRef<[u8]> + ?Sized),
        n: usize,
        out: &mut Vec<PeRef>,
    ) -> Result<(), HandlespaceError> {
        out.clear();
        let pidx = self
            .pool_slot(handle.as_ref())
            .ok_or(HandlespaceError::UnknownPoolHandle)?;
        let cold = rings_cold(self.pe_count);
        let Handlespace {
            pools,
            pes,
            rng,
            config,
            scratch,
            picked,
            ..
        } = self;
        let pool = pool_mut(pools, pidx);
        let max_increment = match config.max_increment {
            0 => policy::default_max_increment(pool.policy),
            m => m,
        } as usize;
        match &mut pool.selection {
            Selection::Rotation(r) => {
                r.select(n, max_increment, out, &mut pool.next_seq, pes);
            }
            Selection::Sorted(set) => {
                make_room_for_seqs(
                    set,
                    (&mut pool.stale, pidx),
                    &mut pool.next_seq,
                    pes,
                    max_increment.min(n),
                );
                stale::drop_stale_first(set, &mut pool.stale, pes, pidx, n);
                picked.clear();
                set.copy_first_n(n, picked);
                out.extend(picked.iter().map(|e| PeRef(e.slot)));
                let renew_seq = policy::selection_renews_only_seq(pool.policy);
                let add_degradation = policy::selection_adds_degradation(pool.policy);
                let mut high_round = false;
                for &e in picked.iter().take(max_increment) {
                    let seq = pool.next_seq;
                    pool.next_seq += 1;
                    // What `on_selected` makes of the state, for the shortcuts below.
                    #[cfg(debug_assertions)]
                    let expected = {
                        let mut st = *pes.state(e.slot);
                        policy::on_selected(&pes.get(e.slot).policy(), &mut st, seq);
                        st
                    };
                    // The selection state and the degradation step lie beside the PE records
                    // (see `pes.rs`): only WRR reads the PE's record here.
                    let hot = pes.hot_mut(e.slot);
                    let moved = if renew_seq {
                        // Only the sequence number changes: the new entry follows from the
                        // old one.
                        hot.state.seq = seq;
                        SortEntry {
                            seq: seq as u32,
                            ..e
                        }
                    } else if add_degradation {
                        // The degradation policies: the key's primary grows by the load
                        // degradation (both saturate at u32::MAX).
                        let inc = hot.step;
                        hot.state.seq = seq;
                        hot.state.degradation = hot.state.degradation.saturating_add(inc);
                        SortEntry {
                            primary: e.primary.saturating_add(inc),
                            seq: seq as u32,
                            ..e
                        }
                    } else {
                        let (pe, hot) = pes.both_mut(e.slot);
                        policy::on_selected(&pe.policy(), &mut hot.state, seq);
                        high_round |= hot.state.round >= ROUND_LIMIT;
                        SortEntry::of(pe, &hot.state, e.slot)
                    };
                    #[cfg(debug_assertions)]
                    {
                        debug_assert_eq!(*pes.state(e.slot), expected);
                        debug_assert!(moved == entry_of(pes, e.slot));
                    }
                    set.replace_selected(&e, moved, cold);
                }
                if high_round {
                    rebase_rounds(set, (&mut pool.stale, pidx), pes);
                }
            }
            Selection::Uniform => {
                let picks = n.min(pool.len());
                let log = &pool.log;
                scratch.clear();
                if picks > 32 || 2 * picks >= pool.len() {
                    // Many of the pool: a partial Fisher-Yates shuffle of the live places.
                    scratch.extend(pool.members());
                    for i in 0..picks {
                        let j = i + (rng.next_u64() % (scratch.len() - i) as u64) as usize;
                        scratch.swap(i, j);
                        out.push(PeRef(scratch[i].1));
                    }
                } else {
                    // A few: uniform draws over the log, redrawn on a tombstone (at most half of
                    // the log, plus a few) or a PE already chosen.
                    while out.len() < picks {
                        let p = (rng.next_u64() % log.len() as u64) as usize;
                        let slot = log[p];
                        if slot != TOMB && !out.iter().any(|r| r.0 == slot) {
                            out.push(PeRef(slot));
                        }
                    }
                }
                for r in out.iter().take(max_increment) {
                    let (pe, hot) = pes.both_mut(r.0);
                    policy::on_selected(&pe.policy(), &mut hot.state, pool.next_seq);
                    pool.next_seq += 1;
                }
            }
            Selection::ValueTree(tree) => {
                // Without replacement: a draw that hits an already chosen PE is repeated
                // (exactly the conditional distribution); after a few misses in a row the chosen
                // PEs are taken out of the tree instead, which also ends the search when only
                // they carry weight.
                // The first draw of each of the first BATCH picks is made up front and searched
                // in lockstep (`find_many`): independent of the other picks, so a rejected one
                // is simply redrawn as before and the distribution is unchanged.
                const BATCH: usize = 8;
                scratch.clear();
                let mut excluded = false;
                let members = &pool.log;
                let picks = n.min(pool.live as usize);
                // Small trees are cache-resident: there the plain sequential search is cheaper.
                let batched = if members.len() >= 1 << 12 {
                    picks.min(BATCH)
                } else {
                    0
                };
                let mut first_try = [0usize; BATCH];
                let total = tree.total();
                if total > 0 && batched > 0 {
                    let mut rs = [0u64; BATCH];
                    for r in &mut rs[..batched] {
                        *r = rng.next_u64() % total;
                    }
                    tree.find_many(&mut rs[..batched], &mut first_try[..batched]);
                }
                'picks: for (pick, &batch_pos) in first_try
                    .iter()
                    .chain(std::iter::repeat(&0))
                    .take(picks)
                    .enumerate()
                {
                    let mut misses = 0;
                    let pos = loop {
                        let total = tree.total();
                        if total == 0 {
                            break 'picks;
                        }
                        let pos = if misses == 0 && pick < batched && !excluded {
                            batch_pos
                        } else {
                            tree.find(rng.next_u64() % total)
                        };
                        if excluded || !scratch.iter().any(|(p, _)| *p == pos) {
                            break pos;
                        }
                        misses += 1;
                        if misses == 4 {
                            for &(p, _) in scratch.iter() {
                                tree.set(p, 0);
                            }
                            excluded = true;
                        }
                    };
                    scratch.push((pos, tree.get(pos)));
                    if excluded {
                        tree.set(pos, 0);
                    }
                    out.push(PeRef(members[pos]));
                }
                if excluded {
                    for &(pos, value) in scratch.iter() {
                        tree.set(pos, value);
                    }
                }
                for r in out.iter().take(max_increment) {
                    let (pe, hot) = pes.both_mut(r.0);
                    policy::on_selected(&pe.policy(), &mut hot.state, pool.next_seq);
                    pool.next_seq += 1;
                    tree.set(
                        pe.pos as usize,
                        policy::weight_value(&pe.policy(), &hot.state),
                    );
                }
            }
        }
        Ok(())
    }

    /// Handle resolution: up to `n` PEs chosen by the pool's policy, best first.
    pub fn handle_resolution(
        &mut self,
        handle: &PoolHandle,
        n: usize,
    ) -> Result<Vec<&PoolElement>, HandlespaceError> {
        let mut refs = Vec::with_capacity(n.min(128));
        self.select_into(handle, n, &mut refs)?;
        Ok(refs.into_iter().map(|r| self.pe(r)).collect())
    }

    /// Counts an Endpoint Unreachable report; at `max_bad_pe_reports` the PE is removed.
    pub fn report_unreachable(&mut self, handle: &PoolHandle, id: PeId) -> UnreachableOutcome {
        let Some(slot) = self.lookup(handle, id) else {
            return UnreachableOutcome::Unknown;
        };
        let pe = pe_mut(&mut self.pes, slot);
        pe.unreachable_reports = pe.unreachable_reports.saturating_add(1);
        let reports = pe.unreachable_reports();
        if reports >= self.config.max_bad_pe_reports {
            UnreachableOutcome::Removed(self.remove_slot(slot))
        } else {
            UnreachableOutcome::Counted(reports)
        }
    }

    /// The earliest expiry time of any PE (the next timer to arm), O(log n).
    pub fn next_expiry(&self) -> Option<Micros> {
        self.expiry.first().map(|e| e.0)
    }

    /// Removes and returns one PE whose expiry is ≤ `now` (call until `None`).
    pub fn pop_expired(&mut self, now: Micros) -> Option<(PoolHandle, PoolElement)> {
        let (at, slot) = self.expiry.first()?;
        if at > now {
            return None;
        }
        let handle = self.pool_handle_of(self.pe(PeRef(slot))).clone();
        Some((handle, self.remove_slot(slot)))
    }

    /// Re-arms a PE's expiry (e.g. a registrar's keep-alive supervision, a refreshed cache
    /// entry). False if there is no such PE.
    pub fn set_expiry(&mut self, handle: &PoolHandle, id: PeId, at: Micros) -> bool {
        let Some(slot) = self.lookup(handle, id) else {
            return false;
        };
        let pe = pe_mut(&mut self.pes, slot);
        if pe.expiry != at {
            self.expiry.rearm(pe.expiry, at, slot);
            pe.expiry = at;
            let pes = &self.pes;
            self.expiry.clean(|at, s| pes.is_current(s, at));
        }
        true
    }

    /// The handlespace checksum over all PEs (hsdump "Handlespace=").
    pub fn checksum(&self) -> u16 {
        self.checksum.value()
    }

    /// The ownership checksum of a registrar: over the PEs whose home it is (ENRP Presence).
    pub fn ownership_checksum(&self, owner: RegistrarId) -> u16 {
        self.owners
            .get(owner)
            .map_or(HandlespaceChecksum::new(), |o| o.checksum)
            .value()
    }

    /// Number of PEs whose home is `owner`.
    pub fn owned_count(&self, owner: RegistrarId) -> usize {
        self.owners.get(owner).map_or(0, |o| o.count)
    }

    /// Registrars that own at least one PE.
    pub fn owners(&self) -> impl Iterator<Item = RegistrarId> + '_ {
        self.owners.ids()
    }

    /// The PEs whose home is `owner`, in (pool handle, insertion) order.
    pub fn owned_by(
        &self,
        owner: RegistrarId,
    ) -> impl Iterator<Item = (&PoolHandle, &PoolElement)> + '_ {
        self.owners.get(owner).into_iter().flat_map(move |o| {
            o.pools.iter().flat_map(move |(h, &pidx)| {
                let pool = self.pools[pidx as usize].as_ref().expect("live pool");
                pool.members()
                    .map(move |(_, slot)| (h, self.pe(PeRef(slot))))
                    .filter(move |(_, pe)| pe.home == owner)
            })
        })
    }

    /// Makes `home` the home registrar of a PE (takeover, home change). False if unknown.
    pub fn set_home(&mut self, handle: &PoolHandle, id: PeId, home: RegistrarId) -> bool {
        let Some(slot) = self.lookup(handle, id) else {
            return false;
        };
        let pe = pe_mut(&mut self.pes, slot);
        if pe.home != home {
            let pool = pool_mut(&mut self.pools, pe.pool);
            let partial = pe_sum_of(pool.handle_sum, id);
            self.owners
                .remove(&mut pool.owners, &pool.handle, pe.home, partial);
            self.owners
                .add(&mut pool.owners, &pool.handle, pe.pool, home, partial);
            pe.home = home;
        }
        true
    }

    /// Takeover: every PE owned by `from` becomes owned by `to`; returns how many.
    pub fn take_over(&mut self, from: RegistrarId, to: RegistrarId) -> usize {
        if from == to {
            return self.owned_count(from);
        }
        let Some(old) = self.owners.take(from) else {
            return 0;
        };
        self.owners.absorb(to, &old);
        for (h, &pidx) in &old.pools {
            let pool = pool_mut(&mut self.pools, pidx);
            for (_, slot) in pool.members() {
                let pe = pe_mut(&mut self.pes, slot);
                if pe.home == from {
                    pe.home = to;
                }
            }
            self.owners.move_pool(&mut pool.owners, h, pidx, from, to);
        }
        old.count
    }

    /// Removes every PE owned by `owner` (e.g. a dead peer nobody takes over).
    pub fn remove_owned_by(&mut self, owner: RegistrarId) -> Vec<(PoolHandle, PoolElement)> {
        let keys: Vec<(PoolHandle, PeId)> = self
            .owned_by(owner)
            .map(|(h, pe)| (h.clone(), pe.id))
            .collect();
        keys.into_iter()
            .filter_map(|(h, id)| self.deregister(&h, id).map(|pe| (h, pe)))
            .collect()
    }

    /// A page of at most `max` PEs after `after` (from the start if `None`), in
    /// (pool handle, insertion order) order, over the whole handlespace or, with `owner`, over
    /// that registrar's PEs only (ENRP Handle Table Response, W flag). The cursor stays valid
    /// whatever is added or removed in between: every PE present throughout a walk is visited.
    pub fn walk<'a>(
        &'a self,
        after: Option<&WalkCursor>,
        owner: Option<RegistrarId>,
        max: usize,
    ) -> WalkPage<'a> {
        let mut items = Vec::with_capacity(max.min(1024) + 1);
        let mut places = Vec::with_capacity(max.min(1024) + 1);
        let start = after.map_or(Bound::Unbounded, |c| Bound::Included(&c.pool));
        // Where to start in a pool: after the cursor's place in the cursor's own pool.
        let from = |h: &PoolHandle, pool: &Pool| match after {
            Some(c) if c.pool == *h => {
                if c.generation == pool.generation {
                    c.pos as usize + 1
                } else {
                    pool.find(&self.hasher, c.pe)
                        .map_or(0, |slot| self.pe(PeRef(slot)).pos as usize + 1)
                }
            }
            _ => 0,
        };
        let mut visit = |h: &'a PoolHandle, pool: &'a Pool| -> bool {
            for (pos, &slot) in pool.log.iter().enumerate().skip(from(h, pool)) {
                if slot == TOMB {
                    continue;
                }
                let pe = self.pe(PeRef(slot));
                if owner.is_some_and(|o| pe.home != o) {
                    continue;
                }
                items.push((h, pe));
                places.push((pos as u32, pool.generation));
                if items.len() > max {
                    return false;
                }
            }
            true
        };
        match owner {
            None => {
                for (h, &pidx) in self
                    .pool_index
                    .range::<PoolHandle, _>((start, Bound::Unbounded))
                {
                    let pool = self.pools[pidx as usize].as_ref().expect("live pool");
                    if !visit(h, pool) {
                        break;
                    }
                }
            }
            Some(owner) => {
                if let Some(o) = self.owners.get(owner) {
                    for (h, &pidx) in o.pools.range::<PoolHandle, _>((start, Bound::Unbounded)) {
                        let pool = self.pools[pidx as usize].as_ref().expect("live pool");
                        if !visit(h, pool) {
                            break;
                        }
                    }
                }
            }
        }
        let more = items.len() > max;
        items.truncate(max);
        places.truncate(max);
        WalkPage {
            items,
            more,
            places,
        }
    }
}
