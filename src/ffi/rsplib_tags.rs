//! `rsplib-tags.h`: the tags of the classic API (`TAG_USER + n`), the `RspRead_*` results of
//! session reads and writes, and the failover callback type.
//!
//! Tag numbers are per-function namespaces (`TAG_RspLib_CacheElementTimeout` and
//! `TAG_RspSession_ConnectTimeout` are both `TAG_USER + 7000`): a tag means what the function
//! that receives the list says it means.
#![allow(non_upper_case_globals, non_snake_case)]

use super::tagitem::{tag_t, TAG_USER};

// Policy of a registration (rspRegister, rspCreatePoolElement).
pub const TAG_PoolPolicy_Type: tag_t = TAG_USER + 1000;
pub const TAG_PoolPolicy_Parameter_Weight: tag_t = TAG_USER + 1001;
pub const TAG_PoolPolicy_Parameter_Load: tag_t = TAG_USER + 1002;
pub const TAG_PoolPolicy_Parameter_LoadDegradation: tag_t = TAG_USER + 1003;

// Pool element (rspRegister, rspCreatePoolElement).
pub const TAG_PoolElement_ReregistrationInterval: tag_t = TAG_USER + 2000;
pub const TAG_PoolElement_RegistrationLife: tag_t = TAG_USER + 2001;
pub const TAG_PoolElement_SocketDomain: tag_t = TAG_USER + 2002;
pub const TAG_PoolElement_SocketType: tag_t = TAG_USER + 2003;
pub const TAG_PoolElement_SocketProtocol: tag_t = TAG_USER + 2004;
pub const TAG_PoolElement_LocalPort: tag_t = TAG_USER + 2005;
pub const TAG_PoolElement_Identifier: tag_t = TAG_USER + 2006;

// Library configuration (rspInitialize).
pub const TAG_RspLib_CacheElementTimeout: tag_t = TAG_USER + 7000;
pub const TAG_RspLib_RegistrarAnnounceAddress: tag_t = TAG_USER + 7001;
pub const TAG_RspLib_RegistrarAnnounceTimeout: tag_t = TAG_USER + 7002;
pub const TAG_RspLib_RegistrarConnectMaxTrials: tag_t = TAG_USER + 7003;
pub const TAG_RspLib_RegistrarConnectTimeout: tag_t = TAG_USER + 7004;
pub const TAG_RspLib_RegistrarRequestMaxTrials: tag_t = TAG_USER + 7005;
pub const TAG_RspLib_RegistrarRequestTimeout: tag_t = TAG_USER + 7006;
pub const TAG_RspLib_RegistrarResponseTimeout: tag_t = TAG_USER + 7007;

// Sessions (rspCreateSession, rspAcceptSession).
pub const TAG_RspSession_ConnectTimeout: tag_t = TAG_USER + 7000;
pub const TAG_RspSession_HandleResolutionRetryDelay: tag_t = TAG_USER + 7001;
pub const TAG_RspSession_FailoverCallback: tag_t = TAG_USER + 7005;
pub const TAG_RspSession_FailoverUserData: tag_t = TAG_USER + 7006;

// User transport (rspRegister, rspCreatePoolElement).
pub const TAG_UserTransport_HasControlChannel: tag_t = TAG_USER + 7500;

// Session I/O (rspSessionRead, rspSessionWrite, rspSessionSendCookie).
pub const TAG_RspIO_Flags: tag_t = TAG_USER + 8000;
pub const TAG_RspIO_Timeout: tag_t = TAG_USER + 8001;
pub const TAG_RspIO_PE_ID: tag_t = TAG_USER + 8002;
pub const TAG_RspIO_SCTP_AssocID: tag_t = TAG_USER + 8003;
pub const TAG_RspIO_SCTP_StreamID: tag_t = TAG_USER + 8004;
pub const TAG_RspIO_SCTP_PPID: tag_t = TAG_USER + 8005;
pub const TAG_RspIO_SCTP_TimeToLive: tag_t = TAG_USER + 8006;
pub const TAG_RspIO_MakeFailover: tag_t = TAG_USER + 8007;
pub const TAG_RspIO_MsgIsCookieEcho: tag_t = TAG_USER + 8008;

// rspSessionSelect.
pub const TAG_RspSelect_MaxFD: tag_t = TAG_USER + 9000;
pub const TAG_RspSelect_ReadFDs: tag_t = TAG_USER + 9001;
pub const TAG_RspSelect_WriteFDs: tag_t = TAG_USER + 9002;
pub const TAG_RspSelect_ExceptFDs: tag_t = TAG_USER + 9003;
pub const TAG_RspSelect_Timeout: tag_t = TAG_USER + 9004;
pub const TAG_RspSelect_RsplibEventLoop: tag_t = TAG_USER + 9005;

// Output tags of rspInitialize.
pub const TAG_RspLib_GetVersion: tag_t = TAG_USER + 10000;
pub const TAG_RspLib_GetRevision: tag_t = TAG_USER + 10001;
pub const TAG_RspLib_GetBuildDate: tag_t = TAG_USER + 10002;
pub const TAG_RspLib_GetBuildTime: tag_t = TAG_USER + 10003;
pub const TAG_RspLib_IsThreadSafe: tag_t = TAG_USER + 10004;

// Component status reporting (defined; configured through cspReporterNewForRspLib).
pub const TAG_RspLib_CSPIdentifier: tag_t = TAG_USER + 10010;
pub const TAG_RspLib_CSPReportAddress: tag_t = TAG_USER + 10011;
pub const TAG_RspLib_CSPReportInterval: tag_t = TAG_USER + 10012;

// Historic names (same values) used by programs written against 2004 releases.
pub const TAG_RspLib_NameServerAnnounceAddress: tag_t = TAG_USER + 7001;
pub const TAG_RspLib_NameServerAnnounceTimeout: tag_t = TAG_USER + 7002;
pub const TAG_RspLib_NameServerConnectMaxTrials: tag_t = TAG_USER + 7003;
pub const TAG_RspLib_NameServerConnectTimeout: tag_t = TAG_USER + 7004;
pub const TAG_RspLib_NameServerRequestMaxTrials: tag_t = TAG_USER + 7005;
pub const TAG_RspLib_NameServerRequestTimeout: tag_t = TAG_USER + 7006;
pub const TAG_RspLib_NameServerResponseTimeout: tag_t = TAG_USER + 7007;
pub const TAG_RspSession_NameResolutionRetryDelay: tag_t = TAG_USER + 7001;
pub const TAG_RspIO_MsgIsCookie: tag_t = TAG_USER + 8008;

// Results of rspSessionRead / rspSessionWrite (negative ssize_t values).
pub const RspRead_Timeout: libc::c_int = -1;
pub const RspRead_ReadError: libc::c_int = -2;
pub const RspRead_WrongPPID: libc::c_int = -3;
pub const RspRead_PartialRead: libc::c_int = -4;
pub const RspRead_TooBig: libc::c_int = -5;
pub const RspRead_Failover: libc::c_int = -6;
pub const RspRead_ControlRead: libc::c_int = -7;

/// Failover callback: return false to veto the failover.
///
/// The header says `bool`; a C caller's `bool` is one byte, so when the library calls it, it
/// reads the result as a byte and tests it against 0.
pub type FailoverCallbackPtr = Option<unsafe extern "C" fn(userData: *mut libc::c_void) -> bool>;
