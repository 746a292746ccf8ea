#!/bin/bash
# SCTP lab scenario for rspregistrar (run inside the lab VM by `make test-sctp`):
# Debian's rsplib 3.4 programs against OUR registrar over kernel SCTP.
#   - rspserver -echo registers with our registrar; keep-alives flow (seen on the wire)
#   - rspterminal resolves the pool through it and exchanges data with the PE
#   - hsdump (ENRP) is answered
#   - kill -9 of rspserver removes the PE
#   - our own rsptool PE/PU work over SCTP too
# Prints PASS/FAIL lines and a closing "N passed, N failed".
set -u
A=10.255.0.1
BIN=${BIN:-target/release}
OUT=${OUT:-build/sctp-lab}
mkdir -p "$OUT"
. "$(dirname "$0")/lib.sh"
cleanup() { kill $(jobs -p) 2>/dev/null; kill $DUMP 2>/dev/null; }
trap cleanup EXIT

dumpcap -i lo -w "$OUT/registrar.pcapng" -q > "$OUT/dumpcap.log" 2>&1 &
DUMP=$!
sleep 3

"$BIN/rspregistrar" -asap=$A:3863 -enrp=$A:9901 -asapannounce=off -enrpannounce=off -enrpallow=$A \
   -minaddressscope=sitelocal -endpointkeepalivetransmissioninterval=2000 \
   -endpointkeepalivetimeoutinterval=2000 -identifier=0x11111111 -loglevel=5 \
   -logfile="$OUT/registrar.log" > "$OUT/registrar.out" 2>&1 &
REG=$!
check "registrar listens on SCTP" wait_for 30 grep -q "ASAP over SCTP on $A:3863" "$OUT/registrar.out"
grep -q "kernel SCTP and TCP" "$OUT/registrar.out" && pass "transport choice logged: SCTP and TCP" || fail "transport choice logged"

rspserver -registrar=$A:3863 -local=$A:0 -asapannounce=off -echo -poolhandle=EchoPool \
   -identifier=0x0000e001 -logquiet > "$OUT/rspserver.out" 2>&1 &
SRV=$!
check "rsplib 3.4 rspserver registers with our registrar" \
   wait_for 60 grep -q 'registered PE 0x0000e001 in pool "EchoPool"' "$OUT/registrar.log"

timeout 60 hsdump $A:9901 > "$OUT/hsdump.txt" 2>&1
check "hsdump (ENRP) is answered with the PE" grep -q 'e001' "$OUT/hsdump.txt"
check "hsdump does not see the PE's registrar-side port (shown as 1)" \
   grep -q 'regT: *{10.255.0.1} 1/SCTP' "$OUT/hsdump.txt"

(echo "hello from the sctp lab"; sleep 8) | timeout 60 rspterminal -registrar=$A:3863 \
   -asapannounce=off -poolhandle=EchoPool -logquiet > "$OUT/rspterminal.out" 2>&1
check "rspterminal resolves through our registrar and gets the echo" \
   grep -q "hello from the sctp lab" "$OUT/rspterminal.out"

"$BIN/rsptool" resolve -registrar=$A:3863 -poolhandle=EchoPool -transport=sctp > "$OUT/resolve1.out" 2>&1
check "rsptool resolves over SCTP" grep -q "PE 0x0000e001 $A:" "$OUT/resolve1.out"

"$BIN/rsptool" pe -registrar=$A:3863 -poolhandle=ToolPool -identifier=0x7001 -port=7001 \
   -transport=sctp > "$OUT/toolpe.out" 2>&1 &
TOOLPE=$!
check "rsptool PE registers over SCTP" wait_for 30 grep -q "registered PE 0x00007001" "$OUT/toolpe.out"
check "rsptool PE answers keep-alives over SCTP" wait_for 30 grep -q "keep-alive from registrar 0x11111111 answered" "$OUT/toolpe.out"
kill $TOOLPE; wait $TOOLPE 2>/dev/null
check "rsptool PE deregisters over SCTP" grep -q "deregistered PE 0x00007001" "$OUT/toolpe.out"

sleep 3  # a few keep-alive rounds with rspserver
kill -9 $SRV
check "kill -9 of rspserver removes the PE at once" \
   wait_for 10 grep -q 'removed PE 0x0000e001 of pool "EchoPool" at .*: its connection went down' "$OUT/registrar.log"
"$BIN/rsptool" resolve -registrar=$A:3863 -poolhandle=EchoPool -transport=sctp > "$OUT/resolve2.out" 2>&1
check "the pool is empty afterwards" grep -q "not found" "$OUT/resolve2.out"

kill -TERM $REG; wait $REG
check "registrar exits cleanly on SIGTERM" test $? -eq 0
sleep 2; kill $DUMP; wait $DUMP 2>/dev/null; DUMP=

# The wire, as tshark and our own decoder see it.
tshark -r "$OUT/registrar.pcapng" -Y asap -T fields -e asap.message_type 2>/dev/null | sort | uniq -c > "$OUT/asap-types.txt"
check "keep-alives (type 7) flowed" grep -qE ' 7$' "$OUT/asap-types.txt"
check "keep-alive acks (type 8) flowed" grep -qE ' 8$' "$OUT/asap-types.txt"
malformed=$(tshark -r "$OUT/registrar.pcapng" -Y '_ws.malformed' 2>/dev/null | wc -l)
check "tshark finds no malformed ASAP/ENRP packet ($malformed)" test "$malformed" -eq 0
"$BIN/rspdecode" "$OUT/registrar.pcapng" > "$OUT/rspdecode.jsonl" 2> "$OUT/rspdecode.err"
check "rspdecode decodes every captured message" test $? -eq 0

echo "sctp-lab registrar: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
