//! ENRP between real registrar processes over loopback TCP: three registrars with static peers,
//! PEs registered through the library at each; a registrar killed with SIGKILL is taken over by
//! exactly one survivor, its PEs stay resolvable everywhere and the survivors agree; a restarted
//! registrar fetches the handle table from a mentor.

#[path = "common/cluster.rs"]
mod cluster;
mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use cluster::*;
use common::*;
use rsplib::registrar::hsdump;
use rsplib::transport::Protocol;

#[test]
fn three_registrars_replicate_take_over_and_resynchronise() {
    let mut c = Cluster::new(3, "enrp3");
    // Each registrar sees the other two.
    for i in 0..3 {
        assert!(
            wait_log(&c, i, "joined", Duration::from_secs(10)),
            "registrar {i}: {}",
            c.log(i)
        );
    }
    let _pes: Vec<Proc> = (1..=6).map(|k| pe(&c, k, (k as usize) % 3)).collect();
    // PE 7 is not a library PE: it knows registrar 1 only and never registers again.
    let mut plain = Proc::spawn(
        RSPTOOL,
        &[
            "pe",
            &format!("-registrar={}", c.asap[1]),
            "-poolhandle=EnrpPool",
            "-identifier=7",
            "-port=7007",
        ],
    );
    plain.wait_for("registered PE", Duration::from_secs(10));
    let all: BTreeSet<u32> = (1..=7).collect();
    c.converge(&all, Duration::from_secs(10)).unwrap();
    for i in 0..3 {
        assert_eq!(resolve_all(&c, i), all, "resolution at registrar {i}");
        let (t, _) = c.table(i);
        assert!(
            t.iter().any(|(_, home)| *home == 0x20),
            "registrar 1 is home for some PEs"
        );
    }

    // kill -9 of registrar 1: exactly one survivor takes over; nothing is lost or doubled.
    c.kill(1);
    let killed = Instant::now();
    let taken = |c: &Cluster| {
        [0, 2]
            .iter()
            .map(|&i| count(&c.log(i), "took over registrar 0x00000020"))
            .sum::<usize>()
    };
    while taken(&c) == 0 && killed.elapsed() < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let takeover_at = killed.elapsed();
    assert_eq!(taken(&c), 1, "{}\n{}", c.log(0), c.log(2));
    let converged = c.converge(&all, Duration::from_secs(2)).unwrap();
    let taker = if count(&c.log(0), "took over registrar") > 0 {
        0x10
    } else {
        0x30
    };
    for i in [0, 2] {
        assert_eq!(resolve_all(&c, i), all, "resolution at registrar {i}");
        let (t, _) = c.table(i);
        assert!(t.iter().all(|(_, home)| *home != 0x20));
        assert!(t.contains(&(7, taker)), "PE 7 is the taker's now");
    }
    // A pool user through the library, given the dead registrar first: it hunts on and
    // resolves at a survivor.
    let out = std::process::Command::new(RSPTOOL)
        .args([
            "lib-resolve",
            "-poolhandle=EnrpPool",
            "-transport=tcp",
            &format!("-registrar={}", c.asap[2]),
            &format!("-registrar={}", c.asap[1]),
            &format!("-registrar={}", c.asap[0]),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("PE 0x"), "{text}");
    // PE 7 does not register again: the taker removes it after one keep-alive round, everywhere.
    let rest: BTreeSet<u32> = (1..=6).collect();
    c.converge(&rest, Duration::from_secs(8)).unwrap();
    assert_eq!(taken(&c), 1, "still exactly one takeover");
    drop(plain);
    eprintln!(
        "takeover {:.1} s after SIGKILL; survivors agreed {} ms later",
        takeover_at.as_secs_f64(),
        converged.as_millis()
    );

    // Registrar 1 comes back (a new id): it fetches the table from a mentor.
    c.start(1, 0x21);
    assert!(
        wait_log(&c, 1, "handle table from mentor", Duration::from_secs(10)),
        "{}",
        c.log(1)
    );
    c.converge(&rest, Duration::from_secs(5)).unwrap();
    assert_eq!(c.ids(1), rest);
    assert_eq!(resolve_all(&c, 1), rest);
}

#[test]
fn enrp_from_an_unknown_host_is_refused_and_a_forged_sender_ignored() {
    let c = Cluster::new(2, "enrp-hostile");
    assert!(wait_log(&c, 0, "joined", Duration::from_secs(10)));
    // A tool on loopback (allowed) may dump; it sees both registrars' peers.
    let dump = hsdump::query(c.enrp[0], Protocol::Tcp, Duration::from_secs(5)).unwrap();
    assert_eq!(dump.registrar.map(|r| r.0), Some(0x10));
    assert!(dump.peers.iter().any(|p| p.server_id.0 == 0x20));
    // A forged Handle Update over a real connection (the access refusal of unknown hosts is
    // in the unit tests: every host here is loopback).
    use rsplib::core::types::{PeId, PolicyInfo, PolicyType, RegistrarId, TransportAddress};
    use rsplib::core::wire::{enrp, EnrpBody, EnrpMessage, PoolElement, ServerInformation};
    use rsplib::transport::{Association, PPID_ENRP};
    let mut a = Association::connect(
        Protocol::Tcp,
        &[c.enrp[0]],
        Duration::from_secs(2),
        PPID_ENRP,
    )
    .unwrap();
    let me = RegistrarId(0x77);
    let presence = EnrpMessage::new(
        me,
        RegistrarId(0),
        EnrpBody::Presence {
            checksum: 0,
            server_info: ServerInformation::new(me, vec![]),
        },
    );
    a.send(PPID_ENRP, &presence.to_bytes().unwrap()).unwrap();
    let mut e = PoolElement::new(
        PeId(0xbad),
        TransportAddress::new(
            rsplib::core::types::TransportProtocol::Tcp,
            1,
            vec!["127.0.0.1".parse().unwrap()],
        ),
        PolicyInfo::new(PolicyType::RoundRobin),
    );
    e.home_registrar = RegistrarId(0x20);
    // Claims to be registrar 0x20 on a connection that speaks for 0x77.
    let forged = EnrpMessage::new(
        RegistrarId(0x20),
        RegistrarId(0x10),
        EnrpBody::HandleUpdate {
            action: enrp::UPDATE_ADD_PE,
            reserved: 0,
            pool_handle: "EnrpPool".into(),
            element: e,
        },
    );
    a.send(PPID_ENRP, &forged.to_bytes().unwrap()).unwrap();
    assert!(wait_log(
        &c,
        0,
        "claiming to be from 0x00000020",
        Duration::from_secs(5)
    ));
    assert!(c.ids(0).is_empty());
}
