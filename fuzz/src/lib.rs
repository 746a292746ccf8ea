//! The state-machine fuzz targets' harnesses (the targets in `fuzz_targets/` are one line
//! each), shared so that the seed writer and the seed test can run them too.
//!
//! * [`registrar`]: `core::registrar::Registrar` under connections, ASAP / ENRP messages and
//!   time, with `Registrar::check_invariants` after every step.
//! * [`asap_client`]: `core::asap_client::AsapClient` under requests, responses, disconnects and
//!   time, against a model of its public API.
//!
//! `cargo test` here checks that every seed decodes to its operations and runs clean;
//! `cargo test -- --ignored write_seeds` (re)writes `corpus/<target>/seed-*` and the minimized
//! crash reproducers `regressions/<target>/*` (replay one: `cargo fuzz run TARGET FILE`, with
//! `RSPLIB_FUZZ_TRACE=1` to print every step).

pub mod asap_client;
pub mod common;
pub mod registrar;

#[cfg(test)]
mod seeds;
