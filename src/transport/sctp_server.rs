//! The registrar's kernel SCTP endpoint: one one-to-many socket for all associations.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};

use super::{next_token, sctp, ConnId, DownReason, Event, MAX_MESSAGE_SIZE};

pub(super) struct SctpServer {
    pub(super) fd: OwnedFd,
    pub(super) token: Token,
    pub(super) by_assoc: HashMap<sctp::AssocId, ConnId>,
    by_conn: HashMap<ConnId, sctp::AssocId>,
    pending: VecDeque<(sctp::AssocId, u32, Vec<u8>)>,
    want_write: bool,
    buf: Box<[u8]>,
}

impl SctpServer {
    pub(super) fn bind(addrs: &[SocketAddr], registry: &Registry) -> io::Result<SctpServer> {
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

    pub(super) fn ready(
        &mut self,
        registry: &Registry,
        readable: bool,
        writable: bool,
        out: &mut Vec<Event>,
    ) {
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

    pub(super) fn send(
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

    pub(super) fn close(&mut self, conn: ConnId) {
        if let Some(assoc) = self.by_conn.remove(&conn) {
            self.by_assoc.remove(&assoc);
            let _ = sctp::abort(self.fd.as_raw_fd(), assoc);
        }
    }
}
