//! The event loops beyond the first (`-threads=N`): each serves the ASAP connections over TCP
//! the first loop deals out to it, with its own poll, and hands their events to the shared
//! core (see `sockets.rs`). The first loop keeps the core's timers; a loop whose event arms a
//! timer earlier than the first loop means to wake up wakes it.

use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use mio::{Events, Poll, Token, Waker};
use parking_lot::Mutex;

use super::sockets::{Core, Sockets};
use crate::core::registrar::Output;
use crate::logging;

/// The token of each loop's waker.
pub(super) const WAKER: Token = Token(usize::MAX - 3);

/// What one loop passes another.
pub(super) enum Inbound {
    /// A stream the first loop accepted, for this loop to serve.
    Adopt(mio::net::TcpStream, SocketAddr),
    /// An output of the core for one of this loop's connections or endpoints.
    Output(Output),
}

/// One loop's inbox and the waker of its poll.
struct Link {
    inbox: Mutex<Vec<Inbound>>,
    waker: Waker,
}

/// What the loops share besides the core.
pub(super) struct Shared {
    links: Vec<Link>,
    /// When the first loop means to wake up for the core's next timer (core microseconds,
    /// `u64::MAX`: not for a timer).
    planned: AtomicU64,
    stop: AtomicBool,
    /// A loop other than the first ended by a panic: the first stops too.
    failed: AtomicBool,
}

impl Shared {
    /// Links for the loops polling with `polls` (the first loop's first).
    pub(super) fn new(polls: &[&Poll]) -> std::io::Result<Shared> {
        let links = polls
            .iter()
            .map(|p| {
                Ok(Link {
                    inbox: Mutex::new(Vec::new()),
                    waker: Waker::new(p.registry(), WAKER)?,
                })
            })
            .collect::<std::io::Result<_>>()?;
        Ok(Shared {
            links,
            planned: AtomicU64::new(u64::MAX),
            stop: AtomicBool::new(false),
            failed: AtomicBool::new(false),
        })
    }

    pub(super) fn loops(&self) -> usize {
        self.links.len()
    }

    /// Moves `items` into loop `shard`'s inbox and wakes it.
    pub(super) fn pass(&self, shard: usize, items: &mut Vec<Inbound>) {
        let link = &self.links[shard];
        let was_empty = {
            let mut inbox = link.inbox.lock();
            let was_empty = inbox.is_empty();
            inbox.append(items);
            was_empty
        };
        // A non-empty inbox has a wake-up pending already.
        if was_empty {
            let _ = link.waker.wake();
        }
    }

    /// Everything in loop `shard`'s inbox.
    pub(super) fn take(&self, shard: usize) -> Vec<Inbound> {
        std::mem::take(&mut *self.links[shard].inbox.lock())
    }

    /// The first loop, before it waits: it will wake up for the core's timer at `at`.
    pub(super) fn plan(&self, at: Option<u64>) {
        self.planned
            .store(at.unwrap_or(u64::MAX), Ordering::Release);
    }

    /// Another loop, after its round: wakes the first if the core's next timer (read under
    /// the lock, after the round's events) is earlier than the first loop's plan.
    fn wake_for(&self, next_timer: Option<u64>) {
        if next_timer.is_some_and(|t| t < self.planned.load(Ordering::Acquire)) {
            let _ = self.links[0].waker.wake();
        }
    }

    /// True once a loop other than the first has failed.
    pub(super) fn failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }
}

/// The loops beyond the first, running; stopped and joined when dropped.
pub(super) struct Shards {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl Shards {
    /// Starts a thread for each of `loops` (loops 1, 2, …).
    pub(super) fn start(
        shared: Arc<Shared>,
        loops: Vec<(Poll, Sockets)>,
        core: Arc<Mutex<Core>>,
    ) -> Result<Shards, String> {
        let mut shards = Shards {
            shared: shared.clone(),
            threads: Vec::new(),
        };
        for (poll, sockets) in loops {
            let (shared, core) = (shared.clone(), core.clone());
            let shard = sockets.shard;
            let thread = std::thread::Builder::new()
                .name(format!("registrar-{shard}"))
                .spawn(move || {
                    let served = catch_unwind(AssertUnwindSafe(|| {
                        serve(poll, sockets, &core, &shared);
                    }));
                    if served.is_err() {
                        logging::log(
                            logging::ERROR,
                            &format!("event-loop thread {shard} failed: stopping"),
                        );
                        shared.failed.store(true, Ordering::Release);
                        let _ = shared.links[0].waker.wake();
                    }
                })
                .map_err(|e| format!("cannot start event-loop thread {shard}: {e}"))?;
            shards.threads.push(thread);
        }
        Ok(shards)
    }
}

impl Drop for Shards {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        for link in &self.shared.links[1..] {
            let _ = link.waker.wake();
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// One loop beyond the first, until the shared stop: its connections' events into the core,
/// the core's outputs for them out.
fn serve(mut poll: Poll, mut sockets: Sockets, core: &Mutex<Core>, shared: &Shared) {
    let mut events = Events::with_capacity(1024);
    let mut transport_events = Vec::new();
    while !shared.stop.load(Ordering::Acquire) {
        let timeout = sockets.timeout(None);
        logging::flush();
        if let Err(e) = poll.poll(&mut events, timeout) {
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            panic!("event loop of thread {} failed: {e}", sockets.shard);
        }
        let wall = sockets.tick();
        for ev in events.iter() {
            if ev.token() == WAKER {
                continue;
            }
            // The loops other than the first have one server: ASAP over TCP.
            sockets.ready(0, ev, core, &mut transport_events);
        }
        sockets.take_inbox(core, &mut transport_events);
        sockets.round(core, wall, &mut transport_events);
        sockets.flush(core, &mut transport_events);
        sockets.send_forwards();
        let next_timer = core.lock().registrar.next_wakeup();
        shared.wake_for(next_timer);
    }
}
