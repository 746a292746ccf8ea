//! Choosing a receiver by the pool's policy, asking it first (Handoff Offer), and the
//! receiver's answer.

use std::io;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::*;
use crate::core::types::{TransportProtocol, TRANSPORT_USE_DATA_PLUS_CONTROL};
use crate::core::wire;
use crate::library::session::conn::{connect_pe, recv_exact, Wire};
use crate::library::Library;
use crate::transport::{sctp, PPID_ASAP};

/// Chooses a receiver of `pool` by policy, never `donor`: from the library's cache when it
/// has one (a PE that does not answer is reported and dropped from it), else or then from a
/// fresh handle resolution; asks each first if `opts.offer`, and the next if it refuses.
pub(super) fn choose_receiver(
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
pub(super) fn offer_wait(opts: &HandoffOptions) -> Duration {
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
    send(
        &conn.link,
        &HandoffMessage::Offer { donor: PeId(donor) },
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
            let mut h = [0u8; crate::library::session::framing::HEADER];
            if !recv_exact(fd, &mut h, Some(timeout))? {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            match crate::library::session::framing::parse(&h) {
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
                if !crate::library::session::conn::wait(fd, libc::POLLIN, Some(left)) {
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

impl Session {
    /// Receiver: accept or refuse an offer (by this PE's limit), then this connection ends.
    pub(super) fn answer_offer(&mut self, donor: PeId) {
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
            let _ = send(&conn.link, &answer, Some(Duration::from_secs(1)));
        }
        self.offer_answered = true;
    }
}
