//! The TCP endpoint over real loopback sockets: backpressure, batches, stall timeout, caps.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use mio::{Events, Poll, Registry, Token};

use super::MAX_BUFFERED_INPUT;
use crate::transport::{
    Association, ConnId, DownReason, Event, Limits, Protocol, Readiness, Server, ServerInner,
    PPID_ASAP,
};

/// A TCP server on loopback and the event loop around it.
struct Harness {
    poll: Poll,
    events: Events,
    server: Server,
}

type OnEvent<'a> = dyn FnMut(&mut Server, &Registry, Event) + 'a;

impl Harness {
    fn new(limits: Limits) -> Harness {
        let poll = Poll::new().unwrap();
        let mut server = Server::bind(
            Protocol::Tcp,
            &["127.0.0.1:0".parse().unwrap()],
            PPID_ASAP,
            poll.registry(),
        )
        .unwrap();
        server.set_limits(limits);
        Harness {
            poll,
            events: Events::with_capacity(256),
            server,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.server.local_addrs()[0]
    }

    /// One turn of the loop (readiness, then one round of input), unless `deadline` has
    /// passed: then the test fails, saying it was waiting until `what`. Every event goes
    /// to `on_event`, which may answer before the next one is taken.
    fn turn(&mut self, deadline: Instant, what: &str, on_event: &mut OnEvent) {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        let server = &mut self.server;
        let timeout = if server.has_work() {
            Duration::ZERO
        } else {
            let wait = Duration::from_millis(20);
            server.next_deadline().map_or(wait, |d| {
                d.saturating_duration_since(Instant::now()).min(wait)
            })
        };
        self.poll.poll(&mut self.events, Some(timeout)).unwrap();
        let registry = self.poll.registry();
        let mut got = Vec::new();
        for ev in self.events.iter() {
            assert!(server.owns(ev.token()));
            server.ready(registry, ev.token(), Readiness::of(ev), &mut got);
        }
        server.start_round(registry, Instant::now(), &mut got);
        for e in got {
            on_event(server, registry, e);
        }
        while let Some(e) = server.next_input(registry) {
            on_event(server, registry, e);
        }
        while server.has_unflushed() {
            let mut down = Vec::new();
            server.flush(registry, &mut down);
            for e in down {
                on_event(server, registry, e);
            }
        }
    }

    /// Whether reading from `conn` is paused (its output is over the soft cap).
    fn paused(&self, conn: ConnId) -> bool {
        match &self.server.inner {
            ServerInner::Tcp(t) => t.conns[&Token(conn as usize)].paused(),
            ServerInner::Sctp(_) => unreachable!(),
        }
    }
}

fn deadline() -> Instant {
    Instant::now() + Duration::from_secs(10)
}

/// An ASAP-shaped message of `len` bytes, type `kind`.
fn message(kind: u8, len: usize) -> Vec<u8> {
    let mut m = vec![0u8; len];
    m[0] = kind;
    m[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    m
}

fn up_conn(e: &Event) -> Option<ConnId> {
    match e {
        Event::Up { conn, .. } => Some(*conn),
        _ => None,
    }
}

#[test]
fn tcp_server_delivers_whole_messages_and_reports_close() {
    let mut h = Harness::new(Limits::default());
    let addr = h.addr();
    let mut client =
        Association::connect(Protocol::Tcp, &[addr], Duration::from_secs(2), PPID_ASAP).unwrap();
    // Two messages in one write, the second split across writes.
    client
        .send(PPID_ASAP, &[7, 0, 0, 8, 1, 2, 3, 4, 8, 0])
        .unwrap();
    client.send(PPID_ASAP, &[0, 4]).unwrap();

    let mut got = Vec::new();
    let d = deadline();
    while got
        .iter()
        .filter(|e| matches!(e, Event::Message { .. }))
        .count()
        < 2
    {
        h.turn(d, "two messages arrived", &mut |_, _, e| got.push(e));
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

    // The server answers; the client reads it back whole once the round's output is flushed.
    h.server
        .send(h.poll.registry(), conn, PPID_ASAP, &[3, 0, 0, 4])
        .unwrap();
    assert!(h.server.has_unflushed());
    let mut down = Vec::new();
    h.server.flush(h.poll.registry(), &mut down);
    assert!(down.is_empty() && !h.server.has_unflushed());
    let reply = client.recv(Some(Duration::from_secs(2))).unwrap();
    assert_eq!(reply, Some((PPID_ASAP, vec![3, 0, 0, 4])));
    assert_eq!(client.recv(Some(Duration::from_millis(50))).unwrap(), None);

    drop(client);
    got.clear();
    let d = deadline();
    while !got.iter().any(|e| matches!(e, Event::Down { .. })) {
        h.turn(d, "the close was seen", &mut |_, _, e| got.push(e));
    }
    assert_eq!(
        got.last(),
        Some(&Event::Down {
            conn,
            reason: DownReason::Closed
        })
    );
    assert_eq!(h.server.connections(), 0);
    assert!(h
        .server
        .send(h.poll.registry(), conn, PPID_ASAP, &[3, 0, 0, 4])
        .is_err());
}

/// A message and the FIN behind it arrive before the server looks: one edge announces both,
/// and no edge follows, so the read that takes the message must not be the last one.
#[test]
fn a_close_right_behind_a_message_is_seen_without_another_edge() {
    let mut h = Harness::new(Limits::default());
    let mut client = TcpStream::connect(h.addr()).unwrap();
    let mut conn = None;
    let d = deadline();
    while conn.is_none() {
        h.turn(d, "the client is up", &mut |_, _, e| {
            conn = conn.or(up_conn(&e))
        });
    }
    client.write_all(&message(5, 16)).unwrap();
    client.shutdown(std::net::Shutdown::Write).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let mut got = Vec::new();
    let d = deadline();
    while !got.iter().any(|e| matches!(e, Event::Down { .. })) {
        h.turn(d, "the close was seen", &mut |_, _, e| got.push(e));
    }
    assert_eq!(
        got,
        vec![
            Event::Message {
                conn: conn.unwrap(),
                ppid: PPID_ASAP,
                data: message(5, 16)
            },
            Event::Down {
                conn: conn.unwrap(),
                reason: DownReason::Closed
            }
        ]
    );
}

#[test]
fn tcp_server_drops_a_stream_with_a_lying_length() {
    let mut h = Harness::new(Limits::default());
    let mut client = TcpStream::connect(h.addr()).unwrap();
    client.write_all(&[1, 0, 0, 2]).unwrap();
    let mut got = Vec::new();
    let d = deadline();
    while !got.iter().any(|e| matches!(e, Event::Down { .. })) {
        h.turn(d, "the stream was dropped", &mut |_, _, e| got.push(e));
    }
    assert!(matches!(
        got.last(),
        Some(Event::Down {
            reason: DownReason::ProtocolError,
            ..
        })
    ));
}

/// Writes `count` 16-byte requests on a new connection from a thread and never reads;
/// the thread gives up when the kernel takes nothing for 2 s.
fn flood(addr: SocketAddr, count: usize) -> (TcpStream, std::thread::JoinHandle<usize>) {
    let stream = TcpStream::connect(addr).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let thread = std::thread::spawn(move || {
        writer
            .set_write_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let requests: Vec<u8> = (0..count).flat_map(|_| message(5, 16)).collect();
        let mut written = 0;
        while written < requests.len() {
            match writer.write(&requests[written..]) {
                Ok(n) => written += n,
                Err(_) => break,
            }
        }
        written
    });
    (stream, thread)
}

/// 8 KiB of answer to each 16-byte request: a Handle Resolution asking for 128 PEs.
const ANSWER: usize = 8192;

#[test]
fn a_client_that_never_reads_is_paused_with_bounded_buffers_and_others_are_served() {
    let limits = Limits {
        stall_timeout: Duration::from_secs(60),
        ..Limits::default()
    };
    let bound = limits.soft_output + ANSWER + MAX_BUFFERED_INPUT;
    let mut h = Harness::new(limits);
    let addr = h.addr();
    // 1 MiB of requests would make 512 MiB of answers.
    let (_flooder, writer) = flood(addr, 65536);
    let mut flood_conn = None;
    let mut answered = 0usize;
    let mut most_buffered = 0usize;
    let d = deadline();
    while !flood_conn.is_some_and(|c| h.paused(c)) {
        h.turn(
            d,
            "the flooder is paused",
            &mut |server, registry, e| match e {
                Event::Up { conn, .. } => flood_conn = Some(conn),
                Event::Message { conn, .. } => {
                    server
                        .send(registry, conn, PPID_ASAP, &message(6, ANSWER))
                        .expect("never over the hard cap");
                    answered += 1;
                    most_buffered = most_buffered.max(server.buffered(conn).unwrap());
                }
                Event::Down { .. } => panic!("the flooder must not be dropped: {e:?}"),
            },
        );
    }
    let flood_conn = flood_conn.unwrap();
    assert!(answered < 65536, "paused before all requests were answered");

    // Another client is served while the flooder stays paused and bounded.
    let mut client =
        Association::connect(Protocol::Tcp, &[addr], Duration::from_secs(2), PPID_ASAP).unwrap();
    client.send(PPID_ASAP, &message(5, 16)).unwrap();
    let d = deadline();
    let mut reply = None;
    while reply.is_none() {
        h.turn(
            d,
            "the other client is answered",
            &mut |server, registry, e| match e {
                Event::Message { conn, .. } => {
                    assert_ne!(conn, flood_conn, "a paused connection is not read");
                    server
                        .send(registry, conn, PPID_ASAP, &message(6, 4))
                        .unwrap();
                }
                Event::Down { .. } => panic!("{e:?}"),
                Event::Up { .. } => {}
            },
        );
        let buffered = h.server.buffered(flood_conn).expect("still open");
        most_buffered = most_buffered.max(buffered);
        reply = client.recv(Some(Duration::ZERO)).unwrap();
    }
    assert_eq!(reply, Some((PPID_ASAP, message(6, 4))));
    assert!(h.paused(flood_conn));
    assert!(
        most_buffered <= bound,
        "{most_buffered} bytes held for the flooder, bound {bound}"
    );
    drop(_flooder);
    let _ = writer.join();
}

#[test]
fn a_client_that_does_not_read_its_answers_is_closed_after_the_stall_timeout() {
    let mut h = Harness::new(Limits {
        stall_timeout: Duration::from_millis(200),
        ..Limits::default()
    });
    let (_flooder, writer) = flood(h.addr(), 65536);
    let mut down = None;
    let d = deadline();
    while down.is_none() {
        h.turn(
            d,
            "the flooder is closed",
            &mut |server, registry, e| match e {
                Event::Message { conn, .. } => {
                    let _ = server.send(registry, conn, PPID_ASAP, &message(6, ANSWER));
                }
                Event::Down { reason, .. } => down = Some(reason),
                Event::Up { .. } => {}
            },
        );
    }
    assert_eq!(down, Some(DownReason::TooSlow));
    assert_eq!(h.server.connections(), 0);
    let _ = writer.join();
}

#[test]
fn a_partial_message_is_dropped_after_the_stall_timeout_a_slow_whole_one_is_not() {
    let stall = Duration::from_millis(300);
    let mut h = Harness::new(Limits {
        stall_timeout: stall,
        ..Limits::default()
    });
    let addr = h.addr();
    let mut ups = Vec::new();
    let mut stalled = TcpStream::connect(addr).unwrap();
    let sent_at = Instant::now();
    stalled.write_all(&message(5, 100)[..10]).unwrap();
    let d = deadline();
    while ups.is_empty() {
        h.turn(d, "the first client is up", &mut |_, _, e| {
            ups.extend(up_conn(&e))
        });
    }
    let mut slow = TcpStream::connect(addr).unwrap();
    let whole = message(5, 100);
    slow.write_all(&whole[..50]).unwrap();

    let mut messages = Vec::new();
    let mut downs = Vec::new();
    let mut rest_sent = false;
    let d = deadline();
    while downs.is_empty() {
        h.turn(d, "the stalled client is dropped", &mut |_, _, e| match e {
            Event::Up { conn, .. } => ups.push(conn),
            Event::Message { conn, data, .. } => messages.push((conn, data)),
            Event::Down { conn, reason } => downs.push((conn, reason, sent_at.elapsed())),
        });
        if !rest_sent && sent_at.elapsed() >= stall / 3 {
            slow.write_all(&whole[50..]).unwrap();
            rest_sent = true;
        }
    }
    assert_eq!(ups.len(), 2);
    assert_eq!(downs.len(), 1, "{downs:?}");
    let (conn, reason, after) = downs[0];
    assert_eq!((conn, reason), (ups[0], DownReason::Stalled));
    assert!(
        after >= stall,
        "dropped after {after:?}, before the stall timeout"
    );
    assert_eq!(messages, vec![(ups[1], whole)]);
    // The dropped client reads EOF.
    stalled
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    assert_eq!(stalled.read(&mut [0u8; 16]).unwrap(), 0);
}

#[test]
fn output_over_the_hard_cap_closes_the_connection() {
    let limits = Limits::default();
    let mut h = Harness::new(limits);
    let _client = TcpStream::connect(h.addr()).unwrap();
    let mut conn = None;
    let d = deadline();
    while conn.is_none() {
        h.turn(d, "the client is up", &mut |_, _, e| {
            conn = conn.or(up_conn(&e))
        });
    }
    let conn = conn.unwrap();
    // Timers can queue output however paused a connection is; 64 MiB cannot fit into the
    // kernel's buffers.
    let big = message(6, 65532);
    let mut result = Ok(());
    for _ in 0..1024 {
        result = h.server.send(h.poll.registry(), conn, PPID_ASAP, &big);
        if result.is_err() {
            break;
        }
        assert!(h.server.buffered(conn).unwrap() <= limits.hard_output);
    }
    assert!(result.is_err());
    assert_eq!(h.server.buffered(conn), None);
    assert_eq!(h.server.connections(), 0);
}

#[test]
fn a_flood_on_one_connection_does_not_keep_another_waiting() {
    let batch = 16;
    let mut h = Harness::new(Limits {
        batch,
        ..Limits::default()
    });
    let addr = h.addr();
    let total = 65536;
    let (_flooder, writer) = flood(addr, total);
    let mut flood_conn = None;
    let mut flood_handled = 0usize;
    let d = deadline();
    while flood_handled == 0 {
        h.turn(d, "the flood arrives", &mut |_, _, e| match e {
            Event::Up { conn, .. } => flood_conn = Some(conn),
            Event::Message { .. } => flood_handled += 1,
            Event::Down { .. } => panic!("{e:?}"),
        });
    }
    let mut other = TcpStream::connect(addr).unwrap();
    other.write_all(&message(5, 16)).unwrap();
    let before = flood_handled;
    let mut served_after = None;
    let d = deadline();
    while served_after.is_none() {
        h.turn(
            d,
            "the other client's message is taken",
            &mut |_, _, e| match e {
                Event::Message { conn, .. } if Some(conn) == flood_conn => flood_handled += 1,
                Event::Message { .. } => served_after = Some(flood_handled - before),
                Event::Down { .. } => panic!("{e:?}"),
                Event::Up { .. } => {}
            },
        );
    }
    let served_after = served_after.unwrap();
    assert!(
        served_after <= 2 * batch,
        "{served_after} flood messages were taken before the other client's one"
    );
    assert!(flood_handled < total / 2, "the flood was still waiting");
    drop(_flooder);
    let _ = writer.join();
}

/// Messages taken from one flooding connection per round, each answered with `answer` bytes,
/// over the first `rounds` rounds in which it had any (the largest count).
fn most_messages_per_round(answer: usize, rounds: usize) -> usize {
    let mut h = Harness::new(Limits {
        stall_timeout: Duration::from_secs(60),
        ..Limits::default()
    });
    let (_flooder, writer) = flood(h.addr(), 65536);
    let mut most = 0;
    let mut seen = 0;
    let d = deadline();
    while seen < rounds {
        let mut taken = 0;
        h.turn(d, "the flood is read", &mut |server, registry, e| match e {
            Event::Message { conn, .. } => {
                server
                    .send(registry, conn, PPID_ASAP, &message(6, answer))
                    .expect("never over the hard cap");
                taken += 1;
            }
            Event::Down { .. } => panic!("{e:?}"),
            Event::Up { .. } => {}
        });
        if taken > 0 {
            seen += 1;
            most = most.max(taken);
        }
    }
    drop(_flooder);
    let _ = writer.join();
    most
}

#[test]
fn a_turn_ends_at_its_answers_byte_budget_or_its_message_batch() {
    // Large answers: a turn takes messages until their answers reach TURN_OUTPUT.
    let large = most_messages_per_round(ANSWER, 20);
    assert_eq!(large, super::TURN_OUTPUT.div_ceil(ANSWER), "8 KiB answers");
    // Small answers: the message batch is the limit.
    let small = most_messages_per_round(64, 20);
    assert_eq!(small, Limits::default().batch, "64-byte answers");
}

#[test]
fn a_connection_closed_right_after_up_reads_eof_and_is_forgotten() {
    let mut h = Harness::new(Limits::default());
    let mut client = TcpStream::connect(h.addr()).unwrap();
    client.write_all(&message(5, 16)).unwrap();
    let mut refused = None;
    let mut later = Vec::new();
    let d = deadline();
    while refused.is_none() {
        h.turn(d, "the client is up", &mut |server, registry, e| {
            if let Some(conn) = up_conn(&e) {
                // As the core does for a connection over the limits.
                server.close(registry, conn);
                refused = Some(conn);
            } else {
                later.push(e);
            }
        });
    }
    for _ in 0..5 {
        h.turn(deadline(), "", &mut |_, _, e| later.push(e));
    }
    assert_eq!(later, vec![], "no event for a closed connection");
    assert_eq!(h.server.connections(), 0);
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    // EOF, or a reset because the request it sent was never read.
    assert!(matches!(client.read(&mut [0u8; 16]), Ok(0) | Err(_)));
}

#[test]
fn accepted_streams_are_dealt_out_in_turn_and_the_adopting_server_serves_them() {
    let mut h = Harness::new(Limits::default());
    h.server.set_handoff(3);
    let addr = h.addr();
    let clients: Vec<TcpStream> = (0..6).map(|_| TcpStream::connect(addr).unwrap()).collect();
    let mut own = Vec::new();
    let mut given = Vec::new();
    let d = deadline();
    while own.len() + given.len() < 6 {
        h.turn(d, "six connections were accepted", &mut |_, _, e| {
            own.extend(up_conn(&e))
        });
        given.extend(h.server.take_handed_off());
    }
    // In accept order: 0, 1, 2, 0, 1, 2; the server keeps shard 0's.
    assert_eq!(own.len(), 2);
    let shards: Vec<usize> = given.iter().map(|(s, _, _)| *s).collect();
    assert_eq!(shards, vec![1, 2, 1, 2]);

    // Another poll's server adopts shard 1's streams and carries their messages both ways.
    let mut poll = Poll::new().unwrap();
    let mut shard = Server::tcp_shard(PPID_ASAP);
    assert!(shard.local_addrs().is_empty());
    let mut ups = Vec::new();
    for (_, stream, peer) in given.into_iter().filter(|(s, _, _)| *s == 1) {
        shard.adopt(poll.registry(), stream, peer, &mut ups);
    }
    let conns: Vec<ConnId> = ups.iter().filter_map(up_conn).collect();
    assert_eq!(conns.len(), 2);
    assert!(conns.iter().all(|c| !own.contains(c)));
    // The second client's stream is the first one dealt to shard 1.
    let mut client = clients.into_iter().nth(1).unwrap();
    client.write_all(&message(9, 12)).unwrap();
    let mut events = Events::with_capacity(16);
    let d = deadline();
    let from = loop {
        assert!(Instant::now() < d, "timed out waiting for the message");
        poll.poll(&mut events, Some(Duration::from_millis(20)))
            .unwrap();
        let mut got = Vec::new();
        for ev in events.iter() {
            assert!(shard.owns(ev.token()));
            shard.ready(poll.registry(), ev.token(), Readiness::of(ev), &mut got);
        }
        shard.start_round(poll.registry(), Instant::now(), &mut got);
        got.extend(std::iter::from_fn(|| shard.next_input(poll.registry())));
        if let Some(conn) = got.iter().find_map(|e| match e {
            Event::Message { conn, data, .. } if data == &message(9, 12) => Some(*conn),
            _ => None,
        }) {
            break conn;
        }
    };
    assert_eq!(from, conns[0]);
    shard
        .send(poll.registry(), from, PPID_ASAP, &message(10, 8))
        .unwrap();
    let mut down = Vec::new();
    shard.flush(poll.registry(), &mut down);
    assert!(down.is_empty());
    let mut answer = [0u8; 8];
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    client.read_exact(&mut answer).unwrap();
    assert_eq!(answer.to_vec(), message(10, 8));
}
