//! Component Status Protocol (CSP) status reports: the UDP datagram a component sends to a
//! monitor (rsplib's `cspmonitor`) every report interval. All integers are big-endian.
//!
//! ```text
//! @0 Type u16 (1 = status)   @2 Version u16 (0x0101)   @4 Length u32 (296 + 24·n)
//! @8 SenderID u64   @16 ReportInterval u64 (µs)   @24 SenderTimeStamp u64 (µs since 1970)
//! @32 StatusText[128]   @160 ComponentAddress[128] (NUL-terminated, NUL-padded)
//! @288 Associations u32, 4 bytes padding, @296 n × { ReceiverID u64, Duration u64 (µs),
//!      Flags u16, ProtocolID u16, PPID u32 }
//! ```

use std::net::IpAddr;

pub const CSP_VERSION: u16 = 0x0101;
pub const CSPHT_STATUS: u16 = 0x0001;
/// Size of the fixed header.
pub const HEADER_SIZE: usize = 296;
/// Size of one association entry.
pub const ENTRY_SIZE: usize = 24;
/// Size of each text field, NUL included.
pub const TEXT_SIZE: usize = 128;

pub const CID_GROUP_REGISTRAR: u16 = 0x0001;
pub const CID_GROUP_POOLELEMENT: u16 = 0x0002;
pub const CID_GROUP_POOLUSER: u16 = 0x0003;

/// A component id: 16-bit group, 56-bit object.
pub fn cid_compound(group: u16, object: u64) -> u64 {
    (u64::from(group) << 56) | (object & 0x00ff_ffff_ffff_ffff)
}

/// One association of the reporting component.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AssociationEntry {
    pub receiver_id: u64,
    /// µs since the association came up; `u64::MAX` = unknown.
    pub duration: u64,
    pub flags: u16,
    pub protocol_id: u16,
    pub ppid: u32,
}

/// One status report.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StatusReport {
    pub sender_id: u64,
    pub report_interval: u64,
    pub sender_timestamp: u64,
    pub status_text: Vec<u8>,
    pub component_address: Vec<u8>,
    pub associations: Vec<AssociationEntry>,
}

fn put_text(out: &mut Vec<u8>, text: &[u8]) {
    let n = text
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(text.len())
        .min(TEXT_SIZE - 1);
    out.extend_from_slice(&text[..n]);
    out.resize(out.len() + TEXT_SIZE - n, 0);
}

impl StatusReport {
    /// The datagram.
    pub fn emit(&self) -> Vec<u8> {
        let n = self.associations.len();
        let mut out = Vec::with_capacity(HEADER_SIZE + ENTRY_SIZE * n);
        out.extend_from_slice(&CSPHT_STATUS.to_be_bytes());
        out.extend_from_slice(&CSP_VERSION.to_be_bytes());
        out.extend_from_slice(&((HEADER_SIZE + ENTRY_SIZE * n) as u32).to_be_bytes());
        out.extend_from_slice(&self.sender_id.to_be_bytes());
        out.extend_from_slice(&self.report_interval.to_be_bytes());
        out.extend_from_slice(&self.sender_timestamp.to_be_bytes());
        put_text(&mut out, &self.status_text);
        put_text(&mut out, &self.component_address);
        out.extend_from_slice(&(n as u32).to_be_bytes());
        out.extend_from_slice(&[0; 4]);
        for a in &self.associations {
            out.extend_from_slice(&a.receiver_id.to_be_bytes());
            out.extend_from_slice(&a.duration.to_be_bytes());
            out.extend_from_slice(&a.flags.to_be_bytes());
            out.extend_from_slice(&a.protocol_id.to_be_bytes());
            out.extend_from_slice(&a.ppid.to_be_bytes());
        }
        out
    }
}

/// rsplib 3.x's status report (version 0x0200), the one Debian's `cspmonitor` reads. All
/// integers big-endian:
///
/// ```text
/// @0 Type u8 (1 = report)  @1 Flags u8  @2 Length u16 (288 + 24·n)  @4 Version u32 (0x0200)
/// @8 SenderID u64   @16 SenderTimeStamp u64 (µs since the reporter started)
/// @24 ReportInterval u32 (µs)   @28 Location[128]   @156 Status[128]
/// @284 Workload u16 (0xffff = unknown)   @286 Associations u16   @288 n × entry (as above)
/// ```
pub const CSP3_VERSION: u32 = 0x0200;
/// Size of the fixed part of a version 0x0200 report.
pub const CSP3_HEADER_SIZE: usize = 288;

impl StatusReport {
    /// The report in rsplib 3.x's layout (version 0x0200): `sender_timestamp` is taken as µs
    /// since the reporter started, `component_address` as the location; `workload` 0..1, or
    /// `None` for unknown.
    pub fn emit_v3(&self, workload: Option<f64>) -> Vec<u8> {
        // As many entries as fit into one UDP datagram.
        let n = self
            .associations
            .len()
            .min((65_507 - CSP3_HEADER_SIZE) / ENTRY_SIZE);
        let len = CSP3_HEADER_SIZE + ENTRY_SIZE * n;
        let mut out = Vec::with_capacity(len);
        out.push(CSPHT_STATUS as u8);
        out.push(0);
        out.extend_from_slice(&(len as u16).to_be_bytes());
        out.extend_from_slice(&CSP3_VERSION.to_be_bytes());
        out.extend_from_slice(&self.sender_id.to_be_bytes());
        out.extend_from_slice(&self.sender_timestamp.to_be_bytes());
        out.extend_from_slice(
            &(self.report_interval.min(u64::from(u32::MAX)) as u32).to_be_bytes(),
        );
        put_text(&mut out, &self.component_address);
        put_text(&mut out, &self.status_text);
        let w = match workload {
            Some(w) => (w.clamp(0.0, 1.0) * f64::from(0xfffe_u16)).round() as u16,
            None => 0xffff,
        };
        out.extend_from_slice(&w.to_be_bytes());
        out.extend_from_slice(&(n as u16).to_be_bytes());
        for a in &self.associations[..n] {
            out.extend_from_slice(&a.receiver_id.to_be_bytes());
            out.extend_from_slice(&a.duration.to_be_bytes());
            out.extend_from_slice(&a.flags.to_be_bytes());
            out.extend_from_slice(&a.protocol_id.to_be_bytes());
            out.extend_from_slice(&a.ppid.to_be_bytes());
        }
        out
    }
}

/// The component address text: the addresses separated by ", ", as many as fit into a text
/// field; "(local only)" when there are none.
pub fn address_list(addrs: &[IpAddr]) -> String {
    let mut s = String::new();
    for a in addrs {
        let item = if s.is_empty() {
            a.to_string()
        } else {
            format!(", {a}")
        };
        if s.len() + item.len() > TEXT_SIZE - 1 {
            break;
        }
        s.push_str(&item);
    }
    if s.is_empty() {
        s.push_str("(local only)");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emits_the_layout() {
        let r = StatusReport {
            sender_id: cid_compound(CID_GROUP_POOLELEMENT, 0x1234),
            report_interval: 250_000,
            sender_timestamp: 7,
            status_text: b"hello".to_vec(),
            component_address: vec![b'x'; 300],
            associations: vec![AssociationEntry {
                receiver_id: 1,
                duration: u64::MAX,
                flags: 2,
                protocol_id: 132,
                ppid: 11,
            }],
        };
        let b = r.emit();
        assert_eq!(b.len(), 320);
        assert_eq!(&b[0..8], &[0, 1, 1, 1, 0, 0, 1, 64]);
        assert_eq!(&b[8..16], &0x0200_0000_0000_1234u64.to_be_bytes());
        assert_eq!(&b[32..38], b"hello\0");
        assert_eq!(b[160 + 126], b'x');
        assert_eq!(b[160 + 127], 0);
        assert_eq!(&b[288..296], &[0, 0, 0, 1, 0, 0, 0, 0]);
        assert_eq!(&b[296 + 16..296 + 24], &[0, 2, 0, 132, 0, 0, 0, 11]);
    }

    #[test]
    fn emits_rsplib3s_layout() {
        let r = StatusReport {
            sender_id: cid_compound(CID_GROUP_REGISTRAR, 0x77),
            report_interval: 250_000,
            sender_timestamp: 9,
            status_text: b"1[1] PEs".to_vec(),
            component_address: b"127.0.0.1".to_vec(),
            associations: vec![AssociationEntry::default()],
        };
        let b = r.emit_v3(None);
        assert_eq!(b.len(), 312);
        assert_eq!(&b[0..8], &[1, 0, 1, 56, 0, 0, 2, 0]);
        assert_eq!(&b[8..16], &0x0100_0000_0000_0077u64.to_be_bytes());
        assert_eq!(&b[24..28], &250_000u32.to_be_bytes());
        assert_eq!(&b[28..38], b"127.0.0.1\0");
        assert_eq!(&b[156..165], b"1[1] PEs\0");
        assert_eq!(&b[284..288], &[0xff, 0xff, 0, 1]);
        assert_eq!(&r.emit_v3(Some(1.0))[284..286], &[0xff, 0xfe]);
    }

    #[test]
    fn address_lists_fit() {
        assert_eq!(address_list(&[]), "(local only)");
        let a: Vec<IpAddr> = (0..40)
            .map(|i| format!("10.0.0.{i}").parse().unwrap())
            .collect();
        let s = address_list(&a);
        assert!(s.len() <= 127 && s.starts_with("10.0.0.0, 10.0.0.1"), "{s}");
    }
}
