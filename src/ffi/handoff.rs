//! `rsplib-handoff.h`, part 1: server-initiated session handoff (docs/handoff.md). Not part of
//! the classic API: the classic headers stay as they were.
#![allow(non_snake_case, non_upper_case_globals)]

use std::time::Duration;

use libc::{c_char, c_uchar, c_uint};

use super::guard::{guard, try_mut, try_ref, try_slice};
use super::rserpoolerror::*;
use super::rsplib::{
    user_transport, EndpointAddressInfo, PoolElementDescriptor, SessionDescriptor,
};
use super::tagitem::{tagListGetData, tag_t, tagdata_t, TagItem, TAG_USER};
use crate::core::types::{
    PeId, PolicyInfo, PolicyType, PoolHandle, TransportProtocol, TRANSPORT_USE_DATA_PLUS_CONTROL,
};
use crate::core::wire::PoolElement;
use crate::library::session::{
    HandoffCallback, HandoffError, HandoffOptions, HandoffState, HandoffTarget, PuHandoff,
};

/// Handoff states (`rspSessionHandoffState`): the values of [`HandoffState`] (a test checks).
pub const RSPHANDOFF_NONE: c_uint = 0;
pub const RSPHANDOFF_REQUESTED: c_uint = 1;
pub const RSPHANDOFF_HANDED_OFF: c_uint = 2;
pub const RSPHANDOFF_REFUSED: c_uint = 3;
pub const RSPHANDOFF_FAILED: c_uint = 4;
pub const RSPHANDOFF_RESUMED: c_uint = 5;

/// rspCreateSession: a `HandoffCallbackPtr` asked before the session follows a handoff.
pub const TAG_RspHandoff_Callback: tag_t = TAG_USER + 12000;
/// rspCreateSession: the callback's user data.
pub const TAG_RspHandoff_UserData: tag_t = TAG_USER + 12001;
/// rspCreateSession: 1 = refuse every handoff.
pub const TAG_RspHandoff_Refuse: tag_t = TAG_USER + 12002;
/// rspSessionHandoff*, rspPoolElementDrain: 1 = ask the receiver first (default 1).
pub const TAG_RspHandoff_Offer: tag_t = TAG_USER + 12003;
/// µs: the offer's answer; for rspPoolElementDrain the whole drain (default 5 s).
pub const TAG_RspHandoff_Timeout: tag_t = TAG_USER + 12004;

/// PU side: called before the session follows a handoff to `receiverIdentifier`; false
/// refuses it (the session stays with its PE).
pub type HandoffCallbackPtr =
    Option<unsafe extern "C" fn(receiverIdentifier: u32, userData: *mut libc::c_void) -> bool>;

/// The PU-side handoff settings of `rspCreateSession`'s tags.
///
/// # Safety
/// `tags` NULL or a tag list; a callback tag must hold a `HandoffCallbackPtr`.
pub(crate) unsafe fn pu_handoff_from_tags(tags: *mut TagItem) -> PuHandoff {
    let cb = tagListGetData(tags, TAG_RspHandoff_Callback, 0);
    PuHandoff {
        refuse: tagListGetData(tags, TAG_RspHandoff_Refuse, 0) != 0,
        // SAFETY: the application passes a `HandoffCallbackPtr`; its C bool is read as a byte.
        callback: (cb != 0).then(|| {
            (
                std::mem::transmute::<usize, HandoffCallback>(cb as usize),
                tagListGetData(tags, TAG_RspHandoff_UserData, 0) as *mut libc::c_void,
            )
        }),
    }
}

/// Donor-side options from tags.
unsafe fn options(tags: *mut TagItem) -> HandoffOptions {
    let defaults = HandoffOptions::default();
    let timeout = tagListGetData(
        tags,
        TAG_RspHandoff_Timeout,
        defaults.timeout.as_micros() as tagdata_t,
    );
    HandoffOptions {
        offer: tagListGetData(tags, TAG_RspHandoff_Offer, 1) != 0,
        timeout: Duration::from_micros(timeout.clamp(1000, 3_600_000_000)),
        cookie: None,
    }
}

fn code(r: Result<PeId, HandoffError>) -> c_uint {
    match r {
        Ok(_) => RSPERR_OKAY,
        Err(HandoffError::NotHandOverable) => RSPERR_WRONG_CONTROLCHANNEL_HANDLING,
        Err(HandoffError::InProgress) => RSPERR_INVALID_VALUES,
        Err(HandoffError::NoReceiver) => RSPERR_NOT_FOUND,
        Err(HandoffError::Refused) => RSPERR_NO_RESOURCES,
        Err(HandoffError::Io(_)) => RSPERR_WRITE_ERROR,
    }
}

/// Donor: hands the session to the PE `receiver` describes (one entry from
/// `rspHandleResolution()`; a TCP receiver must have a control channel). Returns
/// `RSPERR_OKAY` once the request is sent; the session's next read or write completes the
/// handoff and returns `RspRead_Failover`, with `rspSessionHandoffState()` =
/// `RSPHANDOFF_HANDED_OFF`. `RSPERR_NO_RESOURCES`: the receiver refused the offer;
/// `RSPERR_NOT_FOUND`: it could not be asked; `RSPERR_WRONG_CONTROLCHANNEL_HANDLING`: not an
/// accepted session with a control channel. Tags: `TAG_RspHandoff_Offer`,
/// `TAG_RspHandoff_Timeout`.
///
/// # Safety
/// `sd` NULL or a live session; `receiver` NULL or a valid node; `tags` NULL or a tag list.
#[no_mangle]
pub unsafe extern "C" fn rspSessionHandoff(
    sd: *mut SessionDescriptor,
    receiver: *const EndpointAddressInfo,
    tags: *mut TagItem,
) -> c_uint {
    guard("rspSessionHandoff", || {
        let (Some(d), Some(eai)) = (try_mut(sd), try_ref(receiver)) else {
            return RSPERR_INVALID_VALUES;
        };
        let mut transport = match user_transport(eai) {
            Ok(t) => t,
            Err(e) => return e,
        };
        if transport.protocol == TransportProtocol::Tcp {
            transport.transport_use = TRANSPORT_USE_DATA_PLUS_CONTROL;
        }
        let pe = PoolElement::new(
            PeId(eai.ai_pe_id),
            transport,
            PolicyInfo::new(PolicyType::RoundRobin),
        );
        code(d.session.hand_off(HandoffTarget::Pe(pe), &options(tags)))
    })
}

/// Donor: hands the session to a PE of the pool chosen by the pool's policy, never the donor
/// itself (`poolHandle` NULL: the donor's own pool). Results as `rspSessionHandoff`.
///
/// # Safety
/// `sd` NULL or a live session; `poolHandle` NULL or `poolHandleSize` bytes; `tags` NULL or a
/// tag list.
#[no_mangle]
pub unsafe extern "C" fn rspSessionHandoffToPool(
    sd: *mut SessionDescriptor,
    poolHandle: *const c_uchar,
    poolHandleSize: usize,
    tags: *mut TagItem,
) -> c_uint {
    guard("rspSessionHandoffToPool", || {
        let Some(d) = try_mut(sd) else {
            return RSPERR_INVALID_VALUES;
        };
        let pool = if poolHandle.is_null() {
            None
        } else {
            match try_slice(poolHandle, poolHandleSize) {
                Some(b) if !b.is_empty() && b.len() <= 32 => Some(PoolHandle::new(b)),
                _ => return RSPERR_INVALID_POOL_HANDLE,
            }
        };
        code(
            d.session
                .hand_off(HandoffTarget::Pool(pool), &options(tags)),
        )
    })
}

/// Where the session's handoff stands: `RSPHANDOFF_*` (`RSPHANDOFF_NONE` for NULL).
///
/// # Safety
/// `sd` NULL or a live session.
#[no_mangle]
pub unsafe extern "C" fn rspSessionHandoffState(sd: *mut SessionDescriptor) -> c_uint {
    guard("rspSessionHandoffState", || {
        try_ref(sd).map_or(RSPHANDOFF_NONE, |d| d.session.handoff_state() as c_uint)
    })
}

/// A handoff state as text (static; "unknown handoff state" for other values).
#[no_mangle]
pub extern "C" fn rspHandoffStateText(state: c_uint) -> *const c_char {
    guard("rspHandoffStateText", || {
        HandoffState::from_code(state)
            .map_or(c"unknown handoff state", HandoffState::c_text)
            .as_ptr()
    })
}

/// Drain: deregisters the PE (no new sessions), asks every session of it to move to another
/// PE of its pool, and waits up to `TAG_RspHandoff_Timeout` (default 5 s) for the handoffs;
/// the sessions still open then are closed (their PUs fail over as usual), and it waits up to
/// one more second for the application to delete them. The sessions' own threads must keep
/// reading or writing: they complete the handoffs. Returns the number handed off.
///
/// # Safety
/// `ped` NULL or a live descriptor; `tags` NULL or a tag list.
#[no_mangle]
pub unsafe extern "C" fn rspPoolElementDrain(
    ped: *mut PoolElementDescriptor,
    tags: *mut TagItem,
) -> usize {
    guard("rspPoolElementDrain", || {
        try_ref(ped).map_or(0, |d| d.pe.drain(&options(tags)).handed_off)
    })
}

/// Receiver: refuse handoff offers while the PE has `maxSessions` sessions or more
/// (`(size_t)-1`: no limit, the default; 0 refuses every offer).
///
/// # Safety
/// `ped` NULL or a live descriptor.
#[no_mangle]
pub unsafe extern "C" fn rspPoolElementSetHandoffLimit(
    ped: *mut PoolElementDescriptor,
    maxSessions: usize,
) {
    guard("rspPoolElementSetHandoffLimit", || {
        if let Some(d) = try_ref(ped) {
            d.pe.set_handoff_limit((maxSessions != usize::MAX).then_some(maxSessions));
        }
    })
}

/// Sets the load the PE registers with (its policy's Load value: 0 idle … 0xffffffff full;
/// Least Used and the other load policies choose by it) and registers again at once. A PE
/// that hands sessions to "the least-used PE" wants its receivers to keep this current.
///
/// # Safety
/// `ped` NULL or a live descriptor.
#[no_mangle]
pub unsafe extern "C" fn rspPoolElementSetLoad(ped: *mut PoolElementDescriptor, load: u32) {
    guard("rspPoolElementSetLoad", || {
        if let Some(d) = try_ref(ped) {
            d.pe.set_load(load);
        }
    })
}

/// The sessions a PE has accepted and not yet deleted (0 for NULL).
///
/// # Safety
/// `ped` NULL or a live descriptor.
#[no_mangle]
pub unsafe extern "C" fn rspPoolElementSessions(ped: *mut PoolElementDescriptor) -> usize {
    guard("rspPoolElementSessions", || {
        try_ref(ped).map_or(0, |d| d.pe.sessions())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_constants_are_the_rust_states_and_have_texts() {
        let all = [
            (RSPHANDOFF_NONE, HandoffState::None),
            (RSPHANDOFF_REQUESTED, HandoffState::Requested),
            (RSPHANDOFF_HANDED_OFF, HandoffState::HandedOff),
            (RSPHANDOFF_REFUSED, HandoffState::Refused),
            (RSPHANDOFF_FAILED, HandoffState::Failed),
            (RSPHANDOFF_RESUMED, HandoffState::Resumed),
        ];
        for (code, state) in all {
            assert_eq!(code, state as c_uint);
            assert_eq!(HandoffState::from_code(code), Some(state));
            // SAFETY: the function returns a static C string.
            let text = unsafe { std::ffi::CStr::from_ptr(rspHandoffStateText(code)) };
            assert_eq!(text.to_str().unwrap(), state.text());
        }
        assert_eq!(HandoffState::from_code(6), None);
    }
}
