//! rsplib-rs: Reliable Server Pooling (RSerPool, RFC 5351–5356).
//!
//! * [`core`] — sans-I/O protocol core: wire codec, handlespace, policies, state machines.
//!   No sockets, no threads, no clock reads: time is passed in.
//! * [`registrar`] — the registrar's I/O around the core (binary `rspregistrar`).
//! * [`ffi`] — the thin C layer that makes this crate a drop-in `librsplib.so`.
//!
//! See `docs/ARCHITECTURE.md` for the module map and the path a message takes.

pub mod core;
pub mod ffi;
pub mod library;
pub mod logging;
pub mod registrar;
pub mod transport;
