//! Why the handlespace refused an operation, with the RFC 5352 cause code and the classic
//! `RSPERR_*` code of each reason (one table, below).

use crate::core::types::{PolicyType, TransportProtocol, MAX_POOL_HANDLE_SIZE};

/// At most this many addresses in a user transport (rsplib `MAX_PE_TRANSPORTADDRESSES`).
pub const MAX_PE_TRANSPORT_ADDRESSES: usize = 64;

/// A refused handlespace operation.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HandlespaceError {
    #[error("invalid pool handle: {0} bytes (must be 1..={MAX_POOL_HANDLE_SIZE})")]
    InvalidPoolHandle(usize),
    #[error("invalid PE identifier 0")]
    InvalidPeId,
    #[error("registration life of 0 ms")]
    InvalidRegistrationLife,
    #[error("user transport without addresses")]
    NoAddresses,
    #[error("user transport with {0} addresses (at most {MAX_PE_TRANSPORT_ADDRESSES})")]
    TooManyAddresses(usize),
    #[error("{0:?} user transport with {1} addresses (only SCTP may be multihomed)")]
    MultihomedNonSctp(TransportProtocol, usize),
    #[error("user transport port 0")]
    InvalidPort,
    #[error("policy {requested:?} inconsistent with the pool's {pool:?}")]
    InconsistentPolicy {
        pool: PolicyType,
        requested: PolicyType,
    },
    #[error("transport {requested:?} inconsistent with the pool's {pool:?}")]
    InconsistentTransport {
        pool: TransportProtocol,
        requested: TransportProtocol,
    },
    #[error("control channel {requested} inconsistent with the pool's {pool}")]
    InconsistentControlChannel { pool: bool, requested: bool },
    #[error("pool full ({0} PEs)")]
    PoolFull(usize),
    #[error("handlespace full ({0} PEs)")]
    HandlespaceFull(usize),
    #[error("unknown pool handle")]
    UnknownPoolHandle,
}

/// RFC 5352 §3.13 operation error cause codes.
pub mod cause {
    pub const INVALID_VALUES: u16 = 0x0003;
    pub const INCONSISTENT_POOLING_POLICY: u16 = 0x0005;
    pub const LACK_OF_RESOURCES: u16 = 0x0006;
    pub const INCONSISTENT_TRANSPORT_TYPE: u16 = 0x0007;
    pub const INCONSISTENT_DATA_CONTROL_CONFIGURATION: u16 = 0x0008;
    pub const UNKNOWN_POOL_HANDLE: u16 = 0x0009;
}

/// The classic API's `RSPERR_*` values used here (classic-api.md "Constants").
pub mod rsperr {
    pub const INVALID_VALUES: u32 = 0x0004;
    pub const NO_RESOURCES: u32 = 0xf002;
    pub const NOT_FOUND: u32 = 0xf003;
    pub const INVALID_ID: u32 = 0xf004;
    pub const WRONG_PROTOCOL: u32 = 0xf006;
    pub const WRONG_CONTROLCHANNEL_HANDLING: u32 = 0xf007;
    pub const INCOMPATIBLE_POOL_POLICY: u32 = 0xf008;
    pub const INVALID_POOL_HANDLE: u32 = 0xf00a;
    pub const INVALID_ADDRESSES: u32 = 0xf00b;
}

impl HandlespaceError {
    /// `(RFC 5352 cause code, classic RSPERR_*, rsplib 3.4's on-the-wire cause)`.
    const fn codes(&self) -> (u16, u32, u16) {
        use HandlespaceError::*;
        match self {
            InvalidPoolHandle(_) => (cause::INVALID_VALUES, rsperr::INVALID_POOL_HANDLE, 0xf004),
            InvalidPeId => (cause::INVALID_VALUES, rsperr::INVALID_ID, 0xf000),
            InvalidRegistrationLife => (cause::INVALID_VALUES, rsperr::INVALID_VALUES, 0x0011),
            NoAddresses | TooManyAddresses(_) | MultihomedNonSctp(..) | InvalidPort => {
                (cause::INVALID_VALUES, rsperr::INVALID_ADDRESSES, 0xf005)
            }
            InconsistentPolicy { .. } => (
                cause::INCONSISTENT_POOLING_POLICY,
                rsperr::INCOMPATIBLE_POOL_POLICY,
                0x0005,
            ),
            InconsistentTransport { .. } => (
                cause::INCONSISTENT_TRANSPORT_TYPE,
                rsperr::WRONG_PROTOCOL,
                0x100a,
            ),
            InconsistentControlChannel { .. } => (
                cause::INCONSISTENT_DATA_CONTROL_CONFIGURATION,
                rsperr::WRONG_CONTROLCHANNEL_HANDLING,
                0x0008,
            ),
            PoolFull(_) | HandlespaceFull(_) => {
                (cause::LACK_OF_RESOURCES, rsperr::NO_RESOURCES, 0x0006)
            }
            UnknownPoolHandle => (cause::UNKNOWN_POOL_HANDLE, rsperr::NOT_FOUND, 0x0009),
        }
    }

    /// The RFC 5352 operation error cause code for a Registration / Handle Resolution Response.
    pub const fn cause_code(&self) -> u16 {
        self.codes().0
    }

    /// The classic API's `RSPERR_*` code.
    pub const fn rsperr(&self) -> u32 {
        self.codes().1
    }

    /// The (partly non-RFC) cause code rsplib 3.4's registrar sends for the same refusal
    /// (`wire-format-detailed.md` §5.4), for exact mimicry.
    pub const fn rsplib_cause_code(&self) -> u16 {
        self.codes().2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cause_table() {
        let e = HandlespaceError::InconsistentPolicy {
            pool: PolicyType::RoundRobin,
            requested: PolicyType::LeastUsed,
        };
        assert_eq!(e.cause_code(), 0x0005);
        assert_eq!(e.rsperr(), 0xf008);
        let t = HandlespaceError::InconsistentTransport {
            pool: TransportProtocol::Sctp,
            requested: TransportProtocol::Tcp,
        };
        assert_eq!(
            (t.cause_code(), t.rsperr(), t.rsplib_cause_code()),
            (7, 0xf006, 0x100a)
        );
        assert_eq!(HandlespaceError::UnknownPoolHandle.cause_code(), 0x0009);
        assert_eq!(HandlespaceError::PoolFull(1).cause_code(), 0x0006);
        assert_eq!(HandlespaceError::InvalidPeId.cause_code(), 0x0003);
        assert_eq!(HandlespaceError::InvalidPoolHandle(33).rsperr(), 0xf00a);
    }
}
