//! Server-initiated session handoff (docs/handoff.md): the donor PE's side (request, commit,
//! drain, offers) and the PU's side (ready or refuse, queue, resume at the receiver).
//!
//! Parts: this file (types, the donor state a drain shares, what a control message means),
//! `donor.rs` (request, commit point, commit, drain), `pu.rs` (ready or refuse, the queue,
//! resume), `offer.rs` (choosing and asking a receiver, answering offers).

mod donor;
mod offer;
mod pu;

use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use super::conn::Link;
use super::Session;
use crate::core::types::{PeId, PoolHandle};
use crate::core::wire::handoff::HandoffMessage;
use crate::core::wire::PoolElement;
use crate::logging;

pub use offer::{offer, Offered};
pub(in crate::library::session) use pu::{Follow, Queue};

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
        // The texts are ASCII C string literals: to_str cannot fail.
        self.c_text().to_str().unwrap_or_default()
    }

    /// The text as a C string (`rspHandoffStateText`).
    pub fn c_text(self) -> &'static std::ffi::CStr {
        match self {
            HandoffState::None => c"no handoff",
            HandoffState::Requested => c"handoff requested, waiting for the pool user",
            HandoffState::HandedOff => c"session handed off",
            HandoffState::Refused => c"handoff refused, the session stays",
            HandoffState::Failed => c"handoff failed (no receiver), the session stays",
            HandoffState::Resumed => c"session resumed at a new pool element by handoff",
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

/// Sends a handoff message on `link`'s control channel (one that cannot be encoded, such as a
/// cookie past 64 KiB, is an `InvalidInput` error).
fn send(link: &Link, m: &HandoffMessage, timeout: Option<Duration>) -> io::Result<()> {
    let bytes = m
        .to_bytes()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
    link.send_control(&bytes, timeout)
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
        donor::request(&self.lib, &pe, &side, &target, opts)
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
}
