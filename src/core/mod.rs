//! The sans-I/O protocol core. Nothing in here touches a socket, a thread or the clock.

pub mod handlespace;
pub mod types;
