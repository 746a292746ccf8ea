//! ASAP Server Announces, end to end, inside a network namespace of its own (`unshare -rn`,
//! loopback set to multicast, a 224.0.0.0/4 route on it): nothing leaves the machine. The
//! registrar announces itself on 239.0.0.50:3863; a listener sees the announces; and the
//! library, given no registrar at all, finds the registrar by its announces and resolves a pool.

#[path = "common/netns.rs"]
mod netns;

const REGISTRAR: &str = env!("CARGO_BIN_EXE_rspregistrar");
const TOOL: &str = env!("CARGO_BIN_EXE_rsptool");

#[test]
fn announces_are_sent_received_and_used_for_registrar_discovery() {
    if !netns::available() {
        return;
    }
    let script = format!(
        r#"
OUT=$(mktemp)
{reg} -asap=127.0.0.1:0 -enrp=127.0.0.1:0 -enrpannounce=off -transport=tcp \
   -minaddressscope=loopback -identifier=0x0a0a0a0a -serverannouncecycle=200 -loglevel=0 > "$OUT" &
REG=$!
trap 'kill $REG; rm -f "$OUT"' EXIT
for i in $(seq 1 100); do grep -q 'Listening: ASAP over TCP' "$OUT" && break; sleep 0.05; done
ADDR=$(sed -n 's/^Listening: ASAP over TCP on //p' "$OUT")
{tool} announces -group=239.0.0.50:3863 -count=2 -timeout=10
# A PE registered through the registrar; the library below is never told where it is.
{tool} pe -registrar=$ADDR -poolhandle=AnnouncedPool -identifier=0xa001 -port=9999 &
PE=$!
sleep 1
{tool} lib-resolve -poolhandle=AnnouncedPool -transport=tcp
kill $PE
"#,
        reg = REGISTRAR,
        tool = TOOL
    );
    let out = netns::run(&script);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let announces: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("announce from registrar 0x0a0a0a0a at 127.0.0.1:"))
        .collect();
    assert_eq!(announces.len(), 2, "{stdout}");
    assert!(
        stdout.contains("registered PE 0x0000a001"),
        "{stdout}\n{stderr}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("PE 0x0000a001 127.0.0.1:9999")),
        "the library did not find the registrar by its announces:\n{stdout}\n{stderr}"
    );
}
