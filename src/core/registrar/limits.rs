//! Limits that hold per host, not per connection (RFC 5355 §3 threats: resolution and
//! unreachable-report floods, registration floods, connection floods), and the address prefixes
//! that say which hosts may query the handlespace over ENRP.

use std::fmt;
use std::net::IpAddr;

use crate::core::handlespace::Micros;

/// An address prefix such as `127.0.0.0/8` or `::1` (a whole address is a full-length prefix).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddressPrefix {
    addr: IpAddr,
    len: u8,
}

impl AddressPrefix {
    /// Parses `addr` or `addr/len`.
    pub fn parse(s: &str) -> Option<AddressPrefix> {
        let (a, len) = match s.trim().split_once('/') {
            Some((a, l)) => (a, Some(l.parse::<u8>().ok()?)),
            None => (s.trim(), None),
        };
        let addr: IpAddr = a
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = len.unwrap_or(max);
        (len <= max).then_some(AddressPrefix { addr, len })
    }

    /// `127.0.0.0/8` and `::1`: the default of `-enrpallow=`.
    pub fn loopback() -> Vec<AddressPrefix> {
        vec![
            AddressPrefix::parse("127.0.0.0/8").expect("valid"),
            AddressPrefix::parse("::1").expect("valid"),
        ]
    }

    /// Whether `ip` (IPv4-mapped IPv6 taken as IPv4) lies inside the prefix.
    pub fn contains(&self, ip: &IpAddr) -> bool {
        match (self.addr, super::canonical(ip)) {
            (IpAddr::V4(p), IpAddr::V4(a)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.len)).unwrap_or(0);
                u32::from(p) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(p), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.len))
                    .unwrap_or(0);
                u128::from(p) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

impl fmt::Display for AddressPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let full = if self.addr.is_ipv4() { 32 } else { 128 };
        if self.len == full {
            write!(f, "{}", self.addr)
        } else {
            write!(f, "{}/{}", self.addr, self.len)
        }
    }
}

/// What one host (source address) holds and has done lately.
#[derive(Debug, Default)]
pub(super) struct Host {
    /// Open connections from it.
    pub(super) conns: u32,
    /// PEs registered over its connections.
    pub(super) pes: u32,
    pub(super) hr_rate: Rate,
    pub(super) eu_rate: Rate,
}

impl Host {
    /// Whether the entry carries nothing worth keeping.
    pub(super) fn forgettable(&self, now: Micros) -> bool {
        self.conns == 0 && self.pes == 0 && self.hr_rate.idle(now) && self.eu_rate.idle(now)
    }
}

/// Why the registrar refused something; each kind is logged at most once per
/// [`REFUSAL_LOG_INTERVAL`] and counted in [`Counters`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// A connection over `-maxconnections=` or `-maxconnectionsperhost=`.
    Connection,
    /// A handle resolution over `-maxhrrate=` (per host).
    ResolutionRate,
    /// An Endpoint Unreachable report over `-maxeurate=` (per host).
    UnreachableRate,
    /// A registration over `-maxpesperhost=`.
    PesPerHost,
    /// A registration over `-maxpesperpool=`.
    PesPerPool,
    /// A (re-)registration or deregistration of a PE that another connection owns.
    Ownership,
    /// ENRP from a host that is neither a peer nor allowed by `-enrpallow=`.
    EnrpAccess,
    /// ENRP whose sender id is not the registrar its connection speaks for.
    EnrpForged,
    /// A Handle Update for a PE that the sending peer does not own.
    EnrpNotOwner,
    /// A Handle Table Response nobody asked for, or one with more than was asked (other
    /// registrars' PEs in an answer to a request for the sender's own).
    EnrpUnsolicited,
    /// Presence beyond the reply rate, or from more registrars than the peer table holds.
    EnrpFlood,
}

impl Refusal {
    /// Every kind, in declaration order (metrics list them all).
    pub const ALL: [Refusal; 11] = [
        Refusal::Connection,
        Refusal::ResolutionRate,
        Refusal::UnreachableRate,
        Refusal::PesPerHost,
        Refusal::PesPerPool,
        Refusal::Ownership,
        Refusal::EnrpAccess,
        Refusal::EnrpForged,
        Refusal::EnrpNotOwner,
        Refusal::EnrpUnsolicited,
        Refusal::EnrpFlood,
    ];

    /// A short name (metrics label, log text).
    pub fn name(self) -> &'static str {
        match self {
            Refusal::Connection => "connection",
            Refusal::ResolutionRate => "handle_resolution_rate",
            Refusal::UnreachableRate => "unreachable_report_rate",
            Refusal::PesPerHost => "pes_per_host",
            Refusal::PesPerPool => "pes_per_pool",
            Refusal::Ownership => "ownership",
            Refusal::EnrpAccess => "enrp_access",
            Refusal::EnrpForged => "enrp_forged_sender",
            Refusal::EnrpNotOwner => "enrp_not_owner",
            Refusal::EnrpUnsolicited => "enrp_unsolicited",
            Refusal::EnrpFlood => "enrp_flood",
        }
    }

    /// Its place in [`Refusal::ALL`] (the declaration order).
    fn index(self) -> usize {
        self as usize
    }
}

/// Refusals of one kind are logged once per this interval (with the count of the others).
pub const REFUSAL_LOG_INTERVAL: Micros = 10_000_000;

/// What the registrar has done, for statistics and metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub registrations: u64,
    pub reregistrations: u64,
    pub deregistrations: u64,
    pub handle_resolutions: u64,
    pub keepalive_timeouts: u64,
    pub unreachable_reports: u64,
    pub removed_unreachable: u64,
    pub expired: u64,
    /// Takeovers of dead peers this registrar carried out.
    pub takeovers: u64,
    /// Refusals by [`Refusal`] kind.
    refused: [u64; Refusal::ALL.len()],
}

impl Counters {
    /// How often something of this kind was refused.
    pub fn refused(&self, kind: Refusal) -> u64 {
        self.refused[kind.index()]
    }
}

/// Keeps refusal logs to one line per kind and interval.
#[derive(Debug, Default)]
pub(super) struct RefusalLog {
    next: [Micros; Refusal::ALL.len()],
    suppressed: [u64; Refusal::ALL.len()],
}

impl RefusalLog {
    /// Counts a refusal; returns the line to log now, if one is due (with how many went unlogged
    /// since the last one).
    pub(super) fn note(
        &mut self,
        counters: &mut Counters,
        kind: Refusal,
        now: Micros,
        text: impl FnOnce() -> String,
    ) -> Option<String> {
        let i = kind.index();
        counters.refused[i] += 1;
        if now < self.next[i] {
            self.suppressed[i] += 1;
            return None;
        }
        let more = std::mem::take(&mut self.suppressed[i]);
        self.next[i] = now + REFUSAL_LOG_INTERVAL;
        let mut line = text();
        if more > 0 {
            line.push_str(&format!(" ({more} more refusals of this kind not logged)"));
        }
        Some(line)
    }
}

/// A per-second window counter.
#[derive(Debug, Default, Clone)]
pub(super) struct Rate {
    window_start: Micros,
    count: u32,
}

impl Rate {
    /// Counts one event; false if it exceeds `limit` in the current second.
    pub(super) fn allow(&mut self, now: Micros, limit: Option<u32>) -> bool {
        let Some(limit) = limit else { return true };
        if now.saturating_sub(self.window_start) >= 1_000_000 {
            self.window_start = now;
            self.count = 0;
        }
        self.count = self.count.saturating_add(1);
        self.count <= limit
    }

    /// Whether the window has been over for a while (the entry may be forgotten).
    pub(super) fn idle(&self, now: Micros) -> bool {
        now.saturating_sub(self.window_start) >= 2_000_000
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_match_addresses() {
        let p = |s: &str| AddressPrefix::parse(s).unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(p("127.0.0.0/8").contains(&ip("127.1.2.3")));
        assert!(!p("127.0.0.0/8").contains(&ip("128.0.0.1")));
        assert!(p("127.0.0.0/8").contains(&ip("::ffff:127.0.0.1")));
        assert!(p("::1").contains(&ip("::1")));
        assert!(!p("::1").contains(&ip("::2")));
        assert!(p("0.0.0.0/0").contains(&ip("8.8.8.8")));
        assert!(!p("0.0.0.0/0").contains(&ip("::2")));
        assert!(p("fd00::/8").contains(&ip("fd12::1")));
        assert!(AddressPrefix::parse("10.0.0.0/33").is_none());
        assert!(AddressPrefix::parse("nonsense").is_none());
        assert_eq!(p("10.0.0.0/8").to_string(), "10.0.0.0/8");
        assert_eq!(p("10.1.2.3").to_string(), "10.1.2.3");
    }

    #[test]
    fn refusals_are_logged_once_per_interval_and_all_counted() {
        let mut log = RefusalLog::default();
        let mut c = Counters::default();
        let first = log.note(&mut c, Refusal::PesPerHost, 0, || "refused".into());
        assert_eq!(first.as_deref(), Some("refused"));
        for t in 1..=5 {
            assert!(log
                .note(&mut c, Refusal::PesPerHost, t, || "x".into())
                .is_none());
        }
        assert!(log
            .note(&mut c, Refusal::Connection, 6, || "other".into())
            .is_some());
        let later = log
            .note(&mut c, Refusal::PesPerHost, REFUSAL_LOG_INTERVAL, || {
                "again".into()
            })
            .unwrap();
        assert!(
            later.starts_with("again") && later.contains("5 more"),
            "{later}"
        );
        assert_eq!(c.refused(Refusal::PesPerHost), 7);
        assert_eq!(c.refused(Refusal::Connection), 1);
        assert_eq!(c.refused(Refusal::Ownership), 0);
        for (i, kind) in Refusal::ALL.iter().enumerate() {
            assert_eq!(kind.index(), i, "ALL lists the kinds in declaration order");
        }
    }

    #[test]
    fn rate_windows() {
        let mut r = Rate::default();
        assert!(r.allow(0, Some(2)));
        assert!(r.allow(10, Some(2)));
        assert!(!r.allow(20, Some(2)));
        assert!(r.allow(1_000_000, Some(2)));
        assert!(r.allow(5, None));
    }
}
