//! Parameters (RFC 5354 §2-§3 and rsplib's Handle Resolution option): type codes, a checked TLV
//! view, an order-sensitive reader that applies the unknown-parameter action bits, and the owned
//! representations with their parse/emit functions.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::error::WireError;
use super::header::pad4;
use crate::core::types::{
    PeId, PolicyInfo, PolicyType, RegistrarId, TransportAddress, TransportProtocol,
};

// RFC 5354 §3: parameter type codes.
/// IPv4 Address (RFC 5354 §3.1).
pub const PARAM_IPV4_ADDRESS: u16 = 0x0001;
/// IPv6 Address (RFC 5354 §3.2).
pub const PARAM_IPV6_ADDRESS: u16 = 0x0002;
/// DCCP Transport (RFC 5354 §3.3.5).
pub const PARAM_DCCP_TRANSPORT: u16 = 0x0003;
/// SCTP Transport (RFC 5354 §3.3.1).
pub const PARAM_SCTP_TRANSPORT: u16 = 0x0004;
/// TCP Transport (RFC 5354 §3.3.2).
pub const PARAM_TCP_TRANSPORT: u16 = 0x0005;
/// UDP Transport (RFC 5354 §3.3.3).
pub const PARAM_UDP_TRANSPORT: u16 = 0x0006;
/// UDP-Lite Transport (RFC 5354 §3.3.4).
pub const PARAM_UDP_LITE_TRANSPORT: u16 = 0x0007;
/// Member Selection Policy (RFC 5354 §3.4, RFC 5356).
pub const PARAM_POLICY: u16 = 0x0008;
/// Pool Handle (RFC 5354 §3.5).
pub const PARAM_POOL_HANDLE: u16 = 0x0009;
/// Pool Element (RFC 5354 §3.6).
pub const PARAM_POOL_ELEMENT: u16 = 0x000a;
/// Server Information (RFC 5354 §3.7).
pub const PARAM_SERVER_INFORMATION: u16 = 0x000b;
/// Operation Error (RFC 5354 §3.8).
pub const PARAM_OPERATION_ERROR: u16 = 0x000c;
/// Cookie (RFC 5354 §3.9).
pub const PARAM_COOKIE: u16 = 0x000d;
/// PE Identifier (RFC 5354 §3.10).
pub const PARAM_PE_IDENTIFIER: u16 = 0x000e;
/// PE Checksum (RFC 5354 §3.11); length field 6.
pub const PARAM_PE_CHECKSUM: u16 = 0x000f;
/// Handle Resolution option (draft-dreibholz-rserpool-asap-hropt): pure type 0x3f sent with the
/// "skip" action bits.
pub const PARAM_HANDLE_RESOLUTION_OPTION: u16 = 0x803f;

/// Size of a TLV header (type + length).
pub const TLV_HEADER_LEN: usize = 4;
/// Most addresses accepted in one transport parameter (rsplib `MAX_PE_TRANSPORTADDRESSES`).
pub const MAX_ADDRESSES: usize = 64;
/// The two top bits of a parameter type: what to do with an unknown one (RFC 5354 §2).
pub const ACTION_MASK: u16 = 0xc000;

/// True for the parameter types this codec decodes (exact 16-bit codes).
pub fn is_known_param(param_type: u16) -> bool {
    matches!(param_type, 0x0001..=0x000f | PARAM_HANDLE_RESOLUTION_OPTION)
}

/// Human-readable parameter name.
pub fn param_name(param_type: u16) -> &'static str {
    match param_type {
        PARAM_IPV4_ADDRESS => "IPv4 Address",
        PARAM_IPV6_ADDRESS => "IPv6 Address",
        PARAM_DCCP_TRANSPORT => "DCCP Transport",
        PARAM_SCTP_TRANSPORT => "SCTP Transport",
        PARAM_TCP_TRANSPORT => "TCP Transport",
        PARAM_UDP_TRANSPORT => "UDP Transport",
        PARAM_UDP_LITE_TRANSPORT => "UDP-Lite Transport",
        PARAM_POLICY => "Member Selection Policy",
        PARAM_POOL_HANDLE => "Pool Handle",
        PARAM_POOL_ELEMENT => "Pool Element",
        PARAM_SERVER_INFORMATION => "Server Information",
        PARAM_OPERATION_ERROR => "Operation Error",
        PARAM_COOKIE => "Cookie",
        PARAM_PE_IDENTIFIER => "PE Identifier",
        PARAM_PE_CHECKSUM => "PE Checksum",
        PARAM_HANDLE_RESOLUTION_OPTION => "Handle Resolution Option",
        _ => "Unknown",
    }
}

/// What a receiver does with an unknown parameter, from its two top type bits (RFC 5354 §2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UnknownAction {
    /// 00: stop processing, discard the message silently.
    Stop,
    /// 01: stop processing, discard, report with an "unrecognized parameter" error.
    StopAndReport,
    /// 10: skip the parameter and continue.
    Skip,
    /// 11: skip, continue, and report.
    SkipAndReport,
}

impl UnknownAction {
    /// The action encoded in a parameter type.
    pub const fn of(param_type: u16) -> Self {
        match param_type >> 14 {
            0 => UnknownAction::Stop,
            1 => UnknownAction::StopAndReport,
            2 => UnknownAction::Skip,
            _ => UnknownAction::SkipAndReport,
        }
    }

    /// True if processing continues after the parameter.
    pub const fn skips(self) -> bool {
        matches!(self, UnknownAction::Skip | UnknownAction::SkipAndReport)
    }

    /// True if the sender should get an "unrecognized parameter" error.
    pub const fn reports(self) -> bool {
        matches!(
            self,
            UnknownAction::StopAndReport | UnknownAction::SkipAndReport
        )
    }
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// A checked view of one TLV: its length field has been validated against the room in its
/// parent. The view spans header + value, without padding.
#[derive(Clone, Copy, Debug)]
pub struct Tlv<'a> {
    buf: &'a [u8],
}

impl<'a> Tlv<'a> {
    /// Checks the first TLV of `room` (what is left of the parent). Returns the view and the
    /// number of bytes it occupies including its padding; padding may be missing at the very end.
    pub fn new_checked(room: &'a [u8], parent: &'static str) -> Result<(Self, usize), WireError> {
        if room.len() < TLV_HEADER_LEN {
            return Err(WireError::Truncated {
                what: "parameter header",
                need: TLV_HEADER_LEN,
                have: room.len(),
            });
        }
        let param_type = be16(room, 0);
        let len = be16(room, 2) as usize;
        if len < TLV_HEADER_LEN {
            return Err(WireError::BadLength {
                what: "parameter",
                len,
                tlv: Some(room[..TLV_HEADER_LEN].into()),
            });
        }
        if len > room.len() {
            return Err(WireError::NestedOverflow {
                parent,
                param_type,
                len,
                room: room.len(),
            });
        }
        Ok((Tlv { buf: &room[..len] }, pad4(len).min(room.len())))
    }

    /// The full 16-bit type (including the action bits).
    pub fn param_type(&self) -> u16 {
        be16(self.buf, 0)
    }

    /// The value (after the TLV header, without padding).
    pub fn value(&self) -> &'a [u8] {
        &self.buf[TLV_HEADER_LEN..]
    }

    /// Header + value.
    pub fn bytes(&self) -> &'a [u8] {
        self.buf
    }

    fn raw(&self) -> Box<[u8]> {
        self.buf.into()
    }

    fn bad_length(&self, what: &'static str) -> WireError {
        WireError::BadLength {
            what,
            len: self.buf.len(),
            tlv: Some(self.raw()),
        }
    }
}

/// A parameter kept verbatim (header + value, no padding): unknown parameters that were skipped.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RawParam {
    bytes: Box<[u8]>,
}

impl RawParam {
    /// Builds a TLV from a type and a value.
    ///
    /// Returns `None` if the value is longer than a TLV can hold.
    pub fn new(param_type: u16, value: &[u8]) -> Option<Self> {
        let len = u16::try_from(value.len() + TLV_HEADER_LEN).ok()?;
        let mut bytes = Vec::with_capacity(len as usize);
        bytes.extend_from_slice(&param_type.to_be_bytes());
        bytes.extend_from_slice(&len.to_be_bytes());
        bytes.extend_from_slice(value);
        Some(RawParam {
            bytes: bytes.into(),
        })
    }

    /// The full type code.
    pub fn param_type(&self) -> u16 {
        be16(&self.bytes, 0)
    }

    /// The action bits of the type.
    pub fn action(&self) -> UnknownAction {
        UnknownAction::of(self.param_type())
    }

    /// The value bytes.
    pub fn value(&self) -> &[u8] {
        &self.bytes[TLV_HEADER_LEN..]
    }

    /// Header + value, as it would be embedded in an "unrecognized parameter" cause.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    fn emit(&self, buf: &mut Vec<u8>) {
        buf.extend_from_slice(&self.bytes);
        pad_to4(buf);
    }
}

/// An unknown parameter with a "skip" action, kept so re-encoding reproduces the input.
/// `position` is the number of known parameters of the same parent that preceded it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SkippedParam {
    pub position: usize,
    pub param: RawParam,
}

/// Decoding context: collects the unknown "skip and report" parameters of the whole message.
#[derive(Default, Debug)]
pub(crate) struct Ctx {
    pub report: Vec<RawParam>,
}

/// Reads the TLVs of one parent in order, applying the action bits to unknown ones.
pub(crate) struct Reader<'a> {
    rest: &'a [u8],
    parent: &'static str,
    count: usize,
    skipped: Vec<SkippedParam>,
    /// The next known TLV (already checked) and the bytes it occupies, if looked at.
    pending: Option<(Tlv<'a>, usize)>,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8], parent: &'static str) -> Self {
        Reader {
            rest: buf,
            parent,
            count: 0,
            skipped: Vec::new(),
            pending: None,
        }
    }

    /// Skips unknown "skip" TLVs; returns the next known one without consuming it.
    fn skip_unknown(&mut self, ctx: &mut Ctx) -> Result<Option<(Tlv<'a>, usize)>, WireError> {
        if self.pending.is_some() {
            return Ok(self.pending);
        }
        while !self.rest.is_empty() {
            let (tlv, used) = Tlv::new_checked(self.rest, self.parent)?;
            let param_type = tlv.param_type();
            if is_known_param(param_type) {
                self.pending = Some((tlv, used));
                return Ok(self.pending);
            }
            let action = UnknownAction::of(param_type);
            if !action.skips() {
                return Err(WireError::UnrecognizedParameter {
                    param_type,
                    action,
                    tlv: tlv.raw(),
                });
            }
            let param = RawParam { bytes: tlv.raw() };
            if action.reports() {
                ctx.report.push(param.clone());
            }
            self.skipped.push(SkippedParam {
                position: self.count,
                param,
            });
            self.rest = &self.rest[used..];
        }
        Ok(None)
    }

    /// The type of the next known parameter, without consuming it.
    pub fn peek(&mut self, ctx: &mut Ctx) -> Result<Option<u16>, WireError> {
        Ok(self.skip_unknown(ctx)?.map(|(t, _)| t.param_type()))
    }

    /// The next known parameter.
    pub fn next(&mut self, ctx: &mut Ctx) -> Result<Option<Tlv<'a>>, WireError> {
        match self.skip_unknown(ctx)? {
            None => Ok(None),
            Some((tlv, used)) => {
                self.pending = None;
                self.rest = &self.rest[used..];
                self.count += 1;
                Ok(Some(tlv))
            }
        }
    }

    /// The next known parameter if `pred` accepts its type.
    pub fn next_if(
        &mut self,
        ctx: &mut Ctx,
        pred: impl Fn(u16) -> bool,
    ) -> Result<Option<Tlv<'a>>, WireError> {
        match self.peek(ctx)? {
            Some(t) if pred(t) => self.next(ctx),
            _ => Ok(None),
        }
    }

    /// The next known parameter, which must have type `param_type`.
    pub fn expect(
        &mut self,
        ctx: &mut Ctx,
        param_type: u16,
        what: &'static str,
    ) -> Result<Tlv<'a>, WireError> {
        match self.next(ctx)? {
            None => Err(WireError::MissingParameter { what }),
            Some(t) if t.param_type() == param_type => Ok(t),
            Some(t) => Err(WireError::UnexpectedParameter {
                expected: what,
                found: t.param_type(),
                tlv: t.raw(),
            }),
        }
    }

    /// Checks that no known parameter is left; returns the skipped unknown ones.
    pub fn finish(mut self, ctx: &mut Ctx) -> Result<Vec<SkippedParam>, WireError> {
        if let Some((tlv, _)) = self.skip_unknown(ctx)? {
            return Err(WireError::UnexpectedParameter {
                expected: "no further parameter",
                found: tlv.param_type(),
                tlv: tlv.raw(),
            });
        }
        Ok(self.skipped)
    }
}

/// Writes the TLVs of one parent, re-inserting skipped unknown ones at their positions.
pub(crate) struct Writer<'b> {
    buf: &'b mut Vec<u8>,
    skipped: &'b [SkippedParam],
    next: usize,
    count: usize,
}

impl<'b> Writer<'b> {
    pub fn new(buf: &'b mut Vec<u8>, skipped: &'b [SkippedParam]) -> Self {
        Writer {
            buf,
            skipped,
            next: 0,
            count: 0,
        }
    }

    /// The buffer to append the next known parameter to.
    pub fn param(&mut self) -> &mut Vec<u8> {
        while self.next < self.skipped.len() && self.skipped[self.next].position <= self.count {
            self.skipped[self.next].param.emit(self.buf);
            self.next += 1;
        }
        self.count += 1;
        self.buf
    }

    /// Appends the skipped parameters that came after the last known one.
    pub fn finish(self) {
        for s in &self.skipped[self.next..] {
            s.param.emit(self.buf);
        }
    }
}

fn pad_to4(buf: &mut Vec<u8>) {
    while buf.len() % 4 != 0 {
        buf.push(0);
    }
}

/// Appends one TLV: header, the value written by `value`, the length patched (excluding
/// padding), then zero padding to 4 bytes.
pub(crate) fn emit_tlv(
    buf: &mut Vec<u8>,
    param_type: u16,
    value: impl FnOnce(&mut Vec<u8>) -> Result<(), WireError>,
) -> Result<(), WireError> {
    let at = buf.len();
    buf.extend_from_slice(&param_type.to_be_bytes());
    buf.extend_from_slice(&[0, 0]);
    value(buf)?;
    let len = buf.len() - at;
    let len16 = u16::try_from(len).map_err(|_| WireError::TooLong {
        what: param_name(param_type),
        len,
    })?;
    buf[at + 2..at + 4].copy_from_slice(&len16.to_be_bytes());
    pad_to4(buf);
    Ok(())
}

// ---- Addresses (RFC 5354 §3.1, §3.2) -------------------------------------------------------

/// Decodes an IPv4 or IPv6 Address parameter.
pub fn parse_address(tlv: Tlv<'_>) -> Result<IpAddr, WireError> {
    let v = tlv.value();
    match tlv.param_type() {
        PARAM_IPV4_ADDRESS if v.len() == 4 => Ok(IpAddr::V4(Ipv4Addr::new(v[0], v[1], v[2], v[3]))),
        PARAM_IPV6_ADDRESS if v.len() == 16 => {
            let mut a = [0u8; 16];
            a.copy_from_slice(v);
            Ok(IpAddr::V6(Ipv6Addr::from(a)))
        }
        PARAM_IPV4_ADDRESS | PARAM_IPV6_ADDRESS => Err(tlv.bad_length("address parameter")),
        t => Err(WireError::UnexpectedParameter {
            expected: "address parameter",
            found: t,
            tlv: tlv.raw(),
        }),
    }
}

/// Encodes an address parameter (IPv6 addresses, including IPv4-mapped ones, as type 0x0002).
pub fn emit_address(buf: &mut Vec<u8>, addr: &IpAddr) -> Result<(), WireError> {
    match addr {
        IpAddr::V4(a) => emit_tlv(buf, PARAM_IPV4_ADDRESS, |b| {
            b.extend_from_slice(&a.octets());
            Ok(())
        }),
        IpAddr::V6(a) => emit_tlv(buf, PARAM_IPV6_ADDRESS, |b| {
            b.extend_from_slice(&a.octets());
            Ok(())
        }),
    }
}

// ---- Transports (RFC 5354 §3.3) --------------------------------------------------------------

/// The transport protocol of a transport parameter type.
pub fn transport_protocol(param_type: u16) -> Option<TransportProtocol> {
    match param_type {
        PARAM_DCCP_TRANSPORT => Some(TransportProtocol::Dccp),
        PARAM_SCTP_TRANSPORT => Some(TransportProtocol::Sctp),
        PARAM_TCP_TRANSPORT => Some(TransportProtocol::Tcp),
        PARAM_UDP_TRANSPORT => Some(TransportProtocol::Udp),
        PARAM_UDP_LITE_TRANSPORT => Some(TransportProtocol::UdpLite),
        _ => None,
    }
}

/// True for the five transport parameter types.
pub fn is_transport_param(param_type: u16) -> bool {
    transport_protocol(param_type).is_some()
}

/// The parameter type of a transport protocol.
pub const fn transport_param_type(p: TransportProtocol) -> u16 {
    match p {
        TransportProtocol::Dccp => PARAM_DCCP_TRANSPORT,
        TransportProtocol::Sctp => PARAM_SCTP_TRANSPORT,
        TransportProtocol::Tcp => PARAM_TCP_TRANSPORT,
        TransportProtocol::Udp => PARAM_UDP_TRANSPORT,
        TransportProtocol::UdpLite => PARAM_UDP_LITE_TRANSPORT,
    }
}

// Transport value offsets (RFC 5354 §3.3): port, transport use / reserved, [DCCP service code].
const TRANSPORT_PORT: usize = 0;
const TRANSPORT_USE: usize = 2;
const TRANSPORT_FIXED_LEN: usize = 4;
const DCCP_SERVICE_CODE: usize = 4;
const DCCP_FIXED_LEN: usize = 8;

/// Decodes a transport parameter: 1..=[`MAX_ADDRESSES`] address parameters, any protocol
/// (semantic limits such as "one address for TCP" are the registrar's business). Unknown
/// "skip" parameters inside are reported but not kept.
pub(crate) fn parse_transport(tlv: Tlv<'_>, ctx: &mut Ctx) -> Result<TransportAddress, WireError> {
    let protocol = match transport_protocol(tlv.param_type()) {
        Some(p) => p,
        None => {
            return Err(WireError::UnexpectedParameter {
                expected: "transport parameter",
                found: tlv.param_type(),
                tlv: tlv.raw(),
            })
        }
    };
    let v = tlv.value();
    let fixed = if protocol == TransportProtocol::Dccp {
        DCCP_FIXED_LEN
    } else {
        TRANSPORT_FIXED_LEN
    };
    if v.len() < fixed {
        return Err(tlv.bad_length("transport parameter"));
    }
    let port = be16(v, TRANSPORT_PORT);
    let transport_use = be16(v, TRANSPORT_USE);
    let dccp_service_code = if protocol == TransportProtocol::Dccp {
        be32(v, DCCP_SERVICE_CODE)
    } else {
        0
    };
    let mut r = Reader::new(&v[fixed..], "transport parameter");
    let mut addresses = Vec::new();
    while let Some(a) = r.next(ctx)? {
        if addresses.len() == MAX_ADDRESSES {
            return Err(WireError::TooManyAddresses {
                max: MAX_ADDRESSES,
                tlv: tlv.raw(),
            });
        }
        addresses.push(parse_address(a)?);
    }
    r.finish(ctx)?;
    if addresses.is_empty() {
        return Err(WireError::MissingParameter {
            what: "address parameter",
        });
    }
    Ok(TransportAddress {
        protocol,
        port,
        transport_use,
        dccp_service_code,
        addresses,
    })
}

/// Encodes a transport parameter.
pub fn emit_transport(buf: &mut Vec<u8>, t: &TransportAddress) -> Result<(), WireError> {
    // What the decoder refuses is not sent either (1..=MAX_ADDRESSES addresses).
    if t.addresses.is_empty() {
        return Err(WireError::MissingParameter {
            what: "address parameter",
        });
    }
    if t.addresses.len() > MAX_ADDRESSES {
        return Err(WireError::TooManyAddresses {
            max: MAX_ADDRESSES,
            tlv: Box::default(),
        });
    }
    emit_tlv(buf, transport_param_type(t.protocol), |b| {
        b.extend_from_slice(&t.port.to_be_bytes());
        b.extend_from_slice(&t.transport_use.to_be_bytes());
        if t.protocol == TransportProtocol::Dccp {
            b.extend_from_slice(&t.dccp_service_code.to_be_bytes());
        }
        for a in &t.addresses {
            emit_address(b, a)?;
        }
        Ok(())
    })
}

// ---- Member Selection Policy (RFC 5354 §3.4, RFC 5356) ---------------------------------------

/// Decodes a policy parameter. Extra value words after those the policy needs are ignored, as
/// rsplib does (so such input does not re-encode identically); fewer is an error.
pub fn parse_policy(tlv: Tlv<'_>) -> Result<PolicyInfo, WireError> {
    let v = tlv.value();
    if v.len() < 4 || v.len() % 4 != 0 {
        return Err(tlv.bad_length("member selection policy"));
    }
    let code = be32(v, 0);
    let policy = PolicyType::from_wire_code(code).ok_or_else(|| WireError::UnsupportedPolicy {
        policy: code,
        tlv: tlv.raw(),
    })?;
    let needed = policy.wire_values().len();
    if (v.len() - 4) / 4 < needed {
        return Err(tlv.bad_length("member selection policy"));
    }
    let mut values = [0u32; 4];
    for (i, slot) in values.iter_mut().enumerate().take(needed) {
        *slot = be32(v, 4 + 4 * i);
    }
    PolicyInfo::from_wire_values(policy, &values[..needed])
        .ok_or_else(|| tlv.bad_length("member selection policy"))
}

/// Encodes a policy parameter (type word + exactly the values the policy carries).
pub fn emit_policy(buf: &mut Vec<u8>, p: &PolicyInfo) -> Result<(), WireError> {
    emit_tlv(buf, PARAM_POLICY, |b| {
        b.extend_from_slice(&p.policy.wire_code().to_be_bytes());
        for v in p.wire_values() {
            b.extend_from_slice(&v.to_be_bytes());
        }
        Ok(())
    })
}

// ---- Pool Element (RFC 5354 §3.6) -------------------------------------------------------------

const PE_ID: usize = 0;
const PE_HOME_REGISTRAR: usize = 4;
const PE_REGISTRATION_LIFE: usize = 8;
const PE_FIXED_LEN: usize = 12;

/// A Pool Element parameter.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PoolElement {
    pub id: PeId,
    /// Home registrar (0 in a PE's own Registration).
    pub home_registrar: RegistrarId,
    /// Registration life in milliseconds (a signed 32-bit value on the wire; kept raw).
    pub registration_life: u32,
    pub user_transport: TransportAddress,
    pub policy: PolicyInfo,
    /// The PE's transport towards its registrar (ENRP only).
    pub asap_transport: Option<TransportAddress>,
    /// Unknown "skip" parameters found inside, re-emitted at the same place.
    pub skipped: Vec<SkippedParam>,
}

impl PoolElement {
    /// A PE with home 0, life 0 and no ASAP transport.
    pub fn new(id: PeId, user_transport: TransportAddress, policy: PolicyInfo) -> Self {
        PoolElement {
            id,
            home_registrar: RegistrarId(0),
            registration_life: 0,
            user_transport,
            policy,
            asap_transport: None,
            skipped: Vec::new(),
        }
    }

    pub(crate) fn parse(tlv: Tlv<'_>, ctx: &mut Ctx) -> Result<Self, WireError> {
        let v = tlv.value();
        if v.len() < PE_FIXED_LEN {
            return Err(tlv.bad_length("pool element"));
        }
        let mut r = Reader::new(&v[PE_FIXED_LEN..], "pool element");
        let user = match r.next(ctx)? {
            Some(t) => parse_transport(t, ctx)?,
            None => {
                return Err(WireError::MissingParameter {
                    what: "user transport parameter",
                })
            }
        };
        let policy = parse_policy(r.expect(ctx, PARAM_POLICY, "member selection policy")?)?;
        let asap_transport = match r.next_if(ctx, is_transport_param)? {
            Some(t) => Some(parse_transport(t, ctx)?),
            None => None,
        };
        let skipped = r.finish(ctx)?;
        Ok(PoolElement {
            id: PeId(be32(v, PE_ID)),
            home_registrar: RegistrarId(be32(v, PE_HOME_REGISTRAR)),
            registration_life: be32(v, PE_REGISTRATION_LIFE),
            user_transport: user,
            policy,
            asap_transport,
            skipped,
        })
    }

    /// Encodes the Pool Element parameter.
    pub fn emit(&self, buf: &mut Vec<u8>) -> Result<(), WireError> {
        emit_pool_element(
            buf,
            PoolElementRef {
                id: self.id,
                home_registrar: self.home_registrar,
                registration_life: self.registration_life,
                user_transport: &self.user_transport,
                policy: self.policy,
                asap_transport: self.asap_transport.as_ref(),
            },
            &self.skipped,
        )
    }
}

/// The fields of a Pool Element parameter, borrowed from wherever they are kept (a
/// [`PoolElement`], a handlespace entry): encoded by [`emit_pool_element`] without building a
/// [`PoolElement`].
#[derive(Clone, Copy, Debug)]
pub struct PoolElementRef<'a> {
    pub id: PeId,
    pub home_registrar: RegistrarId,
    pub registration_life: u32,
    pub user_transport: &'a TransportAddress,
    pub policy: PolicyInfo,
    pub asap_transport: Option<&'a TransportAddress>,
}

/// Encodes a Pool Element parameter (with `skipped` unknown parameters at their places);
/// [`PoolElement::emit`] is this.
pub fn emit_pool_element(
    buf: &mut Vec<u8>,
    e: PoolElementRef<'_>,
    skipped: &[SkippedParam],
) -> Result<(), WireError> {
    emit_tlv(buf, PARAM_POOL_ELEMENT, |b| {
        b.extend_from_slice(&e.id.0.to_be_bytes());
        b.extend_from_slice(&e.home_registrar.0.to_be_bytes());
        b.extend_from_slice(&e.registration_life.to_be_bytes());
        let mut w = Writer::new(b, skipped);
        emit_transport(w.param(), e.user_transport)?;
        emit_policy(w.param(), &e.policy)?;
        if let Some(a) = e.asap_transport {
            emit_transport(w.param(), a)?;
        }
        w.finish();
        Ok(())
    })
}

// ---- Server Information (RFC 5354 §3.7) ------------------------------------------------------

/// A Server Information parameter: registrar id word and its transports.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ServerInformation {
    /// The registrar id word as sent (rsplib: bit 31 may flag multicast capability).
    pub server_id: RegistrarId,
    pub transports: Vec<TransportAddress>,
    pub skipped: Vec<SkippedParam>,
}

impl ServerInformation {
    pub fn new(server_id: RegistrarId, transports: Vec<TransportAddress>) -> Self {
        ServerInformation {
            server_id,
            transports,
            skipped: Vec::new(),
        }
    }

    pub(crate) fn parse(tlv: Tlv<'_>, ctx: &mut Ctx) -> Result<Self, WireError> {
        let v = tlv.value();
        if v.len() < 4 {
            return Err(tlv.bad_length("server information"));
        }
        let mut r = Reader::new(&v[4..], "server information");
        let mut transports = Vec::new();
        while let Some(t) = r.next(ctx)? {
            transports.push(parse_transport(t, ctx)?);
        }
        Ok(ServerInformation {
            server_id: RegistrarId(be32(v, 0)),
            transports,
            skipped: r.finish(ctx)?,
        })
    }

    /// Encodes the Server Information parameter.
    pub fn emit(&self, buf: &mut Vec<u8>) -> Result<(), WireError> {
        emit_tlv(buf, PARAM_SERVER_INFORMATION, |b| {
            b.extend_from_slice(&self.server_id.0.to_be_bytes());
            let mut w = Writer::new(b, &self.skipped);
            for t in &self.transports {
                emit_transport(w.param(), t)?;
            }
            w.finish();
            Ok(())
        })
    }
}

// ---- Operation Error (RFC 5354 §3.8, RFC 5352 §3.13) ----------------------------------------

/// One error cause: code, info (the offending TLV or message, or nothing).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ErrorCause {
    pub code: u16,
    pub info: Box<[u8]>,
}

impl ErrorCause {
    pub fn new(code: u16, info: &[u8]) -> Self {
        ErrorCause {
            code,
            info: info.into(),
        }
    }

    /// A cause whose info is a TLV, embedded with its padding (as rsplib and the §9.2 vector do:
    /// the cause length covers the TLV's padding).
    pub fn with_tlv(code: u16, tlv: &[u8]) -> Self {
        let mut info = tlv.to_vec();
        pad_to4(&mut info);
        ErrorCause {
            code,
            info: info.into(),
        }
    }

    /// "Unrecognized parameter" with the offending TLV (e.g. from
    /// [`super::Decoded::unrecognized`]).
    pub fn unrecognized_parameter(p: &RawParam) -> Self {
        ErrorCause::with_tlv(super::cause::UNRECOGNIZED_PARAMETER, p.bytes())
    }
}

/// An Operation Error parameter: one or more causes (zero is decoded but not meaningful).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct OperationError {
    pub causes: Vec<ErrorCause>,
}

impl OperationError {
    /// One cause with the given code and info.
    pub fn new(code: u16, info: &[u8]) -> Self {
        OperationError {
            causes: vec![ErrorCause::new(code, info)],
        }
    }

    /// The first cause code (0 if there is none).
    pub fn code(&self) -> u16 {
        self.causes.first().map_or(0, |c| c.code)
    }

    pub(crate) fn parse(tlv: Tlv<'_>) -> Result<Self, WireError> {
        let mut rest = tlv.value();
        let mut causes = Vec::new();
        while !rest.is_empty() {
            if rest.len() < 4 {
                return Err(tlv.bad_length("error cause"));
            }
            let code = be16(rest, 0);
            let len = be16(rest, 2) as usize;
            if len < 4 {
                return Err(tlv.bad_length("error cause"));
            }
            if len > rest.len() {
                return Err(WireError::NestedOverflow {
                    parent: "operation error",
                    param_type: code,
                    len,
                    room: rest.len(),
                });
            }
            causes.push(ErrorCause::new(code, &rest[4..len]));
            rest = &rest[pad4(len).min(rest.len())..];
        }
        Ok(OperationError { causes })
    }

    /// Encoded size of the parameter (header, causes, padding).
    pub fn encoded_len(&self) -> usize {
        4 + self
            .causes
            .iter()
            .map(|c| 4 + pad4(c.info.len()))
            .sum::<usize>()
    }

    /// Shrinks the parameter to at most `budget` bytes encoded: the echoed info of the causes
    /// is cut (at a multiple of 4, from the last cause backwards), and causes that do not fit
    /// even empty are dropped. A reply that echoes a message close to 64 KiB still fits in one
    /// message this way (RFC 5352 §3.13 leaves the info's length to the sender).
    pub fn fit(&mut self, budget: usize) {
        while self.encoded_len() > budget {
            let excess = self.encoded_len() - budget;
            let several = self.causes.len() > 1;
            let Some(last) = self.causes.last_mut() else {
                return;
            };
            if last.info.is_empty() || (several && pad4(last.info.len()) < excess) {
                self.causes.pop();
                continue;
            }
            let keep = pad4(last.info.len()).saturating_sub(pad4(excess)) & !3;
            last.info = last.info[..keep.min(last.info.len())].into();
        }
    }

    /// Encodes the Operation Error parameter (each cause padded to 4 bytes).
    pub fn emit(&self, buf: &mut Vec<u8>) -> Result<(), WireError> {
        emit_tlv(buf, PARAM_OPERATION_ERROR, |b| {
            for c in &self.causes {
                let len = c.info.len() + 4;
                let len16 = u16::try_from(len).map_err(|_| WireError::TooLong {
                    what: "error cause",
                    len,
                })?;
                b.extend_from_slice(&c.code.to_be_bytes());
                b.extend_from_slice(&len16.to_be_bytes());
                b.extend_from_slice(&c.info);
                pad_to4(b);
            }
            Ok(())
        })
    }
}

// ---- Small fixed parameters -----------------------------------------------------------------

/// Decodes a PE Identifier parameter (length exactly 8).
pub fn parse_pe_id(tlv: Tlv<'_>) -> Result<PeId, WireError> {
    if tlv.value().len() != 4 {
        return Err(tlv.bad_length("PE identifier"));
    }
    Ok(PeId(be32(tlv.value(), 0)))
}

/// Encodes a PE Identifier parameter.
pub fn emit_pe_id(buf: &mut Vec<u8>, id: PeId) -> Result<(), WireError> {
    emit_tlv(buf, PARAM_PE_IDENTIFIER, |b| {
        b.extend_from_slice(&id.0.to_be_bytes());
        Ok(())
    })
}

/// Decodes a PE Checksum parameter (length exactly 6); the value is the wire (big-endian) one.
pub fn parse_pe_checksum(tlv: Tlv<'_>) -> Result<u16, WireError> {
    if tlv.value().len() != 2 {
        return Err(tlv.bad_length("PE checksum"));
    }
    Ok(be16(tlv.value(), 0))
}

/// Encodes a PE Checksum parameter (length 6 + 2 padding bytes).
pub fn emit_pe_checksum(buf: &mut Vec<u8>, checksum: u16) -> Result<(), WireError> {
    emit_tlv(buf, PARAM_PE_CHECKSUM, |b| {
        b.extend_from_slice(&checksum.to_be_bytes());
        Ok(())
    })
}

/// Decodes the Handle Resolution option (length exactly 8): items wanted.
pub fn parse_hr_option(tlv: Tlv<'_>) -> Result<u32, WireError> {
    if tlv.value().len() != 4 {
        return Err(tlv.bad_length("handle resolution option"));
    }
    Ok(be32(tlv.value(), 0))
}

/// Encodes the Handle Resolution option.
pub fn emit_hr_option(buf: &mut Vec<u8>, items: u32) -> Result<(), WireError> {
    emit_tlv(buf, PARAM_HANDLE_RESOLUTION_OPTION, |b| {
        b.extend_from_slice(&items.to_be_bytes());
        Ok(())
    })
}

/// Encodes an opaque-bytes parameter (Pool Handle, Cookie).
pub fn emit_bytes(buf: &mut Vec<u8>, param_type: u16, bytes: &[u8]) -> Result<(), WireError> {
    emit_tlv(buf, param_type, |b| {
        b.extend_from_slice(bytes);
        Ok(())
    })
}
