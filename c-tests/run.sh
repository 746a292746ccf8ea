#!/bin/sh
# C tests: compile the installed headers in every language mode, build the test programs with
# `pkg-config --cflags --libs rsplib` against the staged install, run them under valgrind.
# Environment (set by `make c-tests`): PKG_CONFIG_PATH/PKG_CONFIG_SYSROOT_DIR pointing at the
# staged install, STAGE_LIB (its lib directory), BUILD (scratch directory).
set -u
BUILD=${BUILD:-build/c-tests}
SRC=$(dirname "$0")
mkdir -p "$BUILD"
CC=${CC:-cc}
CXX=${CXX:-c++}

if ! pkg-config --exists rsplib; then
   echo "c-tests: pkg-config finds no rsplib (PKG_CONFIG_PATH=${PKG_CONFIG_PATH:-})"; exit 1
fi
CFLAGS_PC=$(pkg-config --cflags rsplib)
LIBS_PC=$(pkg-config --libs rsplib)
EXAMPLES_SRC=$SRC/../c-examples
# The installed include directory (pkg-config names include/rsplib; include/rserpool beside it).
INC=$(echo "$CFLAGS_PC" | sed -n 's/.*-I\([^ ]*\).*/\1/p')
WARN="-Wall -Wextra -Werror"
passed=0
failed=0
pass() { passed=$((passed + 1)); echo "PASS $1"; }
fail() { failed=$((failed + 1)); echo "FAIL $1"; }
run_cmd() { # name, command...
   name=$1; shift
   if "$@" > "$BUILD/last.log" 2>&1; then pass "$name"; else fail "$name"; cat "$BUILD/last.log"; fi
}

# 1. All 23 headers compile cleanly in one translation unit in every language mode, with
#    <netinet/sctp.h> (when installed) and with ext_socket.h's own declarations instead.
for std in c89 c99 c11 c2x gnu89 gnu17; do
   run_cmd "headers compile as $std" $CC -std=$std $WARN $CFLAGS_PC -c "$SRC/headers_c.c" -o "$BUILD/headers_$std.o"
   run_cmd "headers compile as $std without <netinet/sctp.h>" \
      $CC -std=$std $WARN -DRSPLIB_NO_NETINET_SCTP_H $CFLAGS_PC -c "$SRC/headers_c.c" -o "$BUILD/headers_nosctp_$std.o"
done
run_cmd "headers compile as c++17 without <netinet/sctp.h>" \
   $CXX -std=c++17 $WARN -DRSPLIB_NO_NETINET_SCTP_H $CFLAGS_PC -c "$SRC/headers_cpp.cpp" -o "$BUILD/headers_nosctp_cpp.o"
# A compiler for which bool is a keyword in C2x mode (Clang 15+; GCC only from 13): the C23 case
# of tdtypes.h. The Makefile installs clang-16 where apt can; without one this is not run.
C23CC=""
for c in clang-19 clang-18 clang-17 clang-16 clang-15 clang; do
   if command -v "$c" >/dev/null 2>&1 && \
      printf 'int main(void){ bool b = true; return b ? 0 : 1; }\n' | "$c" -std=c2x -x c - -o /dev/null 2>/dev/null; then
      C23CC=$c; break
   fi
done
if [ -n "$C23CC" ]; then
   for std in c2x gnu2x c17; do
      run_cmd "headers compile with $C23CC as $std (bool a keyword in C2x)" \
         $C23CC -std=$std $WARN $CFLAGS_PC -c "$SRC/headers_c.c" -o "$BUILD/headers_clang_$std.o"
   done
else
   echo "NOTE no compiler with C23 keyword bool found: that header mode is not checked"
fi
run_cmd "headers compile as c99 after <stdbool.h>" \
   $CC -std=c99 $WARN -DINCLUDE_STDBOOL_FIRST $CFLAGS_PC -c "$SRC/headers_c.c" -o "$BUILD/headers_stdbool.o"
run_cmd "headers compile as c11 after <stdbool.h>" \
   $CC -std=c11 $WARN -DINCLUDE_STDBOOL_FIRST $CFLAGS_PC -c "$SRC/headers_c.c" -o "$BUILD/headers_stdbool11.o"

# 2. The library is found through pkg-config and has the right soname.
run_cmd "pkg-config names -lrsplib" sh -c "echo '$LIBS_PC' | grep -q -- -lrsplib"
run_cmd "soname is librsplib.so.0" sh -c "readelf -d '$STAGE_LIB/librsplib.so' | grep -q 'SONAME.*\[librsplib.so.0\]'"

# The classic package's include directory: a build that names include/rserpool (no pkg-config)
# finds the same headers there, libcppthread's too.
run_cmd "headers found under include/rserpool" sh -c "printf '#include <rsplib.h>\n#include <thread.h>\nint main(void){return RSPERR_OKAY;}\n' | \
   $CXX -std=c++17 $WARN -I'$INC/../rserpool' -x c++ -c - -o '$BUILD/rserpool.o'"
run_cmd "pkg-config knows cppthread (requires rsplib)" sh -c "pkg-config --libs cppthread | grep -q -- -lcppthread && pkg-config --libs cppthread | grep -q -- -lrsplib"
run_cmd "libcppthread soname is libcppthread.so.0" sh -c "readelf -d '$STAGE_LIB/libcppthread.so' | grep -q 'SONAME.*\[libcppthread.so.0\]'"

# 3. Test programs, run under valgrind (memcheck): no errors, no leaks.
VALGRIND="valgrind -q --error-exitcode=99 --leak-check=full --show-leak-kinds=definite,indirect --errors-for-leak-kinds=definite,indirect"
run_program() { # name, binary, arguments...
   name=$1; prog=$2; shift 2
   LD_LIBRARY_PATH=$STAGE_LIB $VALGRIND "$prog" "$@" > "$BUILD/$name.log" 2>&1
   rc=$?
   cat "$BUILD/$name.log"
   line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$BUILD/$name.log" | tail -n 1)
   if [ -z "$line" ]; then fail "$name (no result line, exit $rc)"; return; fi
   p=$(echo "$line" | cut -d' ' -f1); f=$(echo "$line" | cut -d' ' -f3)
   passed=$((passed + p)); failed=$((failed + f))
   if [ "$rc" != 0 ] && [ "$f" = 0 ]; then fail "$name under valgrind (exit $rc)"; fi
   if ! ldd "$prog" 2>/dev/null | grep -q "$STAGE_LIB/librsplib.so.0" && \
      ! LD_LIBRARY_PATH=$STAGE_LIB ldd "$prog" | grep -q "$STAGE_LIB/librsplib.so.0"; then
      fail "$name did not load the staged librsplib.so.0"
   fi
}
for t in test_abi test_tagitem test_helpers; do
   if $CC -std=c99 $WARN "$SRC/$t.c" $CFLAGS_PC $LIBS_PC -o "$BUILD/$t" > "$BUILD/$t.build.log" 2>&1; then
      run_program "$t" "$BUILD/$t"
   else
      fail "build $t"; cat "$BUILD/$t.build.log"
   fi
done

# 3a. The classic interface tables: every constant of the classic headers with its classic
#     value (C and C++), every rsplib.h prototype's C++ default arguments (classic-checks.sh).
if sh "$SRC/classic-checks.sh" "$(cd "$SRC" && pwd)" "$BUILD/classic" > "$BUILD/classic.log" 2>&1; then
   if $CC -std=c11 $WARN "$BUILD/classic/classic_constants.c" $CFLAGS_PC $LIBS_PC -o "$BUILD/classic_constants_c" > "$BUILD/classic_c.build.log" 2>&1; then
      run_program classic_constants_c "$BUILD/classic_constants_c"
   else
      fail "classic constants (C)"; cat "$BUILD/classic_c.build.log"
   fi
   if $CXX -std=c++17 $WARN "$BUILD/classic/classic_constants.cpp" $CFLAGS_PC $LIBS_PC -o "$BUILD/classic_constants_cpp" > "$BUILD/classic_cpp.build.log" 2>&1; then
      run_program classic_constants_cpp "$BUILD/classic_constants_cpp"
   else
      fail "classic constants and C++ defaults (C++)"; cat "$BUILD/classic_cpp.build.log"
   fi
   # And the other way round: every object-like #define of our headers is in the table.
   # (rsplib-handoff.h is ours, not classic: its constants are checked by its own tests.)
   grep -hE '^[[:space:]]*#[[:space:]]*define[[:space:]]+[A-Za-z_][A-Za-z_0-9]*([[:space:]]|$)' \
      $(ls "$INC"/*.h | grep -v '/rsplib-handoff\.h$') | \
      sed -E 's/^[[:space:]]*#[[:space:]]*define[[:space:]]+([A-Za-z_0-9]+).*/\1/' | grep -v '_H$' | sort -u > "$BUILD/classic/ours.txt"
   unlisted=$(comm -23 "$BUILD/classic/ours.txt" "$BUILD/classic/listed.txt" | tr '\n' ' ')
   if [ -z "$unlisted" ]; then pass "every constant of our headers is in classic-constants.txt"
   else fail "constants of our headers missing from classic-constants.txt: $unlisted"; fi
else
   fail "classic-checks.sh"; cat "$BUILD/classic.log"
fi

# 3b. libcppthread (TDMutex, TDThread), built as users build it: pkg-config cppthread.
CPPTHREAD_PC="$(pkg-config --cflags --libs cppthread)"
if $CXX -std=c++17 $WARN "$SRC/test_cppthread.cpp" $CPPTHREAD_PC -o "$BUILD/test_cppthread" > "$BUILD/test_cppthread.build.log" 2>&1; then
   run_program test_cppthread "$BUILD/test_cppthread"
else
   fail "build test_cppthread"; cat "$BUILD/test_cppthread.build.log"
fi
# 4. Basic Mode against a real registrar: ours from the staged install, TCP on a free loopback
#    port, announces off (nothing leaves the machine). Keep-alives every second so that the test
#    sees the library's thread answer them.
STAGE_BIN=${STAGE_BIN:-$STAGE_LIB/../bin}
export RSPLIB_ANNOUNCE=off
REG_LOG="$BUILD/registrar.log"
LD_LIBRARY_PATH=$STAGE_LIB "$STAGE_BIN/rspregistrar" -asap=127.0.0.1:0 -enrp=127.0.0.1:0 \
   -asapannounce=off -enrpannounce=off -transport=tcp -minaddressscope=loopback \
   -endpointkeepalivetransmissioninterval=1000 -maxbadpereports=3 -loglevel=4 > "$REG_LOG" 2>&1 &
REG_PID=$!
REG_ADDR=""
for _ in $(seq 1 100); do
   REG_ADDR=$(sed -n 's/.*Listening: ASAP over TCP on \(127\.0\.0\.1:[0-9]*\).*/\1/p' "$REG_LOG" | head -n 1)
   [ -n "$REG_ADDR" ] && break
   sleep 0.1
done
# 5. Enhanced Mode (pool elements with own sockets, sessions, cookies, failover) against the
#    same registrar.
for t in test_basic_mode test_enhanced_mode test_handoff test_contact; do
   if [ -z "$REG_ADDR" ]; then
      fail "$t: registrar did not start"; cat "$REG_LOG"
   elif $CC -std=c99 $WARN "$SRC/$t.c" $CFLAGS_PC $LIBS_PC -lpthread -o "$BUILD/$t" > "$BUILD/$t.build.log" 2>&1; then
      run_program "$t" "$BUILD/$t" "$REG_ADDR"
   else
      fail "build $t"; cat "$BUILD/$t.build.log"
   fi
done
# 6. A C++ pool element in the classic style (c-examples/cppthread-pe.cc: a TDThread per session,
#    a TDMutex around the shared count), built with pkg-config rsplib cppthread, serves three
#    concurrent sessions of a pool user (test_cppthread_pu.c) over TCP; both under valgrind.
if [ -z "$REG_ADDR" ]; then
   fail "cppthread-pe: registrar did not start"
elif ! $CXX -std=c++17 $WARN "$EXAMPLES_SRC/cppthread-pe.cc" $(pkg-config --cflags --libs rsplib cppthread) \
        -o "$BUILD/cppthread-pe" > "$BUILD/cppthread-pe.build.log" 2>&1; then
   fail "build cppthread-pe with pkg-config rsplib cppthread"; cat "$BUILD/cppthread-pe.build.log"
elif ! $CC -std=c99 $WARN "$SRC/test_cppthread_pu.c" $CFLAGS_PC $LIBS_PC -o "$BUILD/test_cppthread_pu" > "$BUILD/test_cppthread_pu.build.log" 2>&1; then
   fail "build test_cppthread_pu"; cat "$BUILD/test_cppthread_pu.build.log"
else
   LD_LIBRARY_PATH=$STAGE_LIB $VALGRIND "$BUILD/cppthread-pe" -registrar="$REG_ADDR" -poolhandle=CppThreadPool -tcp \
      > "$BUILD/cppthread-pe.log" 2>&1 &
   PE_PID=$!
   for _ in $(seq 1 100); do
      grep -q 'serving pool' "$BUILD/cppthread-pe.log" && break
      sleep 0.1
   done
   run_program test_cppthread_pu "$BUILD/test_cppthread_pu" "$REG_ADDR" CppThreadPool
   kill -INT "$PE_PID" 2>/dev/null
   wait "$PE_PID"
   PE_RC=$?
   cat "$BUILD/cppthread-pe.log"
   if [ "$PE_RC" = 0 ] && grep -q 'served 6 request(s) in 3 session(s)' "$BUILD/cppthread-pe.log"; then
      pass "cppthread-pe served 3 sessions in 3 threads and stopped cleanly under valgrind"
   else
      fail "cppthread-pe (exit $PE_RC)"
   fi
fi
# 6a. A contact node handing every session to a worker (c-examples/handoff-echo.c,
#     rsplib-handoff.h): three clients, each answered in order by a worker, never by the contact
#     (what a client sent before it followed reaches the worker in the cookie); the PU under
#     valgrind.
if [ -z "$REG_ADDR" ]; then
   fail "handoff-echo: registrar did not start"
elif ! $CC -std=c99 $WARN "$EXAMPLES_SRC/handoff-echo.c" $CFLAGS_PC $LIBS_PC -o "$BUILD/handoff-echo" > "$BUILD/handoff-echo.build.log" 2>&1; then
   fail "build handoff-echo"; cat "$BUILD/handoff-echo.build.log"
else
   HE_PIDS=""
   for w in 0x201 0x202; do
      LD_LIBRARY_PATH=$STAGE_LIB "$BUILD/handoff-echo" worker -registrar="$REG_ADDR" -identifier=$w > "$BUILD/handoff-worker-$w.log" 2>&1 &
      HE_PIDS="$HE_PIDS $!"
   done
   LD_LIBRARY_PATH=$STAGE_LIB "$BUILD/handoff-echo" contact -registrar="$REG_ADDR" -identifier=0x200 > "$BUILD/handoff-contact.log" 2>&1 &
   HE_PIDS="$HE_PIDS $!"
   for _ in $(seq 1 100); do
      [ "$(cat "$BUILD"/handoff-worker-*.log "$BUILD/handoff-contact.log" 2>/dev/null | grep -c 'in pool')" -ge 3 ] && break
      sleep 0.1
   done
   he_ok=1
   for k in 1 2 3; do
      if ! LD_LIBRARY_PATH=$STAGE_LIB $VALGRIND "$BUILD/handoff-echo" pu -registrar="$REG_ADDR" -count=4 > "$BUILD/handoff-pu-$k.log" 2>&1; then
         he_ok=0; cat "$BUILD/handoff-pu-$k.log"
      fi
   done
   kill $HE_PIDS 2>/dev/null
   wait $HE_PIDS 2>/dev/null
   if [ "$he_ok" = 1 ] && [ "$(grep -c 'session handed off' "$BUILD/handoff-contact.log")" = 3 ]; then
      pass "handoff-echo: the contact node handed 3 sessions to workers, every line answered in order by a worker"
   else
      fail "handoff-echo"; cat "$BUILD/handoff-contact.log" "$BUILD"/handoff-worker-*.log
   fi
fi
kill "$REG_PID" 2>/dev/null
wait "$REG_PID" 2>/dev/null

# 7. The fractal pool (c-examples/fractal-pe.c, fractal-pu.c, fractal-demo.sh with its own
#    registrar) in a small setting, the PU and the PEs under valgrind: the serving PE is drained
#    a third of the way (killed where the library has no rspPoolElementDrain), the next one is
#    killed at two thirds. The PNG is checked against zlib (chunk CRC-32s, the stored deflate
#    blocks, Adler-32) and its PE regions against the PU's legend (check_fractal_png.py).
FRACTAL=$BUILD/fractal
mkdir -p "$FRACTAL"
if ! { $CC $WARN -pthread "$EXAMPLES_SRC/fractal-pe.c" $CFLAGS_PC $LIBS_PC -o "$FRACTAL/fractal-pe" &&
       $CC $WARN -pthread "$EXAMPLES_SRC/fractal-pu.c" $CFLAGS_PC $LIBS_PC -o "$FRACTAL/fractal-pu"; } \
     > "$BUILD/fractal.build.log" 2>&1; then
   fail "build fractal-pe and fractal-pu"; cat "$BUILD/fractal.build.log"
elif REGISTRAR=$STAGE_BIN/rspregistrar LIBDIR=$STAGE_LIB EXAMPLES=$FRACTAL OUT=$FRACTAL/demo \
     WIDTH=240 HEIGHT=120 ITERATIONS=256 DELAY=20000 VALGRIND="$VALGRIND" \
     timeout 300 bash "$EXAMPLES_SRC/fractal-demo.sh" > "$BUILD/fractal.log" 2>&1; then
   grep '^\[fractal-demo\]\|legend\|^\[pu\] \[PU\]   PE' "$BUILD/fractal.log"
   # Our library has the drain: the demo's fallback (kill instead) must not have been taken.
   if grep -q 'OK: pe[0-9] was drained (exit 0)' "$BUILD/fractal.log"; then
      pass "fractal demo under valgrind: serving PE drained (exit 0), the next killed, three PEs computed the picture"
   else
      fail "fractal demo: the serving PE was not drained by handoff"
   fi
   if command -v python3 >/dev/null 2>&1; then
      if python3 "$SRC/check_fractal_png.py" "$FRACTAL/demo/fractal.png" "$FRACTAL/demo/pu.log"; then
         pass "fractal PNG: zlib reads it, three PE regions as the legend says"
      else
         fail "fractal PNG"
      fi
   else
      echo "NOTE no python3: the fractal PNG is not checked against zlib"
   fi
else
   fail "fractal demo (see $BUILD/fractal.log)"; cat "$BUILD/fractal.log"
fi

if $CXX -std=c++17 $WARN "$SRC/headers_cpp.cpp" $CFLAGS_PC $LIBS_PC -o "$BUILD/headers_cpp" > "$BUILD/cpp.build.log" 2>&1; then
   run_cmd "C++17 program runs" env LD_LIBRARY_PATH=$STAGE_LIB $VALGRIND "$BUILD/headers_cpp"
else
   fail "headers compile as c++17"; cat "$BUILD/cpp.build.log"
fi

# 4. The exported symbols: every name of expected-symbols.txt (spec §8.5) must be defined in
#    the staged librsplib.so; each missing one is a failure.
if nm -D --defined-only "$STAGE_LIB/librsplib.so" | awk '{ print $NF }' | sort -u > "$BUILD/exported.txt"; then
   missing=""
   nmissing=0
   for sym in $(grep -v '^#' "$SRC/expected-symbols.txt"); do
      if grep -qx "$sym" "$BUILD/exported.txt"; then
         passed=$((passed + 1))
      else
         fail "symbol $sym is not exported"
         missing="$missing $sym"; nmissing=$((nmissing + 1))
      fi
   done
   if [ "$nmissing" = 0 ]; then
      echo "PASS all $(grep -vc '^#' "$SRC/expected-symbols.txt") expected symbols exported"
   else
      echo "missing symbols ($nmissing):$missing"
   fi
else
   fail "nm -D on $STAGE_LIB/librsplib.so"
fi

# libcppthread exports exactly the classic libcppthread's symbols (so binaries built against
# the original relink): constructors, destructors, methods, vtables, typeinfo.
if nm -D --defined-only "$STAGE_LIB/libcppthread.so" | awk '{ print $NF }' | sort -u > "$BUILD/cppthread-exported.txt"; then
   grep -v '^#' "$SRC/expected-cppthread-symbols.txt" | sort -u > "$BUILD/cppthread-expected.txt"
   if cmp -s "$BUILD/cppthread-exported.txt" "$BUILD/cppthread-expected.txt"; then
      pass "libcppthread exports the $(wc -l < "$BUILD/cppthread-expected.txt") classic symbols, no others"
   else
      fail "libcppthread symbols differ from expected-cppthread-symbols.txt"
      diff "$BUILD/cppthread-expected.txt" "$BUILD/cppthread-exported.txt"
   fi
else
   fail "nm -D on $STAGE_LIB/libcppthread.so"
fi

echo "C tests: $passed passed, $failed failed"
[ "$failed" = 0 ]
