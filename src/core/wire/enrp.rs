//! ENRP messages (RFC 5353 §2): every message starts with the sender's and the receiver's
//! registrar id (fixed fields), then message-specific fixed fields and parameters.

use super::asap::read_u32;
use super::error::WireError;
use super::header::{finish_message, start_message, MessageView};
use super::param::*;
use super::{Decoded, Protocol};
use crate::core::types::{PoolHandle, RegistrarId};

// RFC 5353 §2: message type codes.
pub const PRESENCE: u8 = 0x01;
pub const HANDLE_TABLE_REQUEST: u8 = 0x02;
pub const HANDLE_TABLE_RESPONSE: u8 = 0x03;
pub const HANDLE_UPDATE: u8 = 0x04;
pub const LIST_REQUEST: u8 = 0x05;
pub const LIST_RESPONSE: u8 = 0x06;
pub const INIT_TAKEOVER: u8 = 0x07;
pub const INIT_TAKEOVER_ACK: u8 = 0x08;
pub const TAKEOVER_SERVER: u8 = 0x09;
pub const ERROR: u8 = 0x0a;

/// Presence R flag (RFC 5353 §2.1): reply required.
pub const FLAG_REPLY_REQUIRED: u8 = 0x01;
/// Handle Table Request W flag (RFC 5353 §2.2): own children only.
pub const FLAG_OWN_CHILDREN_ONLY: u8 = 0x01;
/// Handle Table Response / List Response R flag: rejected.
pub const FLAG_REJECT: u8 = 0x01;
/// Handle Table Response M flag: more to send.
pub const FLAG_MORE: u8 = 0x02;
/// Handle Update T flag (draft-dreibholz-rserpool-enrp-takeover): takeover suggested.
pub const FLAG_TAKEOVER_SUGGESTED: u8 = 0x01;

/// Handle Update action: add PE (RFC 5353 §2.4).
pub const UPDATE_ADD_PE: u16 = 0;
/// Handle Update action: delete PE.
pub const UPDATE_DEL_PE: u16 = 1;

// Fixed-field offsets after the header (RFC 5353 §2).
const SENDER_ID: usize = 0;
const RECEIVER_ID: usize = 4;
const IDS_LEN: usize = 8;
/// Handle Update: u16 action, u16 reserved; takeover messages: u32 target id.
const EXTRA: usize = 8;
const EXTRA_LEN: usize = 4;

/// The name of an ENRP message type.
pub fn message_name(msg_type: u8) -> &'static str {
    match msg_type {
        PRESENCE => "Presence",
        HANDLE_TABLE_REQUEST => "Handle Table Request",
        HANDLE_TABLE_RESPONSE => "Handle Table Response",
        HANDLE_UPDATE => "Handle Update",
        LIST_REQUEST => "List Request",
        LIST_RESPONSE => "List Response",
        INIT_TAKEOVER => "Init Takeover",
        INIT_TAKEOVER_ACK => "Init Takeover Ack",
        TAKEOVER_SERVER => "Takeover Server",
        ERROR => "Error",
        _ => "Unknown",
    }
}

/// One pool's entries in a Handle Table Response: a Pool Handle followed by its PEs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolEntries {
    pub pool_handle: PoolHandle,
    pub elements: Vec<PoolElement>,
}

/// The typed content of an ENRP message (after the two registrar ids).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EnrpBody {
    /// PE Checksum (wire value), Server Information.
    Presence {
        checksum: u16,
        server_info: ServerInformation,
    },
    HandleTableRequest,
    /// (PH, Pool Element…)*.
    HandleTableResponse {
        pools: Vec<PoolEntries>,
    },
    /// u16 action, u16 reserved (kept), PH, Pool Element.
    HandleUpdate {
        action: u16,
        reserved: u16,
        pool_handle: PoolHandle,
        element: PoolElement,
    },
    ListRequest,
    /// Server Information….
    ListResponse {
        servers: Vec<ServerInformation>,
    },
    InitTakeover {
        target: RegistrarId,
    },
    InitTakeoverAck {
        target: RegistrarId,
    },
    TakeoverServer {
        target: RegistrarId,
    },
    /// Operation Error.
    Error {
        error: OperationError,
    },
}

impl EnrpBody {
    /// The wire type code.
    pub fn msg_type(&self) -> u8 {
        match self {
            EnrpBody::Presence { .. } => PRESENCE,
            EnrpBody::HandleTableRequest => HANDLE_TABLE_REQUEST,
            EnrpBody::HandleTableResponse { .. } => HANDLE_TABLE_RESPONSE,
            EnrpBody::HandleUpdate { .. } => HANDLE_UPDATE,
            EnrpBody::ListRequest => LIST_REQUEST,
            EnrpBody::ListResponse { .. } => LIST_RESPONSE,
            EnrpBody::InitTakeover { .. } => INIT_TAKEOVER,
            EnrpBody::InitTakeoverAck { .. } => INIT_TAKEOVER_ACK,
            EnrpBody::TakeoverServer { .. } => TAKEOVER_SERVER,
            EnrpBody::Error { .. } => ERROR,
        }
    }
}

/// An ENRP message: flags byte, sender and receiver ids, typed body, skipped unknown parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnrpMessage {
    pub flags: u8,
    pub sender: RegistrarId,
    /// 0 = any / unknown.
    pub receiver: RegistrarId,
    pub body: EnrpBody,
    pub skipped: Vec<SkippedParam>,
}

impl EnrpMessage {
    /// A message with flags 0.
    pub fn new(sender: RegistrarId, receiver: RegistrarId, body: EnrpBody) -> Self {
        EnrpMessage {
            flags: 0,
            sender,
            receiver,
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
    pub fn decode(bytes: &[u8]) -> Result<Decoded<EnrpMessage>, WireError> {
        let view = MessageView::new_checked(bytes)?;
        let msg_type = view.msg_type();
        if !(PRESENCE..=ERROR).contains(&msg_type) {
            return Err(WireError::UnknownMessageType {
                protocol: Protocol::Enrp,
                msg_type,
                message: view.bytes().into(),
            });
        }
        let region = view.params();
        let sender = RegistrarId(read_u32(region, SENDER_ID, "sender server id")?);
        let receiver = RegistrarId(read_u32(region, RECEIVER_ID, "receiver server id")?);
        let fixed = match msg_type {
            HANDLE_UPDATE | INIT_TAKEOVER | INIT_TAKEOVER_ACK | TAKEOVER_SERVER => {
                IDS_LEN + EXTRA_LEN
            }
            _ => IDS_LEN,
        };
        let extra = if fixed > IDS_LEN {
            read_u32(region, EXTRA, "fixed field")?
        } else {
            0
        };
        let mut r = Reader::new(&region[fixed..], "message");
        let mut ctx = Ctx::default();
        let c = &mut ctx;
        let pool_handle = |r: &mut Reader<'_>, c: &mut Ctx| -> Result<PoolHandle, WireError> {
            Ok(PoolHandle::new(
                r.expect(c, PARAM_POOL_HANDLE, "pool handle")?.value(),
            ))
        };
        let body = match msg_type {
            PRESENCE => {
                let checksum = parse_pe_checksum(r.expect(c, PARAM_PE_CHECKSUM, "PE checksum")?)?;
                let server_info = ServerInformation::parse(
                    r.expect(c, PARAM_SERVER_INFORMATION, "server information")?,
                    c,
                )?;
                EnrpBody::Presence {
                    checksum,
                    server_info,
                }
            }
            HANDLE_TABLE_REQUEST => EnrpBody::HandleTableRequest,
            HANDLE_TABLE_RESPONSE => {
                let mut pools = Vec::new();
                while r.peek(c)? == Some(PARAM_POOL_HANDLE) {
                    let pool_handle = pool_handle(&mut r, c)?;
                    let mut elements = Vec::new();
                    while let Some(t) = r.next_if(c, |t| t == PARAM_POOL_ELEMENT)? {
                        elements.push(PoolElement::parse(t, c)?);
                    }
                    if elements.is_empty() {
                        return Err(WireError::MissingParameter {
                            what: "pool element",
                        });
                    }
                    pools.push(PoolEntries {
                        pool_handle,
                        elements,
                    });
                }
                EnrpBody::HandleTableResponse { pools }
            }
            HANDLE_UPDATE => {
                let pool_handle = pool_handle(&mut r, c)?;
                let element =
                    PoolElement::parse(r.expect(c, PARAM_POOL_ELEMENT, "pool element")?, c)?;
                EnrpBody::HandleUpdate {
                    action: (extra >> 16) as u16,
                    reserved: extra as u16,
                    pool_handle,
                    element,
                }
            }
            LIST_REQUEST => EnrpBody::ListRequest,
            LIST_RESPONSE => {
                let mut servers = Vec::new();
                while let Some(t) = r.next_if(c, |t| t == PARAM_SERVER_INFORMATION)? {
                    servers.push(ServerInformation::parse(t, c)?);
                }
                EnrpBody::ListResponse { servers }
            }
            INIT_TAKEOVER => EnrpBody::InitTakeover {
                target: RegistrarId(extra),
            },
            INIT_TAKEOVER_ACK => EnrpBody::InitTakeoverAck {
                target: RegistrarId(extra),
            },
            TAKEOVER_SERVER => EnrpBody::TakeoverServer {
                target: RegistrarId(extra),
            },
            _ => EnrpBody::Error {
                error: OperationError::parse(r.expect(
                    c,
                    PARAM_OPERATION_ERROR,
                    "operation error",
                )?)?,
            },
        };
        let skipped = r.finish(c)?;
        Ok(Decoded {
            message: EnrpMessage {
                flags: view.flags(),
                sender,
                receiver,
                body,
                skipped,
            },
            unrecognized: ctx.report,
        })
    }

    /// Appends the encoded message to `buf` (canonical: zero padding, padded message length).
    pub fn emit(&self, buf: &mut Vec<u8>) -> Result<(), WireError> {
        let at = start_message(buf, self.msg_type(), self.flags);
        buf.extend_from_slice(&self.sender.0.to_be_bytes());
        buf.extend_from_slice(&self.receiver.0.to_be_bytes());
        match &self.body {
            EnrpBody::HandleUpdate {
                action, reserved, ..
            } => {
                buf.extend_from_slice(&action.to_be_bytes());
                buf.extend_from_slice(&reserved.to_be_bytes());
            }
            EnrpBody::InitTakeover { target }
            | EnrpBody::InitTakeoverAck { target }
            | EnrpBody::TakeoverServer { target } => {
                buf.extend_from_slice(&target.0.to_be_bytes());
            }
            _ => {}
        }
        let mut w = Writer::new(buf, &self.skipped);
        match &self.body {
            EnrpBody::Presence {
                checksum,
                server_info,
            } => {
                emit_pe_checksum(w.param(), *checksum)?;
                server_info.emit(w.param())?;
            }
            EnrpBody::HandleTableResponse { pools } => {
                for p in pools {
                    emit_bytes(w.param(), PARAM_POOL_HANDLE, p.pool_handle.as_bytes())?;
                    for e in &p.elements {
                        e.emit(w.param())?;
                    }
                }
            }
            EnrpBody::HandleUpdate {
                pool_handle,
                element,
                ..
            } => {
                emit_bytes(w.param(), PARAM_POOL_HANDLE, pool_handle.as_bytes())?;
                element.emit(w.param())?;
            }
            EnrpBody::ListResponse { servers } => {
                for s in servers {
                    s.emit(w.param())?;
                }
            }
            EnrpBody::Error { error } => error.emit(w.param())?,
            EnrpBody::HandleTableRequest
            | EnrpBody::ListRequest
            | EnrpBody::InitTakeover { .. }
            | EnrpBody::InitTakeoverAck { .. }
            | EnrpBody::TakeoverServer { .. } => {}
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
