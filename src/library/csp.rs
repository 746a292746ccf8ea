//! The CSP reporter: a thread that sends a status report (`core::csp`) to a monitor at once
//! and then every interval, until stopped.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use crate::core::csp::{AssociationEntry, StatusReport};
use crate::logging;

/// What the reporter asks for before each report: associations, status text, component
/// address.
pub type ReportSource = Box<dyn FnMut() -> (Vec<AssociationEntry>, Vec<u8>, Vec<u8>) + Send>;

/// The shortest interval between two reports.
const MIN_INTERVAL_US: u64 = 10_000;

/// A running reporter; dropping it stops the thread.
pub struct Reporter {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl Reporter {
    /// Starts reporting as `sender_id` to `target` every `interval_us` µs (at least 10 ms).
    pub fn start(
        target: SocketAddr,
        sender_id: u64,
        interval_us: u64,
        mut source: ReportSource,
    ) -> io::Result<Reporter> {
        let bind: SocketAddr = if target.is_ipv6() {
            "[::]:0".parse().unwrap()
        } else {
            "0.0.0.0:0".parse().unwrap()
        };
        let socket = UdpSocket::bind(bind)?;
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let s = stop.clone();
        let interval = Duration::from_micros(interval_us.clamp(MIN_INTERVAL_US, 1 << 40));
        let thread = std::thread::Builder::new()
            .name("rsplib-csp".into())
            .spawn(move || loop {
                let (associations, status_text, component_address) = source();
                let report = StatusReport {
                    sender_id,
                    report_interval: interval_us,
                    sender_timestamp: logging::wall_micros(),
                    status_text,
                    component_address,
                    associations,
                };
                if let Err(e) = socket.send_to(&report.emit(), target) {
                    logging::log(
                        logging::VERBOSE,
                        &format!("rsplib: CSP report to {target}: {e}"),
                    );
                }
                let mut stopped = s.0.lock();
                if !*stopped {
                    s.1.wait_for(&mut stopped, interval);
                }
                if *stopped {
                    return;
                }
            })?;
        Ok(Reporter {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        *self.stop.0.lock() = true;
        self.stop.1.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
