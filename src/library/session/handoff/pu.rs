//! PU side: answering a request (ready or refuse), queueing writes, resuming at the receiver.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::*;
use crate::core::wire;
use crate::library::session::conn::connect_pe;
use crate::transport::PPID_ASAP;

/// Largest amount a PU queues while it follows a handoff; beyond it writes block.
const MAX_QUEUED: usize = 64 << 20;
/// A PU that sent Handoff Ready and got no commit within this time fails over.
const FOLLOW_LIMIT: Duration = Duration::from_secs(10);

/// PU side: a handoff being followed (Ready sent, waiting for the commit).
pub(in crate::library::session) struct Follow {
    receiver: PoolElement,
    since: Instant,
}

/// PU side: what the application wrote while no connection could take it.
#[derive(Default)]
pub(in crate::library::session) struct Queue {
    messages: VecDeque<(Vec<u8>, u32, u16)>,
    bytes: usize,
}

impl Queue {
    /// False if the queue is full.
    pub fn push(&mut self, data: &[u8], ppid: u32, stream: u16) -> bool {
        if self.bytes + data.len() > MAX_QUEUED {
            return false;
        }
        self.bytes += data.len();
        self.messages.push_back((data.to_vec(), ppid, stream));
        true
    }

    fn front(&self) -> Option<&(Vec<u8>, u32, u16)> {
        self.messages.front()
    }

    fn pop(&mut self) {
        if let Some((d, _, _)) = self.messages.pop_front() {
            self.bytes -= d.len();
        }
    }
}

impl Session {
    /// PU: a handoff request: refuse, or say ready and queue writes until the commit.
    pub(super) fn pu_request(&mut self, receiver: PoolElement) {
        if self.follow.is_some() {
            return;
        }
        let h = self.opts.handoff;
        // SAFETY: the application registered this callback with its user data.
        let willing = !h.refuse
            && h.callback
                .is_none_or(|(cb, data)| unsafe { cb(receiver.id.0, data) } != 0);
        let answer = if willing {
            HandoffMessage::Ready
        } else {
            HandoffMessage::Refuse { error: None }
        };
        let Some(conn) = &self.conn else { return };
        let sent = send(&conn.link, &answer, Some(Duration::from_secs(5)));
        if sent.is_ok() && willing {
            self.follow = Some(Follow {
                receiver,
                since: Instant::now(),
            });
        }
    }

    /// PU: the commit: connect to the receiver, echo the cookie, send what was queued. A
    /// receiver that cannot be reached makes it an ordinary failover.
    pub(super) fn pu_commit(&mut self, cookie: Option<Box<[u8]>>) {
        let Some(follow) = self.follow.take() else {
            return;
        };
        if let Some(c) = cookie {
            self.cookie = Some(c.into());
        }
        self.handoff_times = Some((follow.since, Instant::now()));
        self.conn = None;
        match connect_pe(&follow.receiver.user_transport, self.opts.connect_timeout) {
            Ok(conn) => {
                self.conn = Some(conn);
                self.pe_id = follow.receiver.id.0;
                self.handoffs += 1;
                self.after_connect();
            }
            Err(e) => {
                logging::log(
                    logging::VERBOSE,
                    &format!(
                        "rsplib: handoff receiver PE {} unreachable ({e}): failing over",
                        follow.receiver.id
                    ),
                );
                if let Some(pool) = self.pool.clone() {
                    let _ = self.lib.report_failure(pool, follow.receiver.id);
                }
                self.pe_id = follow.receiver.id.0;
                self.failover();
            }
        }
    }

    /// PU: a followed handoff whose commit never came fails over (the donor got nothing
    /// after Ready, so the last cookie holds).
    pub(in crate::library::session) fn check_follow_limit(&mut self) {
        if self
            .follow
            .as_ref()
            .is_some_and(|f| f.since.elapsed() > FOLLOW_LIMIT)
        {
            self.follow = None;
            self.failover();
        }
    }

    /// PU: writes are queued while a handoff is followed.
    pub(in crate::library::session) fn following(&self) -> bool {
        self.follow.is_some()
    }

    /// After a (re)connect: the cookie echo, then what was queued, in order.
    pub(in crate::library::session) fn after_connect(&mut self) {
        if let Some(cookie) = self.cookie.clone() {
            let msg = wire::AsapMessage::new(wire::AsapBody::CookieEcho {
                cookie: cookie.into(),
            });
            if let (Ok(b), Some(conn)) = (msg.to_bytes(), &self.conn) {
                if conn.link.send(&b, PPID_ASAP, 0, None).is_err() {
                    return;
                }
            }
        }
        while let Some((data, ppid, stream)) = self.queue.front() {
            let Some(conn) = &self.conn else { return };
            if conn.link.send(data, *ppid, *stream, None).is_err() {
                return;
            }
            self.queue.pop();
        }
    }
}
