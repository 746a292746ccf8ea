#!/bin/bash
# The fractal part of `make demo`, all on loopback (no multicast, no traffic leaves the machine):
#   our registrar (TCP), three fractal-pe pool elements (PE 0x00000f01, 0x00000f02, 0x00000f03)
#   in pool "FractalPool", one fractal-pu asking for a picture of the Mandelbrot set, computed
#   row by row. When about a third of the rows are there, the PE serving the PU is drained
#   (SIGUSR1: rspPoolElementDrain() hands the session to another PE, which goes on from the
#   donor's last cookie); at about two thirds the PE now serving is killed with kill -9 (the PU
#   fails over to the third PE, which goes on from the last cookie). The PU writes a PNG in which
#   every row is tinted by the PE that computed it: three bands, red, green and blue.
# Uses the staged install (registrar, library) and the examples built against it with
# pkg-config (`make examples`). Exit code 0 iff the PNG exists, three distinct PEs computed its
# rows and the drained PE exited 0.
# Environment: WIDTH, HEIGHT, ITERATIONS, DELAY (µs per row), VALGRIND (a command prefix for
# the PU and the PEs, e.g. "valgrind -q --error-exitcode=99 --leak-check=full"); REGISTRAR and
# LIBDIR (default: under STAGE).
set -u
STAGE=${STAGE:-build/stage}
STAGE_PREFIX=${STAGE_PREFIX:-/usr/local}
EXAMPLES=${EXAMPLES:-build/examples}
OUT=${OUT:-build/demo/fractal}
WIDTH=${WIDTH:-480}
HEIGHT=${HEIGHT:-360}
ITERATIONS=${ITERATIONS:-512}
DELAY=${DELAY:-25000}
VALGRIND=${VALGRIND:-}
REGISTRAR=${REGISTRAR:-$STAGE$STAGE_PREFIX/bin/rspregistrar}
LIBDIR=${LIBDIR:-$STAGE$STAGE_PREFIX/lib}
export LD_LIBRARY_PATH=$LIBDIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
# Only the static registrar: never join the announce groups (nothing leaves loopback).
export RSPLIB_ANNOUNCE=off

for f in "$REGISTRAR" "$EXAMPLES/fractal-pe" "$EXAMPLES/fractal-pu"; do
   [ -x "$f" ] || { echo "fractal-demo: $f is missing (run: make examples)"; exit 1; }
done
rm -rf "$OUT"; mkdir -p "$OUT"
PNG=$(cd "$OUT" && pwd)/fractal.png

DEMO=fractal-demo
. "$(dirname "$0")/demo-lib.sh"
# The PU's latest progress: rows received so far, and the PE serving it (1, 2 or 3).
rows_done() { sed -n 's|^\[PU\] \([0-9]*\)/[0-9]* rows.*|\1|p' "$OUT/pu.log" 2>/dev/null | tail -n 1; }
serving() { sed -n 's|^\[PU\] row [0-9]*: served by PE 0x00000f0\([123]\).*|\1|p' "$OUT/pu.log" 2>/dev/null | tail -n 1; }
rows_at_least() { local r; r=$(rows_done); [ "${r:-0}" -ge "$1" ]; }
served_by_other_than() { local s; s=$(serving); [ -n "$s" ] && [ "$s" != "$1" ]; }

start_registrar 3

declare -A pe_pid
for n in 1 2 3; do
   $VALGRIND "$EXAMPLES/fractal-pe" -registrar=127.0.0.1:$PORT -poolhandle=FractalPool \
      -identifier=0x00000f0$n -delay="$DELAY" > >(tee "$OUT/pe$n.log" | prefix pe$n) 2>&1 &
   pe_pid[$n]=$!
   pids+=($!)
done
for n in 1 2 3; do
   if ! wait_for 300 grep -qs 'serving pool' "$OUT/pe$n.log"; then
      say "FAILED: pe$n did not start"; exit 1
   fi
done
DRAIN=1
grep -q 'drain on SIGUSR1: yes' "$OUT/pe1.log" || DRAIN=0
[ "$DRAIN" = 1 ] || say "NOTE: this library has no rspPoolElementDrain(): the first PE is killed instead of drained"

say "starting the PU: a ${WIDTH}x${HEIGHT} picture, $ITERATIONS iterations, $DELAY us per row at the PE"
$VALGRIND "$EXAMPLES/fractal-pu" -registrar=127.0.0.1:$PORT -poolhandle=FractalPool -output="$PNG" \
   -width="$WIDTH" -height="$HEIGHT" -maxiterations="$ITERATIONS" \
   > >(tee "$OUT/pu.log" | prefix pu) 2>&1 &
PU=$!
pids+=($PU)
# Generous bounds: the whole picture takes HEIGHT * DELAY µs of computation.
LIMIT=$(( (HEIGHT * DELAY / 100000) + 300 ))   # tenths of a second

# 1. A third of the rows: drain the serving PE (its session moves by handoff).
wait_for "$LIMIT" rows_at_least $((HEIGHT / 3)) || { say "FAILED: the PU got no third of the rows"; exit 1; }
first=$(serving)
if [ -z "$first" ]; then say "FAILED: the PU names no serving PE"; exit 1; fi
if [ "$DRAIN" = 1 ]; then
   say "$(rows_done) of $HEIGHT rows: draining pe$first (PE 0x00000f0$first, kill -USR1), which serves the PU"
   kill -USR1 "${pe_pid[$first]}"
else
   say "$(rows_done) of $HEIGHT rows: kill -9 pe$first (PE 0x00000f0$first), which serves the PU"
   disown "${pe_pid[$first]}"; kill -9 "${pe_pid[$first]}"
fi
wait_for 150 served_by_other_than "$first" || { say "FAILED: no other PE took the session over"; exit 1; }
second=$(serving)
say "the session moved from pe$first to pe$second"

# 2. Two thirds: kill -9 the PE now serving (the PU fails over to the third).
wait_for "$LIMIT" rows_at_least $((2 * HEIGHT / 3)) || { say "FAILED: the PU got no two thirds of the rows"; exit 1; }
second=$(serving)
say "$(rows_done) of $HEIGHT rows: kill -9 pe$second (PE 0x00000f0$second), which serves the PU now"
disown "${pe_pid[$second]}"; kill -9 "${pe_pid[$second]}"

wait_for "$LIMIT" eval '! kill -0 "$PU" 2>/dev/null'
if kill -0 "$PU" 2>/dev/null; then say "FAILED: the PU did not finish"; exit 1; fi
wait "$PU"
PU_RC=$?
ok=1
if [ "$DRAIN" = 1 ]; then
   wait_for 150 eval '! kill -0 "${pe_pid[$first]}" 2>/dev/null'
   wait "${pe_pid[$first]}" 2>/dev/null
   DRAIN_RC=$?
fi
sleep 0.3   # let the prefixers print the last lines

third=$((6 - first - second))
kill -TERM "${pe_pid[$third]}" 2>/dev/null
wait_for 100 eval '! kill -0 "${pe_pid[$third]}" 2>/dev/null'
wait "${pe_pid[$third]}" 2>/dev/null
THIRD_RC=$?
kill -TERM "${pids[0]}" 2>/dev/null
wait "${pids[0]}" 2>/dev/null

pes=$(sed -n 's|^\[PU\] \([0-9]*\) PE(s) computed the picture.*|\1|p' "$OUT/pu.log")
say "PU exit code $PU_RC; PEs in the picture: ${pes:-none}"
if [ "$PU_RC" -ne 0 ] || [ ! -s "$PNG" ] || [ "$(head -c 8 "$PNG" | od -An -tx1 | tr -d ' \n')" != 89504e470d0a1a0a ]; then
   say "FAILED: no picture"; ok=0
elif [ "${pes:-0}" -ne 3 ]; then
   say "FAILED: ${pes:-no} distinct PEs computed the picture, not 3"; ok=0
fi
if [ "$DRAIN" = 1 ]; then
   if [ "$DRAIN_RC" -ne 0 ]; then
      say "FAILED: the drained pe$first exited with $DRAIN_RC"; ok=0
   elif ! grep -q 'session handed off' "$OUT/pe$first.log"; then
      say "FAILED: pe$first did not hand its session off"; ok=0
   elif ! grep -q 'cookie echo, resuming' "$OUT/pe$second.log"; then
      say "FAILED: pe$second did not resume the session from the donor's cookie"; ok=0
   else
      say "OK: pe$first was drained (exit 0) and handed the session to pe$second"
   fi
fi
if [ "$THIRD_RC" -ne 0 ]; then
   say "FAILED: pe$third exited with $THIRD_RC on SIGTERM"; ok=0
fi
if grep -q 'cookie echo, resuming' "$OUT/pe$third.log"; then
   say "OK: after pe$second was killed the PU failed over to pe$third, which resumed from the cookie"
else
   say "FAILED: pe$third did not resume the session"; ok=0
fi
say "the picture: $PNG"
[ "$ok" -eq 1 ] && { say "OK"; exit 0; }
exit 1
