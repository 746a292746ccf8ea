#!/bin/bash
# SCTP lab scenario for Enhanced Mode (run inside the lab VM by `make test-sctp`): our
# session-echo example (PE and PU, built against the staged install) with Debian's rsplib 3.4.
#   - our Enhanced Mode PE registers over SCTP with rsplib 3.4's rspregistrar
#   - rsplib 3.4's rspterminal reaches it and gets its echo
#   - our PU session reaches rsplib 3.4's rspserver -echo through that registrar
#   - our PU fails over between our two PEs on kill -9, and the new PE gets the cookie echo
# Prints PASS/FAIL lines and a closing "N passed, N failed".
set -u
A=10.255.0.1
STAGE_LIB=${STAGE_LIB:-build/stage/usr/local/lib}
EXAMPLES=${EXAMPLES:-build/examples}
OUT=${OUT:-build/sctp-lab}
mkdir -p "$OUT"
export LD_LIBRARY_PATH=$STAGE_LIB RSPLIB_ANNOUNCE=off RSPLIB_TRANSPORT=sctp
passed=0; failed=0
pass() { passed=$((passed + 1)); echo "PASS $1"; }
fail() { failed=$((failed + 1)); echo "FAIL $1"; }
check() { local what=$1; shift; if "$@"; then pass "$what"; else fail "$what"; fi; }
wait_for() { local n=$(( $1 * 10 )); shift; while [ $n -gt 0 ]; do "$@" && return 0; sleep 0.1; n=$((n - 1)); done; return 1; }
trap 'kill $(jobs -p) 2>/dev/null' EXIT

rspregistrar -asap=$A:3863 -enrp=$A:9901 -asapannounce=off -enrpannounce=off \
   -minaddressscope=sitelocal -logfile="$OUT/em-registrar.log" > /dev/null 2>&1 &
sleep 5
"$EXAMPLES/session-echo" pe -registrar=$A:3863 -poolhandle=SessPool -identifier=0x5001 > "$OUT/em-pe1.out" 2>&1 &
PE1=$!
"$EXAMPLES/session-echo" pe -registrar=$A:3863 -poolhandle=SessPool -identifier=0x5002 > "$OUT/em-pe2.out" 2>&1 &
PE2=$!
check "our Enhanced Mode PEs start over SCTP" wait_for 30 grep -q 'serving pool "SessPool"' "$OUT/em-pe2.out"
sleep 5
(echo "hello from rspterminal"; sleep 8) | timeout 60 rspterminal -registrar=$A:3863 -asapannounce=off \
   -poolhandle=SessPool -logquiet > "$OUT/em-rspterminal.out" 2>&1
check "rsplib 3.4 rspterminal gets our PE's echo" grep -q 'PE 0x0000500[12] #1\] hello from rspterminal' "$OUT/em-rspterminal.out"

rspserver -registrar=$A:3863 -local=$A:0 -asapannounce=off -echo -poolhandle=RsplibEcho -logquiet > "$OUT/em-rspserver.out" 2>&1 &
sleep 10
(echo "to rsplib"; sleep 2) | timeout 60 "$EXAMPLES/session-echo" pu -registrar=$A:3863 -poolhandle=RsplibEcho > "$OUT/em-pu-rsplib.out" 2>&1
check "our PU session reaches rsplib 3.4's rspserver -echo" grep -q '^\[PU\] to rsplib' "$OUT/em-pu-rsplib.out"

(for i in 1 2 3 4 5 6 7 8; do echo "line $i"; sleep 1; done) | timeout 120 "$EXAMPLES/session-echo" pu \
   -registrar=$A:3863 -poolhandle=SessPool > "$OUT/em-pu.out" 2>&1 &
PU=$!
wait_for 30 grep -q '#3\]' "$OUT/em-pu.out"
if grep -q 'PE 0x00005001 #' "$OUT/em-pu.out"; then kill -9 $PE1; NEW="$OUT/em-pe2.out"; else kill -9 $PE2; NEW="$OUT/em-pe1.out"; fi
wait $PU
check "the PU carried on after kill -9 of its PE" grep -q 'line 8' "$OUT/em-pu.out"
check "the new PE received the cookie echo" grep -q 'cookie says' "$NEW"

echo "sctp-lab enhanced-mode: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
