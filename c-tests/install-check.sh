#!/bin/sh
# `make install` into a scratch DESTDIR puts every file where a distribution expects it, and
# `make uninstall` removes them all again.
set -u
DEST=${1:?usage: install-check.sh DESTDIR}
PREFIX=/usr
rm -rf "$DEST"
passed=0
failed=0
check() { # description, test...
   d=$1; shift
   if "$@"; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAIL install: $d"; fi
}
# Only copies: with the build there, install runs no cargo (CARGO=false would fail it).
make --no-print-directory -s install CARGO=false PREFIX=$PREFIX DESTDIR="$DEST" > "$DEST.log" 2>&1 || { cat "$DEST.log"; exit 1; }
L=$DEST$PREFIX/lib
check "real library file" test -f "$L/librsplib.so.0.8.0"
check "soname link" test "$(readlink "$L/librsplib.so.0")" = librsplib.so.0.8.0
check "dev link" test "$(readlink "$L/librsplib.so")" = librsplib.so.0
for n in librsplib-900.so.0 librsplib-801.so.0 librsplib-800.so.0; do
   check "compat link $n" test "$(readlink "$L/$n")" = librsplib.so.0
   check "compat link $n resolves" test -f "$L/$n"
done
check "static library" test -f "$L/librsplib.a"
check "libcppthread real file" test -f "$L/libcppthread.so.0.0.0"
check "libcppthread soname link" test "$(readlink "$L/libcppthread.so.0")" = libcppthread.so.0.0.0
check "libcppthread dev link" test "$(readlink "$L/libcppthread.so")" = libcppthread.so.0
check "libcppthread static library" test -f "$L/libcppthread.a"
check "libcppthread soname recorded" sh -c "readelf -d '$L/libcppthread.so.0.0.0' | grep -q 'SONAME.*\[libcppthread.so.0\]'"
check "libcppthread needs librsplib.so.0" sh -c "readelf -d '$L/libcppthread.so.0.0.0' | grep -q 'NEEDED.*\[librsplib.so.0\]'"
check "pkg-config file cppthread.pc" test -f "$L/pkgconfig/cppthread.pc"
check "pkg-config cppthread cflags and libs" sh -c "PKG_CONFIG_PATH='$L/pkgconfig' PKG_CONFIG_SYSROOT_DIR='$DEST' pkg-config --cflags --libs cppthread | grep -q -- '-I$DEST$PREFIX/include/rsplib.*-lcppthread'"
# The registrar's allocator stays in the registrar: linked into the library, its load-time
# initializer would run in every C program.
check "library carries no mimalloc" sh -c "! grep -q mimalloc '$L/librsplib.so.0.8.0'"
check "soname recorded" sh -c "readelf -d '$L/librsplib.so.0.8.0' | grep -q 'SONAME.*\[librsplib.so.0\]'"
check "pkg-config file" test -f "$L/pkgconfig/rsplib.pc"
check "pkg-config prefix is the real one" grep -q "^prefix=$PREFIX\$" "$L/pkgconfig/rsplib.pc"
check "pkg-config cflags" sh -c "PKG_CONFIG_PATH='$L/pkgconfig' PKG_CONFIG_SYSROOT_DIR='$DEST' pkg-config --cflags rsplib | grep -q -- '-I$DEST$PREFIX/include/rsplib'"
for h in rsplib.h rsplib-tags.h rsplib-internals.h tagitem.h tdtypes.h sockaddrunion.h \
         poolpolicysettings.h rserpoolerror.h componentstatusprotocol.h ext_socket.h loglevel.h \
         netutilities.h breakdetector.h timeutilities.h randomizer.h threadsafety.h debug.h \
         dispatcher.h timer.h fdcallback.h leaflinkedredblacktree.h doublelinkedringlist.h config.h \
         rsplib-handoff.h; do
   check "header $h" test -f "$DEST$PREFIX/include/rsplib/$h"
   check "header rserpool/$h" test "$(readlink "$DEST$PREFIX/include/rserpool/$h")" = "../rsplib/$h"
done
for h in mutex.h thread.h; do
   check "libcppthread header $h" test -f "$DEST$PREFIX/include/rsplib/$h"
   check "libcppthread header rserpool/$h" test -f "$DEST$PREFIX/include/rserpool/$h"
done
check "example cppthread-pe.cc" test -f "$DEST$PREFIX/share/rsplib/examples/cppthread-pe.cc"
check "example header fractal-protocol.h" test -f "$DEST$PREFIX/share/rsplib/examples/fractal-protocol.h"
for p in rspregistrar rspdecode rsptool; do
   check "program $p" test -x "$DEST$PREFIX/bin/$p"
   check "program $p stripped" sh -c "! readelf -S '$DEST$PREFIX/bin/$p' | grep -q -e '\.debug_info' -e '\.symtab'"
done
check "library stripped" sh -c "! readelf -S '$L/librsplib.so.0.8.0' | grep -q -e '\.debug_info' -e '\.symtab'"
check "static library without debug information" sh -c "! readelf -S '$L/librsplib.a' 2>/dev/null | grep -q '\.debug_info'"
M=$DEST$PREFIX/share/man
for m in man8/rspregistrar.8 man1/rsptool.1 man1/rspdecode.1 man3/rsplib.3; do
   check "manual page $m" test -f "$M/$m"
done
check "rspRegister(3) finds rsplib(3)" test "$(readlink "$M/man3/rspRegister.3")" = rsplib.3
check "systemd unit" grep -q "^ExecStart=$PREFIX/bin/rspregistrar " "$DEST$PREFIX/lib/systemd/system/rspregistrar.service"
check "options file" test -f "$DEST/etc/default/rspregistrar"
check "license" test -f "$DEST$PREFIX/share/doc/rsplib/LICENSE"
check "examples Makefile" test -f "$DEST$PREFIX/share/rsplib/examples/Makefile"
make --no-print-directory -s uninstall PREFIX=$PREFIX DESTDIR="$DEST" > "$DEST.log" 2>&1
left=$(find "$DEST" -type f -o -type l | wc -l)
check "uninstall removes every file ($left left)" test "$left" = 0
rm -rf "$DEST" "$DEST.log"
echo "install: $passed passed, $failed failed"
[ "$failed" = 0 ]
