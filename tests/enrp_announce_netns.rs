//! ENRP Presence by multicast, inside a network namespace of its own (`unshare -rn`, loopback
//! set to multicast, a 224.0.0.0/4 route on it): three registrars with no `-peer=` at all find
//! each other by their Presence on 239.0.0.51:9901 and share a PE registered at one of them.

#[path = "common/netns.rs"]
mod netns;

const REGISTRAR: &str = env!("CARGO_BIN_EXE_rspregistrar");
const TOOL: &str = env!("CARGO_BIN_EXE_rsptool");

#[test]
fn registrars_find_each_other_by_multicast_presence() {
    if !netns::available() {
        return;
    }
    let script = format!(
        r#"
DIR=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$DIR"' EXIT
for i in 1 2 3; do
  {reg} -asap=127.0.0.1:386$i -enrp=127.0.0.1:991$i -asapannounce=off \
     -enrpannounce=239.0.0.51:9901 -transport=tcp -minaddressscope=loopback \
     -identifier=0x0$i -peerheartbeatcycle=1000 -loglevel=5 -logfile=$DIR/r$i.log > $DIR/r$i.out &
done
for i in 1 2 3; do
  for n in $(seq 1 100); do grep -q 'Listening: ASAP over TCP' $DIR/r$i.out && break; sleep 0.05; done
done
{tool} pe -registrar=127.0.0.1:3861 -poolhandle=McastPool -identifier=0xb001 -port=9999 > $DIR/pe.out &
for n in $(seq 1 100); do
  if {tool} resolve -registrar=127.0.0.1:3863 -poolhandle=McastPool 2>/dev/null | grep -q 'PE 0x0000b001' \
     && {tool} hsdump 127.0.0.1:9912 2>/dev/null | grep -q 'home 0x00000001'; then
    break
  fi
  sleep 0.1
done
echo "== resolve at 3"
{tool} resolve -registrar=127.0.0.1:3863 -poolhandle=McastPool
echo "== hsdump 2"
{tool} hsdump 127.0.0.1:9912
# Whichever registrar heard another's Presence first dialled it: all logs, not only r1's.
echo "== logs"
cat $DIR/r1.log $DIR/r2.log $DIR/r3.log
"#,
        reg = REGISTRAR,
        tool = TOOL
    );
    let out = netns::run(&script);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let resolved = stdout
        .split("== hsdump 2")
        .next()
        .unwrap_or_default()
        .contains("PE 0x0000b001");
    assert!(
        resolved,
        "registrar 3 resolves the PE registered at 1:\n{stdout}"
    );
    let dump = stdout.split("== hsdump 2").nth(1).unwrap_or_default();
    assert!(dump.contains("home 0x00000001"), "{stdout}");
    assert!(
        dump.contains("peer 0x00000001") && dump.contains("peer 0x00000003"),
        "registrar 2 lists both others as peers:\n{stdout}"
    );
    assert!(
        stdout.contains("announces itself at 127.0.0.1:991"),
        "discovered by multicast:\n{stdout}"
    );
}
