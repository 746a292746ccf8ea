//! The sans-I/O ASAP/ENRP wire codec (RFC 5352, 5353, 5354, 5356 and rsplib's extensions).
//!
//! * [`header`] — the common 4-byte header and a checked [`MessageView`].
//! * [`param`] — parameter type codes, the checked [`Tlv`] view and the owned parameter types
//!   ([`PoolElement`], [`ServerInformation`], [`OperationError`], …).
//! * [`handoff`] — our session handoff messages (docs/handoff.md), ASAP-shaped, types 0xC0–0xC5.
//! * [`asap`] / [`enrp`] — [`AsapMessage`] / [`EnrpMessage`]: `decode(&[u8])` and `emit`.
//! * [`error`](WireError) — typed decoding errors and their Operation Error cause codes.
//!
//! Decoding validates every length against the bytes actually present before trusting it, so
//! it never panics and allocates at most in proportion to the input. Unknown parameters follow
//! their action bits: "stop" types fail with [`WireError::UnrecognizedParameter`], "skip" types
//! are kept in the message (re-encoded at the same place) and, with the report bit, also listed
//! in [`Decoded::unrecognized`]. Encoding is canonical (zero padding, message length including
//! the final padding, as rsplib sends it), so every canonical message re-encodes byte-exactly.
//! Non-canonical but accepted input (non-zero padding, unpadded message length, policy values
//! beyond those the policy carries, unknown "skip" parameters inside transports) decodes to the
//! value of its canonical form.
//!
//! A registrar decodes with [`decode`] (or `AsapMessage::decode`), answers
//! `Decoded::unrecognized` with [`Decoded::report`] and a decoding error with
//! [`WireError::operation_error`] (when [`WireError::should_report`]).

pub mod asap;
pub mod enrp;
mod error;
pub mod handoff;
pub mod header;
pub mod param;

pub use asap::{AsapBody, AsapMessage};
pub use enrp::{EnrpBody, EnrpMessage, PoolEntries};
pub use error::{cause, WireError};
pub use header::{message_length, MessageView};
pub use param::{
    ErrorCause, OperationError, PoolElement, RawParam, ServerInformation, SkippedParam, Tlv,
    UnknownAction, MAX_ADDRESSES,
};

/// SCTP payload protocol identifier of ASAP (RFC 5352).
pub const PPID_ASAP: u32 = 11;
/// SCTP payload protocol identifier of ENRP (RFC 5353).
pub const PPID_ENRP: u32 = 12;
/// Well-known ASAP port (SCTP; UDP announces; our TCP mapping).
pub const ASAP_PORT: u16 = 3863;
/// Well-known ENRP port.
pub const ENRP_PORT: u16 = 9901;

/// Which of the two protocols a message belongs to (carried by the PPID or the port; the type
/// codes overlap).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    Asap,
    Enrp,
}

impl Protocol {
    /// The SCTP PPID.
    pub const fn ppid(self) -> u32 {
        match self {
            Protocol::Asap => PPID_ASAP,
            Protocol::Enrp => PPID_ENRP,
        }
    }

    /// The protocol of an SCTP PPID.
    pub fn from_ppid(ppid: u32) -> Option<Self> {
        match ppid {
            PPID_ASAP => Some(Protocol::Asap),
            PPID_ENRP => Some(Protocol::Enrp),
            _ => None,
        }
    }

    /// The well-known port.
    pub const fn port(self) -> u16 {
        match self {
            Protocol::Asap => ASAP_PORT,
            Protocol::Enrp => ENRP_PORT,
        }
    }

    /// "asap" or "enrp".
    pub const fn name(self) -> &'static str {
        match self {
            Protocol::Asap => "asap",
            Protocol::Enrp => "enrp",
        }
    }
}

/// A decoded message and the unknown "skip and report" parameters met on the way (from any
/// nesting level), which the receiver should answer with an "unrecognized parameter" error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decoded<M> {
    pub message: M,
    pub unrecognized: Vec<RawParam>,
}

impl<M> Decoded<M> {
    /// An Operation Error with one "unrecognized parameter" cause per reported parameter, or
    /// `None` if there is nothing to report.
    pub fn report(&self) -> Option<OperationError> {
        if self.unrecognized.is_empty() {
            return None;
        }
        Some(OperationError {
            causes: self
                .unrecognized
                .iter()
                .map(ErrorCause::unrecognized_parameter)
                .collect(),
        })
    }
}

/// An ASAP or ENRP message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    Asap(AsapMessage),
    Enrp(EnrpMessage),
}

impl Message {
    /// The protocol.
    pub fn protocol(&self) -> Protocol {
        match self {
            Message::Asap(_) => Protocol::Asap,
            Message::Enrp(_) => Protocol::Enrp,
        }
    }

    /// The wire type code.
    pub fn msg_type(&self) -> u8 {
        match self {
            Message::Asap(m) => m.msg_type(),
            Message::Enrp(m) => m.msg_type(),
        }
    }

    /// The flags byte.
    pub fn flags(&self) -> u8 {
        match self {
            Message::Asap(m) => m.flags,
            Message::Enrp(m) => m.flags,
        }
    }

    /// The message name.
    pub fn name(&self) -> &'static str {
        match self {
            Message::Asap(m) => m.name(),
            Message::Enrp(m) => m.name(),
        }
    }

    /// Appends the encoded message to `buf`.
    pub fn emit(&self, buf: &mut Vec<u8>) -> Result<(), WireError> {
        match self {
            Message::Asap(m) => m.emit(buf),
            Message::Enrp(m) => m.emit(buf),
        }
    }

    /// The encoded message.
    pub fn to_bytes(&self) -> Result<Vec<u8>, WireError> {
        let mut buf = Vec::with_capacity(64);
        self.emit(&mut buf)?;
        Ok(buf)
    }
}

/// Decodes exactly one message of the given protocol.
pub fn decode(protocol: Protocol, bytes: &[u8]) -> Result<Decoded<Message>, WireError> {
    match protocol {
        Protocol::Asap => AsapMessage::decode(bytes).map(|d| Decoded {
            message: Message::Asap(d.message),
            unrecognized: d.unrecognized,
        }),
        Protocol::Enrp => EnrpMessage::decode(bytes).map(|d| Decoded {
            message: Message::Enrp(d.message),
            unrecognized: d.unrecognized,
        }),
    }
}

/// The ASAP Error message to answer undecodable bytes with (`None` for an unknown parameter
/// with action bits 00, which is discarded silently).
pub fn asap_error_reply(err: &WireError, received: &[u8]) -> Option<AsapMessage> {
    err.should_report().then(|| {
        AsapMessage::new(AsapBody::Error {
            error: fitted(err.operation_error(received), ASAP_ERROR_BUDGET),
        })
    })
}

/// Room for the Operation Error parameter in an ASAP Error message (the common header is 4
/// bytes, the whole message at most 65535, a multiple of 4).
pub const ASAP_ERROR_BUDGET: usize = 65532 - 4;
/// Room for it in an ENRP Error message (12-byte header: sender and receiver ids).
pub const ENRP_ERROR_BUDGET: usize = 65532 - 12;

/// `error`, cut to fit in `budget` bytes (see [`OperationError::fit`]).
pub fn fitted(mut error: OperationError, budget: usize) -> OperationError {
    error.fit(budget);
    error
}

/// The ENRP Error message (from `sender` = us to `receiver` = the peer) to answer undecodable
/// bytes with; `None` when the error is to be discarded silently.
pub fn enrp_error_reply(
    err: &WireError,
    received: &[u8],
    sender: crate::core::types::RegistrarId,
    receiver: crate::core::types::RegistrarId,
) -> Option<EnrpMessage> {
    err.should_report().then(|| {
        EnrpMessage::new(
            sender,
            receiver,
            EnrpBody::Error {
                error: fitted(err.operation_error(received), ENRP_ERROR_BUDGET),
            },
        )
    })
}

#[cfg(test)]
mod fit_tests {
    use super::*;

    #[test]
    fn an_error_echoing_a_64k_message_fits_in_one_message() {
        // An unknown message type of the largest size: the echo alone is 65532 bytes.
        let mut msg = vec![0x77, 0, 0, 0];
        msg.resize(65532, 0xab);
        msg[2..4].copy_from_slice(&65532u16.to_be_bytes());
        let err = AsapMessage::decode(&msg).unwrap_err();
        let reply = asap_error_reply(&err, &msg).unwrap().to_bytes().unwrap();
        assert!(reply.len() <= 65535, "reply of {} bytes", reply.len());
        let back = AsapMessage::decode(&reply).unwrap().message;
        let AsapBody::Error { error } = back.body else {
            panic!("not an error: {back:?}")
        };
        assert_eq!(error.code(), cause::UNRECOGNIZED_MESSAGE);
        // The echo is cut, not dropped: it starts with the offending message.
        assert!(error.causes[0].info.len() > 60_000);
        assert_eq!(&error.causes[0].info[..4], &msg[..4]);
    }

    #[test]
    fn fit_drops_trailing_causes_before_cutting_the_first() {
        let mut e = OperationError {
            causes: vec![
                ErrorCause::new(1, &[1; 400]),
                ErrorCause::new(2, &[2; 400]),
                ErrorCause::new(3, &[3; 400]),
            ],
        };
        e.fit(4 + 404 + 404 + 100);
        assert!(e.encoded_len() <= 912);
        assert_eq!(e.causes[0].info.len(), 400);
        assert_eq!(e.causes[1].info.len(), 400);
        e.fit(200);
        assert!(e.encoded_len() <= 200);
        assert_eq!(e.causes.len(), 1);
        assert_eq!(e.causes[0].code, 1);
        let small = e.clone();
        e.fit(10_000);
        assert_eq!(e, small, "a fitting error is left alone");
    }
}
