#!/bin/bash
# SCTP lab load comparison (run inside the lab VM by `make bench-sctp`; figures, not a test):
# `rsptool bench` over SCTP against Debian's rsplib 3.4 registrar and ours, in the same VM run,
# alternating, with each registrar's CPU time per resolution.
set -u
A=10.255.0.1
BIN=${BIN:-target/release}
OUT=${OUT:-build/sctp-lab}/bench
SECONDS_PER_RUN=${BENCH_SECONDS:-10}
PUS=${BENCH_PUS:-10}
DEPTH=${BENCH_DEPTH:-1}
ROUNDS=${BENCH_ROUNDS:-2}
PU_WAIT=${BENCH_PU_WAIT:-threads}
mkdir -p "$OUT"
cleanup() { kill -9 $(jobs -p) 2>/dev/null; }
trap cleanup EXIT

start() { # ours|rsplib: prints the pid
   if [ "$1" = ours ]; then
      "$BIN/rspregistrar" -asap=$A:3863 -enrp=$A:9901 -asapannounce=off -enrpannounce=off \
         -minaddressscope=sitelocal -loglevel=0 -quiet > /dev/null 2>&1 &
   else
      rspregistrar -asap=$A:3863 -enrp=$A:9901 -asapannounce=off -enrpannounce=off \
         -loglevel=0 > /dev/null 2>&1 &
   fi
   echo $!
}

# What the kernel alone costs a registrar per resolution over SCTP here (one message per call;
# batching calls shares only the kernel entry): benches/kernel-floor/floor.c, built by make.
if [ -x "$BIN/kernel-floor" ]; then
   for i in 1 2; do "$BIN/kernel-floor" sctp $A 5000; done
fi

for round in $(seq 1 "$ROUNDS"); do
   for who in rsplib ours; do
      pid=$(start $who)
      sleep 3
      name=$([ $who = ours ] && echo "our registrar" || echo "rsplib 3.4's registrar")
      echo "=== round $round: $name (pid $pid), $PUS PUs, $DEPTH outstanding each, PUs waiting: $PU_WAIT, $SECONDS_PER_RUN s over SCTP"
      "$BIN/rsptool" bench --registrar=$A:3863 --transport=sctp --poolhandle=BenchPool \
         --pus=$PUS --depth=$DEPTH --pu-wait=$PU_WAIT --pes=3 --seconds=$SECONDS_PER_RUN --registrar-pid=$pid \
         | grep -v '^second'
      kill -9 $pid; wait $pid 2>/dev/null
      sleep 1
   done
done
