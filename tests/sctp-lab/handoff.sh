#!/bin/bash
# SCTP lab scenario for server-initiated handoff (docs/handoff.md), run inside the lab VM by
# `make test-sctp`, with rsplib 3.4's rspregistrar:
#   - two of our PEs (rsptool handoff pe, over SCTP) hand streaming sessions of our PU to each
#     other; every byte numbered and checked
#   - rsplib 3.4's rspterminal is connected to one of our PEs when that PE is drained: the PE
#     sends it a Handoff Request (a message type rsplib does not know). What rspterminal does is
#     recorded; our PE must finish its drain (no hang) and exit, and rspterminal must not be
#     left without service (it fails over to our other PE)
# Prints PASS/FAIL lines and a closing "N passed, N failed".
set -u
A=10.255.0.1
OUT=${OUT:-build/sctp-lab}
BIN=${BIN:-target/release}
mkdir -p "$OUT"
export RSPLIB_ANNOUNCE=off
. "$(dirname "$0")/lib.sh"
trap 'kill $(jobs -p) 2>/dev/null' EXIT

rspregistrar -asap=$A:3863 -enrp=$A:9901 -asapannounce=off -enrpannounce=off \
   -minaddressscope=sitelocal -logfile="$OUT/ho-registrar.log" > /dev/null 2>&1 &
sleep 5

# 1. Our PEs hand our PU's sessions to each other over SCTP.
for i in 1 2; do
   sleep 600 | "$BIN/rsptool" handoff pe --registrar=$A:3863 --transport=sctp --identifier=$((0x6000 + i)) \
      --handoff-every=2 > "$OUT/ho-pe$i.out" 2>&1 &
done
wait_for 30 grep -q 'ready id=00006002' "$OUT/ho-pe2.out"
two_registered() { [ "$("$BIN/rsptool" resolve --registrar=$A:3863 --transport=sctp --poolhandle=$1 2>/dev/null | grep -c '^PE ')" -ge 2 ]; }
check "our handoff PEs registered over SCTP with rsplib 3.4's registrar" wait_for 30 two_registered HandoffPool
sleep 2
timeout 120 "$BIN/rsptool" handoff pu --registrar=$A:3863 --transport=sctp --sessions=2 --messages=200 \
   > "$OUT/ho-pu.out" 2>&1
PU_RC=$?
cat "$OUT/ho-pu.out"
check "our PU's SCTP sessions were handed off between our PEs, every byte in order" \
   sh -c "[ $PU_RC = 0 ] && grep -q 'failed=0' '$OUT/ho-pu.out' && ! grep -q 'handoffs=0 ' '$OUT/ho-pu.out'"

# 2. rsplib 3.4's rspterminal on a PE of ours that is drained.
declare -A PID
FIFOS=$(mktemp -d)   # (the shared directory takes no fifos)
for i in 1 2; do
   mkfifo "$FIFOS/term$i"
   exec {fd}<>"$FIFOS/term$i"
   FD[$i]=$fd
   "$BIN/rsptool" handoff pe --registrar=$A:3863 --transport=sctp --poolhandle=TermPool \
      --identifier=$((0x6100 + i)) --no-check < "$FIFOS/term$i" > "$OUT/ho-term-pe$i.out" 2>&1 &
   PID[$i]=$!
done
wait_for 30 grep -q 'ready id=00006102' "$OUT/ho-term-pe2.out"
wait_for 30 two_registered TermPool
(for i in $(seq 1 30); do echo "line $i"; sleep 1; done) | \
   timeout 60 rspterminal -registrar=$A:3863 -asapannounce=off -poolhandle=TermPool \
   > "$OUT/ho-rspterminal.out" 2>&1 &
TERM_PID=$!
sleep 4
donor=""
for i in 1 2; do
   echo stats >&"${FD[$i]}"
done
sleep 1
for i in 1 2; do
   grep -q 'sessions=1' "$OUT/ho-term-pe$i.out" && donor=$i
done
if [ -n "$donor" ]; then
   echo "rspterminal is on PE 0x610$donor: draining it"
   echo drain >&"${FD[$donor]}"
   check "our drained PE finished its drain and exited (no hang)" wait_for 30 sh -c "! kill -0 ${PID[$donor]} 2>/dev/null"
   grep 'drain ' "$OUT/ho-term-pe$donor.out"
   check "the drain reported its result" grep -q 'drain handed_off=' "$OUT/ho-term-pe$donor.out"
   other=$((3 - donor))
   sleep 3
   echo stats >&"${FD[$other]}"
   sleep 1
   check "rspterminal went on at our other PE" grep -q 'sessions=1' "$OUT/ho-term-pe$other.out"
   wait $TERM_PID
   TERM_RC=$?
   echo "rspterminal exit code $TERM_RC; its output (lines mentioning the handoff, errors or a failover; then the last lines):"
   grep -i -a 'handoff\|unknown\|failover\|error\|invalid' "$OUT/ho-rspterminal.out" | head -20
   tail -5 "$OUT/ho-rspterminal.out" | cat -v
   check "rspterminal did not crash (exit code 0, or timeout's 124)" sh -c "[ $TERM_RC = 0 ] || [ $TERM_RC = 124 ]"
else
   fail "rspterminal reached neither of our PEs"
   cat "$OUT/ho-rspterminal.out"
fi

echo "sctp-lab handoff: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
