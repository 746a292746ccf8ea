//! `rsplib.h`: the classic API's types, constants and functions.
#![allow(non_snake_case, non_upper_case_globals)]

use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::Arc;

use libc::{c_char, c_int, c_uchar, c_uint};
use parking_lot::RwLock;

use super::guard::{guard, try_cstr, try_mut, try_ref, try_slice};
use super::netutilities::parse_address;
use super::poolpolicysettings::{
    load_to_wire, policy_from_ppt, PEPS_MAX_LOAD, PEPS_MAX_LOADDEGRADATION, PPT_ROUNDROBIN,
};
use super::rserpoolerror::*;
use super::rsplib_tags::*;
use super::sockaddrunion::sockaddr_union;
use super::tagitem::{tagListGetData, tagListSetData, tag_t, tagdata_t, TagItem};
use crate::core::types::{
    PeId, PolicyInfo, PoolHandle, TransportAddress, TransportProtocol, MAX_POOL_HANDLE_SIZE,
    TRANSPORT_USE_DATA_PLUS_CONTROL,
};
use crate::core::wire;
use crate::library::session::{
    EnhancedPe, FailoverCallback, PeOptions, ReadOutcome, Session, SessionOptions, WriteOutcome,
};
use crate::library::{Library, LibraryConfig};
use crate::logging;
use crate::transport::sctp;
use std::time::Duration;

pub const RSPLIB_VERSION: libc::c_int = 0;
pub const RSPLIB_REVISION: libc::c_int = 8001;

pub const RspSelect_Read: libc::c_uint = 1 << 0;
pub const RspSelect_Write: libc::c_uint = 1 << 1;
pub const RspSelect_Except: libc::c_uint = 1 << 2;

/// A pool element's transport endpoint, as handle resolution returns it and `rspRegister`
/// takes it (56 bytes on LP64; field order is the ABI).
#[repr(C)]
#[derive(Debug)]
pub struct EndpointAddressInfo {
    pub ai_family: libc::c_int,
    pub ai_socktype: libc::c_int,
    pub ai_protocol: libc::c_int,
    pub ai_addrlen: usize,
    pub ai_addrs: usize,
    pub ai_addr: *mut sockaddr_union,
    pub ai_next: *mut EndpointAddressInfo,
    pub ai_pe_id: u32,
}

/// Opaque Enhanced Mode pool element descriptor.
pub struct PoolElementDescriptor {
    pub(crate) pe: EnhancedPe,
}

/// Opaque Enhanced Mode session descriptor.
pub struct SessionDescriptor {
    pub(crate) session: Session,
}

// ------------------------------------------------------------------------- the instance

/// The process-wide library instance (`rspInitialize` … `rspCleanUp`).
static INSTANCE: RwLock<Option<Arc<Library>>> = RwLock::new(None);

thread_local! {
    /// Error of the calling thread's last call (`rspGetLastError`).
    static LAST_ERROR: Cell<c_uint> = const { Cell::new(RSPERR_OKAY) };
}

/// Records `code` as the calling thread's last error and returns it.
fn last(code: c_uint) -> c_uint {
    LAST_ERROR.with(|e| e.set(code));
    code
}

pub(crate) fn instance() -> Result<Arc<Library>, c_uint> {
    INSTANCE.read().clone().ok_or(RSPERR_NOT_INITIALIZED)
}

/// A pointer result: records `RSPERR_OKAY` or the error as the thread's last error; NULL on
/// error.
fn pointer_or_null<T>(r: Result<*mut T, c_uint>) -> *mut T {
    match r {
        Ok(p) => {
            last(RSPERR_OKAY);
            p
        }
        Err(e) => {
            last(e);
            std::ptr::null_mut()
        }
    }
}

/// Runs `f` with the instance and records the result as the thread's last error.
fn with_instance(f: impl FnOnce(&Library) -> Result<(), c_uint>) -> c_uint {
    last(match instance() {
        Ok(lib) => f(&lib).err().unwrap_or(RSPERR_OKAY),
        Err(e) => e,
    })
}

/// A pool handle from C: 1..=32 bytes.
///
/// # Safety
/// `ph` must be NULL or point to `size` readable bytes.
unsafe fn pool_handle(ph: *const u8, size: usize) -> Result<PoolHandle, c_uint> {
    if ph.is_null() || size == 0 || size > MAX_POOL_HANDLE_SIZE {
        return Err(RSPERR_INVALID_POOL_HANDLE);
    }
    let bytes = try_slice(ph, size).ok_or(RSPERR_INVALID_POOL_HANDLE)?;
    Ok(PoolHandle::new(bytes))
}

/// Tag data as a time in µs, where anything ≥ 2^63 (e.g. `~0`) is "forever".
fn micros(v: tagdata_t) -> u64 {
    if v >= 1 << 63 {
        u64::MAX / 4
    } else {
        v
    }
}

/// Parses a registrar's address string: addresses in the syntax of `string2address`
/// separated by commas (one multihomed registrar); port 3863 if none (or 0).
pub fn parse_registrar_addresses(s: &str) -> Result<Vec<SocketAddr>, c_uint> {
    let mut out = Vec::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        out.push(parse_address(item).ok_or(RSPERR_UNRECOGNIZED_PARAMETER)?);
    }
    if out.is_empty() {
        return Err(RSPERR_INVALID_VALUES);
    }
    // All addresses of one SCTP endpoint share the first one's port.
    let port = match out[0].port() {
        0 => 3863,
        p => p,
    };
    for a in &mut out {
        a.set_port(port);
    }
    Ok(out)
}

/// Reads the `rspInitialize` configuration tags.
///
/// # Safety
/// `tags` must be NULL or a valid tag list.
unsafe fn library_config(tags: *mut TagItem) -> LibraryConfig {
    let mut cfg = LibraryConfig::default();
    let get = |tag, default: u64| tagListGetData(tags, tag, default as tagdata_t);
    cfg.cache_timeout = micros(get(TAG_RspLib_CacheElementTimeout, cfg.cache_timeout));
    cfg.announce_timeout = micros(get(
        TAG_RspLib_RegistrarAnnounceTimeout,
        cfg.announce_timeout,
    ));
    cfg.connect_max_trials = get(TAG_RspLib_RegistrarConnectMaxTrials, 3).clamp(1, 1000) as u32;
    cfg.connect_timeout = micros(get(TAG_RspLib_RegistrarConnectTimeout, cfg.connect_timeout));
    cfg.request_max_trials = get(TAG_RspLib_RegistrarRequestMaxTrials, 1).clamp(1, 1000) as u32;
    cfg.response_timeout = micros(get(
        TAG_RspLib_RegistrarResponseTimeout,
        cfg.response_timeout,
    ));
    let announce = get(TAG_RspLib_RegistrarAnnounceAddress, 0) as *const sockaddr_union;
    if let Some(addr) = try_ref(announce).and_then(|a| a.to_socket_addr()) {
        cfg.announce_groups = vec![addr];
    }
    cfg
}

/// Creates the library instance. Output tags (if present in `tags`): version, revision, build
/// date and time, thread safety. A second call keeps the existing instance.
///
/// # Safety
/// `tags` must be NULL or a valid, writable tag list.
#[no_mangle]
pub unsafe extern "C" fn rspInitialize(tags: *mut TagItem) -> c_uint {
    guard("rspInitialize", || {
        static BUILD_DATE: &std::ffi::CStr = match std::ffi::CStr::from_bytes_with_nul(
            concat!(env!("RSPLIB_BUILD_DATE"), "\0").as_bytes(),
        ) {
            Ok(s) => s,
            Err(_) => c"",
        };
        static BUILD_TIME: &std::ffi::CStr = match std::ffi::CStr::from_bytes_with_nul(
            concat!(env!("RSPLIB_BUILD_TIME"), "\0").as_bytes(),
        ) {
            Ok(s) => s,
            Err(_) => c"",
        };
        tagListSetData(tags, TAG_RspLib_GetVersion, RSPLIB_VERSION as tagdata_t);
        tagListSetData(tags, TAG_RspLib_GetRevision, RSPLIB_REVISION as tagdata_t);
        tagListSetData(
            tags,
            TAG_RspLib_GetBuildDate,
            BUILD_DATE.as_ptr() as tagdata_t,
        );
        tagListSetData(
            tags,
            TAG_RspLib_GetBuildTime,
            BUILD_TIME.as_ptr() as tagdata_t,
        );
        tagListSetData(tags, TAG_RspLib_IsThreadSafe, 1);
        let mut slot = INSTANCE.write();
        if slot.is_some() {
            return last(RSPERR_OKAY);
        }
        let lib = match Library::start(library_config(tags)) {
            Ok(l) => l,
            Err(_) => return last(RSPERR_OUT_OF_MEMORY),
        };
        // Extension: RSPLIB_REGISTRAR=addr:port[,addr…][;addr:port…] for programs that cannot
        // be told where their registrar is.
        if let Ok(list) = std::env::var("RSPLIB_REGISTRAR") {
            for entry in list.split(';').filter(|e| !e.trim().is_empty()) {
                match parse_registrar_addresses(entry) {
                    Ok(addrs) => lib.add_static_registrar(addrs),
                    Err(_) => logging::log(
                        logging::ERROR,
                        &format!("rsplib: RSPLIB_REGISTRAR: cannot parse \"{entry}\""),
                    ),
                }
            }
        }
        *slot = Some(Arc::new(lib));
        last(RSPERR_OKAY)
    })
}

/// Adds one registrar: comma-separated transport addresses of the same registrar.
///
/// # Safety
/// `addressString` must be NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn rspAddStaticRegistrar(addressString: *const c_char) -> c_uint {
    guard("rspAddStaticRegistrar", || {
        with_instance(|lib| {
            let s = try_cstr(addressString).ok_or(RSPERR_INVALID_VALUES)?;
            let s = std::str::from_utf8(s).map_err(|_| RSPERR_UNRECOGNIZED_PARAMETER)?;
            let addrs = parse_registrar_addresses(s)?;
            lib.add_static_registrar(addrs);
            Ok(())
        })
    })
}

/// Destroys the instance; PEs still registered are deregistered. Idempotent.
#[no_mangle]
pub extern "C" fn rspCleanUp() {
    guard("rspCleanUp", || {
        let lib = INSTANCE.write().take();
        crate::library::contact::release_all_pe_receivers();
        if let Some(lib) = lib {
            lib.shutdown();
        }
    })
}

/// Static text for an `RSPERR_*` code; never NULL, never to be freed.
#[no_mangle]
pub extern "C" fn rspGetErrorDescription(errorCode: c_uint) -> *const c_char {
    guard("rspGetErrorDescription", || description(errorCode).as_ptr())
}

/// The policy, control-channel flag and registration life from `rspRegister`'s tags.
///
/// # Safety
/// `tags` must be NULL or a valid tag list.
unsafe fn registration_tags(tags: *mut TagItem) -> Result<(PolicyInfo, bool, u32), c_uint> {
    let get = |tag, default: tagdata_t| tagListGetData(tags, tag, default);
    let ppt = get(TAG_PoolPolicy_Type, PPT_ROUNDROBIN as tagdata_t);
    let policy = c_uint::try_from(ppt)
        .ok()
        .and_then(policy_from_ppt)
        .ok_or(RSPERR_INVALID_POOL_POLICY)?;
    let mut info = PolicyInfo::new(policy);
    info.weight = u32::try_from(get(TAG_PoolPolicy_Parameter_Weight, 1))
        .map_err(|_| RSPERR_INVALID_POOL_POLICY)?;
    let load = get(TAG_PoolPolicy_Parameter_Load, 0);
    let degradation = get(TAG_PoolPolicy_Parameter_LoadDegradation, 0);
    if load > PEPS_MAX_LOAD as tagdata_t || degradation > PEPS_MAX_LOADDEGRADATION as tagdata_t {
        return Err(RSPERR_INVALID_POOL_POLICY);
    }
    info.load = load_to_wire(load as c_uint);
    info.load_degradation = load_to_wire(degradation as c_uint);
    let control = get(TAG_UserTransport_HasControlChannel, 0) & 0xff != 0;
    let life_us = micros(get(TAG_PoolElement_RegistrationLife, 300_000_000));
    let life_ms = (life_us / 1000).clamp(1, i32::MAX as u64) as u32;
    Ok((info, control, life_ms))
}

/// The user transport described by an `EndpointAddressInfo` (first node only).
///
/// # Safety
/// `eai.ai_addr` must point to `eai.ai_addrs` unions (or be NULL).
pub(crate) unsafe fn user_transport(eai: &EndpointAddressInfo) -> Result<TransportAddress, c_uint> {
    let protocol =
        TransportProtocol::from_ip_protocol(eai.ai_protocol).ok_or(RSPERR_INVALID_VALUES)?;
    if eai.ai_addrs == 0 || eai.ai_addrs > 32 || eai.ai_addr.is_null() {
        return Err(RSPERR_INVALID_ADDRESSES);
    }
    let unions = std::slice::from_raw_parts(eai.ai_addr, eai.ai_addrs);
    let addrs: Vec<SocketAddr> = unions
        .iter()
        .map(|u| u.to_socket_addr().ok_or(RSPERR_INVALID_ADDRESSES))
        .collect::<Result<_, _>>()?;
    let port = addrs[0].port();
    Ok(TransportAddress::new(
        protocol,
        port,
        addrs.iter().map(|a| a.ip()).collect(),
    ))
}

/// Registers or re-registers the PE described by `endpointAddressInfo` (a random PE id is
/// chosen and stored back if `ai_pe_id` is 0). Blocks for the registrar's answer.
///
/// # Safety
/// `poolHandle` must point to `poolHandleSize` bytes; `endpointAddressInfo` must be NULL or a
/// valid, writable node whose `ai_addr` holds `ai_addrs` unions; `tags` NULL or a tag list.
#[no_mangle]
pub unsafe extern "C" fn rspRegister(
    poolHandle: *const c_uchar,
    poolHandleSize: usize,
    endpointAddressInfo: *mut EndpointAddressInfo,
    tags: *mut TagItem,
) -> c_uint {
    guard("rspRegister", || {
        with_instance(|lib| {
            let pool = pool_handle(poolHandle, poolHandleSize)?;
            let eai = try_mut(endpointAddressInfo).ok_or(RSPERR_INVALID_VALUES)?;
            let transport = user_transport(eai)?;
            let (policy, control, life_ms) = registration_tags(tags)?;
            let mut transport = transport;
            if control {
                transport.transport_use = TRANSPORT_USE_DATA_PLUS_CONTROL;
            }
            let chosen = eai.ai_pe_id == 0;
            if chosen {
                eai.ai_pe_id = crate::library::random_pe_id();
            }
            let mut element = wire::PoolElement::new(PeId(eai.ai_pe_id), transport, policy);
            element.registration_life = life_ms;
            lib.register(pool, element).map(|_| ()).map_err(|e| {
                if chosen {
                    eai.ai_pe_id = 0;
                }
                from_request_error(&e)
            })
        })
    })
}

/// Deregisters a PE; blocks for the registrar's answer.
///
/// # Safety
/// `poolHandle` must point to `poolHandleSize` bytes; `tags` NULL or a tag list.
#[no_mangle]
pub unsafe extern "C" fn rspDeregister(
    poolHandle: *const c_uchar,
    poolHandleSize: usize,
    identifier: u32,
    tags: *mut TagItem,
) -> c_uint {
    let _ = tags;
    guard("rspDeregister", || {
        with_instance(|lib| {
            let pool = pool_handle(poolHandle, poolHandleSize)?;
            if identifier == 0 {
                return Err(RSPERR_INVALID_ID);
            }
            lib.deregister(pool, PeId(identifier))
                .map_err(|e| from_request_error(&e))
        })
    })
}

/// A malloc'd one-node `EndpointAddressInfo` list for a resolved PE.
fn endpoint_info(pe: &wire::PoolElement) -> Result<*mut EndpointAddressInfo, c_uint> {
    let t = &pe.user_transport;
    let n = t.addresses.len().max(1);
    // SAFETY: plain C allocations, filled below and handed to the caller.
    unsafe {
        let node =
            libc::calloc(1, std::mem::size_of::<EndpointAddressInfo>()) as *mut EndpointAddressInfo;
        let addrs = libc::calloc(n, std::mem::size_of::<sockaddr_union>()) as *mut sockaddr_union;
        if node.is_null() || addrs.is_null() {
            libc::free(node.cast());
            libc::free(addrs.cast());
            return Err(RSPERR_OUT_OF_MEMORY);
        }
        for (i, ip) in t.addresses.iter().enumerate() {
            *addrs.add(i) = sockaddr_union::from_socket_addr(&SocketAddr::new(*ip, t.port));
        }
        let any_v6 = t.addresses.iter().any(|a| a.is_ipv6());
        *node = EndpointAddressInfo {
            ai_family: if any_v6 {
                libc::AF_INET6
            } else {
                libc::AF_INET
            },
            ai_socktype: match t.protocol {
                TransportProtocol::Sctp | TransportProtocol::Tcp => libc::SOCK_STREAM,
                _ => libc::SOCK_DGRAM,
            },
            ai_protocol: t.protocol.ip_protocol(),
            ai_addrlen: std::mem::size_of::<sockaddr_union>(),
            ai_addrs: t.addresses.len(),
            ai_addr: addrs,
            ai_next: std::ptr::null_mut(),
            ai_pe_id: pe.id.0,
        };
        Ok(node)
    }
}

/// Resolves a pool handle and selects one PE by the pool's policy (cache first, then the
/// registrar). On success `*endpointAddressInfo` is a new one-node list (free it with
/// `rspFreeEndpointAddressArray`); on failure it is set to NULL.
///
/// # Safety
/// `poolHandle` must point to `poolHandleSize` bytes; `endpointAddressInfo` must be NULL or
/// writable; `tags` NULL or a tag list.
#[no_mangle]
pub unsafe extern "C" fn rspHandleResolution(
    poolHandle: *const c_uchar,
    poolHandleSize: usize,
    endpointAddressInfo: *mut *mut EndpointAddressInfo,
    tags: *mut TagItem,
) -> c_uint {
    let _ = tags;
    guard("rspHandleResolution", || {
        let Some(out) = try_mut(endpointAddressInfo) else {
            return last(RSPERR_INVALID_VALUES);
        };
        *out = std::ptr::null_mut();
        with_instance(|lib| {
            let pool = pool_handle(poolHandle, poolHandleSize)?;
            match lib.resolve(&pool) {
                Ok(Some(pe)) => {
                    *out = endpoint_info(&pe)?;
                    Ok(())
                }
                Ok(None) => Err(RSPERR_NOT_FOUND),
                Err(e) => Err(from_request_error(&e)),
            }
        })
    })
}

/// Frees a list returned by `rspHandleResolution`: every node and its address array.
/// NULL is fine.
///
/// # Safety
/// `endpointAddressInfo` must be NULL or a list whose nodes and `ai_addr` arrays were allocated
/// with libc `malloc` (as this library's results are) and not yet freed.
#[no_mangle]
pub unsafe extern "C" fn rspFreeEndpointAddressArray(
    endpointAddressInfo: *mut EndpointAddressInfo,
) {
    guard("rspFreeEndpointAddressArray", || {
        let mut node = endpointAddressInfo;
        while !node.is_null() {
            let next = (*node).ai_next;
            libc::free((*node).ai_addr.cast());
            libc::free(node.cast());
            node = next;
        }
    })
}

/// Reports a PE unreachable: drops it from the cache and sends ASAP Endpoint Unreachable.
///
/// # Safety
/// `poolHandle` must point to `poolHandleSize` bytes; `tags` NULL or a tag list.
#[no_mangle]
pub unsafe extern "C" fn rspReportFailure(
    poolHandle: *const c_uchar,
    poolHandleSize: usize,
    identifier: u32,
    tags: *mut TagItem,
) -> c_uint {
    let _ = tags;
    guard("rspReportFailure", || {
        with_instance(|lib| {
            let pool = pool_handle(poolHandle, poolHandleSize)?;
            lib.report_failure(pool, PeId(identifier))
                .map_err(|e| from_request_error(&e))
        })
    })
}

/// `select()` for the caller's descriptors. The library's own sockets are serviced by its
/// thread, so they never appear in the sets. A NULL timeout waits at most 10 s (then 0), as
/// the original's event loop did; callers loop.
///
/// # Safety
/// The sets must be NULL or valid `fd_set`s; `timeout` NULL or a valid `timeval`.
#[no_mangle]
pub unsafe extern "C" fn rspSelect(
    n: c_int,
    readfds: *mut libc::fd_set,
    writefds: *mut libc::fd_set,
    exceptfds: *mut libc::fd_set,
    timeout: *mut libc::timeval,
) -> c_int {
    guard("rspSelect", || {
        if !(0..=libc::FD_SETSIZE as c_int).contains(&n) {
            *libc::__errno_location() = libc::EINVAL;
            return -1;
        }
        let mut cap = libc::timeval {
            tv_sec: 10,
            tv_usec: 0,
        };
        let t = if timeout.is_null() {
            &mut cap as *mut libc::timeval
        } else {
            timeout
        };
        libc::select(n, readfds, writefds, exceptfds, t)
    })
}

// --------------------------------------------------------------------- Enhanced Mode

/// Tag data as an optional timeout: absent or ≥ 2^63 (`~0`) = forever.
fn timeout_tag(tags: *mut TagItem, tag: tag_t) -> Option<Duration> {
    // SAFETY: the callers' contract: tags is NULL or a valid list.
    let v = unsafe { tagListGetData(tags, tag, !0) };
    (v < 1 << 63).then(|| Duration::from_micros(v))
}

/// Can this host make IPv6 sockets?
fn ipv6_usable() -> bool {
    // SAFETY: probe socket, closed at once.
    unsafe {
        let fd = libc::socket(libc::AF_INET6, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd >= 0 {
            libc::close(fd);
        }
        fd >= 0
    }
}

/// Creates an Enhanced Mode pool element: its own listening socket (tags: domain, type,
/// protocol, local port, identifier), registered now and every `ReregistrationInterval` ms in
/// the background. A failed first registration is retried there. NULL if the socket fails.
///
/// # Safety
/// `poolHandle` must point to `poolHandleSize` bytes; `tags` NULL or a tag list.
#[no_mangle]
pub unsafe extern "C" fn rspCreatePoolElement(
    poolHandle: *const c_uchar,
    poolHandleSize: usize,
    tags: *mut TagItem,
) -> *mut PoolElementDescriptor {
    guard("rspCreatePoolElement", || {
        pointer_or_null((|| {
            let lib = instance()?;
            let pool = pool_handle(poolHandle, poolHandleSize)?;
            let get = |tag, default: tagdata_t| tagListGetData(tags, tag, default);
            let (policy, control, _) = registration_tags(tags)?;
            let default_domain = if ipv6_usable() {
                libc::AF_INET6
            } else {
                libc::AF_INET
            };
            let mut protocol = match get(
                TAG_PoolElement_SocketProtocol,
                sctp::IPPROTO_SCTP as tagdata_t,
            ) as c_int
            {
                libc::IPPROTO_TCP => TransportProtocol::Tcp,
                p if p == sctp::IPPROTO_SCTP => TransportProtocol::Sctp,
                _ => return Err(RSPERR_INVALID_VALUES),
            };
            if protocol == TransportProtocol::Sctp && !sctp::available() {
                logging::log(
                    logging::WARNING,
                    "rsplib: the kernel has no SCTP: the pool element uses TCP",
                );
                protocol = TransportProtocol::Tcp;
            }
            let rereg_ms = get(TAG_PoolElement_ReregistrationInterval, 5000).clamp(10, 86_400_000);
            let life_ms = get(TAG_PoolElement_RegistrationLife, 3 * rereg_ms + 3000)
                .clamp(1, i32::MAX as tagdata_t);
            let opts = PeOptions {
                identifier: get(TAG_PoolElement_Identifier, 0) as u32,
                domain: get(TAG_PoolElement_SocketDomain, default_domain as tagdata_t) as c_int,
                socket_type: get(TAG_PoolElement_SocketType, libc::SOCK_STREAM as tagdata_t)
                    as c_int,
                protocol,
                local_port: get(TAG_PoolElement_LocalPort, 0) as u16,
                reregistration_interval: Duration::from_millis(rereg_ms),
                registration_life_ms: life_ms as u32,
                policy,
                control_channel: control,
            };
            EnhancedPe::create(lib, pool, opts)
                .map(|pe| Box::into_raw(Box::new(PoolElementDescriptor { pe })))
                .map_err(|e| {
                    logging::log(
                        logging::ERROR,
                        &format!("rsplib: cannot create the pool element socket: {e}"),
                    );
                    RSPERR_CONNECTION_FAILURE_SOCKET
                })
        })())
    })
}

/// Deregisters the PE, stops its re-registration and closes its socket. Refused (and logged)
/// while sessions it accepted still exist. NULL is fine.
///
/// # Safety
/// `ped` must be NULL or come from `rspCreatePoolElement`, not yet deleted.
#[no_mangle]
pub unsafe extern "C" fn rspDeletePoolElement(ped: *mut PoolElementDescriptor, tags: *mut TagItem) {
    let _ = tags;
    guard("rspDeletePoolElement", || {
        let Some(d) = try_ref(ped) else { return };
        if d.pe.sessions() > 0 {
            logging::log(
                logging::ERROR,
                &format!(
                    "rsplib: rspDeletePoolElement: {} session(s) still open; delete them first",
                    d.pe.sessions()
                ),
            );
            return;
        }
        crate::library::contact::release_pe_receiver(&d.pe);
        Box::from_raw(ped).pe.delete();
    })
}

/// Accepts the next incoming session (blocks if none is pending). NULL on failure.
///
/// # Safety
/// `ped` must be NULL or a live descriptor; `tags` NULL or a tag list.
#[no_mangle]
pub unsafe extern "C" fn rspAcceptSession(
    ped: *mut PoolElementDescriptor,
    tags: *mut TagItem,
) -> *mut SessionDescriptor {
    let _ = tags;
    guard("rspAcceptSession", || {
        let Some(d) = try_ref(ped) else {
            return std::ptr::null_mut();
        };
        match d.pe.accept() {
            Ok(session) => Box::into_raw(Box::new(SessionDescriptor { session })),
            Err(e) => {
                logging::log(logging::WARNING, &format!("rsplib: accept failed: {e}"));
                std::ptr::null_mut()
            }
        }
    })
}

/// Creates a session to a pool: selects a PE and connects (the session is returned even if
/// no PE could be reached: the next read or write tries again). NULL only if the library is
/// not initialized or the pool handle is invalid.
///
/// # Safety
/// `poolHandle` must point to `poolHandleSize` bytes; `tags` NULL or a tag list whose
/// failover user data stays valid for the session's life.
#[no_mangle]
pub unsafe extern "C" fn rspCreateSession(
    poolHandle: *const c_uchar,
    poolHandleSize: usize,
    ped: *mut PoolElementDescriptor,
    tags: *mut TagItem,
) -> *mut SessionDescriptor {
    let _ = ped;
    guard("rspCreateSession", || {
        pointer_or_null((|| {
            let lib = instance()?;
            let pool = pool_handle(poolHandle, poolHandleSize)?;
            let get = |tag, default: tagdata_t| tagListGetData(tags, tag, default);
            let cb = get(TAG_RspSession_FailoverCallback, 0);
            // SAFETY: the application passes a `FailoverCallbackPtr`; its C bool is read as a byte.
            let callback = (cb != 0).then(|| {
                (
                    std::mem::transmute::<usize, FailoverCallback>(cb as usize),
                    get(TAG_RspSession_FailoverUserData, 0) as *mut libc::c_void,
                )
            });
            let opts = SessionOptions {
                connect_timeout: Duration::from_micros(micros(get(
                    TAG_RspSession_ConnectTimeout,
                    5_000_000,
                ))),
                retry_delay: Duration::from_micros(micros(get(
                    TAG_RspSession_HandleResolutionRetryDelay,
                    250_000,
                ))),
                callback,
                handoff: super::handoff::pu_handoff_from_tags(tags),
            };
            Ok(Box::into_raw(Box::new(SessionDescriptor {
                session: Session::connect(lib, pool, opts),
            })))
        })())
    })
}

/// Closes a session. NULL is fine.
///
/// # Safety
/// `sd` must be NULL or a live session descriptor.
#[no_mangle]
pub unsafe extern "C" fn rspDeleteSession(sd: *mut SessionDescriptor, tags: *mut TagItem) {
    let _ = tags;
    guard("rspDeleteSession", || {
        if !sd.is_null() {
            drop(Box::from_raw(sd));
        }
    })
}

fn set_errno(e: c_int) {
    // SAFETY: errno of the calling thread.
    unsafe { *libc::__errno_location() = e };
}

/// Reads one user message (or, flagged with `TAG_RspIO_MsgIsCookieEcho`, a cookie echo);
/// ASAP control messages are consumed transparently. Negative results are `RspRead_*` codes.
///
/// # Safety
/// `sd` must be a live session; `buffer` writable for `length` bytes; `tags` NULL or a
/// writable tag list.
#[no_mangle]
pub unsafe extern "C" fn rspSessionRead(
    sd: *mut SessionDescriptor,
    buffer: *mut libc::c_void,
    length: usize,
    tags: *mut TagItem,
) -> libc::ssize_t {
    guard("rspSessionRead", || {
        let Some(d) = try_mut(sd) else {
            set_errno(libc::EINVAL);
            return RspRead_ReadError as isize;
        };
        tagListSetData(tags, TAG_RspIO_MsgIsCookieEcho, 0);
        let timeout = timeout_tag(tags, TAG_RspIO_Timeout);
        let make_failover = tagListGetData(tags, TAG_RspIO_MakeFailover, 1) & 0xff != 0;
        let buf = (!buffer.is_null() && length > 0)
            .then(|| std::slice::from_raw_parts_mut(buffer.cast::<u8>(), length));
        match d.session.read(buf, timeout, make_failover) {
            ReadOutcome::Data { len, ppid, stream } => {
                tagListSetData(tags, TAG_RspIO_PE_ID, d.session.pe_id() as tagdata_t);
                tagListSetData(tags, TAG_RspIO_SCTP_PPID, ppid as tagdata_t);
                tagListSetData(tags, TAG_RspIO_SCTP_StreamID, stream as tagdata_t);
                tagListSetData(tags, TAG_RspIO_SCTP_AssocID, 0);
                len as isize
            }
            ReadOutcome::CookieEcho { len } => {
                tagListSetData(tags, TAG_RspIO_MsgIsCookieEcho, 1);
                len as isize
            }
            ReadOutcome::ControlRead => RspRead_ControlRead as isize,
            ReadOutcome::WrongPpid => RspRead_WrongPPID as isize,
            ReadOutcome::Timeout => {
                set_errno(libc::EAGAIN);
                RspRead_Timeout as isize
            }
            ReadOutcome::ReadError => RspRead_ReadError as isize,
            // A classic PE's read loop ends the session on this, as when the PU went away;
            // rspSessionHandoffState() tells the two apart.
            ReadOutcome::Failover | ReadOutcome::HandedOff => RspRead_Failover as isize,
            ReadOutcome::TooBig => {
                set_errno(libc::EIO);
                RspRead_TooBig as isize
            }
        }
    })
}

/// Sends one message (tags: PPID, stream, timeout). Returns the bytes sent, -1 with errno
/// EAGAIN when the send buffer stayed full, or `RspRead_Failover` when the send failed and a
/// failover was run (the data was not delivered).
///
/// # Safety
/// `sd` must be a live session; `buffer` readable for `length` bytes; `tags` NULL or a
/// writable tag list.
#[no_mangle]
pub unsafe extern "C" fn rspSessionWrite(
    sd: *mut SessionDescriptor,
    buffer: *const libc::c_void,
    length: usize,
    tags: *mut TagItem,
) -> libc::ssize_t {
    guard("rspSessionWrite", || {
        let (Some(d), Some(data)) = (try_mut(sd), try_slice(buffer.cast(), length)) else {
            set_errno(libc::EINVAL);
            return -1;
        };
        let ppid = tagListGetData(tags, TAG_RspIO_SCTP_PPID, 0x5555_5555) as u32;
        let stream = tagListGetData(tags, TAG_RspIO_SCTP_StreamID, 0) as u16;
        match d
            .session
            .write(data, ppid, stream, timeout_tag(tags, TAG_RspIO_Timeout))
        {
            WriteOutcome::Sent(n) => {
                tagListSetData(tags, TAG_RspIO_PE_ID, d.session.pe_id() as tagdata_t);
                n as isize
            }
            WriteOutcome::WouldBlock => {
                set_errno(libc::EAGAIN);
                -1
            }
            WriteOutcome::Failover | WriteOutcome::HandedOff => RspRead_Failover as isize,
        }
    })
}

/// True if the session stores a cookie from its PE.
///
/// # Safety
/// `session` must be NULL or a live session.
#[no_mangle]
pub unsafe extern "C" fn rspSessionHasCookie(session: *mut SessionDescriptor) -> bool {
    guard("rspSessionHasCookie", || {
        try_ref(session).is_some_and(|d| d.session.has_cookie())
    })
}

/// Forces a failover (the failover callback may veto it); true if connected afterwards.
///
/// # Safety
/// `session` must be NULL or a live session.
#[no_mangle]
pub unsafe extern "C" fn rspSessionFailover(session: *mut SessionDescriptor) -> bool {
    guard("rspSessionFailover", || {
        try_mut(session).is_some_and(|d| d.session.failover())
    })
}

/// PE side: sends an ASAP Cookie to the PU over the control channel; true if sent.
///
/// # Safety
/// `session` must be NULL or a live session; `cookie` readable for `cookieSize` bytes.
#[no_mangle]
pub unsafe extern "C" fn rspSessionSendCookie(
    session: *mut SessionDescriptor,
    cookie: *const c_uchar,
    cookieSize: usize,
    tags: *mut TagItem,
) -> bool {
    guard("rspSessionSendCookie", || {
        match (try_mut(session), try_slice(cookie, cookieSize)) {
            (Some(d), Some(c)) => d
                .session
                .send_cookie(c, timeout_tag(tags, TAG_RspIO_Timeout)),
            _ => false,
        }
    })
}

/// select() over sessions and pool elements (and the caller's own fds via tags). Status words
/// hold the wanted `RspSelect_*` bits on input and the ready ones on output; a session whose
/// only news was an ASAP control message is not reported readable; a session without a
/// connection is reported writable and exceptional (its next write fails over).
///
/// # Safety
/// The arrays must hold `sessions` / `peds` entries (or be NULL for 0); `tags` NULL or a tag
/// list whose fd_set / timeval pointers are valid.
#[no_mangle]
pub unsafe extern "C" fn rspSessionSelect(
    sessionArray: *mut *mut SessionDescriptor,
    sessionStatusArray: *mut c_uint,
    sessions: usize,
    pedArray: *mut *mut PoolElementDescriptor,
    pedStatusArray: *mut c_uint,
    peds: usize,
    timeout: u64,
    tags: *mut TagItem,
) -> c_int {
    guard("rspSessionSelect", || {
        let sess: &mut [*mut SessionDescriptor] = if sessions == 0 || sessionArray.is_null() {
            &mut []
        } else {
            std::slice::from_raw_parts_mut(sessionArray, sessions)
        };
        let sstat: &mut [c_uint] = if sessions == 0 || sessionStatusArray.is_null() {
            &mut []
        } else {
            std::slice::from_raw_parts_mut(sessionStatusArray, sessions)
        };
        let pa: &[*mut PoolElementDescriptor] = if peds == 0 || pedArray.is_null() {
            &[]
        } else {
            std::slice::from_raw_parts(pedArray, peds)
        };
        let pstat: &mut [c_uint] = if peds == 0 || pedStatusArray.is_null() {
            &mut []
        } else {
            std::slice::from_raw_parts_mut(pedStatusArray, peds)
        };
        let mut own = [
            std::mem::zeroed::<libc::fd_set>(),
            std::mem::zeroed(),
            std::mem::zeroed(),
        ];
        let tag_sets = [
            TAG_RspSelect_ReadFDs,
            TAG_RspSelect_WriteFDs,
            TAG_RspSelect_ExceptFDs,
        ]
        .map(|t| tagListGetData(tags, t, 0) as *mut libc::fd_set);
        let sets: Vec<*mut libc::fd_set> = tag_sets
            .iter()
            .zip(own.iter_mut())
            .map(|(t, o)| {
                if t.is_null() {
                    o as *mut libc::fd_set
                } else {
                    *t
                }
            })
            .collect();
        let bits = [RspSelect_Read, RspSelect_Write, RspSelect_Except];
        let mut maxfd = tagListGetData(tags, TAG_RspSelect_MaxFD, 0) as c_int;
        let mut add = |fd: c_int, want: c_uint| {
            if !(0..libc::FD_SETSIZE as c_int).contains(&fd) {
                return;
            }
            for (set, bit) in sets.iter().zip(bits) {
                if want & bit != 0 {
                    libc::FD_SET(fd, *set);
                }
            }
            maxfd = maxfd.max(fd);
        };
        let mut immediate = false;
        for (i, s) in sess.iter().enumerate() {
            let want = sstat.get(i).copied().unwrap_or(0);
            if let Some(d) = try_ref(*s) {
                match d.session.fd() {
                    Some(fd) if !d.session.has_pending_echo() => add(fd, want),
                    _ => immediate = true,
                }
            }
        }
        for (i, p) in pa.iter().enumerate() {
            if let Some(d) = try_ref(*p) {
                add(d.pe.listener_fd(), pstat.get(i).copied().unwrap_or(0));
            }
        }
        let mut tv = libc::timeval {
            tv_sec: (timeout / 1_000_000).min(i64::MAX as u64) as libc::time_t,
            tv_usec: (timeout % 1_000_000) as libc::suseconds_t,
        };
        if immediate {
            tv = libc::timeval {
                tv_sec: 0,
                tv_usec: 0,
            };
        }
        let tv_tag = tagListGetData(tags, TAG_RspSelect_Timeout, 0) as *mut libc::timeval;
        let tvp = if !tv_tag.is_null() && !immediate {
            tv_tag
        } else {
            &mut tv as *mut libc::timeval
        };
        let rc = libc::select(maxfd + 1, sets[0], sets[1], sets[2], tvp);
        if rc < 0 {
            return rc;
        }
        let mut extra = 0;
        for (i, s) in sess.iter().enumerate() {
            let want = sstat.get(i).copied().unwrap_or(0);
            let mut got = 0;
            if let Some(d) = try_mut(*s) {
                // Ready without select having seen it: no connection, or a stored cookie echo.
                let outside_select = d.session.fd().is_none() || d.session.has_pending_echo();
                match d.session.fd() {
                    None => got = RspSelect_Write | RspSelect_Except,
                    Some(_) if d.session.has_pending_echo() => got = RspSelect_Read & want,
                    Some(fd) if (0..libc::FD_SETSIZE as c_int).contains(&fd) => {
                        for (set, bit) in sets.iter().zip(bits) {
                            if want & bit != 0 && libc::FD_ISSET(fd, *set) {
                                got |= bit;
                            }
                        }
                        // A control message alone does not make the session readable.
                        if got & RspSelect_Read != 0
                            && d.session.read(None, Some(Duration::ZERO), false)
                                == ReadOutcome::ControlRead
                            && !d.session.has_pending_echo()
                        {
                            got &= !RspSelect_Read;
                        }
                    }
                    Some(_) => {}
                }
                if got != 0 && outside_select {
                    extra += 1;
                }
            }
            if let Some(st) = sstat.get_mut(i) {
                *st = got;
            }
        }
        for (i, p) in pa.iter().enumerate() {
            let want = pstat.get(i).copied().unwrap_or(0);
            let mut got = 0;
            if let Some(d) = try_ref(*p) {
                let fd = d.pe.listener_fd();
                for (set, bit) in sets.iter().zip(bits) {
                    if want & bit != 0 && libc::FD_ISSET(fd, *set) {
                        got |= bit;
                    }
                }
            }
            if let Some(st) = pstat.get_mut(i) {
                *st = got;
            }
        }
        rc + extra
    })
}

/// Sets the status text shown by component status reports (truncated to 127 characters).
///
/// # Safety
/// `sd` must be NULL or a live session; `statusText` NULL or a C string.
#[no_mangle]
pub unsafe extern "C" fn rspSessionSetStatusText(
    sd: *mut SessionDescriptor,
    statusText: *const c_char,
) {
    guard("rspSessionSetStatusText", || {
        if let (Some(d), Some(t)) = (try_mut(sd), try_cstr(statusText)) {
            d.session.set_status_text(&String::from_utf8_lossy(t));
        }
    })
}

// ----------------------------------------------------------------- the 2003/2004 names

/// Old name of `rspHandleResolution`.
///
/// # Safety
/// As `rspHandleResolution`.
#[no_mangle]
pub unsafe extern "C" fn rspNameResolution(
    poolHandle: *const c_uchar,
    poolHandleSize: usize,
    endpointAddressInfo: *mut *mut EndpointAddressInfo,
    tags: *mut TagItem,
) -> c_uint {
    rspHandleResolution(poolHandle, poolHandleSize, endpointAddressInfo, tags)
}

/// Old name of `rspReportFailure` (returned void; the result may be ignored).
///
/// # Safety
/// As `rspReportFailure`.
#[no_mangle]
pub unsafe extern "C" fn rspFailure(
    poolHandle: *const c_uchar,
    poolHandleSize: usize,
    identifier: u32,
    tags: *mut TagItem,
) -> c_uint {
    rspReportFailure(poolHandle, poolHandleSize, identifier, tags)
}

/// Old name of `rspSessionSetStatusText`.
///
/// # Safety
/// As `rspSessionSetStatusText`.
#[no_mangle]
pub unsafe extern "C" fn rspSessionSetCSPStatus(
    sd: *mut SessionDescriptor,
    statusText: *const c_char,
) {
    rspSessionSetStatusText(sd, statusText)
}

/// Old name of `rspAddStaticRegistrar`.
///
/// # Safety
/// As `rspAddStaticRegistrar`.
#[no_mangle]
pub unsafe extern "C" fn rspAddStaticNameServer(addressString: *const c_char) -> c_uint {
    rspAddStaticRegistrar(addressString)
}

/// The error code of the calling thread's last rsp* call.
#[no_mangle]
pub extern "C" fn rspGetLastError() -> c_uint {
    guard("rspGetLastError", || LAST_ERROR.with(|e| e.get()))
}

/// The description of the calling thread's last error.
#[no_mangle]
pub extern "C" fn rspGetLastErrorDescription() -> *const c_char {
    guard("rspGetLastErrorDescription", || {
        description(LAST_ERROR.with(|e| e.get())).as_ptr()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    #[test]
    fn endpoint_address_info_layout() {
        assert_eq!(size_of::<EndpointAddressInfo>(), 56);
        assert_eq!(offset_of!(EndpointAddressInfo, ai_addrlen), 16);
        assert_eq!(offset_of!(EndpointAddressInfo, ai_addr), 32);
        assert_eq!(offset_of!(EndpointAddressInfo, ai_next), 40);
        assert_eq!(offset_of!(EndpointAddressInfo, ai_pe_id), 48);
    }
}
