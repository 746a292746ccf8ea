//! Server-initiated session handoff (docs/handoff.md): the donor PE's side (request, commit,
//! drain, offers) and the PU's side (ready or refuse, queue, resume at the receiver).

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::conn::{connect_pe, recv_exact, Link, Wire};
use super::pe::{EnhancedPe, PeShared};
use super::{ReadOutcome, Session};
use crate::core::types::{PeId, PoolHandle, TransportProtocol, TRANSPORT_USE_DATA_PLUS_CONTROL};
use crate::core::wire::handoff::HandoffMessage;
use crate::core::wire::{self, PoolElement};
use crate::library::Library;
use crate::logging;
use crate::transport::{sctp, PPID_ASAP};

/// Where a session's handoff stands (the values of `RSPHANDOFF_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum HandoffState {
    /// Never asked, or the session is still ours.
    None = 0,
    /// Donor: request sent, waiting for the PU.
    Requested = 1,
    /// Donor: the session belongs to the receiver now.
    HandedOff = 2,
    /// Donor: the PU or the receiver refused; the session stays.
    Refused = 3,
    /// Donor: no receiver, or it could not be asked.
    Failed = 4,
    /// PU: the last handoff moved this session to a new PE.
    Resumed = 5,
}

impl HandoffState {
    pub fn text(self) -> &'static str {
        match self {
            HandoffState::None => "no handoff",
            HandoffState::Requested => "handoff requested, waiting for the pool user",
            HandoffState::HandedOff => "session handed off",
            HandoffState::Refused => "handoff refused, the session stays",
            HandoffState::Failed => "handoff failed (no receiver), the session stays",
            HandoffState::Resumed => "session resumed at a new pool element by handoff",
        }
    }

    pub fn from_code(code: u32) -> Option<HandoffState> {
        Some(match code {
            0 => HandoffState::None,
            1 => HandoffState::Requested,
            2 => HandoffState::HandedOff,
            3 => HandoffState::Refused,
            4 => HandoffState::Failed,
            5 => HandoffState::Resumed,
            _ => return None,
        })
    }
}

/// The receiver of a handoff.
#[derive(Clone, Debug)]
pub enum HandoffTarget {
    /// This PE (from a handle resolution).
    Pe(PoolElement),
    /// A PE of this pool (`None`: the donor's own) chosen by the pool's policy, never the
    /// donor itself.
    Pool(Option<PoolHandle>),
}

/// How a donor hands off.
#[derive(Clone, Debug)]
pub struct HandoffOptions {
    /// Ask the receiver first (Handoff Offer); a refusal keeps the session.
    pub offer: bool,
    /// For the offer's answer; for a drain, until the sessions are gone.
    pub timeout: Duration,
    /// The state to present at the receiver instead of the last cookie the application sent.
    pub cookie: Option<Vec<u8>>,
}

impl Default for HandoffOptions {
    fn default() -> Self {
        HandoffOptions {
            offer: true,
            timeout: Duration::from_secs(5),
            cookie: None,
        }
    }
}

/// Why a handoff did not start.
#[derive(Debug)]
pub enum HandoffError {
    /// Only sessions a PE accepted, with a control channel, and not handed off already, can
    /// be handed off.
    NotHandOverable,
    /// A handoff of this session is under way.
    InProgress,
    /// No PE (other than the donor) could be found or reached.
    NoReceiver,
    /// The receiver refused the offer.
    Refused,
    /// The request could not be sent (the connection failed).
    Io(io::Error),
}

impl fmt::Display for HandoffError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandoffError::NotHandOverable => {
                write!(f, "not an accepted session with a control channel")
            }
            HandoffError::InProgress => write!(f, "a handoff is already under way"),
            HandoffError::NoReceiver => write!(f, "no other pool element to hand off to"),
            HandoffError::Refused => write!(f, "the receiver refused"),
            HandoffError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for HandoffError {}

/// The PU's handoff callback: receiver identifier and user data; returns a C bool (one byte;
/// zero = refuse).
pub type HandoffCallback = unsafe extern "C" fn(u32, *mut libc::c_void) -> u8;

/// What a PU's session does with handoff requests.
#[derive(Clone, Copy, Debug, Default)]
pub struct PuHandoff {
    /// Refuse every handoff.
    pub refuse: bool,
    /// Asked before each handoff (unless `refuse`).
    pub callback: Option<(HandoffCallback, *mut libc::c_void)>,
}

/// What a drain did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DrainReport {
    /// Sessions handed off to other PEs.
    pub handed_off: usize,
    /// Sessions that refused, found no receiver or did not finish in time: closed (their
    /// PUs fail over as usual).
    pub closed: usize,
}

/// Donor side of an accepted session, shared with a draining thread.
pub(crate) struct DonorSide {
    link: Arc<Link>,
    state: Mutex<DonorState>,
}

enum DonorState {
    Idle,
    Requested { cookie: Option<Vec<u8>> },
    Done(HandoffState),
}

impl DonorSide {
    pub(super) fn new(link: Arc<Link>) -> Arc<DonorSide> {
        Arc::new(DonorSide {
            link,
            state: Mutex::new(DonorState::Idle),
        })
    }

    pub(super) fn state(&self) -> HandoffState {
        match &*self.state.lock() {
            DonorState::Idle => HandoffState::None,
            DonorState::Requested { .. } => HandoffState::Requested,
            DonorState::Done(s) => *s,
        }
    }

    fn requested(&self) -> bool {
        matches!(*self.state.lock(), DonorState::Requested { .. })
    }
}

/// Largest amount a PU queues while it follows a handoff; beyond it writes block.
const MAX_QUEUED: usize = 64 << 20;
/// A PU that sent Handoff Ready and got no commit within this time fails over.
const FOLLOW_LIMIT: Duration = Duration::from_secs(10);

/// PU side: a handoff being followed (Ready sent, waiting for the commit).
pub(super) struct Follow {
    receiver: PoolElement,
    since: Instant,
}

/// PU side: what the application wrote while no connection could take it.
#[derive(Default)]
pub(super) struct Queue {
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

/// Donor: when the commit may be sent. Handoff Ready may be read by a write's look-ahead
/// while the application has read data it has not yet covered by a cookie: then the commit
/// waits for its next cookie or read, so that the state handed over covers every byte read.
#[derive(Default)]
pub(super) struct CommitPoint {
    /// Handoff Ready was read; the commit is pending.
    pub ready: bool,
    /// User data was delivered since the last cookie the application sent.
    pub read_since_cookie: bool,
    /// A write's look-ahead read is running.
    pub probing: bool,
}

/// What a control message means for the read that consumed it.
pub(super) enum Control {
    /// Consumed; the read reports it (or a stored cookie echo).
    Consumed,
    /// The session was handed off (donor).
    HandedOff,
    /// The connection ends here (an offer answered).
    End,
}

fn encode(m: &HandoffMessage) -> Vec<u8> {
    m.to_bytes().expect("handoff messages are small")
}

/// Chooses a receiver of `pool` by policy, never `donor`: from the library's cache when it
/// has one (a PE that does not answer is reported and dropped from it), else or then from a
/// fresh handle resolution; asks each first if `opts.offer`, and the next if it refuses.
fn choose_receiver(
    lib: &Library,
    pool: &PoolHandle,
    donor: u32,
    opts: &HandoffOptions,
) -> Result<PoolElement, HandoffError> {
    let mut refused = false;
    let mut tried: Vec<PeId> = Vec::new();
    let mut try_one = |pe: PoolElement, tried: &mut Vec<PeId>| -> Option<PoolElement> {
        if pe.id.0 == donor || tried.contains(&pe.id) {
            return None;
        }
        tried.push(pe.id);
        if !opts.offer {
            return Some(pe);
        }
        match offer(&pe, donor, offer_wait(opts)) {
            Ok(Offered::Accepted) => return Some(pe),
            Ok(Offered::Refused) => refused = true,
            Ok(Offered::NoAnswer) => {}
            Err(e) => {
                logging::log(
                    logging::VERBOSE,
                    &format!("rsplib: handoff offer to PE {} failed: {e}", pe.id),
                );
                let _ = lib.report_failure(pool.clone(), pe.id);
            }
        }
        None
    };
    if lib.caches() {
        for _ in 0..3 {
            match lib.resolve(pool) {
                Ok(Some(pe)) => {
                    if let Some(chosen) = try_one(pe, &mut tried) {
                        return Ok(chosen);
                    }
                }
                _ => break,
            }
        }
    }
    for _ in 0..3 {
        let before = tried.len();
        for pe in lib.resolve_fresh(pool, 4).unwrap_or_default() {
            if let Some(chosen) = try_one(pe, &mut tried) {
                return Ok(chosen);
            }
        }
        if tried.len() == before {
            break;
        }
    }
    Err(if refused {
        HandoffError::Refused
    } else {
        HandoffError::NoReceiver
    })
}

/// How long a donor waits for the answer to an offer (the receiver answers in its accept).
fn offer_wait(opts: &HandoffOptions) -> Duration {
    opts.timeout.min(Duration::from_secs(2))
}

/// The answer to a Handoff Offer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Offered {
    Accepted,
    Refused,
    /// Connected, but no answer within the time (the receiver's application did not accept).
    NoAnswer,
}

/// Handoff Offer to `receiver`; an error if it cannot be reached (or speaks no control
/// channel).
pub fn offer(receiver: &PoolElement, donor: u32, timeout: Duration) -> io::Result<Offered> {
    let t = &receiver.user_transport;
    if t.protocol == TransportProtocol::Tcp && t.transport_use != TRANSPORT_USE_DATA_PLUS_CONTROL {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "the receiver has no control channel",
        ));
    }
    let conn = connect_pe(t, timeout)?;
    conn.link.send_control(
        &encode(&HandoffMessage::Offer { donor: PeId(donor) }),
        Some(timeout),
    )?;
    let answer = match read_control(&conn.link, timeout) {
        Ok(a) => a,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            return Ok(Offered::NoAnswer)
        }
        Err(e) => return Err(e),
    };
    match HandoffMessage::decode(&answer).map(|d| d.message) {
        Ok(HandoffMessage::Accept) => Ok(Offered::Accepted),
        Ok(HandoffMessage::Refuse { .. }) => Ok(Offered::Refused),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "unexpected answer to a handoff offer",
        )),
    }
}

/// Reads one control message (PPID 11) from a fresh connection within `timeout`.
fn read_control(link: &Link, timeout: Duration) -> io::Result<Vec<u8>> {
    let fd = link.raw();
    match link.wire {
        Wire::Framed => {
            let mut h = [0u8; super::framing::HEADER];
            if !recv_exact(fd, &mut h, Some(timeout))? {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            match super::framing::parse(&h) {
                Some((_, PPID_ASAP, len)) if len <= 65536 => {
                    let mut msg = vec![0u8; len];
                    if !recv_exact(fd, &mut msg, Some(timeout))? {
                        return Err(io::ErrorKind::UnexpectedEof.into());
                    }
                    Ok(msg)
                }
                _ => Err(io::ErrorKind::InvalidData.into()),
            }
        }
        Wire::Sctp => {
            let deadline = Instant::now() + timeout;
            let mut buf = vec![0u8; 65536 + 16];
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                if !super::conn::wait(fd, libc::POLLIN, Some(left)) {
                    return Err(io::ErrorKind::TimedOut.into());
                }
                match sctp::recv(fd, &mut buf)? {
                    sctp::Received::Data {
                        len,
                        ppid,
                        complete,
                        ..
                    } if ppid == PPID_ASAP && complete => {
                        buf.truncate(len);
                        return Ok(buf);
                    }
                    sctp::Received::Data { .. } => return Err(io::ErrorKind::InvalidData.into()),
                    _ => {}
                }
            }
        }
        Wire::Raw => Err(io::ErrorKind::Unsupported.into()),
    }
}

/// Donor: chooses the receiver and sends the request on `side`'s connection.
fn request(
    lib: &Library,
    pe: &PeShared,
    side: &DonorSide,
    target: &HandoffTarget,
    opts: &HandoffOptions,
) -> Result<PeId, HandoffError> {
    if !side.link.control_channel() || side.state() == HandoffState::HandedOff {
        return Err(HandoffError::NotHandOverable);
    }
    if side.requested() {
        return Err(HandoffError::InProgress);
    }
    let donor = pe.identifier();
    let chosen = match target {
        HandoffTarget::Pe(receiver) => {
            if opts.offer {
                match offer(receiver, donor, offer_wait(opts)) {
                    Ok(Offered::Accepted) => Ok(receiver.clone()),
                    Ok(Offered::Refused) => Err(HandoffError::Refused),
                    Ok(Offered::NoAnswer) | Err(_) => Err(HandoffError::NoReceiver),
                }
            } else {
                Ok(receiver.clone())
            }
        }
        HandoffTarget::Pool(pool) => {
            choose_receiver(lib, pool.as_ref().unwrap_or(&pe.pool), donor, opts)
        }
    };
    let receiver = match chosen {
        Ok(r) => r,
        Err(e) => {
            let s = match e {
                HandoffError::Refused => HandoffState::Refused,
                _ => HandoffState::Failed,
            };
            *side.state.lock() = DonorState::Done(s);
            return Err(e);
        }
    };
    let id = receiver.id;
    *side.state.lock() = DonorState::Requested {
        cookie: opts.cookie.clone(),
    };
    if let Err(e) = side.link.send_control(
        &encode(&HandoffMessage::Request { receiver }),
        Some(opts.timeout),
    ) {
        *side.state.lock() = DonorState::Done(HandoffState::Failed);
        return Err(HandoffError::Io(e));
    }
    Ok(id)
}

impl Session {
    /// Donor: asks the PU to move to another PE. Returns the receiver's identifier once the
    /// request is sent; the session's next reads (or writes) complete the handoff: the read
    /// that does returns [`ReadOutcome::HandedOff`].
    pub fn hand_off(
        &mut self,
        target: HandoffTarget,
        opts: &HandoffOptions,
    ) -> Result<PeId, HandoffError> {
        let (Some(pe), Some(side)) = (self.owner.clone(), self.donor.clone()) else {
            return Err(HandoffError::NotHandOverable);
        };
        request(&self.lib, &pe, &side, &target, opts)
    }

    /// Where this session's handoff stands.
    pub fn handoff_state(&self) -> HandoffState {
        match &self.donor {
            Some(side) => side.state(),
            None if self.handoffs > 0 => HandoffState::Resumed,
            None => HandoffState::None,
        }
    }

    /// PU: handoffs this session followed.
    pub fn handoffs(&self) -> u64 {
        self.handoffs
    }

    /// Handles a handoff message read from the connection.
    pub(super) fn handoff_message(&mut self, bytes: &[u8]) -> Control {
        let message = match HandoffMessage::decode(bytes) {
            Ok(d) => d.message,
            Err(e) => {
                logging::log(
                    logging::VERBOSE,
                    &format!("rsplib: malformed handoff message ignored: {e}"),
                );
                return Control::Consumed;
            }
        };
        match message {
            HandoffMessage::Request { receiver } if self.pool.is_some() => {
                self.pu_request(receiver);
                Control::Consumed
            }
            HandoffMessage::Commit { cookie } if self.follow.is_some() => {
                self.pu_commit(cookie);
                Control::Consumed
            }
            HandoffMessage::Ready if self.donor.as_ref().is_some_and(|d| d.requested()) => {
                self.commit_point.ready = true;
                // In a read, the application has handled all it read before: commit. In a
                // write's look-ahead, only if its cookie covers what it read.
                if self.commit_point.probing && self.commit_point.read_since_cookie {
                    Control::Consumed
                } else {
                    self.donor_commit();
                    Control::HandedOff
                }
            }
            HandoffMessage::Refuse { .. } if self.donor.as_ref().is_some_and(|d| d.requested()) => {
                if let Some(side) = &self.donor {
                    *side.state.lock() = DonorState::Done(HandoffState::Refused);
                }
                Control::Consumed
            }
            HandoffMessage::Offer { donor } if self.owner.is_some() => {
                self.answer_offer(donor);
                Control::End
            }
            other => {
                logging::log(
                    logging::VERBOSE,
                    &format!("rsplib: unexpected handoff message ignored: {other:?}"),
                );
                Control::Consumed
            }
        }
    }

    /// Receiver: accept or refuse an offer (by this PE's limit), then this connection ends.
    fn answer_offer(&mut self, donor: PeId) {
        let Some(pe) = &self.owner else { return };
        // This connection counts as one of the PE's sessions: not against the limit.
        let others = pe.sessions.load(Ordering::Relaxed).saturating_sub(1);
        let accept = others < pe.handoff_limit.load(Ordering::Relaxed);
        let answer = if accept {
            HandoffMessage::Accept
        } else {
            HandoffMessage::Refuse {
                error: Some(wire::OperationError::new(
                    wire::cause::LACK_OF_RESOURCES,
                    &[],
                )),
            }
        };
        logging::log(
            logging::VERBOSE,
            &format!(
                "rsplib: handoff offer from PE {donor}: {}",
                if accept { "accepted" } else { "refused" }
            ),
        );
        if let Some(conn) = &self.conn {
            let _ = conn
                .link
                .send_control(&encode(&answer), Some(Duration::from_secs(1)));
        }
        self.offer_answered = true;
    }

    /// Donor: the PU is ready: send the commit with the state, close.
    fn donor_commit(&mut self) {
        self.commit_point.ready = false;
        let Some(side) = self.donor.clone() else {
            return;
        };
        let cookie = match std::mem::replace(&mut *side.state.lock(), DonorState::Idle) {
            DonorState::Requested { cookie } => cookie,
            _ => None,
        }
        .or_else(|| self.sent_cookie.clone());
        let commit = HandoffMessage::Commit {
            cookie: cookie.map(Into::into),
        };
        let sent = side
            .link
            .send_control(&encode(&commit), Some(Duration::from_secs(5)));
        side.link.shutdown();
        self.conn = None;
        let state = if sent.is_ok() {
            HandoffState::HandedOff
        } else {
            HandoffState::Failed
        };
        *side.state.lock() = DonorState::Done(state);
        if let Some(pe) = &self.owner {
            if sent.is_ok() {
                pe.handed_off.fetch_add(1, Ordering::Relaxed);
            }
            // A drain waits for this.
            let _live = pe.live.lock();
            pe.session_gone.notify_all();
        }
    }

    /// PU: a handoff request: refuse, or say ready and queue writes until the commit.
    fn pu_request(&mut self, receiver: PoolElement) {
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
        let sent = conn
            .link
            .send_control(&encode(&answer), Some(Duration::from_secs(5)));
        if sent.is_ok() && willing {
            self.follow = Some(Follow {
                receiver,
                since: Instant::now(),
            });
        }
    }

    /// PU: the commit: connect to the receiver, echo the cookie, send what was queued. A
    /// receiver that cannot be reached makes it an ordinary failover.
    fn pu_commit(&mut self, cookie: Option<Box<[u8]>>) {
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
    pub(super) fn check_follow_limit(&mut self) {
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
    pub(super) fn following(&self) -> bool {
        self.follow.is_some()
    }

    /// After a (re)connect: the cookie echo, then what was queued, in order.
    pub(super) fn after_connect(&mut self) {
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

    /// Donor: a write while a handoff is requested first looks for the PU's answer (a PU
    /// that only reads answers at once). True if the session was handed off.
    pub(super) fn donor_check_before_write(&mut self) -> bool {
        if self.handed_off() {
            return true;
        }
        if self.commit_point.ready {
            if self.commit_point.read_since_cookie {
                return false;
            }
            self.donor_commit();
            return true;
        }
        if !self.donor.as_ref().is_some_and(|d| d.requested()) {
            return false;
        }
        self.commit_point.probing = true;
        let outcome = self.read(None, Some(Duration::ZERO), false);
        self.commit_point.probing = false;
        outcome == ReadOutcome::HandedOff
    }

    /// Donor: the session is over here (handed off).
    pub(super) fn handed_off(&self) -> bool {
        self.donor
            .as_ref()
            .is_some_and(|d| d.state() == HandoffState::HandedOff)
            && self.conn.is_none()
    }

    /// Donor: at the start of a read, a pending commit is made (the application has handled
    /// all it read). True if the session is handed off.
    pub(super) fn donor_check_before_read(&mut self) -> bool {
        if self.commit_point.ready {
            self.donor_commit();
        }
        self.handed_off()
    }

    /// Donor: the application sent a cookie (it covers all it read); a pending commit is made.
    pub(super) fn donor_cookie_sent(&mut self, cookie: &[u8]) {
        self.sent_cookie = Some(cookie.to_vec());
        self.commit_point.read_since_cookie = false;
        if self.commit_point.ready {
            self.donor_commit();
        }
    }
}

impl EnhancedPe {
    /// Drain: deregister (no new sessions), ask every session to move to another PE of the
    /// pool, and wait up to `opts.timeout` for them to go. The sessions' own threads must keep
    /// reading or writing (they complete the handoffs); the ones still open at the deadline
    /// are closed, and their PUs fail over as usual.
    pub fn drain(&self, opts: &HandoffOptions) -> DrainReport {
        let before = self.handed_off();
        self.stop_and_deregister();
        let deadline = Instant::now() + opts.timeout;
        let sides: Vec<Arc<DonorSide>> = self
            .shared
            .live
            .lock()
            .iter()
            .filter_map(|w| w.upgrade())
            .collect();
        let mut closed: Vec<*const DonorSide> = Vec::new();
        for side in &sides {
            if side.requested() {
                continue;
            }
            if let Err(e) = request(
                &self.lib,
                &self.shared,
                side,
                &HandoffTarget::Pool(None),
                opts,
            ) {
                logging::log(
                    logging::VERBOSE,
                    &format!("rsplib: drain: a session stays ({e}); closing it"),
                );
                side.link.shutdown();
                closed.push(Arc::as_ptr(side));
            }
        }
        drop(sides);
        let mut live = self.shared.live.lock();
        // 1. Until every request is answered (handed off or refused).
        loop {
            live.retain(|w| w.strong_count() > 0);
            let waiting = live
                .iter()
                .filter_map(|w| w.upgrade())
                .any(|s| s.requested());
            if !waiting || Instant::now() >= deadline {
                break;
            }
            self.shared.session_gone.wait_until(&mut live, deadline);
        }
        // 2. What stays is closed: its PU fails over.
        for side in live.iter().filter_map(|w| w.upgrade()) {
            if side.state() != HandoffState::HandedOff && !closed.contains(&Arc::as_ptr(&side)) {
                side.link.shutdown();
                closed.push(Arc::as_ptr(&side));
            }
        }
        // 3. Until the application has deleted them (its reads now fail), one more second.
        let grace = Instant::now().max(deadline) + Duration::from_secs(1);
        loop {
            live.retain(|w| w.strong_count() > 0);
            if live.is_empty() || Instant::now() >= grace {
                break;
            }
            self.shared.session_gone.wait_until(&mut live, grace);
        }
        drop(live);
        DrainReport {
            handed_off: self.handed_off() - before,
            closed: closed.len(),
        }
    }
}
