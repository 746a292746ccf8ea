//! The registrar (pool registrar, PR): the I/O loop around the core.
//!
//! Unfinished: only the command line entry point exists so far.

pub mod config;

use std::io::Write;

/// Usage text printed by `rspregistrar --help`.
pub const USAGE: &str = "\
Usage: rspregistrar [options]
  -asap=auto|addr:port[,addr...]   ASAP endpoint (default auto = 0.0.0.0:3863)
  -asapannounce=auto|addr:port|off ASAP server announces (default 239.0.0.50:3863)
  -enrp=auto|addr:port[,addr...]   ENRP endpoint (default auto = 0.0.0.0:9901)
  -enrpannounce=auto|addr:port|off ENRP presence multicast (default 239.0.0.51:9901)
  -peer=addr:port                  static ENRP peer (repeatable)
  -identifier=0x...                registrar identifier (default random)
  -loglevel=0-9                    log verbosity
  --help                           this text
";

/// Entry point of the `rspregistrar` binary. Returns the process exit code.
pub fn main_with_args(args: &[String]) -> i32 {
    if args
        .iter()
        .any(|a| a == "--help" || a == "-help" || a == "-h")
    {
        print!("{USAGE}");
        return 0;
    }
    let _ = writeln!(
        std::io::stderr(),
        "rspregistrar: the registrar is not implemented yet in this build\n{USAGE}"
    );
    1
}
