//! `rsptool hsdump`: what a registrar holds, asked over ENRP as Debian's `hsdump` does
//! (a Presence, a List Request, then Handle Table Requests while the answer says "more"), over
//! TCP or SCTP.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::core::types::RegistrarId;
use crate::core::wire::{enrp, EnrpBody, EnrpMessage, PoolEntries, ServerInformation};
use crate::transport::{Association, Protocol, PPID_ENRP};

/// A registrar's answer: its id, its peers, its handlespace.
#[derive(Debug, Default)]
pub struct Dump {
    pub registrar: Option<RegistrarId>,
    /// The ownership checksum of its own PEs (from its Presence).
    pub checksum: Option<u16>,
    pub peers: Vec<ServerInformation>,
    pub pools: Vec<PoolEntries>,
}

impl Dump {
    /// Number of PEs in all pools.
    pub fn pe_count(&self) -> usize {
        self.pools.iter().map(|p| p.elements.len()).sum()
    }
}

/// Most Handle Table Requests one dump sends (a registrar that always says "more").
const MAX_PAGES: usize = 100_000;

/// Asks the registrar at `addr` (its ENRP endpoint) for its peers and handlespace.
pub fn query(addr: SocketAddr, protocol: Protocol, timeout: Duration) -> Result<Dump, String> {
    let mut assoc = Association::connect(protocol, &[addr], timeout, PPID_ENRP)
        .map_err(|e| format!("cannot connect to {addr} over {}: {e}", protocol.name()))?;
    // A tool's id: random, never 0.
    let me = RegistrarId((std::process::id() << 8 | 0x5d).max(1));
    let send = |assoc: &mut Association, flags: u8, body: EnrpBody| -> Result<(), String> {
        let mut m = EnrpMessage::new(me, RegistrarId(0), body);
        m.flags = flags;
        let bytes = m.to_bytes().map_err(|e| e.to_string())?;
        assoc
            .send(PPID_ENRP, &bytes)
            .map_err(|e| format!("cannot send to {addr}: {e}"))
    };
    send(
        &mut assoc,
        enrp::FLAG_REPLY_REQUIRED,
        EnrpBody::Presence {
            checksum: 0xffff,
            server_info: ServerInformation::new(me, vec![]),
        },
    )?;
    send(&mut assoc, 0, EnrpBody::ListRequest)?;
    send(&mut assoc, 0, EnrpBody::HandleTableRequest)?;
    let mut dump = Dump::default();
    // The answers come in any order: done once the List Response and the last table page
    // (M not set) are both in.
    let (mut listed, mut table_done, mut pages) = (false, false, 0);
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("{addr} did not answer in time"));
        }
        let data = match assoc.recv(Some(left)) {
            Ok(Some((_, data))) => data,
            Ok(None) => return Err(format!("{addr} closed the connection")),
            Err(e) => return Err(format!("cannot receive from {addr}: {e}")),
        };
        let m = EnrpMessage::decode(&data)
            .map_err(|e| format!("bad ENRP message from {addr}: {e}"))?
            .message;
        match m.body {
            EnrpBody::Presence { checksum, .. } => {
                dump.registrar = Some(m.sender);
                dump.checksum = Some(checksum);
            }
            EnrpBody::ListResponse { servers } => {
                dump.peers = servers;
                listed = true;
            }
            EnrpBody::HandleTableResponse { pools } => {
                if m.flags & enrp::FLAG_REJECT != 0 {
                    return Err(format!("{addr} rejected the Handle Table Request"));
                }
                dump.registrar.get_or_insert(m.sender);
                merge(&mut dump.pools, pools);
                pages += 1;
                if m.flags & enrp::FLAG_MORE == 0 {
                    table_done = true;
                } else if pages < MAX_PAGES {
                    send(&mut assoc, 0, EnrpBody::HandleTableRequest)?;
                } else {
                    return Err(format!("{addr} keeps saying there is more"));
                }
            }
            _ => {}
        }
        if listed && table_done {
            return Ok(dump);
        }
    }
}

/// Appends a page's pools, joining a pool split over two pages.
fn merge(into: &mut Vec<PoolEntries>, pools: Vec<PoolEntries>) {
    for p in pools {
        match into.iter_mut().find(|q| q.pool_handle == p.pool_handle) {
            Some(q) => q.elements.extend(p.elements),
            None => into.push(p),
        }
    }
}

/// The dump as text: the registrar, its peers, then each pool and its PEs.
pub fn format(dump: &Dump) -> String {
    let mut s = String::new();
    let id = dump
        .registrar
        .map_or_else(|| "unknown".into(), |r| r.to_string());
    let _ = writeln!(
        s,
        "Registrar {id}: {} pools, {} PEs, own-PE checksum {}",
        dump.pools.len(),
        dump.pe_count(),
        dump.checksum
            .map_or_else(|| "unknown".into(), |c| format!("0x{c:04x}"))
    );
    let _ = writeln!(s, "Peers: {}", dump.peers.len());
    for p in &dump.peers {
        let addrs: Vec<String> = p
            .transports
            .iter()
            .flat_map(|t| t.addresses.iter().map(move |a| SocketAddr::new(*a, t.port)))
            .map(|a| a.to_string())
            .collect();
        let _ = writeln!(s, "  peer {} at {}", p.server_id, addrs.join(", "));
    }
    for pool in &dump.pools {
        let _ = writeln!(
            s,
            "Pool \"{}\": {} PEs",
            pool.pool_handle,
            pool.elements.len()
        );
        let mut elements: Vec<_> = pool.elements.iter().collect();
        elements.sort_by_key(|e| e.id.0);
        for e in elements {
            let t = &e.user_transport;
            let addrs: Vec<String> = t.addresses.iter().map(|a| a.to_string()).collect();
            let _ = writeln!(
                s,
                "  PE {} home {} policy {} {} {}:{} life {} ms",
                e.id,
                e.home_registrar,
                e.policy.policy.name(),
                t.protocol.name(),
                addrs.join(","),
                t.port,
                e.registration_life
            );
        }
    }
    s
}
