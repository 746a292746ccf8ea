//! The registrar's TCP endpoint: a listener plus one stream per peer, messages cut out of each
//! stream by [`Deframer`].

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::SocketAddr;

use mio::net::{TcpListener, TcpStream as MioTcpStream};
use mio::{Interest, Registry, Token};

use super::framing::Deframer;
use super::{next_token, ConnId, DownReason, Event, MAX_OUTPUT_QUEUE};

pub(super) struct TcpConn {
    stream: MioTcpStream,
    deframer: Deframer,
    output: VecDeque<u8>,
    want_write: bool,
}

pub(super) struct TcpServer {
    pub(super) listener: TcpListener,
    pub(super) listener_token: Token,
    ppid: u32,
    pub(super) conns: HashMap<Token, TcpConn>,
    buf: Box<[u8]>,
}

impl TcpServer {
    pub(super) fn bind(
        addrs: &[SocketAddr],
        ppid: u32,
        registry: &Registry,
    ) -> io::Result<TcpServer> {
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

    pub(super) fn ready(
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

    pub(super) fn send(
        &mut self,
        registry: &Registry,
        conn_id: ConnId,
        data: &[u8],
    ) -> io::Result<()> {
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

    pub(super) fn close(&mut self, registry: &Registry, conn: ConnId) {
        if let Some(mut c) = self.conns.remove(&Token(conn as usize)) {
            let _ = registry.deregister(&mut c.stream);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::net::TcpStream;
    use std::time::{Duration, Instant};

    use mio::{Events, Poll};

    use crate::transport::{Association, DownReason, Event, Protocol, Server, PPID_ASAP};

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
