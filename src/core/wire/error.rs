//! Decoding errors and the Operation Error cause codes they map to (RFC 5352 §3.13, RFC 5354
//! §3.9, rsplib's non-RFC numbers).

use super::param::{ErrorCause, OperationError, UnknownAction};
use super::Protocol;

/// Operation Error cause codes (RFC 5352 §3.13 / RFC 5354 §3.9).
pub mod cause {
    /// Unrecognized parameter; info = the offending TLV.
    pub const UNRECOGNIZED_PARAMETER: u16 = 0x0001;
    /// Unrecognized message; info = the offending message.
    pub const UNRECOGNIZED_MESSAGE: u16 = 0x0002;
    /// Invalid values; info = the offending TLV.
    pub const INVALID_VALUES: u16 = 0x0003;
    /// Non-unique PE identifier.
    pub const NON_UNIQUE_PE_IDENTIFIER: u16 = 0x0004;
    /// Inconsistent pooling policy; info = the offending policy TLV.
    pub const INCONSISTENT_POOLING_POLICY: u16 = 0x0005;
    /// Lack of resources.
    pub const LACK_OF_RESOURCES: u16 = 0x0006;
    /// Inconsistent transport type; info = the offending transport TLV.
    pub const INCONSISTENT_TRANSPORT_TYPE: u16 = 0x0007;
    /// Inconsistent data/control configuration.
    pub const INCONSISTENT_DATA_CONTROL: u16 = 0x0008;
    /// Unknown pool handle.
    pub const UNKNOWN_POOL_HANDLE: u16 = 0x0009;
    /// Rejection due to security considerations.
    pub const REJECTED_SECURITY: u16 = 0x000a;

    // rsplib 3.4 internal error numbers it also sends as cause codes (wire-format-detailed §5.4).
    /// rsplib: invalid message.
    pub const RSPLIB_INVALID_MESSAGE: u16 = 0x0010;
    /// rsplib: invalid value.
    pub const RSPLIB_INVALID_VALUE: u16 = 0x0011;
    /// rsplib: wrong protocol (pool mixes transport protocols).
    pub const RSPLIB_WRONG_PROTOCOL: u16 = 0x100a;
    /// rsplib: unsupported pool policy.
    pub const RSPLIB_UNSUPPORTED_POLICY: u16 = 0x100b;
    /// rsplib: invalid PE identifier (0).
    pub const RSPLIB_INVALID_PE_ID: u16 = 0xf000;
    /// rsplib: invalid pool policy.
    pub const RSPLIB_INVALID_POLICY: u16 = 0xf003;
    /// rsplib: invalid pool handle (longer than 32 bytes).
    pub const RSPLIB_INVALID_POOL_HANDLE: u16 = 0xf004;
    /// rsplib: invalid addresses (0 or more than 64, port 0).
    pub const RSPLIB_INVALID_ADDRESSES: u16 = 0xf005;
    /// rsplib: invalid registrator (ASAP transport in a Registration).
    pub const RSPLIB_INVALID_REGISTRATOR: u16 = 0xf006;
    /// rsplib: no usable ASAP addresses.
    pub const RSPLIB_NO_USABLE_ASAP_ADDRESSES: u16 = 0xf007;
    /// rsplib: no usable user addresses.
    pub const RSPLIB_NO_USABLE_USER_ADDRESSES: u16 = 0xf008;

    /// Wireshark's name for a cause code (rsplib's meaning for its own numbers).
    pub fn name(code: u16) -> &'static str {
        match code {
            UNRECOGNIZED_PARAMETER => "Unrecognized parameter",
            UNRECOGNIZED_MESSAGE => "Unrecognized message",
            INVALID_VALUES => "Invalid values",
            NON_UNIQUE_PE_IDENTIFIER => "Non-unique PE identifier",
            INCONSISTENT_POOLING_POLICY => "Inconsistent pooling policy",
            LACK_OF_RESOURCES => "Lack of resources",
            INCONSISTENT_TRANSPORT_TYPE => "Inconsistent transport type",
            INCONSISTENT_DATA_CONTROL => "Inconsistent data/control configuration",
            UNKNOWN_POOL_HANDLE => "Unknown pool handle",
            REJECTED_SECURITY => "Rejection due to security considerations",
            RSPLIB_INVALID_MESSAGE => "rsplib: invalid message",
            RSPLIB_INVALID_VALUE => "rsplib: invalid value",
            RSPLIB_WRONG_PROTOCOL => "rsplib: wrong protocol",
            RSPLIB_UNSUPPORTED_POLICY => "rsplib: unsupported pool policy",
            RSPLIB_INVALID_PE_ID => "rsplib: invalid PE identifier",
            RSPLIB_INVALID_POLICY => "rsplib: invalid pool policy",
            RSPLIB_INVALID_POOL_HANDLE => "rsplib: invalid pool handle",
            RSPLIB_INVALID_ADDRESSES => "rsplib: invalid addresses",
            RSPLIB_INVALID_REGISTRATOR => "rsplib: invalid registrator",
            RSPLIB_NO_USABLE_ASAP_ADDRESSES => "rsplib: no usable ASAP addresses",
            RSPLIB_NO_USABLE_USER_ADDRESSES => "rsplib: no usable user addresses",
            _ => "Unknown cause",
        }
    }
}

/// Everything that can go wrong while decoding an ASAP or ENRP message.
///
/// Variants that concern one parameter carry its raw TLV bytes (header + value, no padding) so
/// the receiver can echo it in an Operation Error (see [`WireError::operation_error`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Fewer bytes than a header or fixed field needs.
    #[error("truncated {what}: need {need} bytes, have {have}")]
    Truncated {
        what: &'static str,
        need: usize,
        have: usize,
    },
    /// A length field that is impossible for its item (too short, wrong fixed size, not a
    /// multiple of 4 where required).
    #[error("bad length {len} for {what}")]
    BadLength {
        what: &'static str,
        len: usize,
        tlv: Option<Box<[u8]>>,
    },
    /// Bytes after the end of the message (beyond its padding).
    #[error("{extra} trailing bytes after the message")]
    TrailingBytes { extra: usize },
    /// A message type this protocol does not define.
    #[error("unknown {protocol:?} message type 0x{msg_type:02x}")]
    UnknownMessageType {
        protocol: Protocol,
        msg_type: u8,
        message: Box<[u8]>,
    },
    /// An unknown parameter whose action bits say "stop" (00) or "stop and report" (01).
    #[error("unrecognized parameter type 0x{param_type:04x} ({action:?})")]
    UnrecognizedParameter {
        param_type: u16,
        action: UnknownAction,
        tlv: Box<[u8]>,
    },
    /// A known parameter where another one was expected (rsplib's parser is order-sensitive).
    #[error("unexpected parameter type 0x{found:04x}, expected {expected}")]
    UnexpectedParameter {
        expected: &'static str,
        found: u16,
        tlv: Box<[u8]>,
    },
    /// A parameter whose length runs past the end of its message or enclosing parameter.
    #[error(
        "parameter 0x{param_type:04x} of length {len} overflows its {parent} ({room} bytes left)"
    )]
    NestedOverflow {
        parent: &'static str,
        param_type: u16,
        len: usize,
        room: usize,
    },
    /// More addresses in one transport parameter than [`super::MAX_ADDRESSES`].
    #[error("too many addresses in a transport parameter (more than {max})")]
    TooManyAddresses { max: usize, tlv: Box<[u8]> },
    /// A mandatory parameter is absent.
    #[error("missing mandatory {what}")]
    MissingParameter { what: &'static str },
    /// Encoding only: a message or parameter longer than its 16-bit length field allows.
    #[error("{what} too long to encode ({len} bytes)")]
    TooLong { what: &'static str, len: usize },
    /// A member selection policy type this implementation does not know.
    #[error("unsupported member selection policy 0x{policy:08x}")]
    UnsupportedPolicy { policy: u32, tlv: Box<[u8]> },
}

impl WireError {
    /// The Operation Error cause code a receiver should answer with.
    ///
    /// RFC codes only: 0x0001 for unrecognized parameters, 0x0002 for unknown message types,
    /// 0x0003 (invalid values) for every malformed length or value. (rsplib sends its own
    /// 0x100b for an unsupported policy; RFC peers and Wireshark understand 0x0003.)
    pub fn cause_code(&self) -> u16 {
        match self {
            WireError::UnrecognizedParameter { .. } => cause::UNRECOGNIZED_PARAMETER,
            WireError::UnknownMessageType { .. } => cause::UNRECOGNIZED_MESSAGE,
            _ => cause::INVALID_VALUES,
        }
    }

    /// The raw bytes the cause should carry as info: the offending TLV or message, if known.
    pub fn offending_bytes(&self) -> Option<&[u8]> {
        match self {
            WireError::BadLength { tlv, .. } => tlv.as_deref(),
            WireError::UnknownMessageType { message, .. } => Some(message),
            WireError::UnrecognizedParameter { tlv, .. }
            | WireError::UnexpectedParameter { tlv, .. }
            | WireError::TooManyAddresses { tlv, .. }
            | WireError::UnsupportedPolicy { tlv, .. } => Some(tlv),
            _ => None,
        }
    }

    /// False only for an unknown parameter with action bits 00 ("stop, discard silently").
    pub fn should_report(&self) -> bool {
        !matches!(
            self,
            WireError::UnrecognizedParameter {
                action: UnknownAction::Stop,
                ..
            }
        )
    }

    /// The error cause to send back: [`Self::cause_code`] with the offending TLV or message as
    /// info; when the error carries none, `message` (the received bytes, capped at 1024) is used.
    pub fn error_cause(&self, message: &[u8]) -> ErrorCause {
        match self.offending_bytes() {
            Some(b) => ErrorCause::with_tlv(self.cause_code(), b),
            None => ErrorCause::with_tlv(self.cause_code(), &message[..message.len().min(1024)]),
        }
    }

    /// A whole Operation Error parameter with one cause, see [`Self::error_cause`].
    pub fn operation_error(&self, message: &[u8]) -> OperationError {
        OperationError {
            causes: vec![self.error_cause(message)],
        }
    }
}
