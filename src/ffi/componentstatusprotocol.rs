//! `componentstatusprotocol.h`: Component Status Protocol types and the reporter. The reporter
//! is real but minimal: its own thread (not the library's event loop) sends the status report
//! of `core::csp` over UDP at once and then every interval; `cspReporterNewForRspLib` reports
//! what `rspGetComponentStatus` says, `cspReporterNew` what the application's function says.
#![allow(non_snake_case)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use libc::{c_char, c_int, c_ulonglong, c_void};
use parking_lot::Mutex;

use super::ctypes::{sctp_assoc_t, Dispatcher};
use super::guard::{guard, try_array, try_mut, try_ref};
use super::sockaddrunion::sockaddr_union;
use crate::core::csp::{self, AssociationEntry};
use crate::library::csp::{ReportSource, Reporter};
use crate::transport::{interfaces, sctp};

pub const CID_GROUP_NAMESERVER: u16 = 0x0001;
pub const CID_GROUP_POOLELEMENT: u16 = 0x0002;
pub const CID_GROUP_POOLUSER: u16 = 0x0003;

pub const CSPH_STATUS_TEXT_SIZE: usize = 128;
pub const CSPH_COMPONENT_ADDRESS_SIZE: usize = 128;
pub const CSP_VERSION: u16 = 0x0101;
pub const CSPHT_STATUS: u16 = 0x0001;

/// One association in a status report (24 bytes, align 8; host byte order in memory).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ComponentAssociationEntry {
    pub ReceiverID: u64,
    pub Duration: u64,
    pub Flags: u16,
    pub ProtocolID: u16,
    pub PPID: u32,
}

/// The report header (296 bytes, align 8), followed by `Associations` entries.
#[repr(C)]
pub struct ComponentStatusProtocolHeader {
    pub Type: u16,
    pub Version: u16,
    pub Length: u32,
    pub SenderID: u64,
    pub ReportInterval: u64,
    pub SenderTimeStamp: u64,
    pub StatusText: [c_char; CSPH_STATUS_TEXT_SIZE],
    pub ComponentAddress: [c_char; CSPH_COMPONENT_ADDRESS_SIZE],
    pub Associations: u32,
    pub AssociationArray: [ComponentAssociationEntry; 0],
}

/// A reporter in storage the application owns (168 bytes, align 8, as the original struct).
/// Only two words are used: a marker and the key of the running reporter.
#[repr(C)]
pub struct CSPReporter {
    pub _private: [u64; 21],
}

const MARKER: u64 = 0x7273_702d_6373_7021; // "rsp-csp!"

static NEXT_KEY: AtomicU64 = AtomicU64::new(1);
static REPORTERS: Mutex<Option<HashMap<u64, Reporter>>> = Mutex::new(None);

impl From<&ComponentAssociationEntry> for AssociationEntry {
    fn from(e: &ComponentAssociationEntry) -> Self {
        AssociationEntry {
            receiver_id: e.ReceiverID,
            duration: e.Duration,
            flags: e.Flags,
            protocol_id: e.ProtocolID,
            ppid: e.PPID,
        }
    }
}

/// The text in a C buffer up to its NUL (at most `max` bytes).
fn c_text(buf: &[c_char]) -> Vec<u8> {
    buf.iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect()
}

/// Copies `text` NUL-terminated into a C buffer of `size` bytes (truncating).
///
/// # Safety
/// `dst` must be NULL or writable for `size` bytes.
pub unsafe fn write_c_text(dst: *mut c_char, size: usize, text: &str) {
    if dst.is_null() || size == 0 {
        return;
    }
    let n = text.len().min(size - 1);
    std::ptr::copy_nonoverlapping(text.as_ptr().cast::<c_char>(), dst, n);
    *dst.add(n) = 0;
}

/// A libc-`malloc`ed array of `elements` entries, every byte 0xFF (NULL if out of memory).
#[no_mangle]
pub extern "C" fn componentAssociationEntryArrayNew(
    elements: usize,
) -> *mut ComponentAssociationEntry {
    guard("componentAssociationEntryArrayNew", || {
        let Some(bytes) = elements
            .max(1)
            .checked_mul(std::mem::size_of::<ComponentAssociationEntry>())
        else {
            return std::ptr::null_mut();
        };
        // SAFETY: a fresh allocation of `bytes` bytes, filled before it is handed out.
        unsafe {
            let p = libc::malloc(bytes);
            if !p.is_null() {
                libc::memset(p, 0xff, bytes);
            }
            p.cast()
        }
    })
}

/// Frees an array from `componentAssociationEntryArrayNew` or `rspGetComponentStatus`.
///
/// # Safety
/// `associationArray` must be NULL or such an array, not yet freed.
#[no_mangle]
pub unsafe extern "C" fn componentAssociationEntryArrayDelete(
    associationArray: *mut ComponentAssociationEntry,
) {
    guard("componentAssociationEntryArrayDelete", || {
        libc::free(associationArray.cast())
    })
}

/// The addresses of socket `sd` (or of the host for `sd` < 0), as a report's component
/// address text (≤ 128 bytes with the NUL).
///
/// # Safety
/// `componentAddress` must be NULL or writable for `CSPH_COMPONENT_ADDRESS_SIZE` bytes.
#[no_mangle]
pub unsafe extern "C" fn componentStatusGetComponentAddress(
    componentAddress: *mut c_char,
    sd: c_int,
    assocID: sctp_assoc_t,
) {
    guard("componentStatusGetComponentAddress", || {
        let addrs: Vec<SocketAddr> = if sd < 0 {
            interfaces::interface_addrs()
                .into_iter()
                .filter(|a| !a.ip().is_loopback())
                .collect()
        } else {
            sctp::local_addrs_of(sd, assocID).unwrap_or_default()
        };
        let ips: Vec<_> = addrs.iter().map(|a| a.ip()).collect();
        write_c_text(
            componentAddress,
            CSPH_COMPONENT_ADDRESS_SIZE,
            &csp::address_list(&ips),
        );
    })
}

/// The application's report function and its data, moved into the reporter thread.
struct CallbackSource {
    function: unsafe extern "C" fn(
        *mut c_void,
        *mut *mut ComponentAssociationEntry,
        *mut c_char,
        *mut c_char,
    ) -> usize,
    user_data: *mut c_void,
}

// SAFETY: the original library also called the report function from its own thread; the
// application hands the pointer over for that purpose.
unsafe impl Send for CallbackSource {}

impl CallbackSource {
    fn report(&mut self) -> (Vec<AssociationEntry>, Vec<u8>, Vec<u8>) {
        let mut array: *mut ComponentAssociationEntry = std::ptr::null_mut();
        let mut status = [0 as c_char; CSPH_STATUS_TEXT_SIZE];
        let mut address = [0 as c_char; CSPH_COMPONENT_ADDRESS_SIZE];
        // SAFETY: the application's function fills a malloc'ed array of n entries and the two
        // 128-byte buffers; we read n entries and free the array.
        unsafe {
            let n = (self.function)(
                self.user_data,
                &mut array,
                status.as_mut_ptr(),
                address.as_mut_ptr(),
            );
            status[CSPH_STATUS_TEXT_SIZE - 1] = 0;
            address[CSPH_COMPONENT_ADDRESS_SIZE - 1] = 0;
            let entries = try_array(array, if array.is_null() { 0 } else { n })
                .unwrap_or(&[])
                .iter()
                .map(AssociationEntry::from)
                .collect();
            libc::free(array.cast());
            (entries, c_text(&status), c_text(&address))
        }
    }
}

/// The library's own status, as `rspGetComponentStatus` reports it.
fn library_source() -> ReportSource {
    Box::new(|| {
        let mut array: *mut ComponentAssociationEntry = std::ptr::null_mut();
        let mut status = [0 as c_char; CSPH_STATUS_TEXT_SIZE];
        let mut address = [0 as c_char; CSPH_COMPONENT_ADDRESS_SIZE];
        // SAFETY: our own function fills the array (n entries) and the buffers.
        unsafe {
            let n = super::rsplib_internals::rspGetComponentStatus(
                &mut array,
                status.as_mut_ptr(),
                address.as_mut_ptr(),
            );
            let entries = try_array(array, if array.is_null() { 0 } else { n })
                .unwrap_or(&[])
                .iter()
                .map(AssociationEntry::from)
                .collect();
            libc::free(array.cast());
            (entries, c_text(&status), c_text(&address))
        }
    })
}

/// Starts a reporter and records it in `cspReporter`'s storage (zeroed on failure).
///
/// # Safety
/// `cspReporter` must be NULL or writable; `cspReportAddress` NULL or a valid union.
unsafe fn start(
    cspReporter: *mut CSPReporter,
    cspIdentifier: u64,
    cspReportAddress: *const sockaddr_union,
    cspReportInterval: c_ulonglong,
    source: ReportSource,
) {
    let Some(storage) = try_mut(cspReporter) else {
        return;
    };
    storage._private = [0; 21];
    let Some(target) = try_ref(cspReportAddress).and_then(|a| a.to_socket_addr()) else {
        return;
    };
    let reporter = match Reporter::start(target, cspIdentifier, cspReportInterval, source) {
        Ok(r) => r,
        Err(e) => {
            crate::logging::log(
                crate::logging::ERROR,
                &format!("rsplib: cannot start the CSP reporter: {e}"),
            );
            return;
        }
    };
    let key = NEXT_KEY.fetch_add(1, Ordering::Relaxed);
    REPORTERS
        .lock()
        .get_or_insert_with(HashMap::new)
        .insert(key, reporter);
    storage._private[0] = MARKER;
    storage._private[1] = key;
}

/// Starts reporting the library's status (`rspGetComponentStatus`) as `cspIdentifier` to
/// `cspReportAddress` (UDP) at once and then every `cspReportInterval` µs (at least 10 ms),
/// until `cspReporterDelete`. NULL arguments or an address that is not IPv4/IPv6: nothing
/// starts.
///
/// # Safety
/// `cspReporter` must be NULL or writable storage for a `struct CSPReporter`;
/// `cspReportAddress` NULL or a valid union.
#[no_mangle]
pub unsafe extern "C" fn cspReporterNewForRspLib(
    cspReporter: *mut CSPReporter,
    cspIdentifier: u64,
    cspReportAddress: *const sockaddr_union,
    cspReportInterval: c_ulonglong,
) {
    guard("cspReporterNewForRspLib", || {
        start(
            cspReporter,
            cspIdentifier,
            cspReportAddress,
            cspReportInterval,
            library_source(),
        )
    })
}

/// As `cspReporterNewForRspLib`, reporting what `cspGetReportFunction` returns (called from
/// the reporter's thread; it fills a `malloc`ed array that the reporter frees, and the two
/// texts). `dispatcher` is ignored. A NULL function: nothing starts.
///
/// # Safety
/// As `cspReporterNewForRspLib`; the function must be callable from another thread with
/// `cspGetReportFunctionUserData` until `cspReporterDelete`.
#[no_mangle]
pub unsafe extern "C" fn cspReporterNew(
    cspReporter: *mut CSPReporter,
    dispatcher: *mut Dispatcher,
    cspIdentifier: u64,
    cspReportAddress: *const sockaddr_union,
    cspReportInterval: c_ulonglong,
    cspGetReportFunction: Option<
        unsafe extern "C" fn(
            *mut c_void,
            *mut *mut ComponentAssociationEntry,
            *mut c_char,
            *mut c_char,
        ) -> usize,
    >,
    cspGetReportFunctionUserData: *mut c_void,
) {
    let _ = dispatcher;
    guard("cspReporterNew", || {
        let Some(function) = cspGetReportFunction else {
            if let Some(storage) = try_mut(cspReporter) {
                storage._private = [0; 21];
            }
            return;
        };
        let mut source = CallbackSource {
            function,
            user_data: cspGetReportFunctionUserData,
        };
        start(
            cspReporter,
            cspIdentifier,
            cspReportAddress,
            cspReportInterval,
            Box::new(move || source.report()),
        )
    })
}

/// Stops the reporter (waits for its thread) and clears the storage. NULL, a reporter that
/// never started or was already deleted: nothing happens.
///
/// # Safety
/// `cspReporter` must be NULL or storage passed to `cspReporterNew*` (or zeroed).
#[no_mangle]
pub unsafe extern "C" fn cspReporterDelete(cspReporter: *mut CSPReporter) {
    guard("cspReporterDelete", || {
        let Some(storage) = try_mut(cspReporter) else {
            return;
        };
        if storage._private[0] == MARKER {
            let key = storage._private[1];
            let reporter = REPORTERS.lock().as_mut().and_then(|m| m.remove(&key));
            drop(reporter); // joins the thread, outside the lock
        }
        storage._private = [0; 21];
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{align_of, offset_of, size_of};

    #[test]
    fn layouts_match_the_classic_abi() {
        assert_eq!(size_of::<ComponentAssociationEntry>(), 24);
        assert_eq!(align_of::<ComponentAssociationEntry>(), 8);
        assert_eq!(size_of::<ComponentStatusProtocolHeader>(), csp::HEADER_SIZE);
        assert_eq!(
            offset_of!(ComponentStatusProtocolHeader, ComponentAddress),
            160
        );
        assert_eq!(offset_of!(ComponentStatusProtocolHeader, Associations), 288);
        assert_eq!(
            offset_of!(ComponentStatusProtocolHeader, AssociationArray),
            296
        );
        assert_eq!(size_of::<CSPReporter>(), 168);
        assert_eq!(CSP_VERSION, csp::CSP_VERSION);
        assert_eq!(CSPHT_STATUS, csp::CSPHT_STATUS);
        assert_eq!(CSPH_STATUS_TEXT_SIZE, csp::TEXT_SIZE);
        assert_eq!(CID_GROUP_POOLELEMENT, csp::CID_GROUP_POOLELEMENT);
    }

    #[test]
    fn reporter_sends_and_stops() {
        let monitor = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        monitor
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let addr = sockaddr_union::from_socket_addr(&monitor.local_addr().unwrap());
        let mut r = CSPReporter { _private: [7; 21] };
        unsafe {
            cspReporterNewForRspLib(&mut r, 0x42, &addr, 20_000);
            let mut buf = [0u8; 2048];
            let n = monitor.recv(&mut buf).unwrap();
            assert_eq!(n, csp::HEADER_SIZE);
            assert_eq!(&buf[0..4], &[0, 1, 1, 1]);
            assert_eq!(&buf[8..16], &0x42u64.to_be_bytes());
            cspReporterDelete(&mut r);
            assert_eq!(r._private, [0; 21]);
            cspReporterDelete(&mut r);
            cspReporterDelete(std::ptr::null_mut());
        }
    }
}
