//! The sans-I/O protocol core. Nothing in here touches a socket, a thread or the clock.

pub mod asap_client;
pub mod checksum;
pub mod csp;
pub mod handlespace;
pub mod pcap;
pub mod registrar;
pub mod types;
pub mod wire;
