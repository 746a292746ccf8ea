//! Donor side: the request, when the commit may go out, the commit, and draining a PE.

use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::offer::{choose_receiver, offer_wait};
use super::*;
use crate::core::types::PeId;
use crate::library::session::pe::{EnhancedPe, PeShared};
use crate::library::session::{ReadOutcome, MAX_COOKIE};
use crate::library::Library;

/// Donor: chooses the receiver and sends the request on `side`'s connection.
pub(super) fn request(
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
    if opts.cookie.as_ref().is_some_and(|c| c.len() > MAX_COOKIE) {
        return Err(HandoffError::Io(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a handoff cookie is at most 65 000 bytes",
        )));
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
    if let Err(e) = send(
        &side.link,
        &HandoffMessage::Request { receiver },
        Some(opts.timeout),
    ) {
        *side.state.lock() = DonorState::Done(HandoffState::Failed);
        return Err(HandoffError::Io(e));
    }
    Ok(id)
}

impl Session {
    /// Donor: the PU is ready: send the commit with the state, close.
    pub(super) fn donor_commit(&mut self) {
        self.commit_point.ready = false;
        let Some(side) = self.donor.clone() else {
            return;
        };
        // The state stays Requested until the commit is out: a drain waiting for its
        // requests must not take this session for one that never moved and close it.
        let cookie = match &mut *side.state.lock() {
            DonorState::Requested { cookie } => cookie.take(),
            _ => None,
        }
        .or_else(|| self.sent_cookie.clone());
        let commit = HandoffMessage::Commit {
            cookie: cookie.map(Into::into),
        };
        let sent = send(&side.link, &commit, Some(Duration::from_secs(5)));
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

    /// Donor: a write while a handoff is requested first looks for the PU's answer (a PU
    /// that only reads answers at once). True if the session was handed off.
    pub(in crate::library::session) fn donor_check_before_write(&mut self) -> bool {
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
    pub(in crate::library::session) fn handed_off(&self) -> bool {
        self.donor
            .as_ref()
            .is_some_and(|d| d.state() == HandoffState::HandedOff)
            && self.conn.is_none()
    }

    /// Donor: at the start of a read, a pending commit is made (the application has handled
    /// all it read). True if the session is handed off.
    pub(in crate::library::session) fn donor_check_before_read(&mut self) -> bool {
        if self.commit_point.ready {
            self.donor_commit();
        }
        self.handed_off()
    }

    /// Donor: the application sent a cookie (it covers all it read); a pending commit is made.
    pub(in crate::library::session) fn donor_cookie_sent(&mut self, cookie: &[u8]) {
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
