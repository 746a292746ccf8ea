//! The library instance behind the classic API: a background thread that owns the association
//! to the home registrar (hunting for one among static and announced registrars), answers its
//! keep-alives, listens for ASAP announces, and carries the API's requests through
//! [`AsapClient`] (the sans-I/O ASAP client). API calls block on a condition variable until
//! their answer arrives; the PU cache is consulted in the caller's thread.

pub mod contact;
pub mod csp;

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub mod session;
pub mod stream;

use parking_lot::{Condvar, Mutex};

use crate::core::asap_client::{
    Answer, AsapClient, ClientConfig, Effects, Operation, RequestError, RequestId,
};
use crate::core::handlespace::Micros;
use crate::core::types::{PeId, PoolHandle, RegistrarId, TransportProtocol};
use crate::core::wire::{self, AsapBody, AsapMessage};
use crate::logging;
use crate::transport::{sctp, Association, Protocol, PPID_ASAP};

/// Settings, from `rspInitialize`'s tags (µs).
#[derive(Clone, Debug)]
pub struct LibraryConfig {
    pub cache_timeout: Micros,
    /// Multicast groups on which registrar announces are received; empty = none.
    pub announce_groups: Vec<SocketAddr>,
    pub announce_timeout: Micros,
    pub connect_max_trials: u32,
    pub connect_timeout: Micros,
    pub request_max_trials: u32,
    pub response_timeout: Micros,
    pub transport: Protocol,
}

impl Default for LibraryConfig {
    fn default() -> Self {
        let group = |a: [u8; 4]| SocketAddr::new(IpAddr::V4(Ipv4Addr::from(a)), 3863);
        LibraryConfig {
            cache_timeout: 5_000_000,
            // The classic group and rsplib 3.x's: a classic program finds both kinds.
            announce_groups: vec![group([239, 0, 0, 1]), group([239, 0, 0, 50])],
            announce_timeout: 5_000_000,
            connect_max_trials: 3,
            connect_timeout: 1_500_000,
            request_max_trials: 1,
            response_timeout: 1_500_000,
            transport: default_transport(),
        }
    }
}

/// A random PE identifier in 1..=0xfffffffe (from the kernel's random source).
pub fn random_pe_id() -> u32 {
    loop {
        let mut b = [0u8; 4];
        // SAFETY: getrandom fills the buffer.
        let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), 4, 0) };
        let id = if n == 4 {
            u32::from_ne_bytes(b)
        } else {
            (logging::wall_micros() as u32) ^ std::process::id().rotate_left(16)
        };
        if id != 0 && id != u32::MAX {
            return id;
        }
    }
}

/// SCTP where the kernel has it, else TCP; `RSPLIB_TRANSPORT=tcp|sctp` forces one.
pub fn default_transport() -> Protocol {
    match std::env::var("RSPLIB_TRANSPORT").as_deref() {
        Ok("tcp") => Protocol::Tcp,
        Ok("sctp") => Protocol::Sctp,
        _ if sctp::available() => Protocol::Sctp,
        _ => Protocol::Tcp,
    }
}

/// A known registrar.
#[derive(Clone, Debug)]
struct RegistrarEntry {
    addrs: Vec<SocketAddr>,
    /// Learned from an announce: its id and when the entry expires.
    announced: Option<(RegistrarId, Micros)>,
}

enum Job {
    Op(RequestId, Operation),
    Unreachable(RequestId, PoolHandle, PeId),
}

struct Inner {
    client: AsapClient,
    jobs: VecDeque<Job>,
    results: HashMap<RequestId, Result<Answer, RequestError>>,
    next_id: RequestId,
    registrars: Vec<RegistrarEntry>,
    /// Index of the registrar the last association went to (the hunt starts after it).
    last_registrar: usize,
    shutdown: bool,
}

struct Shared {
    cfg: LibraryConfig,
    start: Instant,
    inner: Mutex<Inner>,
    answered: Condvar,
    wake: Arc<OwnedFd>,
}

impl Shared {
    fn now(&self) -> Micros {
        self.start.elapsed().as_micros() as Micros
    }

    fn wake_thread(&self) {
        let one = 1u64;
        // SAFETY: writing an 8-byte counter increment to our own eventfd.
        unsafe {
            libc::write(self.wake.as_raw_fd(), (&one as *const u64).cast(), 8);
        }
    }
}

/// The library instance.
pub struct Library {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Library {
    /// Starts the instance (and its thread).
    pub fn start(cfg: LibraryConfig) -> io::Result<Library> {
        // An eventfd wakes the thread (unlike a pipe it cannot raise SIGPIPE once the thread
        // has gone).
        // SAFETY: eventfd returns a fresh descriptor we then own.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is fresh and ours.
        let wake = Arc::new(unsafe { OwnedFd::from_raw_fd(fd) });
        let seed = logging::wall_micros() ^ u64::from(std::process::id()) << 40;
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                client: AsapClient::new(
                    ClientConfig {
                        response_timeout: cfg.response_timeout,
                        cache_timeout: cfg.cache_timeout,
                    },
                    seed,
                ),
                jobs: VecDeque::new(),
                results: HashMap::new(),
                next_id: 1,
                registrars: Vec::new(),
                last_registrar: 0,
                shutdown: false,
            }),
            cfg,
            start: Instant::now(),
            answered: Condvar::new(),
            wake: wake.clone(),
        });
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("rsplib".into())
            .spawn(move || Worker::new(s, wake).run())?;
        Ok(Library {
            shared,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Adds a static registrar (all addresses of one, possibly multihomed, registrar).
    pub fn add_static_registrar(&self, addrs: Vec<SocketAddr>) {
        self.shared.inner.lock().registrars.push(RegistrarEntry {
            addrs,
            announced: None,
        });
    }

    /// The longest an API call waits: the whole hunt plus every response timeout, and slack.
    fn call_deadline(&self) -> Duration {
        let c = &self.shared.cfg;
        let us = c.connect_timeout * u64::from(c.connect_max_trials.max(1))
            + c.response_timeout * u64::from(c.request_max_trials.max(1))
            + 2_000_000;
        Duration::from_micros(us)
    }

    fn submit(&self, make: impl FnOnce(RequestId) -> Job) -> Result<Answer, RequestError> {
        let mut inner = self.shared.inner.lock();
        let id = inner.next_id;
        inner.next_id += 1;
        inner.jobs.push_back(make(id));
        self.shared.wake_thread();
        let deadline = Instant::now() + self.call_deadline();
        loop {
            if let Some(r) = inner.results.remove(&id) {
                return r;
            }
            if self
                .shared
                .answered
                .wait_until(&mut inner, deadline)
                .timed_out()
            {
                return inner
                    .results
                    .remove(&id)
                    .unwrap_or(Err(RequestError::Timeout));
            }
        }
    }

    /// Runs one request, re-sending it up to `request_max_trials` times after lost
    /// associations or timeouts.
    fn operation(&self, op: Operation) -> Result<Answer, RequestError> {
        let trials = self.shared.cfg.request_max_trials.max(1);
        let mut last = Err(RequestError::NoRegistrar);
        for _ in 0..trials {
            last = self.submit(|id| Job::Op(id, op.clone()));
            match &last {
                Err(RequestError::Timeout) | Err(RequestError::Disconnected) => continue,
                _ => return last,
            }
        }
        last
    }

    /// Registers (or re-registers) a PE; returns its id.
    pub fn register(
        &self,
        pool: PoolHandle,
        element: wire::PoolElement,
    ) -> Result<PeId, RequestError> {
        match self.operation(Operation::Register { pool, element })? {
            Answer::Registered(id) => Ok(id),
            _ => Err(RequestError::Disconnected),
        }
    }

    /// Deregisters a PE.
    pub fn deregister(&self, pool: PoolHandle, pe: PeId) -> Result<(), RequestError> {
        self.operation(Operation::Deregister { pool, pe })
            .map(|_| ())
    }

    /// Resolves a pool and selects one PE by its policy (cache first).
    pub fn resolve(&self, pool: &PoolHandle) -> Result<Option<wire::PoolElement>, RequestError> {
        let now = self.shared.now();
        if let Some(pe) = self.shared.inner.lock().client.cache_select(now, pool) {
            return Ok(Some(pe));
        }
        // Without a cache, ask for exactly one PE (rsplib sends the option only then).
        let no_cache = self.shared.cfg.cache_timeout == 0;
        let items = no_cache.then_some(1);
        match self.operation(Operation::Resolve {
            pool: pool.clone(),
            items,
        }) {
            Ok(Answer::Resolved(pes)) => {
                if no_cache {
                    return Ok(pes.into_iter().next());
                }
                let now = self.shared.now();
                let selected = self.shared.inner.lock().client.cache_select(now, pool);
                Ok(selected.or_else(|| pes.into_iter().next()))
            }
            Ok(_) => Err(RequestError::Disconnected),
            Err(RequestError::Refused(c)) if c == wire::cause::UNKNOWN_POOL_HANDLE => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// True if handle resolutions are cached (`TAG_RspLib_CacheElementTimeout` > 0).
    pub fn caches(&self) -> bool {
        self.shared.cfg.cache_timeout > 0
    }

    /// Asks the registrar (never the cache) for up to `items` PEs of a pool, in the order its
    /// policy selects them (a registrar caps the number: rsplib's default is 3).
    pub fn resolve_fresh(
        &self,
        pool: &PoolHandle,
        items: u32,
    ) -> Result<Vec<wire::PoolElement>, RequestError> {
        match self.operation(Operation::Resolve {
            pool: pool.clone(),
            items: Some(items),
        }) {
            Ok(Answer::Resolved(pes)) => Ok(pes),
            Ok(_) => Err(RequestError::Disconnected),
            Err(RequestError::Refused(c)) if c == wire::cause::UNKNOWN_POOL_HANDLE => {
                Ok(Vec::new())
            }
            Err(e) => Err(e),
        }
    }

    /// Drops a PE from the cache and reports it unreachable to the registrar.
    pub fn report_failure(&self, pool: PoolHandle, pe: PeId) -> Result<(), RequestError> {
        self.shared.inner.lock().client.cache_remove(&pool, pe);
        self.submit(|id| Job::Unreachable(id, pool, pe)).map(|_| ())
    }

    /// Drops a PE from the cache only (nothing is reported): the next selection passes it by
    /// until the cache is refreshed (contact.rs: a PE on another host, or a busy one).
    pub fn forget_cached(&self, pool: &PoolHandle, pe: PeId) {
        self.shared.inner.lock().client.cache_remove(pool, pe);
    }

    /// PEs registered through this instance.
    pub fn own_pes(&self) -> Vec<(PoolHandle, PeId)> {
        self.shared.inner.lock().client.own_pes().cloned().collect()
    }

    /// Deregisters what is still registered (best effort) and stops the thread.
    pub fn shutdown(&self) {
        for (pool, pe) in self.own_pes() {
            let _ = self.submit(|id| Job::Op(id, Operation::Deregister { pool, pe }));
        }
        self.stop();
    }

    fn stop(&self) {
        self.shared.inner.lock().shutdown = true;
        self.shared.wake_thread();
        let thread = self.thread.lock().take();
        if let Some(t) = thread {
            let _ = t.join();
        }
    }
}

impl Drop for Library {
    fn drop(&mut self) {
        self.stop();
    }
}

// ---------------------------------------------------------------------------------- thread

struct Worker {
    shared: Arc<Shared>,
    wake: Arc<OwnedFd>,
    assoc: Option<Association>,
    announce: Option<UdpSocket>,
    announce_joined: bool,
    buf: Vec<u8>,
}

fn poll_fds(fds: &mut [libc::pollfd], timeout: Duration) {
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: fds is a valid slice of pollfd.
    unsafe {
        libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms);
    }
}

impl Worker {
    fn new(shared: Arc<Shared>, wake: Arc<OwnedFd>) -> Worker {
        Worker {
            shared,
            wake,
            assoc: None,
            announce: None,
            announce_joined: false,
            buf: vec![0u8; 65536],
        }
    }

    fn run(mut self) {
        loop {
            {
                let inner = self.shared.inner.lock();
                if inner.shutdown {
                    return;
                }
            }
            self.run_jobs();
            let now = self.shared.now();
            let fx = self.shared.inner.lock().client.poll(now);
            self.apply(fx);

            let next = self.shared.inner.lock().client.next_deadline();
            let timeout = next
                .map(|d| Duration::from_micros(d.saturating_sub(self.shared.now())))
                .unwrap_or(Duration::from_millis(500))
                .min(Duration::from_millis(500));
            let mut fds = vec![libc::pollfd {
                fd: self.wake.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            }];
            if let Some(a) = &self.assoc {
                fds.push(libc::pollfd {
                    fd: a.raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                });
            }
            if let Some(u) = &self.announce {
                fds.push(libc::pollfd {
                    fd: u.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                });
            }
            poll_fds(&mut fds, timeout);
            let mut counter = 0u64;
            // SAFETY: reading the 8-byte counter of our own non-blocking eventfd.
            unsafe {
                libc::read(self.wake.as_raw_fd(), (&mut counter as *mut u64).cast(), 8);
            }
            self.read_registrar();
            self.read_announces();
        }
    }

    /// Sends every queued job (hunting for a registrar first if needed).
    fn run_jobs(&mut self) {
        loop {
            let job = self.shared.inner.lock().jobs.pop_front();
            let Some(job) = job else { return };
            if self.assoc.is_none() {
                self.assoc = self.hunt();
            }
            let id = match &job {
                Job::Op(id, _) | Job::Unreachable(id, _, _) => *id,
            };
            if self.assoc.is_none() {
                self.finish(id, Err(RequestError::NoRegistrar));
                continue;
            }
            let now = self.shared.now();
            let bytes = {
                let mut inner = self.shared.inner.lock();
                match job {
                    Job::Op(id, op) => {
                        let op = self.fill_wildcard(op);
                        inner.client.request(now, id, op).map(|b| (b, false))
                    }
                    Job::Unreachable(_, pool, pe) => {
                        inner.client.unreachable(&pool, pe).map(|b| (b, true))
                    }
                }
            };
            match bytes {
                Err(e) => self.finish(id, Err(e)),
                Ok((b, answered_now)) => {
                    let sent = self.send(&b);
                    if answered_now {
                        self.finish(
                            id,
                            if sent {
                                Ok(Answer::Deregistered)
                            } else {
                                Err(RequestError::SendFailed)
                            },
                        );
                    } else if !sent {
                        let fx = self.shared.inner.lock().client.disconnected();
                        self.apply(fx);
                    }
                }
            }
        }
    }

    /// A PE that registered the wildcard address gets the address it reaches the registrar
    /// from (its real address on the registrar's side).
    fn fill_wildcard(&self, op: Operation) -> Operation {
        match op {
            Operation::Register { pool, mut element } => {
                let local = self.assoc.as_ref().and_then(|a| a.local_addr().ok());
                if let Some(local) = local {
                    let addrs = &mut element.user_transport.addresses;
                    if addrs.iter().all(|a| a.is_unspecified()) {
                        *addrs = vec![local.ip()];
                    }
                }
                Operation::Register { pool, element }
            }
            other => other,
        }
    }

    fn send(&mut self, bytes: &[u8]) -> bool {
        match self.assoc.as_mut().map(|a| a.send(PPID_ASAP, bytes)) {
            Some(Ok(())) => true,
            Some(Err(e)) => {
                logging::log(
                    logging::WARNING,
                    &format!("rsplib: send to the registrar failed: {e}"),
                );
                self.assoc = None;
                false
            }
            None => false,
        }
    }

    fn finish(&self, id: RequestId, result: Result<Answer, RequestError>) {
        self.shared.inner.lock().results.insert(id, result);
        self.shared.answered.notify_all();
    }

    fn apply(&mut self, fx: Effects) {
        for b in &fx.send {
            self.send(b);
        }
        if fx.drop_association && self.assoc.is_some() {
            logging::log(
                logging::WARNING,
                "rsplib: dropping the registrar association",
            );
            self.assoc = None;
        }
        if !fx.done.is_empty() {
            let mut inner = self.shared.inner.lock();
            for (id, r) in fx.done {
                inner.results.insert(id, r);
            }
            drop(inner);
            self.shared.answered.notify_all();
        }
    }

    fn read_registrar(&mut self) {
        loop {
            let Some(a) = self.assoc.as_mut() else { return };
            match a.recv(Some(Duration::ZERO)) {
                Ok(Some((ppid, data))) => {
                    if ppid != PPID_ASAP {
                        continue;
                    }
                    let now = self.shared.now();
                    let fx = self.shared.inner.lock().client.received(now, &data);
                    self.apply(fx);
                }
                Ok(None) => return,
                Err(e) => {
                    logging::log(
                        logging::WARNING,
                        &format!("rsplib: registrar association lost: {e}"),
                    );
                    self.assoc = None;
                    let fx = self.shared.inner.lock().client.disconnected();
                    self.apply(fx);
                    return;
                }
            }
        }
    }

    /// The registrars to try, starting after the last one used, announced ones still valid.
    fn candidates(&self) -> Vec<Vec<SocketAddr>> {
        let now = self.shared.now();
        let mut inner = self.shared.inner.lock();
        inner
            .registrars
            .retain(|r| r.announced.is_none_or(|(_, exp)| exp > now));
        let n = inner.registrars.len();
        (0..n)
            .map(|i| {
                inner.registrars[(inner.last_registrar + 1 + i) % n]
                    .addrs
                    .clone()
            })
            .collect()
    }

    /// Registrar hunt: up to `connect_max_trials` rounds over the known registrars.
    fn hunt(&mut self) -> Option<Association> {
        let cfg = self.shared.cfg.clone();
        let round = Duration::from_micros(cfg.connect_timeout);
        let trials = cfg.connect_max_trials.max(1);
        for trial in 0..trials {
            let started = Instant::now();
            let candidates = self.candidates();
            if candidates.is_empty() {
                self.join_announces();
            }
            for addrs in &candidates {
                match Association::connect(cfg.transport, addrs, round, PPID_ASAP) {
                    Ok(a) => {
                        logging::log(
                            logging::VERBOSE,
                            &format!(
                                "rsplib: connected to registrar {addrs:?} over {}",
                                cfg.transport.name()
                            ),
                        );
                        let mut inner = self.shared.inner.lock();
                        if let Some(i) = inner.registrars.iter().position(|r| &r.addrs == addrs) {
                            inner.last_registrar = i;
                        }
                        return Some(a);
                    }
                    Err(e) => logging::log(
                        logging::VERBOSE,
                        &format!("rsplib: registrar {addrs:?} not reachable: {e}"),
                    ),
                }
            }
            // A registrar that refused at once may just not be up yet, and announces may bring
            // a new one: as the original, a round lasts the connect timeout (not after the last).
            if trial + 1 < trials {
                let deadline = started + round;
                let known = candidates.len();
                while Instant::now() < deadline && !self.shared.inner.lock().shutdown {
                    let step = deadline
                        .saturating_duration_since(Instant::now())
                        .min(Duration::from_millis(50));
                    match &self.announce {
                        Some(u) => {
                            let mut fds = [libc::pollfd {
                                fd: u.as_raw_fd(),
                                events: libc::POLLIN,
                                revents: 0,
                            }];
                            poll_fds(&mut fds, step);
                            self.read_announces();
                            if self.candidates().len() > known {
                                break;
                            }
                        }
                        None => std::thread::sleep(step),
                    }
                }
            }
        }
        logging::log(logging::WARNING, "rsplib: no registrar reachable");
        None
    }

    /// Joins the announce groups (once, and only when a hunt has no registrar to try, so that
    /// programs with static registrars never send IGMP; `RSPLIB_ANNOUNCE=off` disables it).
    fn join_announces(&mut self) {
        if self.announce_joined || self.shared.cfg.announce_groups.is_empty() {
            return;
        }
        self.announce_joined = true;
        if std::env::var("RSPLIB_ANNOUNCE").as_deref() == Ok("off") {
            return;
        }
        let port = self.shared.cfg.announce_groups[0].port();
        let socket = (|| -> io::Result<UdpSocket> {
            let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)?;
            s.set_reuse_address(true)?;
            s.set_reuse_port(true)?;
            s.bind(&SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port).into())?;
            for g in &self.shared.cfg.announce_groups {
                if let IpAddr::V4(ip) = g.ip() {
                    let _ = s.join_multicast_v4(&ip, &Ipv4Addr::UNSPECIFIED);
                }
            }
            s.set_nonblocking(true)?;
            Ok(s.into())
        })();
        match socket {
            Ok(s) => self.announce = Some(s),
            Err(e) => logging::log(
                logging::WARNING,
                &format!("rsplib: cannot listen for announces: {e}"),
            ),
        }
    }

    fn read_announces(&mut self) {
        loop {
            let Some(u) = &self.announce else { return };
            let (n, from) = match u.recv_from(&mut self.buf) {
                Ok(r) => r,
                Err(_) => return,
            };
            let Ok(d) = AsapMessage::decode(&self.buf[..n]) else {
                continue;
            };
            let AsapBody::ServerAnnounce {
                server_id,
                transports,
            } = d.message.body
            else {
                continue;
            };
            let want = match self.shared.cfg.transport {
                Protocol::Sctp => TransportProtocol::Sctp,
                Protocol::Tcp => TransportProtocol::Tcp,
            };
            let addrs: Vec<SocketAddr> = match transports.iter().find(|t| t.protocol == want) {
                Some(t) => t
                    .addresses
                    .iter()
                    .map(|a| SocketAddr::new(*a, t.port))
                    .collect(),
                None => vec![from],
            };
            let expiry = self.shared.now() + self.shared.cfg.announce_timeout;
            let mut inner = self.shared.inner.lock();
            match inner
                .registrars
                .iter_mut()
                .find(|r| r.announced.map(|(id, _)| id) == Some(server_id))
            {
                Some(r) => {
                    r.addrs = addrs;
                    r.announced = Some((server_id, expiry));
                }
                None => inner.registrars.push(RegistrarEntry {
                    addrs,
                    announced: Some((server_id, expiry)),
                }),
            }
        }
    }
}
