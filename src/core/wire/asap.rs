//! ASAP messages (RFC 5352 §2.2), in the parameter order rsplib 3.4 sends and expects.

use super::error::WireError;
use super::header::{finish_message, start_message, MessageView, HEADER_LEN};
use super::param::*;
use super::{Decoded, Protocol};
use crate::core::types::{PeId, PolicyInfo, PoolHandle, RegistrarId, TransportAddress};

// RFC 5352 §2.2: message type codes.
pub const REGISTRATION: u8 = 0x01;
pub const DEREGISTRATION: u8 = 0x02;
pub const REGISTRATION_RESPONSE: u8 = 0x03;
pub const DEREGISTRATION_RESPONSE: u8 = 0x04;
pub const HANDLE_RESOLUTION: u8 = 0x05;
pub const HANDLE_RESOLUTION_RESPONSE: u8 = 0x06;
pub const ENDPOINT_KEEP_ALIVE: u8 = 0x07;
pub const ENDPOINT_KEEP_ALIVE_ACK: u8 = 0x08;
pub const ENDPOINT_UNREACHABLE: u8 = 0x09;
pub const SERVER_ANNOUNCE: u8 = 0x0a;
pub const COOKIE: u8 = 0x0b;
pub const COOKIE_ECHO: u8 = 0x0c;
pub const BUSINESS_CARD: u8 = 0x0d;
pub const ERROR: u8 = 0x0e;

/// R flag of Registration Response (RFC 5352 §2.2.3): registration rejected.
pub const FLAG_REJECT: u8 = 0x01;
/// A flag of Handle Resolution Response (RFC 5352 §2.2.6): rejected.
pub const FLAG_HRR_REJECT: u8 = 0x01;
/// H flag of Endpoint Keep-Alive (RFC 5352 §2.2.7): "I am your new home registrar".
pub const FLAG_HOME: u8 = 0x01;

/// Offset (in the body) and size of the Server Identifier fixed field of Endpoint Keep-Alive and
/// Server Announce (RFC 5352 §2.2.7, §2.2.10).
const SERVER_ID: usize = 0;
const SERVER_ID_LEN: usize = 4;

/// The name of an ASAP message type.
pub fn message_name(msg_type: u8) -> &'static str {
    match msg_type {
        REGISTRATION => "Registration",
        DEREGISTRATION => "Deregistration",
        REGISTRATION_RESPONSE => "Registration Response",
        DEREGISTRATION_RESPONSE => "Deregistration Response",
        HANDLE_RESOLUTION => "Handle Resolution",
        HANDLE_RESOLUTION_RESPONSE => "Handle Resolution Response",
        ENDPOINT_KEEP_ALIVE => "Endpoint Keep Alive",
        ENDPOINT_KEEP_ALIVE_ACK => "Endpoint Keep Alive Ack",
        ENDPOINT_UNREACHABLE => "Endpoint Unreachable",
        SERVER_ANNOUNCE => "Server Announce",
        COOKIE => "Cookie",
        COOKIE_ECHO => "Cookie Echo",
        BUSINESS_CARD => "Business Card",
        ERROR => "Error",
        _ => "Unknown",
    }
}

/// The typed content of an ASAP message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AsapBody {
    /// PH, Pool Element (rsplib: home 0, no ASAP transport).
    Registration {
        pool_handle: PoolHandle,
        element: PoolElement,
    },
    /// PH, PE Identifier.
    Deregistration {
        pool_handle: PoolHandle,
        pe_id: PeId,
    },
    /// PH, PE Identifier, [Operation Error]; R flag on reject.
    RegistrationResponse {
        pool_handle: PoolHandle,
        pe_id: PeId,
        error: Option<OperationError>,
    },
    /// PH, PE Identifier, [Operation Error].
    DeregistrationResponse {
        pool_handle: PoolHandle,
        pe_id: PeId,
        error: Option<OperationError>,
    },
    /// PH, [Handle Resolution option: items wanted].
    HandleResolution {
        pool_handle: PoolHandle,
        items: Option<u32>,
    },
    /// PH, [policy], Pool Element…, [Operation Error].
    HandleResolutionResponse {
        pool_handle: PoolHandle,
        policy: Option<PolicyInfo>,
        elements: Vec<PoolElement>,
        error: Option<OperationError>,
    },
    /// Server Identifier (fixed field), PH, [PE Identifier]; H flag.
    EndpointKeepAlive {
        server_id: RegistrarId,
        pool_handle: PoolHandle,
        pe_id: Option<PeId>,
    },
    /// PH, PE Identifier.
    EndpointKeepAliveAck {
        pool_handle: PoolHandle,
        pe_id: PeId,
    },
    /// PH, PE Identifier.
    EndpointUnreachable {
        pool_handle: PoolHandle,
        pe_id: PeId,
    },
    /// Server Identifier (fixed field), [transport…].
    ServerAnnounce {
        server_id: RegistrarId,
        transports: Vec<TransportAddress>,
    },
    /// Cookie.
    Cookie { cookie: Box<[u8]> },
    /// Cookie.
    CookieEcho { cookie: Box<[u8]> },
    /// PH, [policy], Pool Element… (failover order).
    BusinessCard {
        pool_handle: PoolHandle,
        policy: Option<PolicyInfo>,
        elements: Vec<PoolElement>,
    },
    /// Operation Error.
    Error { error: OperationError },
}

impl AsapBody {
    /// The wire type code.
    pub fn msg_type(&self) -> u8 {
        match self {
            AsapBody::Registration { .. } => REGISTRATION,
            AsapBody::Deregistration { .. } => DEREGISTRATION,
            AsapBody::RegistrationResponse { .. } => REGISTRATION_RESPONSE,
            AsapBody::DeregistrationResponse { .. } => DEREGISTRATION_RESPONSE,
            AsapBody::HandleResolution { .. } => HANDLE_RESOLUTION,
            AsapBody::HandleResolutionResponse { .. } => HANDLE_RESOLUTION_RESPONSE,
            AsapBody::EndpointKeepAlive { .. } => ENDPOINT_KEEP_ALIVE,
            AsapBody::EndpointKeepAliveAck { .. } => ENDPOINT_KEEP_ALIVE_ACK,
            AsapBody::EndpointUnreachable { .. } => ENDPOINT_UNREACHABLE,
            AsapBody::ServerAnnounce { .. } => SERVER_ANNOUNCE,
            AsapBody::Cookie { .. } => COOKIE,
            AsapBody::CookieEcho { .. } => COOKIE_ECHO,
            AsapBody::BusinessCard { .. } => BUSINESS_CARD,
            AsapBody::Error { .. } => ERROR,
        }
    }
}

/// An ASAP message: the exact flags byte, the typed body, and unknown "skip" parameters (kept
/// with their position so that re-encoding is byte-exact).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AsapMessage {
    pub flags: u8,
    pub body: AsapBody,
    pub skipped: Vec<SkippedParam>,
}

pub(crate) fn read_u32(region: &[u8], at: usize, what: &'static str) -> Result<u32, WireError> {
    match region.get(at..at + 4) {
        Some(b) => Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]])),
        None => Err(WireError::Truncated {
            what,
            need: HEADER_LEN + at + 4,
            have: HEADER_LEN + region.len(),
        }),
    }
}

fn pool_handle(r: &mut Reader<'_>, ctx: &mut Ctx) -> Result<PoolHandle, WireError> {
    Ok(PoolHandle::new(
        r.expect(ctx, PARAM_POOL_HANDLE, "pool handle")?.value(),
    ))
}

fn pe_id(r: &mut Reader<'_>, ctx: &mut Ctx) -> Result<PeId, WireError> {
    parse_pe_id(r.expect(ctx, PARAM_PE_IDENTIFIER, "PE identifier")?)
}

fn opt_error(r: &mut Reader<'_>, ctx: &mut Ctx) -> Result<Option<OperationError>, WireError> {
    match r.next_if(ctx, |t| t == PARAM_OPERATION_ERROR)? {
        Some(t) => Ok(Some(OperationError::parse(t)?)),
        None => Ok(None),
    }
}

fn opt_policy(r: &mut Reader<'_>, ctx: &mut Ctx) -> Result<Option<PolicyInfo>, WireError> {
    match r.next_if(ctx, |t| t == PARAM_POLICY)? {
        Some(t) => Ok(Some(parse_policy(t)?)),
        None => Ok(None),
    }
}

fn elements(r: &mut Reader<'_>, ctx: &mut Ctx) -> Result<Vec<PoolElement>, WireError> {
    let mut v = Vec::new();
    while let Some(t) = r.next_if(ctx, |t| t == PARAM_POOL_ELEMENT)? {
        v.push(PoolElement::parse(t, ctx)?);
    }
    Ok(v)
}

/// The pool handle and the items option of a Handle Resolution, read in place: the hot path of
/// a registrar, which thus neither allocates nor builds an [`AsapMessage`].
///
/// `Some` only for the plain form — a valid message of type [`HANDLE_RESOLUTION`] whose
/// parameters are exactly a Pool Handle and, optionally, a well-formed Handle Resolution option
/// (any flags) — for which [`AsapMessage::decode`] gives the same pool handle and items, no
/// unknown parameters and no error. `None` for everything else, including every message
/// `decode` refuses: such input must go through `decode`, which says what is wrong.
pub fn peek_handle_resolution(bytes: &[u8]) -> Option<(&[u8], Option<u32>)> {
    let view = MessageView::new_checked(bytes).ok()?;
    if view.msg_type() != HANDLE_RESOLUTION {
        return None;
    }
    let params = view.params();
    let (handle, used) = Tlv::new_checked(params, "message").ok()?;
    if handle.param_type() != PARAM_POOL_HANDLE {
        return None;
    }
    let rest = &params[used..];
    if rest.is_empty() {
        return Some((handle.value(), None));
    }
    let (option, used) = Tlv::new_checked(rest, "message").ok()?;
    if option.param_type() != PARAM_HANDLE_RESOLUTION_OPTION || used != rest.len() {
        return None;
    }
    Some((handle.value(), Some(parse_hr_option(option).ok()?)))
}

/// Appends a Handle Resolution Response with PEs (flags 0, no error) to `buf`: the pool
/// handle, the pool's policy (that of the first element, as [`AsapMessage`] would be built) and
/// each element, byte for byte what encoding the equivalent [`AsapMessage`] gives, without
/// building one; like [`AsapMessage::emit`] it pads to multiples of 4 counted from the start
/// of `buf`, whose length must be one. Errors without elements (that answer carries an Operation Error: build an
/// [`AsapMessage`]). On an error `buf` holds a partial message: the caller discards it.
pub fn emit_handle_resolution_response<'a>(
    buf: &mut Vec<u8>,
    pool_handle: &[u8],
    elements: impl IntoIterator<Item = PoolElementRef<'a>>,
) -> Result<(), WireError> {
    let mut elements = elements.into_iter().peekable();
    let Some(first) = elements.peek() else {
        return Err(WireError::MissingParameter {
            what: "pool element",
        });
    };
    let policy = first.policy;
    let at = start_message(buf, HANDLE_RESOLUTION_RESPONSE, 0);
    emit_bytes(buf, PARAM_POOL_HANDLE, pool_handle)?;
    emit_policy(buf, &policy)?;
    for e in elements {
        emit_pool_element(buf, e, &[])?;
    }
    finish_message(buf, at)
}

impl AsapMessage {
    /// A message with flags 0.
    pub fn new(body: AsapBody) -> Self {
        AsapMessage {
            flags: 0,
            body,
            skipped: Vec::new(),
        }
    }

    /// A message with the given flags byte.
    pub fn with_flags(body: AsapBody, flags: u8) -> Self {
        AsapMessage {
            flags,
            body,
            skipped: Vec::new(),
        }
    }

    /// The wire type code.
    pub fn msg_type(&self) -> u8 {
        self.body.msg_type()
    }

    /// The message name.
    pub fn name(&self) -> &'static str {
        message_name(self.msg_type())
    }

    /// Decodes exactly one message (`bytes` may include the final padding).
    pub fn decode(bytes: &[u8]) -> Result<Decoded<AsapMessage>, WireError> {
        let view = MessageView::new_checked(bytes)?;
        let region = view.params();
        let mut ctx = Ctx::default();
        let msg_type = view.msg_type();
        let params = match msg_type {
            ENDPOINT_KEEP_ALIVE | SERVER_ANNOUNCE => region.get(SERVER_ID_LEN..).unwrap_or(&[]),
            _ => region,
        };
        let mut r = Reader::new(params, "message");
        let c = &mut ctx;
        let body = match msg_type {
            REGISTRATION => {
                let pool_handle = pool_handle(&mut r, c)?;
                let element =
                    PoolElement::parse(r.expect(c, PARAM_POOL_ELEMENT, "pool element")?, c)?;
                AsapBody::Registration {
                    pool_handle,
                    element,
                }
            }
            DEREGISTRATION | ENDPOINT_KEEP_ALIVE_ACK | ENDPOINT_UNREACHABLE => {
                let pool_handle = pool_handle(&mut r, c)?;
                let pe_id = pe_id(&mut r, c)?;
                match msg_type {
                    DEREGISTRATION => AsapBody::Deregistration { pool_handle, pe_id },
                    ENDPOINT_KEEP_ALIVE_ACK => {
                        AsapBody::EndpointKeepAliveAck { pool_handle, pe_id }
                    }
                    _ => AsapBody::EndpointUnreachable { pool_handle, pe_id },
                }
            }
            REGISTRATION_RESPONSE | DEREGISTRATION_RESPONSE => {
                let pool_handle = pool_handle(&mut r, c)?;
                let pe_id = pe_id(&mut r, c)?;
                let error = opt_error(&mut r, c)?;
                if msg_type == REGISTRATION_RESPONSE {
                    AsapBody::RegistrationResponse {
                        pool_handle,
                        pe_id,
                        error,
                    }
                } else {
                    AsapBody::DeregistrationResponse {
                        pool_handle,
                        pe_id,
                        error,
                    }
                }
            }
            HANDLE_RESOLUTION => {
                let pool_handle = pool_handle(&mut r, c)?;
                let items = match r.next_if(c, |t| t == PARAM_HANDLE_RESOLUTION_OPTION)? {
                    Some(t) => Some(parse_hr_option(t)?),
                    None => None,
                };
                AsapBody::HandleResolution { pool_handle, items }
            }
            HANDLE_RESOLUTION_RESPONSE => {
                let pool_handle = pool_handle(&mut r, c)?;
                let policy = opt_policy(&mut r, c)?;
                let elements = elements(&mut r, c)?;
                let error = opt_error(&mut r, c)?;
                AsapBody::HandleResolutionResponse {
                    pool_handle,
                    policy,
                    elements,
                    error,
                }
            }
            ENDPOINT_KEEP_ALIVE => {
                let server_id = RegistrarId(read_u32(region, SERVER_ID, "server identifier")?);
                let pool_handle = pool_handle(&mut r, c)?;
                let pe_id = match r.next_if(c, |t| t == PARAM_PE_IDENTIFIER)? {
                    Some(t) => Some(parse_pe_id(t)?),
                    None => None,
                };
                AsapBody::EndpointKeepAlive {
                    server_id,
                    pool_handle,
                    pe_id,
                }
            }
            SERVER_ANNOUNCE => {
                let server_id = RegistrarId(read_u32(region, SERVER_ID, "server identifier")?);
                let mut transports = Vec::new();
                while let Some(t) = r.next_if(c, is_transport_param)? {
                    transports.push(parse_transport(t, c)?);
                }
                AsapBody::ServerAnnounce {
                    server_id,
                    transports,
                }
            }
            COOKIE | COOKIE_ECHO => {
                let cookie: Box<[u8]> = r.expect(c, PARAM_COOKIE, "cookie")?.value().into();
                if msg_type == COOKIE {
                    AsapBody::Cookie { cookie }
                } else {
                    AsapBody::CookieEcho { cookie }
                }
            }
            BUSINESS_CARD => {
                let pool_handle = pool_handle(&mut r, c)?;
                let policy = opt_policy(&mut r, c)?;
                let elements = elements(&mut r, c)?;
                if elements.is_empty() {
                    return Err(WireError::MissingParameter {
                        what: "pool element",
                    });
                }
                AsapBody::BusinessCard {
                    pool_handle,
                    policy,
                    elements,
                }
            }
            ERROR => AsapBody::Error {
                error: OperationError::parse(r.expect(
                    c,
                    PARAM_OPERATION_ERROR,
                    "operation error",
                )?)?,
            },
            _ => {
                return Err(WireError::UnknownMessageType {
                    protocol: Protocol::Asap,
                    msg_type,
                    message: view.bytes().into(),
                })
            }
        };
        let skipped = r.finish(c)?;
        Ok(Decoded {
            message: AsapMessage {
                flags: view.flags(),
                body,
                skipped,
            },
            unrecognized: ctx.report,
        })
    }

    /// Appends the encoded message to `buf` (canonical: zero padding, padded message length).
    pub fn emit(&self, buf: &mut Vec<u8>) -> Result<(), WireError> {
        let at = start_message(buf, self.msg_type(), self.flags);
        match &self.body {
            AsapBody::EndpointKeepAlive { server_id, .. }
            | AsapBody::ServerAnnounce { server_id, .. } => {
                buf.extend_from_slice(&server_id.0.to_be_bytes())
            }
            _ => {}
        }
        let mut w = Writer::new(buf, &self.skipped);
        match &self.body {
            AsapBody::Registration {
                pool_handle,
                element,
            } => {
                emit_bytes(w.param(), PARAM_POOL_HANDLE, pool_handle.as_bytes())?;
                element.emit(w.param())?;
            }
            AsapBody::Deregistration { pool_handle, pe_id }
            | AsapBody::EndpointKeepAliveAck { pool_handle, pe_id }
            | AsapBody::EndpointUnreachable { pool_handle, pe_id } => {
                emit_bytes(w.param(), PARAM_POOL_HANDLE, pool_handle.as_bytes())?;
                emit_pe_id(w.param(), *pe_id)?;
            }
            AsapBody::RegistrationResponse {
                pool_handle,
                pe_id,
                error,
            }
            | AsapBody::DeregistrationResponse {
                pool_handle,
                pe_id,
                error,
            } => {
                emit_bytes(w.param(), PARAM_POOL_HANDLE, pool_handle.as_bytes())?;
                emit_pe_id(w.param(), *pe_id)?;
                if let Some(e) = error {
                    e.emit(w.param())?;
                }
            }
            AsapBody::HandleResolution { pool_handle, items } => {
                emit_bytes(w.param(), PARAM_POOL_HANDLE, pool_handle.as_bytes())?;
                if let Some(n) = items {
                    emit_hr_option(w.param(), *n)?;
                }
            }
            AsapBody::HandleResolutionResponse {
                pool_handle,
                policy,
                elements,
                error,
            } => {
                emit_bytes(w.param(), PARAM_POOL_HANDLE, pool_handle.as_bytes())?;
                if let Some(p) = policy {
                    emit_policy(w.param(), p)?;
                }
                for e in elements {
                    e.emit(w.param())?;
                }
                if let Some(e) = error {
                    e.emit(w.param())?;
                }
            }
            AsapBody::EndpointKeepAlive {
                pool_handle, pe_id, ..
            } => {
                emit_bytes(w.param(), PARAM_POOL_HANDLE, pool_handle.as_bytes())?;
                if let Some(id) = pe_id {
                    emit_pe_id(w.param(), *id)?;
                }
            }
            AsapBody::ServerAnnounce { transports, .. } => {
                for t in transports {
                    emit_transport(w.param(), t)?;
                }
            }
            AsapBody::Cookie { cookie } | AsapBody::CookieEcho { cookie } => {
                emit_bytes(w.param(), PARAM_COOKIE, cookie)?;
            }
            AsapBody::BusinessCard {
                pool_handle,
                policy,
                elements,
            } => {
                emit_bytes(w.param(), PARAM_POOL_HANDLE, pool_handle.as_bytes())?;
                if let Some(p) = policy {
                    emit_policy(w.param(), p)?;
                }
                for e in elements {
                    e.emit(w.param())?;
                }
            }
            AsapBody::Error { error } => error.emit(w.param())?,
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
