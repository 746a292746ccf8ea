# Shared by the demos (sourced, bash): DEMO names the demo in its lines, OUT is its directory,
# REGISTRAR our rspregistrar. Children started by a demo go into `pids`; they are stopped when
# the demo exits.
say() { printf '[%s] %s\n' "$DEMO" "$*"; }
prefix() { while IFS= read -r l; do printf '[%s] %s\n' "$1" "$l"; done; }
pids=()
cleanup() {
   for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
   wait 2>/dev/null
}
trap cleanup EXIT
trap 'exit 130' INT TERM
wait_for() { # tenths of a second, command...
   local n=$1; shift
   while [ "$n" -gt 0 ]; do "$@" && return 0; sleep 0.1; n=$((n - 1)); done; return 1
}

# start_registrar LOGLEVEL [shown]: our registrar on loopback TCP, any free port, announces
# off, its log in $OUT/registrar.log (with "shown" also on the terminal, prefixed); sets PORT,
# exits the demo if it does not come up.
start_registrar() {
   say "starting our registrar: TCP on 127.0.0.1, any free port, announces off"
   local args=(-asap=127.0.0.1:0 -enrp=127.0.0.1:0 -asapannounce=off -enrpannounce=off
               -transport=tcp -minaddressscope=loopback -endpointkeepalivetransmissioninterval=2000
               -loglevel="$1")
   if [ "${2:-}" = shown ]; then
      "$REGISTRAR" "${args[@]}" > >(tee "$OUT/registrar.log" | prefix registrar) 2>&1 &
   else
      "$REGISTRAR" "${args[@]}" > "$OUT/registrar.log" 2>&1 &
   fi
   pids+=($!)
   if ! wait_for 100 grep -qs 'Listening: ASAP over TCP on 127.0.0.1:' "$OUT/registrar.log"; then
      say "FAILED: the registrar did not come up"
      [ "${2:-}" = shown ] || cat "$OUT/registrar.log"
      exit 1
   fi
   PORT=$(sed -n 's/.*Listening: ASAP over TCP on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$OUT/registrar.log" | head -n 1)
   say "registrar is at 127.0.0.1:$PORT"
}
