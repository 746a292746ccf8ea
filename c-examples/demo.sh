#!/bin/bash
# The demo of `make demo`, all on loopback (no multicast, no traffic leaves the machine):
#   our registrar (TCP), two echo-pe pool elements in pool "EchoPool", one echo-pu fed a line
#   every ~300 ms. Half way the PE that is serving the PU is killed with kill -9; the PU reports
#   it, resolves the pool again and carries on with the other PE.
# Uses the staged install (registrar, library) and the examples built against it with
# pkg-config (`make examples`). Exit code 0 iff the PU got answers from the surviving PE after
# the kill and every line was answered.
set -u
STAGE=${STAGE:-build/stage}
STAGE_PREFIX=${STAGE_PREFIX:-/usr/local}
EXAMPLES=${EXAMPLES:-build/examples}
OUT=${OUT:-build/demo}
LINES=${LINES:-20}
KILL_AT=${KILL_AT:-10}
REGISTRAR=$STAGE$STAGE_PREFIX/bin/rspregistrar
export LD_LIBRARY_PATH=$STAGE$STAGE_PREFIX/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
# Only the static registrar: never join the announce groups (nothing leaves loopback).
export RSPLIB_ANNOUNCE=off

for f in "$REGISTRAR" "$EXAMPLES/echo-pe" "$EXAMPLES/echo-pu"; do
   [ -x "$f" ] || { echo "demo: $f is missing (run: make examples)"; exit 1; }
done
rm -rf "$OUT"; mkdir -p "$OUT"

DEMO=demo
. "$(dirname "$0")/demo-lib.sh"
start_registrar 4 shown

declare -A pe_pid
for n in 1 2; do
   id=0x0000100$n
   say "starting pe$n (PE $id)"
   "$EXAMPLES/echo-pe" -registrar=127.0.0.1:$PORT -poolhandle=EchoPool -identifier=$id \
      -reregister=3000 > >(tee "$OUT/pe$n.log" | prefix pe$n) 2>&1 &
   pe_pid[$n]=$!
   pids+=($!)
   disown $!   # one of them dies of kill -9: no job report from bash for it
done
for n in 1 2; do
   if ! wait_for 100 grep -qs '^registered PE' "$OUT/pe$n.log"; then
      say "FAILED: pe$n did not register"; exit 1
   fi
done

say "starting the PU: $LINES lines, one every ~300 ms; pe serving it gets kill -9 after line $KILL_AT"
feed() {
   local i
   for i in $(seq 1 "$LINES"); do
      echo "hello $i"
      sleep 0.3
      if [ "$i" -eq "$KILL_AT" ]; then
         # Kill the PE that answered the latest line.
         sleep 0.2
         local last n
         last=$(grep -o '^> \[PE 0x0000100[12]\]' "$OUT/pu.log" | tail -n 1 | grep -o '[12]\]$' | tr -d ']')
         n=${last:-1}
         echo "$n" > "$OUT/killed"
         printf '[demo] kill -9 pe%s (PE 0x0000100%s), which is serving the PU\n' "$n" "$n" >&2
         kill -9 "${pe_pid[$n]}"
         echo "$(grep -c '^> ' "$OUT/pu.log")" > "$OUT/answers-before-kill"
      fi
   done
}
feed | "$EXAMPLES/echo-pu" -registrar=127.0.0.1:$PORT -poolhandle=EchoPool \
   > >(tee "$OUT/pu.log" | prefix pu) 2>&1
PU_RC=$?
sleep 0.3   # let the prefixers print the last lines

killed=$(cat "$OUT/killed" 2>/dev/null || echo "?")
survivor=$((3 - ${killed:-1}))
before=$(cat "$OUT/answers-before-kill" 2>/dev/null || echo 0)
total=$(grep -c '^> ' "$OUT/pu.log")
after=$((total - before))
by_survivor=$(sed -n "$((before + 1)),\$p" <(grep '^> ' "$OUT/pu.log") | grep -c "PE 0x0000100$survivor")
say "answers: $total of $LINES lines; $after after the kill, $by_survivor of them from pe$survivor"

say "stopping pe$survivor (SIGTERM: it deregisters)"
kill -TERM "${pe_pid[$survivor]}" 2>/dev/null
wait_for 50 eval '! kill -0 "${pe_pid[$survivor]}" 2>/dev/null'

ok=1
if [ "$PU_RC" -eq 0 ] && [ "$total" -eq "$LINES" ] && [ "$after" -gt 0 ] && [ "$by_survivor" -eq "$after" ]; then
   say "OK: the PU carried on with pe$survivor after pe$killed was killed"
else
   say "FAILED: PU exit code $PU_RC, $total of $LINES answered, $after after the kill ($by_survivor from pe$survivor)"
   ok=0
fi

# Part 2: a pool element written like the old rsplib demos (own socket by bindplus, classic
# logging options, Ctrl-C by the break detector), reached by the same PU program.
if [ -x "$EXAMPLES/classic-echo-pe" ]; then
   say "part 2: classic-echo-pe (old-demo style) in pool ClassicPool"
   RSPLIB_REGISTRAR=127.0.0.1:$PORT "$EXAMPLES/classic-echo-pe" -poolhandle=ClassicPool \
      -local=127.0.0.1:0 -protocol=tcp -loglevel=3 > >(tee "$OUT/classic.log" | prefix classic-pe) 2>&1 &
   cpid=$!
   pids+=($cpid)
   sleep 1
   printf 'hello classic\n' | "$EXAMPLES/echo-pu" -registrar=127.0.0.1:$PORT -poolhandle=ClassicPool \
      > >(tee "$OUT/classic-pu.log" | prefix pu) 2>&1
   sleep 0.3
   kill -INT "$cpid" 2>/dev/null   # Ctrl-C: the break detector, then deregistration
   wait_for 50 eval '! kill -0 "$cpid" 2>/dev/null'
   if grep -q 'hello classic' "$OUT/classic-pu.log"; then
      say "OK: the old-demo style PE answered and stopped on Ctrl-C"
   else
      say "FAILED: no answer from classic-echo-pe"; ok=0
   fi
fi

# Part 3: Enhanced Mode sessions: two session-echo PEs, a PU session; the serving PE is killed,
# the library fails over and echoes the PE's cookie to the new PE, which resumes its count.
if [ -x "$EXAMPLES/session-echo" ]; then
   say "part 3: Enhanced Mode sessions (session-echo), cookie and failover"
   declare -A spid
   for n in 1 2; do
      "$EXAMPLES/session-echo" pe -registrar=127.0.0.1:$PORT -poolhandle=SessionPool -identifier=0x0000200$n \
         > >(tee "$OUT/spe$n.log" | prefix session-pe$n) 2>&1 &
      spid[$n]=$!; pids+=($!); disown $!
   done
   sleep 1
   sfeed() {
      local i
      for i in 1 2 3 4 5 6; do
         echo "message $i"; sleep 0.4
         if [ "$i" -eq 3 ]; then
            local n
            n=$(grep -o 'PE 0x0000200[12] #' "$OUT/session-pu.log" | tail -n 1 | cut -c 13)
            n=${n:-1}
            echo "$n" > "$OUT/skilled"
            printf '[demo] kill -9 session-pe%s, which serves the session\n' "$n" >&2
            kill -9 "${spid[$n]}"
         fi
      done
   }
   sfeed | "$EXAMPLES/session-echo" pu -registrar=127.0.0.1:$PORT -poolhandle=SessionPool \
      > >(tee "$OUT/session-pu.log" | prefix session-pu) 2>&1
   sleep 0.3
   skilled=$(cat "$OUT/skilled" 2>/dev/null || echo 1)
   sother=$((3 - skilled))
   kill -TERM "${spid[$sother]}" 2>/dev/null
   if grep -q 'message 6' "$OUT/session-pu.log" && grep -q 'cookie says 3' "$OUT/spe$sother.log"; then
      say "OK: the session failed over to session-pe$sother, which resumed from the cookie"
   else
      say "FAILED: the session did not fail over with its cookie"; ok=0
   fi
fi

# Part 4: a C++ pool element in the classic style (cppthread-pe: a TDThread per session, built
# with pkg-config rsplib cppthread), its sessions over TCP, reached by session-echo's pool user.
if [ -x "$EXAMPLES/cppthread-pe" ] && [ -x "$EXAMPLES/session-echo" ]; then
   say "part 4: cppthread-pe (C++, libcppthread: one TDThread per session) over TCP"
   "$EXAMPLES/cppthread-pe" -registrar=127.0.0.1:$PORT -poolhandle=CppThreadPool -tcp \
      > >(tee "$OUT/cppthread-pe.log" | prefix cppthread-pe) 2>&1 &
   tpid=$!
   pids+=($tpid)
   wait_for 100 grep -qs 'serving pool' "$OUT/cppthread-pe.log"
   printf 'hello thread\nhello again\n' | "$EXAMPLES/session-echo" pu -registrar=127.0.0.1:$PORT \
      -poolhandle=CppThreadPool > >(tee "$OUT/cppthread-pu.log" | prefix session-pu) 2>&1
   sleep 0.3
   kill -INT "$tpid" 2>/dev/null   # Ctrl-C: sessions closed, threads joined, PE deregistered
   wait_for 50 eval '! kill -0 "$tpid" 2>/dev/null'
   if grep -q 'session 1 #2\] hello again' "$OUT/cppthread-pu.log" && \
      grep -q 'served 2 request(s) in 1 session(s)' "$OUT/cppthread-pe.log"; then
      say "OK: the C++ PE served the session in its own thread and stopped on Ctrl-C"
   else
      say "FAILED: no answers from cppthread-pe"; ok=0
   fi
fi

say "stopping the registrar"
kill -TERM "${pids[0]}" 2>/dev/null
wait "${pids[0]}" 2>/dev/null
sleep 0.2
[ "$ok" -eq 1 ] && { say "all parts OK"; exit 0; }
exit 1
