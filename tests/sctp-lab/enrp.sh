#!/bin/bash
# SCTP lab scenario for ENRP (run inside the lab VM by `make test-sctp`): our registrars and
# Debian's rsplib 3.4 rspregistrar as one set of three, over kernel SCTP.
#   A: two of ours + one rsplib. PEs at ours (rsptool) and at rsplib's (rspserver) are
#      resolvable everywhere; hsdump against each shows the same handlespace checksum;
#      kill -9 of the rsplib registrar -> exactly one of ours takes over.
#   B: one of ours + two rsplib. kill -9 of ours -> one rsplib registrar takes over its PE.
#   C: ours rejoins the two rsplib registrars (mentor fetch); kill -9 of one rsplib registrar
#      -> exactly one of the survivors (ours or rsplib's) takes over, the other acknowledges.
# Prints PASS/FAIL lines and a closing "N passed, N failed".
set -u
A=10.255.0.1
BIN=${BIN:-target/release}
OUT=${OUT:-build/sctp-lab}/enrp
mkdir -p "$OUT"
. "$(dirname "$0")/lib.sh"
cleanup() { kill -9 $(jobs -p) 2>/dev/null; }
trap cleanup EXIT

FAST="-peerheartbeatcycle=1000 -peermaxtimelastheard=2000 -peermaxtimenoresponse=1000 -takeoverexpiryinterval=3000"
# rsplib's defaults: a taken-over PE that cannot reach a survivor (rspserver in A knows only
# the registrar that dies) stays for interval + timeout = 10 s, the window A's checks run in.
KA="-endpointkeepalivetransmissioninterval=5000 -endpointkeepalivetimeoutinterval=5000"
COMMON="-asapannounce=off -enrpannounce=off -minaddressscope=sitelocal $FAST $KA"

# ours N ID: our registrar on ASAP 386N / ENRP 991N, peers 9911..9913 except itself.
ours() {
   local n=$1 id=$2 peers=""
   for p in 1 2 3; do [ $p != $n ] && peers="$peers -peer=$A:991$p"; done
   "$BIN/rspregistrar" -asap=$A:386$n -enrp=$A:991$n $COMMON $peers -enrpallow=$A \
      -identifier=$id -loglevel=5 -logfile="$OUT/$3.log" > "$OUT/$3.out" 2>&1 &
}
theirs() {
   local n=$1 id=$2 peers=""
   for p in 1 2 3; do [ $p != $n ] && peers="$peers -peer=$A:991$p"; done
   rspregistrar -asap=$A:386$n -enrp=$A:991$n $COMMON ${THEIRS_EXTRA:-} $peers -identifier=$id \
      -loglevel=3 > "$OUT/$3.out" 2>&1 &
}
# dump N: hsdump of registrar N's handlespace checksum line.
checksum() { timeout 20 hsdump $A:991$1 2>/dev/null | grep -o 'Handlespace=\$[0-9a-f]*' | head -1; }
same_checksum() {
   local c1 c2 c3
   c1=$(checksum 1); c2=$(checksum 2); c3=$(checksum 3)
   [ -n "$c1" ] && [ "$c1" = "$c2" ] && [ "$c2" = "$c3" ]
}
resolves() { # registrar N, PE id pattern
   "$BIN/rsptool" resolve -registrar=$A:386$1 -poolhandle=$3 -items=20 -transport=sctp 2>/dev/null \
      | grep -q "PE 0x$2"
}
home_of() { # registrar N, PE id (8 hex digits): the home registrar hsdump shows
   timeout 20 hsdump $A:991$1 2>/dev/null | grep -A1 "\$$2 " | grep -o 'home=\$[0-9a-f]*' | head -1
}

# ---------------------------------------------------------------- A: ours, ours, rsplib
echo "--- A: two of ours (0x101, 0x102) and rsplib's (0x103)"
ours 1 0x101 a-ours1; R1=$!
ours 2 0x102 a-ours2; R2=$!
theirs 3 0x103 a-rsplib3; R3=$!
check "A: our registrars see both peers" \
   wait_for 30 sh -c "grep -q 'peer 0x00000103' $OUT/a-ours1.log && grep -q 'peer 0x00000102' $OUT/a-ours1.log"
# Our rsptool PE registers a TCP user transport, rspserver an SCTP one: separate pools.
"$BIN/rsptool" pe -registrar=$A:3861 -poolhandle=ToolPool -identifier=0x7001 -port=7001 \
   -transport=sctp > "$OUT/a-toolpe.out" 2>&1 &
rspserver -registrar=$A:3863 -local=$A:0 -asapannounce=off -echo -poolhandle=MixPool \
   -identifier=0x0000e003 -logquiet > "$OUT/a-rspserver.out" 2>&1 &
SRV=$!
for n in 1 2 3; do
   check "A: registrar $n resolves our PE" wait_for 30 resolves $n 00007001 ToolPool
   check "A: registrar $n resolves rspserver's PE" wait_for 30 resolves $n 0000e003 MixPool
done
check "A: hsdump shows the same handlespace checksum at all three" wait_for 20 same_checksum
kill -9 $R3
check "A: exactly one of ours takes over rsplib's registrar" \
   wait_for 30 sh -c "[ \$(cat $OUT/a-ours1.log $OUT/a-ours2.log | grep -c 'took over registrar 0x00000103') -eq 1 ]"
# rspserver knows no survivor, so its PE lives on only for the taker's grace (10 s): look at
# once, both survivors at the same time.
home_of 1 0000e003 > "$OUT/a-home1" & H1=$!
home_of 2 0000e003 > "$OUT/a-home2" & H2=$!
wait $H1 $H2
h1=$(cat "$OUT/a-home1"); h2=$(cat "$OUT/a-home2")
check "A: both survivors name the same new home for it ($h1 $h2)" \
   sh -c "[ -n '$h1' ] && [ '$h1' = '$h2' ] && [ '$h1' != 'home=\$00000103' ]"
check "A: rspserver's PE stays resolvable at a survivor after the takeover" resolves 1 0000e003 MixPool
sleep 2
check "A: still exactly one takeover" \
   sh -c "[ \$(cat $OUT/a-ours1.log $OUT/a-ours2.log | grep -c 'took over registrar 0x00000103') -eq 1 ]"
kill -9 $R1 $R2 $SRV 2>/dev/null; wait 2>/dev/null
sleep 1

# ---------------------------------------------------------------- B: ours, rsplib, rsplib
echo "--- B: ours (0x201) and rsplib's (0x202, 0x203)"
ours 1 0x201 b-ours1; R1=$!
# The rsplib taker sends our tool PE a keep-alive it cannot receive (the PE knows only the dead
# registrar) and drops it when the keep-alive timeout ends: 30 s instead of 5 s here, so the
# taken-over PE is still there to be looked at in a slow VM.
THEIRS_EXTRA=-endpointkeepalivetimeoutinterval=30000
theirs 2 0x202 b-rsplib2; R2=$!
theirs 3 0x203 b-rsplib3; R3=$!
THEIRS_EXTRA=
sleep 5
"$BIN/rsptool" pe -registrar=$A:3861 -poolhandle=ToolPool -identifier=0x7002 -port=7002 \
   -transport=sctp > "$OUT/b-toolpe.out" 2>&1 &
TOOLPE=$!
rspserver -registrar=$A:3862 -local=$A:0 -asapannounce=off -echo -poolhandle=MixPool \
   -identifier=0x0000e002 -logquiet > "$OUT/b-rspserver.out" 2>&1 &
for n in 1 2 3; do
   check "B: registrar $n resolves our PE" wait_for 30 resolves $n 00007002 ToolPool
   check "B: registrar $n resolves rspserver's PE" wait_for 30 resolves $n 0000e002 MixPool
done
check "B: hsdump shows the same handlespace checksum at all three" wait_for 20 same_checksum
check "B: rsplib's registrars hold our PE with our id as home" \
   sh -c "[ '$(home_of 2 00007002)' = 'home=\$00000201' ]"
# rsplib keeps every hsdump run in its peer list for a few seconds and waits for its
# acknowledgement in a takeover: let those entries expire, and use no hsdump until done.
sleep 8
kill -9 $R1
completed() { cat "$OUT/b-rsplib2.out" "$OUT/b-rsplib3.out" | grep -c 'Takeover of peer .00000201 completed'; }
check "B: an rsplib registrar completes the takeover of ours" wait_for 30 sh -c "[ \$(cat $OUT/b-rsplib2.out $OUT/b-rsplib3.out | grep -c 'Takeover of peer .00000201 completed') -ge 1 ]"
# Both survivors at the same time (one after the other, the second look once came after the
# taker had dropped the PE).
home_of 2 00007002 > "$OUT/b-home2" & H2=$!
home_of 3 00007002 > "$OUT/b-home3" & H3=$!
wait $H2 $H3
h2=$(cat "$OUT/b-home2"); h3=$(cat "$OUT/b-home3")
check "B: exactly one did ($(completed)), and both name the same new home ($h2 $h3)" \
   sh -c "[ $(completed) -eq 1 ] && [ -n '$h2' ] && [ '$h2' = '$h3' ] && [ '$h2' != 'home=\$00000201' ]"

# ---------------------------------------------------------------- C: ours rejoins rsplib's two
echo "--- C: ours (0x204) joins rsplib's 0x202 and 0x203; 0x203 dies: one survivor takes over"
ours 1 0x204 c-ours1; R1=$!
check "C: ours sees both rsplib registrars" \
   wait_for 30 sh -c "grep -q 'peer 0x00000202' $OUT/c-ours1.log && grep -q 'peer 0x00000203' $OUT/c-ours1.log"
check "C: ours fetched the handle table from an rsplib mentor" \
   wait_for 30 grep -q "handle table from mentor" "$OUT/c-ours1.log"
check "C: ours resolves rspserver's PE (registered at rsplib's)" wait_for 30 resolves 1 0000e002 MixPool
sleep 8
kill -9 $R3
# Whoever finds the death first takes over and the other acknowledges (if both start at once,
# the lower id, rsplib's, wins): exactly one takeover, by either.
taken() {
   local t=0
   grep -q 'took over registrar 0x00000203' "$OUT/c-ours1.log" && t=$((t + 1))
   grep -q 'Takeover of peer .00000203 completed' "$OUT/b-rsplib2.out" && t=$((t + 1))
   echo $t
}
check "C: the death of rsplib's 0x203 is taken over" wait_for 30 sh -c \
   "grep -q 'took over registrar 0x00000203' $OUT/c-ours1.log || grep -q 'Takeover of peer .00000203 completed' $OUT/b-rsplib2.out"
sleep 3
who=$(grep -q 'took over registrar 0x00000203' "$OUT/c-ours1.log" && echo ours || echo "rsplib's 0x202")
check "C: exactly one takeover ($(taken)), by $who; ours knows who took over" \
   sh -c "[ $(taken) -eq 1 ] && grep -q 'took over registrar 0x00000203\|0x00000202 took over 0x00000203' $OUT/c-ours1.log"

echo "sctp-lab enrp: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
