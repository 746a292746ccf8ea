//! Value types shared by the wire codec, the handlespace and the policies.
//!
//! These are plain data: identifiers as newtypes, the member selection policy with its values,
//! and transport addresses. The wire codec (`core::wire`) turns them into bytes; the handlespace
//! (`core::handlespace`) stores them.

use std::fmt;
use std::net::IpAddr;

/// rsplib caps pool handles at 32 bytes (`MAX_POOLHANDLESIZE`); the classic API and the
/// registrar reject longer ones. The wire codec itself accepts any length.
pub const MAX_POOL_HANDLE_SIZE: usize = 32;

/// A pool handle: an opaque byte string (usually ASCII), RFC 5354 §2.2.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct PoolHandle(Box<[u8]>);

impl PoolHandle {
    /// Wraps raw bytes without validation (the codec decodes any length).
    pub fn new(bytes: &[u8]) -> Self {
        PoolHandle(bytes.into())
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True for the (invalid) empty handle.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// True if the handle is 1..=[`MAX_POOL_HANDLE_SIZE`] bytes, as rsplib requires.
    pub fn is_valid(&self) -> bool {
        !self.0.is_empty() && self.0.len() <= MAX_POOL_HANDLE_SIZE
    }

    /// The handle as text if every byte is printable ASCII.
    pub fn as_printable(&self) -> Option<&str> {
        if self.0.iter().all(|b| (0x20..0x7f).contains(b)) {
            std::str::from_utf8(&self.0).ok()
        } else {
            None
        }
    }
}

impl AsRef<[u8]> for PoolHandle {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl From<&str> for PoolHandle {
    fn from(s: &str) -> Self {
        PoolHandle::new(s.as_bytes())
    }
}

impl fmt::Debug for PoolHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.as_printable() {
            Some(s) => write!(f, "PoolHandle({s:?})"),
            None => write!(f, "PoolHandle({:02x?})", &self.0),
        }
    }
}

impl fmt::Display for PoolHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.as_printable() {
            Some(s) => f.write_str(s),
            None => {
                for b in self.0.iter() {
                    write!(f, "{b:02x}")?;
                }
                Ok(())
            }
        }
    }
}

/// A pool element identifier (u32; 0 = undefined).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct PeId(pub u32);

impl fmt::Debug for PeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeId(0x{:08x})", self.0)
    }
}

impl fmt::Display for PeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{:08x}", self.0)
    }
}

/// A registrar (ENRP server) identifier (u32; 0 = undefined / "any").
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct RegistrarId(pub u32);

impl fmt::Debug for RegistrarId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RegistrarId(0x{:08x})", self.0)
    }
}

impl fmt::Display for RegistrarId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{:08x}", self.0)
    }
}

/// Member selection policy types, with their wire codes (RFC 5356 and rsplib's extensions,
/// as rsplib 3.4's `rserpool-policytypes.h` numbers them).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub enum PolicyType {
    RoundRobin,
    WeightedRoundRobin,
    Random,
    WeightedRandom,
    Priority,
    LeastUsed,
    LeastUsedDegradation,
    PriorityLeastUsed,
    RandomizedLeastUsed,
    RandomizedPriorityLeastUsed,
    RandomizedLeastUsedDegradation,
    PriorityLeastUsedDegradation,
    RandomizedPriorityLeastUsedDegradation,
    WeightedRandomDpf,
    LeastUsedDpf,
    LeastUsedDegradationDpf,
    PriorityLeastUsedDpf,
    PriorityLeastUsedDegradationDpf,
}

/// Which values follow the policy type word on the wire, in order.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum PolicyValue {
    Weight,
    Priority,
    Load,
    LoadDegradation,
    WeightDpf,
    LoadDpf,
    Distance,
}

impl PolicyType {
    /// Every policy type, in wire-code order of the fact sheet.
    pub const ALL: [PolicyType; 18] = [
        PolicyType::RoundRobin,
        PolicyType::WeightedRoundRobin,
        PolicyType::Random,
        PolicyType::WeightedRandom,
        PolicyType::Priority,
        PolicyType::LeastUsed,
        PolicyType::LeastUsedDegradation,
        PolicyType::PriorityLeastUsed,
        PolicyType::RandomizedLeastUsed,
        PolicyType::RandomizedPriorityLeastUsed,
        PolicyType::RandomizedLeastUsedDegradation,
        PolicyType::PriorityLeastUsedDegradation,
        PolicyType::RandomizedPriorityLeastUsedDegradation,
        PolicyType::WeightedRandomDpf,
        PolicyType::LeastUsedDpf,
        PolicyType::LeastUsedDegradationDpf,
        PolicyType::PriorityLeastUsedDpf,
        PolicyType::PriorityLeastUsedDegradationDpf,
    ];

    /// The 32-bit policy type code on the wire.
    pub const fn wire_code(self) -> u32 {
        use PolicyType::*;
        match self {
            RoundRobin => 0x0000_0001,
            WeightedRoundRobin => 0x0000_0002,
            Random => 0x0000_0003,
            WeightedRandom => 0x0000_0004,
            Priority => 0x0000_0005,
            LeastUsed => 0x4000_0001,
            LeastUsedDegradation => 0x4000_0002,
            PriorityLeastUsed => 0x4000_0003,
            RandomizedLeastUsed => 0x4000_0004,
            RandomizedPriorityLeastUsed => 0xb000_1001,
            RandomizedLeastUsedDegradation => 0xb000_1002,
            PriorityLeastUsedDegradation => 0xb000_1003,
            RandomizedPriorityLeastUsedDegradation => 0xb000_1004,
            WeightedRandomDpf => 0xb000_2001,
            LeastUsedDpf => 0xb000_2002,
            LeastUsedDegradationDpf => 0xb000_2003,
            PriorityLeastUsedDpf => 0xb000_2004,
            PriorityLeastUsedDegradationDpf => 0xb000_2005,
        }
    }

    /// The policy for a wire code, if known.
    pub fn from_wire_code(code: u32) -> Option<PolicyType> {
        PolicyType::ALL
            .iter()
            .copied()
            .find(|p| p.wire_code() == code)
    }

    /// rsplib's name for the policy (as `hsdump` and `rspserver -policy=` spell it).
    pub const fn name(self) -> &'static str {
        use PolicyType::*;
        match self {
            RoundRobin => "RoundRobin",
            WeightedRoundRobin => "WeightedRoundRobin",
            Random => "Random",
            WeightedRandom => "WeightedRandom",
            Priority => "Priority",
            LeastUsed => "LeastUsed",
            LeastUsedDegradation => "LeastUsedDegradation",
            PriorityLeastUsed => "PriorityLeastUsed",
            RandomizedLeastUsed => "RandomizedLeastUsed",
            RandomizedPriorityLeastUsed => "RandomizedPriorityLeastUsed",
            RandomizedLeastUsedDegradation => "RandomizedLeastUsedDegradation",
            PriorityLeastUsedDegradation => "PriorityLeastUsedDegradation",
            RandomizedPriorityLeastUsedDegradation => "RandomizedPriorityLeastUsedDegradation",
            WeightedRandomDpf => "WeightedRandomDPF",
            LeastUsedDpf => "LeastUsedDPF",
            LeastUsedDegradationDpf => "LeastUsedDegradationDPF",
            PriorityLeastUsedDpf => "PriorityLeastUsedDPF",
            PriorityLeastUsedDegradationDpf => "PriorityLeastUsedDegradationDPF",
        }
    }

    /// The values that follow the type word on the wire, in wire order.
    #[inline]
    pub const fn wire_values(self) -> &'static [PolicyValue] {
        use PolicyType::*;
        use PolicyValue as V;
        match self {
            RoundRobin | Random => &[],
            WeightedRoundRobin | WeightedRandom => &[V::Weight],
            Priority => &[V::Priority],
            LeastUsed | RandomizedLeastUsed => &[V::Load],
            LeastUsedDegradation
            | PriorityLeastUsed
            | RandomizedPriorityLeastUsed
            | RandomizedLeastUsedDegradation
            | PriorityLeastUsedDegradation
            | RandomizedPriorityLeastUsedDegradation => &[V::Load, V::LoadDegradation],
            WeightedRandomDpf => &[V::Weight, V::WeightDpf, V::Distance],
            LeastUsedDpf => &[V::Load, V::LoadDpf, V::Distance],
            LeastUsedDegradationDpf | PriorityLeastUsedDpf | PriorityLeastUsedDegradationDpf => {
                &[V::Load, V::LoadDegradation, V::LoadDpf, V::Distance]
            }
        }
    }
}

/// A member selection policy with its values (RFC 5354 §3.5 / RFC 5356).
///
/// Load, load degradation and the DPF values are fractions of 0xFFFFFFFF; weight and priority are
/// plain integers; distance is in milliseconds (set by registrars). Values a policy does not carry
/// on the wire are kept at 0.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct PolicyInfo {
    pub policy: PolicyType,
    pub weight: u32,
    pub priority: u32,
    pub load: u32,
    pub load_degradation: u32,
    pub weight_dpf: u32,
    pub load_dpf: u32,
    pub distance: u32,
}

impl PolicyInfo {
    /// A policy with all values 0.
    pub const fn new(policy: PolicyType) -> Self {
        PolicyInfo {
            policy,
            weight: 0,
            priority: 0,
            load: 0,
            load_degradation: 0,
            weight_dpf: 0,
            load_dpf: 0,
            distance: 0,
        }
    }

    /// Reads one value.
    pub fn get(&self, v: PolicyValue) -> u32 {
        match v {
            PolicyValue::Weight => self.weight,
            PolicyValue::Priority => self.priority,
            PolicyValue::Load => self.load,
            PolicyValue::LoadDegradation => self.load_degradation,
            PolicyValue::WeightDpf => self.weight_dpf,
            PolicyValue::LoadDpf => self.load_dpf,
            PolicyValue::Distance => self.distance,
        }
    }

    /// Sets one value.
    pub fn set(&mut self, v: PolicyValue, value: u32) {
        let slot = match v {
            PolicyValue::Weight => &mut self.weight,
            PolicyValue::Priority => &mut self.priority,
            PolicyValue::Load => &mut self.load,
            PolicyValue::LoadDegradation => &mut self.load_degradation,
            PolicyValue::WeightDpf => &mut self.weight_dpf,
            PolicyValue::LoadDpf => &mut self.load_dpf,
            PolicyValue::Distance => &mut self.distance,
        };
        *slot = value;
    }

    /// The values that go on the wire after the type word, in order.
    pub fn wire_values(&self) -> impl Iterator<Item = u32> + '_ {
        self.policy.wire_values().iter().map(|v| self.get(*v))
    }

    /// Builds a policy from its wire values; `None` if fewer values than the policy needs.
    /// Extra values are ignored (as rsplib does).
    #[inline]
    pub fn from_wire_values(policy: PolicyType, values: &[u32]) -> Option<Self> {
        let needed = policy.wire_values();
        if values.len() < needed.len() {
            return None;
        }
        let mut info = PolicyInfo::new(policy);
        for (v, value) in needed.iter().zip(values) {
            info.set(*v, *value);
        }
        Some(info)
    }
}

/// Transport protocols of RFC 5354 transport parameters.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub enum TransportProtocol {
    Sctp,
    Tcp,
    Udp,
    UdpLite,
    Dccp,
}

impl TransportProtocol {
    /// The IANA protocol number (`IPPROTO_*`).
    pub const fn ip_protocol(self) -> i32 {
        match self {
            TransportProtocol::Sctp => 132,
            TransportProtocol::Tcp => 6,
            TransportProtocol::Udp => 17,
            TransportProtocol::UdpLite => 136,
            TransportProtocol::Dccp => 33,
        }
    }

    /// The protocol for an `IPPROTO_*` number.
    pub fn from_ip_protocol(p: i32) -> Option<Self> {
        match p {
            132 => Some(TransportProtocol::Sctp),
            6 => Some(TransportProtocol::Tcp),
            17 => Some(TransportProtocol::Udp),
            136 => Some(TransportProtocol::UdpLite),
            33 => Some(TransportProtocol::Dccp),
            _ => None,
        }
    }

    /// Short name ("SCTP", "TCP", ...).
    pub const fn name(self) -> &'static str {
        match self {
            TransportProtocol::Sctp => "SCTP",
            TransportProtocol::Tcp => "TCP",
            TransportProtocol::Udp => "UDP",
            TransportProtocol::UdpLite => "UDP-Lite",
            TransportProtocol::Dccp => "DCCP",
        }
    }
}

/// Transport use of SCTP/TCP transport parameters (RFC 5354 §3.3).
pub const TRANSPORT_USE_DATA_ONLY: u16 = 0;
/// Data plus ASAP control on the same association (the "control channel").
pub const TRANSPORT_USE_DATA_PLUS_CONTROL: u16 = 1;

/// A transport endpoint: protocol, port and addresses (≥ 1; several only for SCTP multihoming).
///
/// `transport_use` is the SCTP/TCP "transport use" field, or the reserved field of UDP, UDP-Lite
/// and DCCP (kept as received so re-encoding is exact). `dccp_service_code` is only meaningful
/// for DCCP.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct TransportAddress {
    pub protocol: TransportProtocol,
    pub port: u16,
    pub transport_use: u16,
    pub dccp_service_code: u32,
    pub addresses: Vec<IpAddr>,
}

impl TransportAddress {
    /// A transport with the given protocol, port and addresses, data-only use.
    pub fn new(protocol: TransportProtocol, port: u16, addresses: Vec<IpAddr>) -> Self {
        TransportAddress {
            protocol,
            port,
            transport_use: TRANSPORT_USE_DATA_ONLY,
            dccp_service_code: 0,
            addresses,
        }
    }

    /// True if the PE accepts ASAP control messages on its user transport.
    pub fn has_control_channel(&self) -> bool {
        matches!(
            self.protocol,
            TransportProtocol::Sctp | TransportProtocol::Tcp
        ) && self.transport_use == TRANSPORT_USE_DATA_PLUS_CONTROL
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_codes_round_trip_and_are_unique() {
        for p in PolicyType::ALL {
            assert_eq!(PolicyType::from_wire_code(p.wire_code()), Some(p));
        }
        let mut codes: Vec<u32> = PolicyType::ALL.iter().map(|p| p.wire_code()).collect();
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), PolicyType::ALL.len());
        assert_eq!(PolicyType::from_wire_code(0x1234), None);
    }

    #[test]
    fn policy_values_follow_wire_layout() {
        let info =
            PolicyInfo::from_wire_values(PolicyType::LeastUsedDegradation, &[5, 0x0ccc_cccd])
                .unwrap();
        assert_eq!(info.load, 5);
        assert_eq!(info.load_degradation, 0x0ccc_cccd);
        assert_eq!(info.wire_values().collect::<Vec<_>>(), vec![5, 0x0ccc_cccd]);
        assert!(PolicyInfo::from_wire_values(PolicyType::WeightedRoundRobin, &[]).is_none());
        let extra = PolicyInfo::from_wire_values(PolicyType::WeightedRoundRobin, &[7, 9]).unwrap();
        assert_eq!(extra.weight, 7);
        assert_eq!(extra.wire_values().count(), 1);
    }

    #[test]
    fn pool_handle_validity_and_display() {
        assert!(PoolHandle::from("EchoPool").is_valid());
        assert!(!PoolHandle::new(b"").is_valid());
        assert!(!PoolHandle::new(&[b'a'; 33]).is_valid());
        assert_eq!(PoolHandle::new(&[0, 1]).to_string(), "0001");
        assert_eq!(PoolHandle::from("x y").to_string(), "x y");
    }
}
