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
    fn rate_windows() {
        let mut r = Rate::default();
        assert!(r.allow(0, Some(2)));
        assert!(r.allow(10, Some(2)));
        assert!(!r.allow(20, Some(2)));
        assert!(r.allow(1_000_000, Some(2)));
        assert!(r.allow(5, None));
    }
}
