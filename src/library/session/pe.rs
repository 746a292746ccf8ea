//! Enhanced Mode pool elements: a listening socket kept registered by a thread, sessions
//! accepted from it, and (handoff.rs) draining them to other PEs.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use super::conn::{Conn, Link, Wire};
use super::handoff::DonorSide;
use super::{ReadOutcome, Session, SessionOptions};
use crate::core::types::{
    PeId, PolicyInfo, PoolHandle, TransportAddress, TransportProtocol,
    TRANSPORT_USE_DATA_PLUS_CONTROL,
};
use crate::core::wire;
use crate::library::Library;
use crate::logging;
use crate::transport::sctp;

/// Options of an Enhanced Mode PE (`rspCreatePoolElement`'s tags).
#[derive(Clone, Debug)]
pub struct PeOptions {
    pub identifier: u32,
    pub domain: i32,
    pub socket_type: i32,
    pub protocol: TransportProtocol,
    pub local_port: u16,
    pub reregistration_interval: Duration,
    pub registration_life_ms: u32,
    pub policy: PolicyInfo,
    pub control_channel: bool,
}

/// What a PE shares with its registration thread and its sessions.
pub(super) struct PeShared {
    pub pool: PoolHandle,
    pub id: Arc<Mutex<u32>>,
    /// The policy registered (its load can change: `set_load`).
    pub policy: Mutex<PolicyInfo>,
    pub sessions: AtomicUsize,
    /// Offers are refused while `sessions` is at least this (usize::MAX: no limit).
    pub handoff_limit: AtomicUsize,
    /// Sessions handed off by this PE so far.
    pub handed_off: AtomicUsize,
    /// The accepted sessions' handoff state (dead entries pruned as sessions end).
    pub live: Mutex<Vec<Weak<DonorSide>>>,
    /// Notified when a session ends.
    pub session_gone: Condvar,
    /// Set once the PE stopped registering (delete or drain); the thread waits on `wake`.
    pub stop: Mutex<bool>,
    pub wake: Condvar,
}

impl PeShared {
    pub fn identifier(&self) -> u32 {
        *self.id.lock()
    }

    /// A session of this PE ends: it no longer counts (before its donor side is dropped).
    pub fn session_ending(&self) {
        self.sessions.fetch_sub(1, Ordering::Relaxed);
    }

    /// A session of this PE ended (counted out, its donor side dropped): wakes a drain.
    pub fn session_ended(&self) {
        let mut live = self.live.lock();
        live.retain(|w| w.strong_count() > 0);
        self.session_gone.notify_all();
    }
}

/// An Enhanced Mode pool element: its listening socket, kept registered by a thread.
pub struct EnhancedPe {
    pub(super) lib: Arc<Library>,
    listener: OwnedFd,
    opts: PeOptions,
    pub(super) shared: Arc<PeShared>,
    pub(super) thread: Mutex<Option<JoinHandle<()>>>,
}

impl EnhancedPe {
    /// Creates the socket, registers it (a failed first registration is retried by the
    /// re-registration thread), starts the re-registration thread.
    pub fn create(lib: Arc<Library>, pool: PoolHandle, opts: PeOptions) -> io::Result<EnhancedPe> {
        let proto = match opts.protocol {
            TransportProtocol::Sctp => sctp::IPPROTO_SCTP,
            TransportProtocol::Tcp => libc::IPPROTO_TCP,
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "only SCTP and TCP pool elements",
                ))
            }
        };
        // SAFETY: a fresh socket we own from here on.
        let raw =
            unsafe { libc::socket(opts.domain, opts.socket_type | libc::SOCK_CLOEXEC, proto) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: raw is a fresh descriptor.
        let listener = unsafe { OwnedFd::from_raw_fd(raw) };
        let sock = socket2::SockRef::from(&listener);
        let _ = sock.set_reuse_address(true);
        if opts.protocol == TransportProtocol::Sctp {
            sctp::configure(&listener)?;
        }
        let any: IpAddr = if opts.domain == libc::AF_INET6 {
            let _ = sock.set_only_v6(false);
            Ipv6Addr::UNSPECIFIED.into()
        } else {
            Ipv4Addr::UNSPECIFIED.into()
        };
        sock.bind(&SocketAddr::new(any, opts.local_port).into())?;
        sock.listen(128)?;
        let shared = Arc::new(PeShared {
            pool,
            id: Arc::new(Mutex::new(opts.identifier)),
            policy: Mutex::new(opts.policy),
            sessions: AtomicUsize::new(0),
            handoff_limit: AtomicUsize::new(usize::MAX),
            handed_off: AtomicUsize::new(0),
            live: Mutex::new(Vec::new()),
            session_gone: Condvar::new(),
            stop: Mutex::new(false),
            wake: Condvar::new(),
        });
        let pe = EnhancedPe {
            lib,
            listener,
            opts,
            shared,
            thread: Mutex::new(None),
        };
        pe.register_once();
        let (lib, fd, opts, shared) = (
            pe.lib.clone(),
            pe.listener.as_raw_fd(),
            pe.opts.clone(),
            pe.shared.clone(),
        );
        let thread = std::thread::Builder::new()
            .name("rsplib-pe".into())
            .spawn(move || loop {
                {
                    let mut stop = shared.stop.lock();
                    if !*stop {
                        shared
                            .wake
                            .wait_for(&mut stop, opts.reregistration_interval);
                    }
                    if *stop {
                        return;
                    }
                }
                register(&lib, &shared, fd, &opts);
            })?;
        *pe.thread.lock() = Some(thread);
        Ok(pe)
    }

    fn register_once(&self) {
        register(
            &self.lib,
            &self.shared,
            self.listener.as_raw_fd(),
            &self.opts,
        );
    }

    /// Sets the load the PE registers with (the Load value of its policy: 0 = idle,
    /// 0xffffffff = full; load-based policies such as Least Used choose by it) and registers
    /// again at once, so that the registrar's next selections see it.
    pub fn set_load(&self, load: u32) {
        self.shared
            .policy
            .lock()
            .set(crate::core::types::PolicyValue::Load, load);
        if !*self.shared.stop.lock() {
            self.register_once();
        }
    }

    /// The pool this PE is registered in.
    pub fn pool(&self) -> &PoolHandle {
        &self.shared.pool
    }

    /// The library instance this PE registers through.
    pub fn library(&self) -> &Arc<Library> {
        &self.lib
    }

    pub fn listener_fd(&self) -> RawFd {
        self.listener.as_raw_fd()
    }

    pub fn identifier(&self) -> u32 {
        self.shared.identifier()
    }

    /// Sessions accepted and not yet deleted.
    pub fn sessions(&self) -> usize {
        self.shared.sessions.load(Ordering::Relaxed)
    }

    /// Sessions this PE has handed off to other PEs.
    pub fn handed_off(&self) -> usize {
        self.shared.handed_off.load(Ordering::Relaxed)
    }

    /// Receiver side: refuse handoff offers while this PE has `limit` sessions or more
    /// (`None`: no limit; `Some(0)`: refuse every offer).
    pub fn set_handoff_limit(&self, limit: Option<usize>) {
        self.shared
            .handoff_limit
            .store(limit.unwrap_or(usize::MAX), Ordering::Relaxed);
    }

    fn accept_one(&self) -> io::Result<Session> {
        // SAFETY: accept on our listening socket.
        let raw = unsafe {
            libc::accept4(
                self.listener.as_raw_fd(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: raw is a fresh descriptor.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let wire = match (self.opts.protocol, self.opts.control_channel) {
            (TransportProtocol::Sctp, _) => {
                let _ = sctp::configure(&fd);
                Wire::Sctp
            }
            (_, true) => Wire::Framed,
            _ => Wire::Raw,
        };
        if self.opts.protocol == TransportProtocol::Tcp {
            let _ = socket2::SockRef::from(&fd).set_tcp_nodelay(true);
        }
        let link = Link::new(fd, wire);
        let donor = DonorSide::new(link.clone());
        self.shared.sessions.fetch_add(1, Ordering::Relaxed);
        self.shared.live.lock().push(Arc::downgrade(&donor));
        let mut session = Session::new(
            self.lib.clone(),
            None,
            SessionOptions::default(),
            Some(Conn::with_link(link)),
        );
        session.owner = Some(self.shared.clone());
        session.donor = Some(donor);
        Ok(session)
    }

    /// Accepts the next session (blocks if none is pending and the socket blocks). A
    /// connection that only brought a handoff offer is answered here and not returned, unless
    /// no other connection is pending: then it is returned already closed (its first read
    /// ends it).
    pub fn accept(&self) -> io::Result<Session> {
        loop {
            let mut session = self.accept_one()?;
            if !session.answered_offer_at_accept() {
                return Ok(session);
            }
            let pending = crate::transport::poll_fd(
                self.listener.as_raw_fd(),
                libc::POLLIN,
                Some(Duration::ZERO),
            )
            .unwrap_or(false);
            if !pending {
                return Ok(session);
            }
        }
    }

    /// Stops re-registering and deregisters (once; a drained PE is already deregistered).
    pub(super) fn stop_and_deregister(&self) {
        {
            let mut stop = self.shared.stop.lock();
            if *stop {
                return;
            }
            *stop = true;
        }
        self.shared.wake.notify_all();
        if let Some(t) = self.thread.lock().take() {
            let _ = t.join();
        }
        let id = self.identifier();
        if id != 0 {
            if let Err(e) = self.lib.deregister(self.shared.pool.clone(), PeId(id)) {
                logging::log(
                    logging::WARNING,
                    &format!("rsplib: deregistration of PE 0x{id:08x} failed: {e}"),
                );
            }
        }
    }

    /// Stops re-registering and deregisters.
    pub fn delete(self) {
        self.stop_and_deregister();
    }
}

impl Session {
    /// Just accepted: if the peer's first message, already here, is a handoff offer, answer
    /// it (the session is then closed). True if so.
    fn answered_offer_at_accept(&mut self) -> bool {
        if !self.conn.as_ref().is_some_and(|c| c.link.control_channel()) {
            return false;
        }
        matches!(
            self.read(None, Some(Duration::ZERO), false),
            ReadOutcome::ReadError
        ) && self.offer_answered
    }
}

/// One (re-)registration of an Enhanced Mode PE with the addresses of its socket.
fn register(lib: &Library, pe: &PeShared, fd: RawFd, opts: &PeOptions) {
    let (pool, id) = (&pe.pool, &pe.id);
    let local = match opts.protocol {
        TransportProtocol::Sctp => sctp::local_addrs(&fd).unwrap_or_default(),
        _ => Vec::new(),
    };
    // SAFETY: a borrowed view of our own socket, alive for this call.
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    let sock = socket2::SockRef::from(&borrowed);
    let bound = sock.local_addr().ok().and_then(|a| a.as_socket());
    let port = bound.map(|a| a.port()).unwrap_or(0);
    let mut addrs: Vec<IpAddr> = local
        .iter()
        .map(|a| a.ip())
        .filter(|ip| !ip.is_unspecified())
        .collect();
    if addrs.is_empty() {
        // The wildcard: the library puts in the address the registrar sees us from.
        addrs.push(Ipv4Addr::UNSPECIFIED.into());
    }
    let mut t = TransportAddress::new(opts.protocol, port, addrs);
    if opts.control_channel {
        t.transport_use = TRANSPORT_USE_DATA_PLUS_CONTROL;
    }
    let mut current = *id.lock();
    let chosen = current == 0;
    if chosen {
        current = crate::library::random_pe_id();
    }
    let policy = *pe.policy.lock();
    let mut element = wire::PoolElement::new(PeId(current), t, policy);
    element.registration_life = opts.registration_life_ms;
    match lib.register(pool.clone(), element) {
        Ok(_) => *id.lock() = current,
        Err(e) => logging::log(
            logging::WARNING,
            &format!("rsplib: registration of PE 0x{current:08x} in pool \"{pool}\" failed: {e}"),
        ),
    }
}
