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
for t in test_basic_mode test_enhanced_mode; do
   if [ -z "$REG_ADDR" ]; then
      fail "$t: registrar did not start"; cat "$REG_LOG"
   elif $CC -std=c99 $WARN "$SRC/$t.c" $CFLAGS_PC $LIBS_PC -lpthread -o "$BUILD/$t" > "$BUILD/$t.build.log" 2>&1; then
      run_program "$t" "$BUILD/$t" "$REG_ADDR"
   else
      fail "build $t"; cat "$BUILD/$t.build.log"
   fi
done
kill "$REG_PID" 2>/dev/null
wait "$REG_PID" 2>/dev/null

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

echo "C tests: $passed passed, $failed failed"
[ "$failed" = 0 ]
