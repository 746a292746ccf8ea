//! Handoff messages (ours, docs/handoff.md): ASAP-shaped messages on a session's control
//! channel, types 0xC0–0xC5, outside RFC 5352's 0x01–0x0E and anything rsplib 3.x sends.

use super::error::WireError;
use super::header::{finish_message, start_message, MessageView};
use super::param::*;
use super::{Decoded, Protocol};
use crate::core::types::PeId;

pub const HANDOFF_REQUEST: u8 = 0xc0;
pub const HANDOFF_READY: u8 = 0xc1;
pub const HANDOFF_REFUSE: u8 = 0xc2;
pub const HANDOFF_COMMIT: u8 = 0xc3;
pub const HANDOFF_OFFER: u8 = 0xc4;
pub const HANDOFF_ACCEPT: u8 = 0xc5;

/// True for the message types of this module (the first byte of a message).
pub fn is_handoff_type(msg_type: u8) -> bool {
    (HANDOFF_REQUEST..=HANDOFF_ACCEPT).contains(&msg_type)
}

/// The name of a handoff message type.
pub fn message_name(msg_type: u8) -> &'static str {
    match msg_type {
        HANDOFF_REQUEST => "Handoff Request",
        HANDOFF_READY => "Handoff Ready",
        HANDOFF_REFUSE => "Handoff Refuse",
        HANDOFF_COMMIT => "Handoff Commit",
        HANDOFF_OFFER => "Handoff Offer",
        HANDOFF_ACCEPT => "Handoff Accept",
        _ => "Unknown",
    }
}

/// A handoff message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HandoffMessage {
    /// Donor → PU: move to `receiver` (its identifier and user transport).
    Request { receiver: PoolElement },
    /// PU → donor: nothing more follows from the PU on this connection.
    Ready,
    /// PU or receiver → donor: no.
    Refuse { error: Option<OperationError> },
    /// Donor → PU: go; present `cookie` (or the stored one) at the receiver.
    Commit { cookie: Option<Box<[u8]>> },
    /// Donor → receiver: will you take a session from `donor`?
    Offer { donor: PeId },
    /// Receiver → donor: yes.
    Accept,
}

impl HandoffMessage {
    pub fn msg_type(&self) -> u8 {
        match self {
            HandoffMessage::Request { .. } => HANDOFF_REQUEST,
            HandoffMessage::Ready => HANDOFF_READY,
            HandoffMessage::Refuse { .. } => HANDOFF_REFUSE,
            HandoffMessage::Commit { .. } => HANDOFF_COMMIT,
            HandoffMessage::Offer { .. } => HANDOFF_OFFER,
            HandoffMessage::Accept => HANDOFF_ACCEPT,
        }
    }

    /// Decodes exactly one message (unknown "skip" parameters are dropped).
    pub fn decode(bytes: &[u8]) -> Result<Decoded<HandoffMessage>, WireError> {
        let view = MessageView::new_checked(bytes)?;
        let msg_type = view.msg_type();
        let mut ctx = Ctx::default();
        let c = &mut ctx;
        let mut r = Reader::new(view.params(), "message");
        let message = match msg_type {
            HANDOFF_REQUEST => HandoffMessage::Request {
                receiver: PoolElement::parse(r.expect(c, PARAM_POOL_ELEMENT, "pool element")?, c)?,
            },
            HANDOFF_READY => HandoffMessage::Ready,
            HANDOFF_REFUSE => HandoffMessage::Refuse {
                error: match r.next_if(c, |t| t == PARAM_OPERATION_ERROR)? {
                    Some(t) => Some(OperationError::parse(t)?),
                    None => None,
                },
            },
            HANDOFF_COMMIT => HandoffMessage::Commit {
                cookie: r
                    .next_if(c, |t| t == PARAM_COOKIE)?
                    .map(|t| t.value().into()),
            },
            HANDOFF_OFFER => HandoffMessage::Offer {
                donor: parse_pe_id(r.expect(c, PARAM_PE_IDENTIFIER, "PE identifier")?)?,
            },
            HANDOFF_ACCEPT => HandoffMessage::Accept,
            _ => {
                return Err(WireError::UnknownMessageType {
                    protocol: Protocol::Asap,
                    msg_type,
                    message: view.bytes().into(),
                })
            }
        };
        r.finish(c)?;
        Ok(Decoded {
            message,
            unrecognized: ctx.report,
        })
    }

    /// Appends the encoded message to `buf`.
    pub fn emit(&self, buf: &mut Vec<u8>) -> Result<(), WireError> {
        let at = start_message(buf, self.msg_type(), 0);
        let mut w = Writer::new(buf, &[]);
        match self {
            HandoffMessage::Request { receiver } => receiver.emit(w.param())?,
            HandoffMessage::Refuse { error: Some(e) } => e.emit(w.param())?,
            HandoffMessage::Commit { cookie: Some(c) } => emit_bytes(w.param(), PARAM_COOKIE, c)?,
            HandoffMessage::Offer { donor } => emit_pe_id(w.param(), *donor)?,
            _ => {}
        }
        w.finish();
        finish_message(buf, at)
    }

    /// The encoded message.
    pub fn to_bytes(&self) -> Result<Vec<u8>, WireError> {
        let mut buf = Vec::with_capacity(64);
        self.emit(&mut buf)?;
        Ok(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::types::{PolicyInfo, TransportAddress, TransportProtocol};

    fn receiver() -> PoolElement {
        let mut t = TransportAddress::new(
            TransportProtocol::Tcp,
            4711,
            vec!["127.0.0.1".parse().unwrap()],
        );
        t.transport_use = crate::core::types::TRANSPORT_USE_DATA_PLUS_CONTROL;
        PoolElement::new(
            PeId(0x0102_0304),
            t,
            PolicyInfo::new(crate::core::types::PolicyType::RoundRobin),
        )
    }

    #[test]
    fn every_message_round_trips() {
        let all = [
            HandoffMessage::Request {
                receiver: receiver(),
            },
            HandoffMessage::Ready,
            HandoffMessage::Refuse { error: None },
            HandoffMessage::Refuse {
                error: Some(OperationError::new(0x0006, &[])),
            },
            HandoffMessage::Commit { cookie: None },
            HandoffMessage::Commit {
                cookie: Some(b"state 42".to_vec().into()),
            },
            HandoffMessage::Offer { donor: PeId(7) },
            HandoffMessage::Accept,
        ];
        for m in all {
            let bytes = m.to_bytes().unwrap();
            assert!(is_handoff_type(bytes[0]), "{m:?}");
            assert_eq!(HandoffMessage::decode(&bytes).unwrap().message, m);
        }
    }

    #[test]
    fn types_do_not_collide_with_asap_and_asap_decoding_refuses_them() {
        for t in 0x01..=0x0e {
            assert!(!is_handoff_type(t));
        }
        let bytes = HandoffMessage::Ready.to_bytes().unwrap();
        assert_eq!(bytes, [0xc1, 0, 0, 4]);
        assert!(super::super::AsapMessage::decode(&bytes).is_err());
    }

    #[test]
    fn truncated_and_foreign_input_is_an_error() {
        let bytes = HandoffMessage::Request {
            receiver: receiver(),
        }
        .to_bytes()
        .unwrap();
        for n in 0..bytes.len() {
            assert!(HandoffMessage::decode(&bytes[..n]).is_err(), "{n}");
        }
        let cookie = super::super::AsapMessage::new(super::super::AsapBody::Cookie {
            cookie: vec![1, 2].into(),
        })
        .to_bytes()
        .unwrap();
        assert!(HandoffMessage::decode(&cookie).is_err());
    }
}
