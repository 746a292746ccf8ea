//! C types the generated headers name but do not define. cbindgen does not scan this file, so
//! the names below appear verbatim in the prototypes (`build.rs` renames `CBool` to `bool` and
//! `Dispatcher` to `struct Dispatcher`).
#![allow(non_camel_case_types)]

/// A `bool` received from C: one byte, any nonzero value is true (a C caller may pass any
/// byte value in `unsigned char bool`). Returned bools are plain Rust `bool`.
pub type CBool = u8;

/// `sctp_assoc_t` from `<netinet/sctp.h>` (`ext_socket.h` declares it when that is absent).
pub type sctp_assoc_t = crate::transport::sctp::AssocId;

/// `struct Dispatcher` (opaque; declared by `dispatcher.h`): the original library's event loop.
/// Only `cspReporterNew` takes one, and ignores it.
pub struct Dispatcher {
    _private: (),
}
