#!/bin/bash
# SCTP lab scenario for the Basic Mode library (run inside the lab VM by `make test-sctp`):
# OUR librsplib.so (through the C examples echo-pe / echo-pu, built with pkg-config against the
# staged install by `make examples`) against Debian's rsplib 3.4 registrar over kernel SCTP.
#   - echo-pe -sctp registers with rsplib 3.4's rspregistrar over SCTP, stays registered
#   - rsplib 3.4's rspterminal resolves it and gets the echo
#   - our echo-pu resolves rsplib 3.4's rspserver -echo and exchanges data over SCTP
#   - our echo-pu talks to our echo-pe over SCTP; SIGTERM deregisters the PE
#   - tshark finds no malformed ASAP packet on the wire
# Prints PASS/FAIL lines and a closing "N passed, N failed".
set -u
A=10.255.0.1
BIN=${BIN:-target/release}
EXAMPLES=${EXAMPLES:-build/examples}
STAGE_LIB=${STAGE_LIB:-build/stage/usr/local/lib}
OUT=${OUT:-build/sctp-lab/basic-mode}
mkdir -p "$OUT"
export LD_LIBRARY_PATH=$STAGE_LIB
export RSPLIB_ANNOUNCE=off
passed=0; failed=0
pass() { passed=$((passed + 1)); echo "PASS $1"; }
fail() { failed=$((failed + 1)); echo "FAIL $1"; }
check() { local what=$1; shift; if "$@"; then pass "$what"; else fail "$what"; fi; }
wait_for() { # seconds (wall clock: the VM's CPU is slow), command...
   local end=$((SECONDS + $1)); shift
   while :; do "$@" && return 0; [ $SECONDS -ge $end ] && return 1; sleep 0.2; done
}
resolves() { # pool, expected text
   "$BIN/rsptool" resolve -registrar=$A:3863 -poolhandle="$1" -transport=sctp > "$OUT/resolve-$1.out" 2>&1
   grep -q "$2" "$OUT/resolve-$1.out"
}
DUMP=
cleanup() { kill $(jobs -p) 2>/dev/null; [ -n "$DUMP" ] && kill $DUMP 2>/dev/null; }
trap cleanup EXIT

for f in "$EXAMPLES/echo-pe" "$EXAMPLES/echo-pu" "$STAGE_LIB/librsplib.so.0" /usr/bin/rspregistrar; do
   [ -e "$f" ] || { echo "basic-mode: $f is missing (make examples; apt-get install rsplib-registrar)"; exit 1; }
done

dumpcap -i lo -w "$OUT/basic-mode.pcapng" -q > "$OUT/dumpcap.log" 2>&1 &
DUMP=$!
sleep 3

# rsplib 3.4's registrar, SCTP only.
rspregistrar -asap=$A:3863 -enrp=$A:9901 -asapannounce=off -enrpannounce=off \
   -minaddressscope=sitelocal -endpointkeepalivetransmissioninterval=2000 \
   -endpointkeepalivetimeoutinterval=2000 -loglevel=3 -logfile="$OUT/registrar.log" \
   > "$OUT/registrar.out" 2>&1 &
REG=$!
check "rsplib 3.4 registrar is ready" wait_for 60 grep -qs "registrar is ready" "$OUT/registrar.log"

# Our PE, over SCTP (the library's transport to the registrar and the PE's echo socket).
"$EXAMPLES/echo-pe" -sctp -local=$A -registrar=$A:3863 -poolhandle=OurEchoPool \
   -identifier=0x0000c001 -reregister=3000 > "$OUT/echo-pe.out" 2>&1 &
PE=$!
check "echo-pe registers with rsplib 3.4's registrar over SCTP" \
   wait_for 60 grep -q '^registered PE 0x0000c001' "$OUT/echo-pe.out"
check "the registrar has it (SCTP, $A)" resolves OurEchoPool "PE 0x0000c001 $A:[0-9]* SCTP"
sleep 8  # several keep-alive rounds (2 s interval, 2 s timeout), answered by the library's thread
check "echo-pe is still registered after keep-alive rounds" resolves OurEchoPool "PE 0x0000c001"
check "echo-pe re-registers" grep -q '^re-registered PE 0x0000c001' "$OUT/echo-pe.out"

(echo "hello from rspterminal"; sleep 8) | timeout 90 rspterminal -registrar=$A:3863 \
   -asapannounce=off -poolhandle=OurEchoPool -logquiet > "$OUT/rspterminal.out" 2>&1
check "rsplib 3.4 rspterminal reaches echo-pe and gets the echo" \
   grep -q "\[PE 0x0000c001\] hello from rspterminal" "$OUT/rspterminal.out"

printf 'one\ntwo\nthree\n' | timeout 90 "$EXAMPLES/echo-pu" -registrar=$A:3863 -poolhandle=OurEchoPool \
   > "$OUT/echo-pu-ours.out" 2>&1
check "echo-pu talks to echo-pe over SCTP" grep -q "connected to PE 0x0000c001 at $A:[0-9]* over SCTP" "$OUT/echo-pu-ours.out"
check "echo-pu gets every answer from echo-pe" grep -q "^3 lines sent, 3 answered" "$OUT/echo-pu-ours.out"

# rsplib 3.4's PE, resolved and used by our PU.
rspserver -registrar=$A:3863 -local=$A:0 -asapannounce=off -echo -poolhandle=TheirEchoPool \
   -identifier=0x0000e001 -logquiet > "$OUT/rspserver.out" 2>&1 &
SRV=$!
check "rsplib 3.4 rspserver registers" wait_for 60 resolves TheirEchoPool "PE 0x0000e001"
printf 'hello rspserver\nsecond line\n' | timeout 90 "$EXAMPLES/echo-pu" -registrar=$A:3863 \
   -poolhandle=TheirEchoPool > "$OUT/echo-pu-theirs.out" 2>&1
check "echo-pu resolves rspserver through the registrar (SCTP)" \
   grep -q "connected to PE 0x0000e001 at $A:[0-9]* over SCTP" "$OUT/echo-pu-theirs.out"
check "echo-pu exchanges data with rspserver" grep -q "^> hello rspserver" "$OUT/echo-pu-theirs.out"
check "echo-pu gets both answers" grep -q "^2 lines sent, 2 answered" "$OUT/echo-pu-theirs.out"
kill $SRV; wait $SRV 2>/dev/null

# SIGTERM: the PE deregisters and cleans up.
kill -TERM $PE; wait $PE
rc=$?
check "echo-pe deregisters on SIGTERM" grep -q '^deregistered PE 0x0000c001' "$OUT/echo-pe.out"
check "echo-pe exits 0" test $rc -eq 0
check "the pool is empty afterwards" resolves OurEchoPool "not found"

kill -TERM $REG; wait $REG 2>/dev/null
sleep 2; kill $DUMP; wait $DUMP 2>/dev/null; DUMP=

tshark -r "$OUT/basic-mode.pcapng" -Y asap -T fields -e asap.message_type 2>/dev/null | sort | uniq -c > "$OUT/asap-types.txt"
check "registrations (type 1) on the wire" grep -qE ' 1$' "$OUT/asap-types.txt"
check "keep-alive acks (type 8) on the wire" grep -qE ' 8$' "$OUT/asap-types.txt"
malformed=$(tshark -r "$OUT/basic-mode.pcapng" -Y '_ws.malformed' 2>/dev/null | wc -l)
check "tshark finds no malformed ASAP packet ($malformed)" test "$malformed" -eq 0

echo "sctp-lab basic-mode: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
