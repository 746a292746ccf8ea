//! The manual pages (man/): clean under `mandoc -Tlint` (or `man --warnings` where mandoc is
//! missing), and rsptool(1)/rspdecode(1) name every subcommand and option the programs' own
//! --help lists.

use std::path::PathBuf;
use std::process::Command;

fn pages() -> Vec<PathBuf> {
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/man"));
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.extension()
                .is_some_and(|e| e == "1" || e == "3" || e == "8")
        })
        .collect();
    v.sort();
    assert_eq!(v.len(), 4, "{v:?}");
    v
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn pages_lint_clean() {
    for page in pages() {
        let out = if have("mandoc") {
            Command::new("mandoc").args(["-Tlint"]).arg(&page).output()
        } else if have("man") {
            Command::new("man")
                .args(["--warnings", "-l", "-Tutf8"])
                .arg(&page)
                .output()
        } else {
            eprintln!("SKIPPED: neither mandoc nor man is installed");
            return;
        }
        .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && text.trim().is_empty(),
            "{}: {text}",
            page.display()
        );
    }
}

/// The long options (`--name`) in a --help text.
fn long_options(help: &str) -> Vec<String> {
    help.split_whitespace()
        .filter_map(|w| w.strip_prefix("--"))
        .map(|w| {
            w.trim_end_matches(|c: char| !c.is_ascii_alphanumeric() && c != '-')
                .split(['=', '<'])
                .next()
                .unwrap()
                .to_string()
        })
        .filter(|w| !w.is_empty() && w != "help" && w != "version")
        .collect()
}

fn help(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

fn page(name: &str) -> String {
    std::fs::read_to_string(format!("{}/man/{name}", env!("CARGO_MANIFEST_DIR")))
        .unwrap()
        .replace("\\-", "-")
}

#[test]
fn tool_pages_name_every_option() {
    let tool = env!("CARGO_BIN_EXE_rsptool");
    let man = page("rsptool.1");
    for sub in [
        "pe",
        "resolve",
        "announces",
        "lib-resolve",
        "lib-pe",
        "hsdump",
        "bench",
        "handoff pe",
        "handoff pu",
        "completions",
    ] {
        assert!(
            man.contains(&format!(".B {sub}")) || man.contains(&format!(".BI {sub}")),
            "{sub}"
        );
        let mut args = vec!["help"];
        args.extend(sub.split(' '));
        for opt in long_options(&help(tool, &args)) {
            assert!(
                man.contains(&format!("--{opt}")),
                "rsptool {sub} --{opt} not in rsptool(1)"
            );
        }
    }
    let man = page("rspdecode.1");
    let opts = long_options(&help(env!("CARGO_BIN_EXE_rspdecode"), &["--help"]));
    assert!(opts.contains(&"hex".to_string()), "{opts:?}");
    for opt in opts {
        assert!(
            man.contains(&format!("--{opt}")),
            "rspdecode --{opt} not in rspdecode(1)"
        );
    }
}
