//! Generates the classic C headers from `src/ffi/` with cbindgen.
//!
//! cbindgen runs once over the ffi modules; its output is split into items (constants, types,
//! functions) and each item goes into the header named after the module that defines it, using
//! the template `src/ffi/headers/<header>.in` (include guard, includes, `extern "C"`, the
//! hand-written macros cbindgen cannot express). C++ default arguments are added from
//! [`CPP_DEFAULTS`]. The result is written to `$OUT_DIR/include/`; `make headers` (which sets
//! `RSPLIB_HEADERS_DIR`) also writes it to `include/` and a test fails when the committed headers differ from a fresh generation.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

/// (ffi module, header it generates), in include order. A header may take the items of
/// several modules (in this order).
const HEADERS: &[(&str, &str)] = &[
    ("tdtypes", "tdtypes.h"),
    ("sockaddrunion", "sockaddrunion.h"),
    ("tagitem", "tagitem.h"),
    ("rserpoolerror", "rserpoolerror.h"),
    ("poolpolicysettings", "poolpolicysettings.h"),
    ("rsplib_tags", "rsplib-tags.h"),
    ("threadsafety", "threadsafety.h"),
    ("timeutilities", "timeutilities.h"),
    ("loglevel", "loglevel.h"),
    ("breakdetector", "breakdetector.h"),
    ("randomizer", "randomizer.h"),
    ("netutilities", "netutilities.h"),
    ("netutilities_addresses", "netutilities.h"),
    ("componentstatusprotocol", "componentstatusprotocol.h"),
    ("rsplib", "rsplib.h"),
    ("rsplib_internals", "rsplib-internals.h"),
    // Not classic: server-initiated handoff (docs/handoff.md) and contact-node descriptor
    // passing (docs/contact-node.md), in a header of their own.
    ("handoff", "rsplib-handoff.h"),
    ("contact", "rsplib-handoff.h"),
];

/// Headers without an ffi module: written from their template alone (macros, forward
/// declarations, stubs for names the original headers only pulled in transitively).
const TEMPLATE_HEADERS: &[&str] = &[
    "ext_socket.h",
    "debug.h",
    "dispatcher.h",
    "timer.h",
    "fdcallback.h",
    "leaflinkedredblacktree.h",
    "doublelinkedringlist.h",
    "config.h",
];

/// (function, parameter, C++ default) — the original header's `CPP_DEFAULT(x)` arguments.
const CPP_DEFAULTS: &[(&str, &str, &str)] = &[
    ("rspInitialize", "tags", "NULL"),
    ("rspRegister", "tags", "NULL"),
    ("rspDeregister", "tags", "NULL"),
    ("rspHandleResolution", "tags", "NULL"),
    ("rspReportFailure", "tags", "NULL"),
    ("rspNameResolution", "tags", "NULL"),
    ("rspFailure", "tags", "NULL"),
    ("rspSelect", "n", "0"),
    ("rspSelect", "readfds", "NULL"),
    ("rspSelect", "writefds", "NULL"),
    ("rspSelect", "exceptfds", "NULL"),
    ("rspSelect", "timeout", "NULL"),
    ("rspCreatePoolElement", "tags", "NULL"),
    ("rspDeletePoolElement", "tags", "NULL"),
    ("rspAcceptSession", "tags", "NULL"),
    ("rspCreateSession", "ped", "NULL"),
    ("rspCreateSession", "tags", "NULL"),
    ("rspDeleteSession", "tags", "NULL"),
    ("rspSessionRead", "tags", "NULL"),
    ("rspSessionWrite", "tags", "NULL"),
    ("rspSessionSendCookie", "tags", "NULL"),
    ("rspSessionSelect", "tags", "NULL"),
];

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let ffi = root.join("src/ffi");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,librsplib.so.0");
    build_date();
    println!("cargo:rerun-if-changed=src/ffi");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=include");
    println!("cargo:rerun-if-env-changed=RSPLIB_HEADERS_DIR");

    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("include");
    fs::create_dir_all(&out).unwrap();
    // `make headers` sets RSPLIB_HEADERS_DIR to include/ to refresh the committed copies.
    let copy_to = std::env::var_os("RSPLIB_HEADERS_DIR").map(PathBuf::from);
    for (name, text) in generate(&ffi) {
        write_if_changed(&out.join(&name), &text);
        if let Some(dir) = &copy_to {
            write_if_changed(&dir.join(&name), &text);
        }
    }
}

/// All headers as (file name, content).
fn generate(ffi: &Path) -> Vec<(String, String)> {
    let mut config = config();
    let sources: Vec<String> = HEADERS
        .iter()
        .map(|(module, _)| fs::read_to_string(ffi.join(format!("{module}.rs"))).unwrap())
        .collect();
    // Types are only emitted when a function uses them, unless listed: list them all.
    for src in &sources {
        config
            .export
            .include
            .extend(exported_names(src, TYPE_PREFIXES));
    }
    let mut builder = cbindgen::Builder::new().with_config(config);
    for (module, _) in HEADERS {
        builder = builder.with_src(ffi.join(format!("{module}.rs")));
    }
    let bindings = builder.generate().expect("cbindgen failed on src/ffi");
    let mut raw = Vec::new();
    bindings.write(&mut raw);
    let items = split_items(&String::from_utf8(raw).unwrap());

    let mut used = vec![false; items.len()];
    let mut headers = Vec::new();
    for (first, (_, header)) in HEADERS.iter().enumerate() {
        if HEADERS[..first].iter().any(|(_, h)| h == header) {
            continue;
        }
        let names: Vec<String> = HEADERS
            .iter()
            .zip(&sources)
            .filter(|((_, h), _)| h == header)
            .flat_map(|(_, src)| exported_names(src, ALL_PREFIXES))
            .collect();
        let mut body = String::new();
        for (i, (name, text)) in items.iter().enumerate() {
            if names.contains(name) {
                used[i] = true;
                body.push_str(&apply_cpp_defaults(name, text));
                body.push('\n');
            }
        }
        let template_path = ffi.join("headers").join(format!("{header}.in"));
        let template = fs::read_to_string(&template_path)
            .unwrap_or_else(|e| panic!("{}: {e}", template_path.display()));
        assert!(
            template.contains("@CBINDGEN_ITEMS@"),
            "{header}.in lacks @CBINDGEN_ITEMS@"
        );
        let text = template.replace("@CBINDGEN_ITEMS@", body.trim_end());
        headers.push((header.to_string(), text));
    }
    for header in TEMPLATE_HEADERS {
        let template_path = ffi.join("headers").join(format!("{header}.in"));
        let text = fs::read_to_string(&template_path)
            .unwrap_or_else(|e| panic!("{}: {e}", template_path.display()));
        assert!(
            !text.contains("@CBINDGEN_ITEMS@"),
            "{header}.in is template-only and must not contain @CBINDGEN_ITEMS@"
        );
        headers.push((header.to_string(), text));
    }
    // A default whose function was not recognised as an item would silently be dropped.
    for (function, param, _) in CPP_DEFAULTS {
        assert!(
            items.iter().any(|(name, _)| name == function),
            "CPP_DEFAULTS: no function `{function}` (parameter `{param}`) in cbindgen's output"
        );
    }
    for (i, (name, _)) in items.iter().enumerate() {
        assert!(
            used[i],
            "cbindgen item `{name}` is defined in no header module"
        );
    }
    headers
}

fn config() -> cbindgen::Config {
    let mut config = cbindgen::Config {
        language: cbindgen::Language::C,
        style: cbindgen::Style::Tag,
        no_includes: true,
        documentation: false,
        usize_is_size_t: true,
        sort_by: cbindgen::SortKey::None,
        ..Default::default()
    };
    let rename: HashMap<String, String> = [
        ("sockaddr", "struct sockaddr"),
        ("sockaddr_in", "struct sockaddr_in"),
        ("sockaddr_in6", "struct sockaddr_in6"),
        ("timeval", "struct timeval"),
        // src/ffi/ctypes.rs (not scanned): C types the headers take from elsewhere.
        ("CBool", "bool"),
        ("Dispatcher", "struct Dispatcher"),
    ]
    .into_iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    config.export.rename = rename;
    config
}

/// Splits cbindgen's output into (item name, text) in output order.
fn split_items(raw: &str) -> Vec<(String, String)> {
    let mut items = Vec::new();
    for block in raw.split("\n\n") {
        let block = block.trim_matches('\n');
        if block.is_empty() {
            continue;
        }
        // cbindgen prints consecutive #defines without blank lines between them.
        if block.starts_with("#define ") {
            for line in block.lines() {
                let name = line.split_whitespace().nth(1).unwrap().to_string();
                items.push((name, line.to_string()));
            }
            continue;
        }
        items.push((item_name(block), block.to_string()));
    }
    items
}

/// The C name an item block declares.
fn item_name(block: &str) -> String {
    let ident = |s: &str| -> String {
        s.chars()
            .rev()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect::<String>()
            .chars()
            .rev()
            .collect()
    };
    let first = block.lines().next().unwrap();
    if let Some(rest) = first.strip_prefix("typedef ") {
        if let Some(p) = rest.find("(*") {
            // typedef R (*Name)(args);
            let after = &rest[p + 2..];
            return after[..after.find(')').unwrap()].to_string();
        }
        return ident(block.trim_end_matches(';'));
    }
    // `struct X {…}` defines X; `struct X *f(…);` is a function returning a pointer to X.
    for kw in ["struct ", "union ", "enum "] {
        if let Some(rest) = first.strip_prefix(kw).filter(|_| !first.contains('(')) {
            return rest
                .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                .next()
                .unwrap()
                .to_string();
        }
    }
    // A function: the identifier right before the first '('.
    ident(&block[..block.find('(').expect("unrecognised cbindgen item")])
}

const TYPE_PREFIXES: &[&str] = &["pub type ", "pub struct ", "pub union "];
const ALL_PREFIXES: &[&str] = &[
    "pub type ",
    "pub struct ",
    "pub union ",
    "pub const ",
    "pub extern \"C\" fn ",
    "pub unsafe extern \"C\" fn ",
];

/// Names of the items a ffi module defines whose declaration starts with one of `prefixes`.
fn exported_names(src: &str, prefixes: &[&str]) -> Vec<String> {
    let mut names = Vec::new();
    for line in src.lines() {
        let l = line.trim_start();
        for prefix in prefixes {
            if let Some(rest) = l.strip_prefix(prefix) {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                names.push(name);
            }
        }
    }
    names
}

/// Adds ` CPP_DEFAULT(x)` after the parameters listed in [`CPP_DEFAULTS`] for `function`.
fn apply_cpp_defaults(function: &str, text: &str) -> String {
    let mut text = text.to_string();
    for (f, param, default) in CPP_DEFAULTS {
        if *f != function {
            continue;
        }
        // The parameter name: preceded by ' ' or '*', followed by ',' or ')'.
        let open = text.find('(').unwrap();
        let is_ident = |c: char| c.is_alphanumeric() || c == '_';
        let at = text[open..]
            .match_indices(param)
            .map(|(i, _)| open + i)
            .find(|&i| {
                let before = text[..i].chars().next_back().unwrap_or('(');
                let after = text[i + param.len()..].chars().next().unwrap_or(' ');
                !is_ident(before) && (after == ',' || after == ')')
            })
            .unwrap_or_else(|| panic!("{function}: no parameter `{param}` for CPP_DEFAULT"));
        text.insert_str(at + param.len(), &format!(" CPP_DEFAULT({default})"));
    }
    text
}

fn write_if_changed(path: &Path, text: &str) {
    if fs::read_to_string(path).ok().as_deref() != Some(text) {
        fs::write(path, text).unwrap();
    }
}

/// `RSPLIB_BUILD_DATE` / `RSPLIB_BUILD_TIME` in the `__DATE__` / `__TIME__` formats
/// ("Dec  1 2026", "07:29:52", UTC), from SOURCE_DATE_EPOCH when set (reproducible builds).
fn build_date() {
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    let secs = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0)
        });
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    println!(
        "cargo:rustc-env=RSPLIB_BUILD_DATE={} {:2} {}",
        MONTHS[(month - 1) as usize],
        day,
        year
    );
    println!(
        "cargo:rustc-env=RSPLIB_BUILD_TIME={:02}:{:02}:{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    );
}
