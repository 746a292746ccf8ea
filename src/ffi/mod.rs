//! The thin C layer: converts arguments, calls the core, maps errors. No protocol logic.
//!
//! One module per classic header (and `handoff`/`contact` for `rsplib-handoff.h`, ours); `build.rs` runs cbindgen over exactly these files and writes
//! each module's items into the header of the same name (`include/`). Every exported function
//! runs inside [`guard::guard`], the single panic boundary.

pub mod breakdetector;
pub mod componentstatusprotocol;
pub mod contact;
pub mod ctypes;
pub mod guard;
pub mod handoff;
pub mod loglevel;
pub mod netutilities;
pub mod netutilities_addresses;
pub mod poolpolicysettings;
pub mod randomizer;
pub mod rserpoolerror;
pub mod rsplib;
pub mod rsplib_internals;
pub mod rsplib_tags;
pub mod sockaddrunion;
pub mod tagitem;
pub mod tdtypes;
pub mod threadsafety;
pub mod timeutilities;
