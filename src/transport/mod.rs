//! The transport layer shared by the registrar and the library: one abstraction, two
//! implementations — kernel SCTP (PPID 11 = ASAP, 12 = ENRP, association notifications) and TCP
//! (messages unframed on the same port numbers; the header's length delimits them, see
//! [`framing`]). No message-level logic lives here: it moves whole messages and reports
//! connections coming up and going down.
//!
//! * [`Server`]: the registrar side, driven by a mio event loop. SCTP uses one one-to-many
//!   socket; TCP a listener plus one stream per peer.
//! * [`Association`]: the PE/PU side, one blocking connection with timeouts.

pub mod framing;
pub mod interfaces;
pub mod sctp;

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream as MioTcpStream};
use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};

use framing::Deframer;

pub use crate::core::wire::{PPID_ASAP, PPID_ENRP};

/// Largest ASAP/ENRP message (the header's length field is 16 bits).
pub const MAX_MESSAGE_SIZE: usize = 65535;
/// A TCP peer whose unsent data exceeds this is too slow and gets disconnected.
const MAX_OUTPUT_QUEUE: usize = 4 << 20;

/// The two transports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    Sctp,
    Tcp,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Sctp => "SCTP",
            Protocol::Tcp => "TCP",
        }
    }
}

/// Which transports to use (`-transport=sctp|tcp|both`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Selection {
    /// SCTP where the kernel has it, and TCP (the default).
    Both,
    /// SCTP only; an error where the kernel has none.
    Sctp,
    /// TCP only.
    Tcp,
}

impl Selection {
    /// Parses `sctp`, `tcp`, `both` or `auto`.
    pub fn parse(s: &str) -> Option<Selection> {
        match s {
            "sctp" => Some(Selection::Sctp),
            "tcp" => Some(Selection::Tcp),
            "both" | "auto" => Some(Selection::Both),
            _ => None,
        }
    }

    /// The transports to open, given whether the kernel has SCTP, and a line saying what was
    /// chosen (to be logged). Errors if SCTP is forced but missing.
    pub fn resolve(self, sctp_available: bool) -> Result<(Vec<Protocol>, String), String> {
        match (self, sctp_available) {
            (Selection::Both, true) => Ok((
                vec![Protocol::Sctp, Protocol::Tcp],
                "kernel SCTP and TCP".into(),
            )),
            (Selection::Both, false) => Ok((
                vec![Protocol::Tcp],
                "TCP only: the kernel has no SCTP (automatic fallback)".into(),
            )),
            (Selection::Sctp, true) => Ok((vec![Protocol::Sctp], "SCTP only".into())),
            (Selection::Sctp, false) => {
                Err("SCTP was requested (-transport=sctp) but the kernel has no SCTP".into())
            }
            (Selection::Tcp, _) => Ok((vec![Protocol::Tcp], "TCP only".into())),
        }
    }
}

/// Identifies one association / connection for the lifetime of the process (never reused).
pub type ConnId = u64;

/// Why a connection went away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DownReason {
    /// Orderly close / SCTP shutdown.
    Closed,
    /// Reset, abort, COMM_LOST, I/O error.
    Lost,
    /// The peer sent a byte stream that cannot be cut into messages.
    ProtocolError,
    /// The peer did not read what we sent.
    TooSlow,
}

/// What a [`Server`] reports.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    Up {
        conn: ConnId,
        peer: Vec<SocketAddr>,
    },
    Message {
        conn: ConnId,
        ppid: u32,
        data: Vec<u8>,
    },
    Down {
        conn: ConnId,
        reason: DownReason,
    },
}

static NEXT_TOKEN: AtomicUsize = AtomicUsize::new(1);

fn next_token() -> Token {
    Token(NEXT_TOKEN.fetch_add(1, Ordering::Relaxed))
}

/// The registrar side of one endpoint (e.g. ASAP on port 3863) over one transport.
pub struct Server {
    protocol: Protocol,
    inner: ServerInner,
}

enum ServerInner {
    Sctp(SctpServer),
    Tcp(TcpServer),
}

impl Server {
    /// Binds and listens on `addrs` (several = SCTP multihoming; TCP binds the first).
    /// `ppid` is the protocol this endpoint speaks, implied for every TCP message.
    pub fn bind(
        protocol: Protocol,
        addrs: &[SocketAddr],
        ppid: u32,
        registry: &Registry,
    ) -> io::Result<Server> {
        let inner = match protocol {
            Protocol::Sctp => ServerInner::Sctp(SctpServer::bind(addrs, registry)?),
            Protocol::Tcp => ServerInner::Tcp(TcpServer::bind(addrs, ppid, registry)?),
        };
        Ok(Server { protocol, inner })
    }

    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// The addresses actually bound (with the real port if 0 was asked for).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        match &self.inner {
            ServerInner::Sctp(s) => sctp::local_addrs(&s.fd).unwrap_or_default(),
            ServerInner::Tcp(t) => t.listener.local_addr().into_iter().collect(),
        }
    }

    /// True if `token` belongs to this server.
    pub fn owns(&self, token: Token) -> bool {
        match &self.inner {
            ServerInner::Sctp(s) => s.token == token,
            ServerInner::Tcp(t) => t.listener_token == token || t.conns.contains_key(&token),
        }
    }

    /// Handles readiness of one of this server's tokens, appending what happened to `out`.
    pub fn ready(
        &mut self,
        registry: &Registry,
        token: Token,
        readable: bool,
        writable: bool,
        out: &mut Vec<Event>,
    ) {
        match &mut self.inner {
            ServerInner::Sctp(s) => s.ready(registry, readable, writable, out),
            ServerInner::Tcp(t) => t.ready(registry, token, readable, writable, out),
        }
    }

    /// Queues one message for `conn`. An unknown connection is an error (NotConnected).
    pub fn send(
        &mut self,
        registry: &Registry,
        conn: ConnId,
        ppid: u32,
        data: &[u8],
    ) -> io::Result<()> {
        match &mut self.inner {
            ServerInner::Sctp(s) => s.send(registry, conn, ppid, data),
            ServerInner::Tcp(t) => t.send(registry, conn, data),
        }
    }

    /// Closes (TCP) or aborts (SCTP) a connection. No `Down` event follows.
    pub fn close(&mut self, registry: &Registry, conn: ConnId) {
        match &mut self.inner {
            ServerInner::Sctp(s) => s.close(conn),
            ServerInner::Tcp(t) => t.close(registry, conn),
        }
    }

    /// Number of open connections / associations.
    pub fn connections(&self) -> usize {
        match &self.inner {
            ServerInner::Sctp(s) => s.by_assoc.len(),
            ServerInner::Tcp(t) => t.conns.len(),
        }
    }
}

// ------------------------------------------------------------------------------------ TCP

struct TcpConn {
    stream: MioTcpStream,
    deframer: Deframer,
    output: VecDeque<u8>,
    want_write: bool,
}

struct TcpServer {
    listener: TcpListener,
    listener_token: Token,
    ppid: u32,
    conns: HashMap<Token, TcpConn>,
    buf: Box<[u8]>,
}

impl TcpServer {
    fn bind(addrs: &[SocketAddr], ppid: u32, registry: &Registry) -> io::Result<TcpServer> {
        let addr = *addrs
            .first()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no address to bind"))?;
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )?;
        socket.set_reuse_address(true)?;
        if addr.is_ipv6() {
            socket.set_only_v6(false).ok();
        }
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        socket.listen(1024)?;
        let mut listener = TcpListener::from_std(socket.into());
        let listener_token = next_token();
        registry.register(&mut listener, listener_token, Interest::READABLE)?;
        Ok(TcpServer {
            listener,
            listener_token,
            ppid,
            conns: HashMap::new(),
            buf: vec![0u8; 64 * 1024].into_boxed_slice(),
        })
    }

    fn ready(
        &mut self,
        registry: &Registry,
        token: Token,
        readable: bool,
        writable: bool,
        out: &mut Vec<Event>,
    ) {
        if token == self.listener_token {
            self.accept(registry, out);
            return;
        }
        let mut down = None;
        if let Some(conn) = self.conns.get_mut(&token) {
            if readable {
                down = Self::read(conn, &mut self.buf, self.ppid, token, out);
            }
            if down.is_none() && writable {
                down = Self::flush(conn).err();
            }
            if down.is_none() {
                if let Err(reason) = Self::update_interest(registry, token, conn) {
                    down = Some(reason);
                }
            }
        }
        if let Some(reason) = down {
            self.close(registry, token.0 as ConnId);
            out.push(Event::Down {
                conn: token.0 as ConnId,
                reason,
            });
        }
    }

    fn accept(&mut self, registry: &Registry, out: &mut Vec<Event>) {
        loop {
            match self.listener.accept() {
                Ok((mut stream, peer)) => {
                    let token = next_token();
                    let _ = stream.set_nodelay(true);
                    if registry
                        .register(&mut stream, token, Interest::READABLE)
                        .is_err()
                    {
                        continue;
                    }
                    self.conns.insert(
                        token,
                        TcpConn {
                            stream,
                            deframer: Deframer::new(),
                            output: VecDeque::new(),
                            want_write: false,
                        },
                    );
                    out.push(Event::Up {
                        conn: token.0 as ConnId,
                        peer: vec![peer],
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // EMFILE and friends: try again on the next readiness event.
                Err(_) => return,
            }
        }
    }

    /// Reads until the socket would block; returns why the connection ended, if it did.
    fn read(
        conn: &mut TcpConn,
        buf: &mut [u8],
        ppid: u32,
        token: Token,
        out: &mut Vec<Event>,
    ) -> Option<DownReason> {
        loop {
            match conn.stream.read(buf) {
                Ok(0) => return Some(DownReason::Closed),
                Ok(n) => {
                    conn.deframer.push(&buf[..n]);
                    loop {
                        match conn.deframer.next_message() {
                            Ok(Some(data)) => out.push(Event::Message {
                                conn: token.0 as ConnId,
                                ppid,
                                data,
                            }),
                            Ok(None) => break,
                            Err(_) => return Some(DownReason::ProtocolError),
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return Some(DownReason::Lost),
            }
        }
    }

    fn flush(conn: &mut TcpConn) -> Result<(), DownReason> {
        while !conn.output.is_empty() {
            let (a, _) = conn.output.as_slices();
            match conn.stream.write(a) {
                Ok(0) => return Err(DownReason::Lost),
                Ok(n) => {
                    conn.output.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return Err(DownReason::Lost),
            }
        }
        if conn.output.len() > MAX_OUTPUT_QUEUE {
            return Err(DownReason::TooSlow);
        }
        Ok(())
    }

    fn update_interest(
        registry: &Registry,
        token: Token,
        conn: &mut TcpConn,
    ) -> Result<(), DownReason> {
        let want = !conn.output.is_empty();
        if want != conn.want_write {
            let interest = if want {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            registry
                .reregister(&mut conn.stream, token, interest)
                .map_err(|_| DownReason::Lost)?;
            conn.want_write = want;
        }
        Ok(())
    }

    fn send(&mut self, registry: &Registry, conn_id: ConnId, data: &[u8]) -> io::Result<()> {
        let token = Token(conn_id as usize);
        let conn = self
            .conns
            .get_mut(&token)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotConnected))?;
        conn.output.extend(data);
        let result = Self::flush(conn).and_then(|_| Self::update_interest(registry, token, conn));
        if let Err(reason) = result {
            self.close(registry, conn_id);
            return Err(io::Error::other(format!("connection dropped: {reason:?}")));
        }
        Ok(())
    }

    fn close(&mut self, registry: &Registry, conn: ConnId) {
        if let Some(mut c) = self.conns.remove(&Token(conn as usize)) {
            let _ = registry.deregister(&mut c.stream);
        }
    }
}

// ------------------------------------------------------------------------------------ SCTP

struct SctpServer {
    fd: OwnedFd,
    token: Token,
    by_assoc: HashMap<sctp::AssocId, ConnId>,
    by_conn: HashMap<ConnId, sctp::AssocId>,
    pending: VecDeque<(sctp::AssocId, u32, Vec<u8>)>,
    want_write: bool,
    buf: Box<[u8]>,
}

impl SctpServer {
    fn bind(addrs: &[SocketAddr], registry: &Registry) -> io::Result<SctpServer> {
        let family = if addrs.iter().any(|a| a.is_ipv6()) {
            libc::AF_INET6
        } else {
            libc::AF_INET
        };
        let fd = sctp::socket(family, libc::SOCK_SEQPACKET)?;
        let one: libc::c_int = 1;
        // SAFETY: plain setsockopt with an int.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_REUSEADDR,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
        sctp::configure(&fd)?;
        sctp::bind_all(&fd, addrs)?;
        sctp::listen(&fd, 1024)?;
        let token = next_token();
        registry.register(&mut SourceFd(&fd.as_raw_fd()), token, Interest::READABLE)?;
        Ok(SctpServer {
            fd,
            token,
            by_assoc: HashMap::new(),
            by_conn: HashMap::new(),
            pending: VecDeque::new(),
            want_write: false,
            buf: vec![0u8; MAX_MESSAGE_SIZE + 1024].into_boxed_slice(),
        })
    }

    fn conn_for(&mut self, assoc: sctp::AssocId, out: &mut Vec<Event>) -> ConnId {
        if let Some(c) = self.by_assoc.get(&assoc) {
            return *c;
        }
        let conn = next_token().0 as ConnId;
        self.by_assoc.insert(assoc, conn);
        self.by_conn.insert(conn, assoc);
        let peer = sctp::peer_addrs(&self.fd, assoc).unwrap_or_default();
        out.push(Event::Up { conn, peer });
        conn
    }

    fn drop_assoc(&mut self, assoc: sctp::AssocId, reason: DownReason, out: &mut Vec<Event>) {
        if let Some(conn) = self.by_assoc.remove(&assoc) {
            self.by_conn.remove(&conn);
            out.push(Event::Down { conn, reason });
        }
    }

    fn ready(&mut self, registry: &Registry, readable: bool, writable: bool, out: &mut Vec<Event>) {
        if readable {
            loop {
                match sctp::recv(self.fd.as_raw_fd(), &mut self.buf) {
                    Ok(sctp::Received::Data {
                        assoc,
                        ppid,
                        len,
                        complete,
                        ..
                    }) => {
                        let conn = self.conn_for(assoc, out);
                        if complete {
                            out.push(Event::Message {
                                conn,
                                ppid,
                                data: self.buf[..len].to_vec(),
                            });
                        } else {
                            // Larger than any ASAP/ENRP message can be: drop the association.
                            let _ = sctp::abort(self.fd.as_raw_fd(), assoc);
                            self.drop_assoc(assoc, DownReason::ProtocolError, out);
                        }
                    }
                    Ok(sctp::Received::AssocChange { assoc, state }) => match state {
                        sctp::SCTP_COMM_UP | sctp::SCTP_RESTART => {
                            self.conn_for(assoc, out);
                        }
                        sctp::SCTP_SHUTDOWN_COMP => self.drop_assoc(assoc, DownReason::Closed, out),
                        _ => self.drop_assoc(assoc, DownReason::Lost, out),
                    },
                    Ok(sctp::Received::Shutdown { assoc }) => {
                        self.drop_assoc(assoc, DownReason::Closed, out)
                    }
                    Ok(sctp::Received::OtherNotification) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => break,
                }
            }
        }
        if writable || !self.pending.is_empty() {
            self.flush();
        }
        let want = !self.pending.is_empty();
        if want != self.want_write {
            let interest = if want {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            if registry
                .reregister(&mut SourceFd(&self.fd.as_raw_fd()), self.token, interest)
                .is_ok()
            {
                self.want_write = want;
            }
        }
    }

    fn flush(&mut self) {
        while let Some((assoc, ppid, data)) = self.pending.front() {
            match sctp::send(self.fd.as_raw_fd(), *assoc, *ppid, 0, 0, data) {
                Ok(_) => {
                    self.pending.pop_front();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    // The association is gone; its Down event arrives as a notification.
                    self.pending.pop_front();
                }
            }
        }
    }

    fn send(
        &mut self,
        registry: &Registry,
        conn: ConnId,
        ppid: u32,
        data: &[u8],
    ) -> io::Result<()> {
        let assoc = *self
            .by_conn
            .get(&conn)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotConnected))?;
        if self.pending.is_empty() {
            match sctp::send(self.fd.as_raw_fd(), assoc, ppid, 0, 0, data) {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        self.pending.push_back((assoc, ppid, data.to_vec()));
        let mut ignored = Vec::new();
        self.ready(registry, false, false, &mut ignored);
        Ok(())
    }

    fn close(&mut self, conn: ConnId) {
        if let Some(assoc) = self.by_conn.remove(&conn) {
            self.by_assoc.remove(&assoc);
            let _ = sctp::abort(self.fd.as_raw_fd(), assoc);
        }
    }
}

// ------------------------------------------------------------------------------ client side

/// A PE's or PU's connection to a registrar (or a PU's to a PE): one association, blocking
/// calls with timeouts.
pub struct Association {
    protocol: Protocol,
    inner: AssocInner,
    /// PPID implied for messages received over TCP.
    tcp_ppid: u32,
}

enum AssocInner {
    Sctp(OwnedFd, Box<[u8]>),
    Tcp(TcpStream, Deframer),
}

/// Waits until `fd` is ready for `events` (`None` = forever, EINTR retried); `Ok(false)` on
/// timeout.
pub fn poll_fd(fd: RawFd, events: libc::c_short, timeout: Option<Duration>) -> io::Result<bool> {
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        let ms = match deadline {
            None => -1,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                left.as_millis().min(i32::MAX as u128) as i32
            }
        };
        let mut p = libc::pollfd {
            fd,
            events,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let rc = unsafe { libc::poll(&mut p, 1, ms) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        return Ok(rc > 0);
    }
}

impl Association {
    /// Connects to a peer reachable at `addrs` (all addresses of one, possibly multihomed,
    /// endpoint; TCP tries them in order) within `timeout`. `tcp_ppid` is the protocol implied
    /// on a TCP connection (the port's protocol: ASAP towards 3863, ENRP towards 9901).
    pub fn connect(
        protocol: Protocol,
        addrs: &[SocketAddr],
        timeout: Duration,
        tcp_ppid: u32,
    ) -> io::Result<Association> {
        let first = *addrs
            .first()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no address"))?;
        let inner = match protocol {
            Protocol::Tcp => {
                let mut last = io::Error::from(io::ErrorKind::AddrNotAvailable);
                let mut stream = None;
                for a in addrs {
                    match TcpStream::connect_timeout(a, timeout) {
                        Ok(s) => {
                            stream = Some(s);
                            break;
                        }
                        Err(e) => last = e,
                    }
                }
                let s = stream.ok_or(last)?;
                s.set_nodelay(true)?;
                AssocInner::Tcp(s, Deframer::new())
            }
            Protocol::Sctp => {
                let family = if first.is_ipv6() {
                    libc::AF_INET6
                } else {
                    libc::AF_INET
                };
                let fd = sctp::socket(family, libc::SOCK_STREAM)?;
                sctp::configure(&fd)?;
                let sa = socket2::SockAddr::from(first);
                // SAFETY: sa is a valid socket address.
                let rc = unsafe { libc::connect(fd.as_raw_fd(), sa.as_ptr().cast(), sa.len()) };
                if rc < 0 {
                    let e = io::Error::last_os_error();
                    if e.raw_os_error() != Some(libc::EINPROGRESS) {
                        return Err(e);
                    }
                    if !poll_fd(fd.as_raw_fd(), libc::POLLOUT, Some(timeout))? {
                        return Err(io::ErrorKind::TimedOut.into());
                    }
                    let mut err: libc::c_int = 0;
                    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
                    // SAFETY: reads SO_ERROR into an int.
                    unsafe {
                        libc::getsockopt(
                            fd.as_raw_fd(),
                            libc::SOL_SOCKET,
                            libc::SO_ERROR,
                            (&mut err as *mut libc::c_int).cast(),
                            &mut len,
                        );
                    }
                    if err != 0 {
                        return Err(io::Error::from_raw_os_error(err));
                    }
                }
                AssocInner::Sctp(fd, vec![0u8; MAX_MESSAGE_SIZE + 1024].into_boxed_slice())
            }
        };
        Ok(Association {
            protocol,
            inner,
            tcp_ppid,
        })
    }

    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// The local address of the connection (SCTP: the primary one).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        let addr = match &self.inner {
            AssocInner::Sctp(fd, _) => socket2::SockRef::from(fd).local_addr()?,
            AssocInner::Tcp(s, _) => return s.local_addr(),
        };
        addr.as_socket()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not an IP address"))
    }

    /// The descriptor, for the caller's own poll/select.
    pub fn raw_fd(&self) -> RawFd {
        match &self.inner {
            AssocInner::Sctp(fd, _) => fd.as_raw_fd(),
            AssocInner::Tcp(s, _) => s.as_raw_fd(),
        }
    }

    /// Sends one message (over TCP `ppid` is implied by the connection and not sent).
    pub fn send(&mut self, ppid: u32, data: &[u8]) -> io::Result<()> {
        match &mut self.inner {
            // send(MSG_NOSIGNAL): a library inside a C program must never raise SIGPIPE.
            AssocInner::Tcp(s, _) => {
                let mut rest = data;
                while !rest.is_empty() {
                    // SAFETY: sending from a valid buffer on our own socket.
                    let n = unsafe {
                        libc::send(
                            s.as_raw_fd(),
                            rest.as_ptr().cast(),
                            rest.len(),
                            libc::MSG_NOSIGNAL,
                        )
                    };
                    if n < 0 {
                        let e = io::Error::last_os_error();
                        match e.kind() {
                            io::ErrorKind::Interrupted => continue,
                            io::ErrorKind::WouldBlock => {
                                poll_fd(s.as_raw_fd(), libc::POLLOUT, None)?;
                                continue;
                            }
                            _ => return Err(e),
                        }
                    }
                    rest = &rest[n as usize..];
                }
                Ok(())
            }
            AssocInner::Sctp(fd, _) => loop {
                match sctp::send(fd.as_raw_fd(), 0, ppid, 0, 0, data) {
                    Ok(_) => return Ok(()),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        poll_fd(fd.as_raw_fd(), libc::POLLOUT, None)?;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            },
        }
    }

    /// Receives one message: `Ok(None)` on timeout, `UnexpectedEof` when the peer closed.
    pub fn recv(&mut self, timeout: Option<Duration>) -> io::Result<Option<(u32, Vec<u8>)>> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let left = |d: Option<Instant>| d.map(|d| d.saturating_duration_since(Instant::now()));
        match &mut self.inner {
            AssocInner::Tcp(s, deframer) => loop {
                if let Some(m) = deframer
                    .next_message()
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?
                {
                    return Ok(Some((self.tcp_ppid, m)));
                }
                if !poll_fd(s.as_raw_fd(), libc::POLLIN, left(deadline))? {
                    return Ok(None);
                }
                let mut buf = [0u8; 16 * 1024];
                match s.read(&mut buf) {
                    Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                    Ok(n) => deframer.push(&buf[..n]),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
            },
            AssocInner::Sctp(fd, buf) => loop {
                if !poll_fd(fd.as_raw_fd(), libc::POLLIN, left(deadline))? {
                    return Ok(None);
                }
                match sctp::recv(fd.as_raw_fd(), buf) {
                    Ok(sctp::Received::Data { ppid, len, .. }) => {
                        if len == 0 {
                            return Err(io::ErrorKind::UnexpectedEof.into());
                        }
                        return Ok(Some((ppid, buf[..len].to_vec())));
                    }
                    Ok(sctp::Received::AssocChange { state, .. })
                        if state != sctp::SCTP_COMM_UP =>
                    {
                        return Err(io::ErrorKind::UnexpectedEof.into())
                    }
                    Ok(sctp::Received::Shutdown { .. }) => {
                        return Err(io::ErrorKind::UnexpectedEof.into())
                    }
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mio::{Events, Poll};

    #[test]
    fn selection_falls_back_to_tcp_and_refuses_forced_sctp() {
        assert_eq!(
            Selection::Both.resolve(false).unwrap().0,
            vec![Protocol::Tcp]
        );
        assert_eq!(
            Selection::Both.resolve(true).unwrap().0,
            vec![Protocol::Sctp, Protocol::Tcp]
        );
        assert!(Selection::Sctp.resolve(false).is_err());
        assert_eq!(Selection::parse("tcp"), Some(Selection::Tcp));
        assert_eq!(Selection::parse("udp"), None);
    }

    #[test]
    fn tcp_server_delivers_whole_messages_and_reports_close() {
        let mut poll = Poll::new().unwrap();
        let mut server = Server::bind(
            Protocol::Tcp,
            &["127.0.0.1:0".parse().unwrap()],
            PPID_ASAP,
            poll.registry(),
        )
        .unwrap();
        let addr = server.local_addrs()[0];
        let mut client =
            Association::connect(Protocol::Tcp, &[addr], Duration::from_secs(2), PPID_ASAP)
                .unwrap();
        // Two messages in one write, the second split across writes.
        client
            .send(PPID_ASAP, &[7, 0, 0, 8, 1, 2, 3, 4, 8, 0])
            .unwrap();
        client.send(PPID_ASAP, &[0, 4]).unwrap();

        let mut events = Events::with_capacity(64);
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        while got
            .iter()
            .filter(|e| matches!(e, Event::Message { .. }))
            .count()
            < 2
        {
            assert!(Instant::now() < deadline, "timed out: {got:?}");
            poll.poll(&mut events, Some(Duration::from_millis(100)))
                .unwrap();
            for ev in events.iter() {
                assert!(server.owns(ev.token()));
                server.ready(
                    poll.registry(),
                    ev.token(),
                    ev.is_readable(),
                    ev.is_writable(),
                    &mut got,
                );
            }
        }
        let conn = match &got[0] {
            Event::Up { conn, peer } => {
                assert_eq!(peer[0].ip(), addr.ip());
                *conn
            }
            other => panic!("first event {other:?}"),
        };
        assert_eq!(
            got[1],
            Event::Message {
                conn,
                ppid: PPID_ASAP,
                data: vec![7, 0, 0, 8, 1, 2, 3, 4]
            }
        );
        assert_eq!(
            got[2],
            Event::Message {
                conn,
                ppid: PPID_ASAP,
                data: vec![8, 0, 0, 4]
            }
        );

        // The server answers; the client reads it back whole.
        server
            .send(poll.registry(), conn, PPID_ASAP, &[3, 0, 0, 4])
            .unwrap();
        let reply = client.recv(Some(Duration::from_secs(2))).unwrap();
        assert_eq!(reply, Some((PPID_ASAP, vec![3, 0, 0, 4])));
        assert_eq!(client.recv(Some(Duration::from_millis(50))).unwrap(), None);

        drop(client);
        got.clear();
        let deadline = Instant::now() + Duration::from_secs(5);
        while !got.iter().any(|e| matches!(e, Event::Down { .. })) {
            assert!(Instant::now() < deadline);
            poll.poll(&mut events, Some(Duration::from_millis(100)))
                .unwrap();
            for ev in events.iter() {
                server.ready(poll.registry(), ev.token(), true, false, &mut got);
            }
        }
        assert_eq!(
            got.last(),
            Some(&Event::Down {
                conn,
                reason: DownReason::Closed
            })
        );
        assert_eq!(server.connections(), 0);
        assert!(server
            .send(poll.registry(), conn, PPID_ASAP, &[3, 0, 0, 4])
            .is_err());
    }

    #[test]
    fn tcp_server_drops_a_stream_with_a_lying_length() {
        let mut poll = Poll::new().unwrap();
        let mut server = Server::bind(
            Protocol::Tcp,
            &["127.0.0.1:0".parse().unwrap()],
            PPID_ASAP,
            poll.registry(),
        )
        .unwrap();
        let addr = server.local_addrs()[0];
        let mut client = TcpStream::connect(addr).unwrap();
        client.write_all(&[1, 0, 0, 2]).unwrap();
        let mut events = Events::with_capacity(16);
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        while !got.iter().any(|e| matches!(e, Event::Down { .. })) {
            assert!(Instant::now() < deadline);
            poll.poll(&mut events, Some(Duration::from_millis(100)))
                .unwrap();
            for ev in events.iter() {
                server.ready(poll.registry(), ev.token(), true, false, &mut got);
            }
        }
        assert!(matches!(
            got.last(),
            Some(Event::Down {
                reason: DownReason::ProtocolError,
                ..
            })
        ));
    }
}
