#!/bin/bash
# make bench-supervise (mk/supervise.mk): one release registrar, SUP_PES PEs over
# SUP_CONNECTIONS connections answering keep-alives for SUP_SECONDS; see the .mk for the rest.
# REGISTRAR= runs another registrar binary (before/after comparisons).
set -eu
: "${BIN:?} ${WORK:?}"
per=$(( SUP_PES / SUP_CONNECTIONS ))
if [ "$per" -lt 1 ] || [ $(( per * SUP_CONNECTIONS )) -ne "$SUP_PES" ]; then
  echo "bench-supervise: SUP_PES ($SUP_PES) must be a multiple of SUP_CONNECTIONS ($SUP_CONNECTIONS)" >&2
  exit 1
fi
mkdir -p "$WORK"
log=$WORK/registrar.log
rm -f "$log"
# Each side needs a descriptor per connection.
ulimit -n "$(ulimit -Hn)"
reg_args=(
  -asap=127.0.0.1:$SUP_ASAP_PORT -enrp=127.0.0.1:$SUP_ENRP_PORT
  -asapannounce=off -enrpannounce=off -minaddressscope=loopback
  -endpointkeepalivetransmissioninterval=$SUP_KA_INTERVAL
  -endpointkeepalivetimeoutinterval=$SUP_KA_TIMEOUT
  -maxconnections=$(( SUP_CONNECTIONS + 100 )) -maxconnectionsperhost=-1
  -maxpesperhost=-1 -maxpesperpool=-1
  -logfile="$log"
)
# Only when asked: a REGISTRAR= from before -threads= would refuse it.
if [ "${SUP_REGISTRAR_THREADS:-1}" != 1 ]; then
  reg_args+=(-threads="$SUP_REGISTRAR_THREADS")
fi
echo "=== rspregistrar ${reg_args[*]}"
"${REGISTRAR:-$BIN/rspregistrar}" "${reg_args[@]}" > "$WORK/registrar.out" 2>&1 &
reg=$!
trap 'kill $reg 2>/dev/null || true' EXIT
for _ in $(seq 50); do
  grep -q "Listening: ENRP" "$WORK/registrar.out" 2>/dev/null && break
  sleep 0.1
done
gen_args=(
  bench --registrar 127.0.0.1:$SUP_ASAP_PORT --enrp 127.0.0.1:$SUP_ENRP_PORT
  --poolhandle SupervisePool --pools "$SUP_POOLS"
  --connections "$SUP_CONNECTIONS" --pes-per-connection "$per" --seconds "$SUP_SECONDS"
  --source 127.0.0.2 --source-count "$SUP_SOURCES" --threads "$SUP_THREADS"
  --registrar-pid "$reg"
)
echo "=== rsptool ${gen_args[*]}"
rc=0
"$BIN/rsptool" "${gen_args[@]}" > "$WORK/report.txt" || rc=$?
# What the registrar logged while the generator ran (before its connections closed):
# keep-alive timeouts and expiries are PEs lost by supervision.
timeouts=$(grep -c "did not answer its keep-alive" "$log" || true)
expired=$(grep -c "expired" "$log" || true)
kill "$reg" 2>/dev/null || true
wait "$reg" 2>/dev/null || true
trap - EXIT
echo "=== result ($SUP_PES PEs, $SUP_CONNECTIONS connections, ${SUP_SECONDS} s, keep-alive ${SUP_KA_INTERVAL}/${SUP_KA_TIMEOUT} ms)"
cat "$WORK/report.txt"
echo "registrar log: $timeouts keep-alive timeouts, $expired expiries"
if [ "$rc" -ne 0 ] || [ "$timeouts" -ne 0 ] || [ "$expired" -ne 0 ]; then
  echo "bench-supervise: FAILED (generator exit $rc)"
  exit 1
fi
