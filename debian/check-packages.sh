#!/bin/sh
# Checks the packages `make deb` built in DIR: their file lists against tests/data/deb/*.list
# (the multiarch triplet written @MULTIARCH@), lintian (no errors), and an install into a
# scratch root where pkg-config finds the library and the examples build with their installed
# Makefile and run against the packaged library.
set -u
DIR=$(cd "${1:?usage: check-packages.sh DIR}" && pwd)
HERE=$(cd "$(dirname "$0")/.." && pwd)
MA=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
passed=0
failed=0
check() { # description, command...
   d=$1; shift
   if "$@"; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAIL deb: $d"; fi
}
list() { # the file list of a .deb: one path per line, symlinks as "path -> target"
   dpkg-deb -c "$1" | awk '{ p = $6; for (i = 7; i <= NF; i++) p = p " " $i; print p }' \
      | sed -e 's|^\./|/|' -e "s|$MA|@MULTIARCH@|g" | grep -v '/$' | sort
}
for pkg in librsplib0 libcppthread0 librsplib-rs-dev rsplib-rs-registrar; do
   deb=$(ls "$DIR"/${pkg}_*.deb 2>/dev/null | head -1)
   check "$pkg built" test -n "$deb"
   [ -n "$deb" ] || continue
   list "$deb" > "$DIR/$pkg.list"
   if ! diff -u "$HERE/tests/data/deb/$pkg.list" "$DIR/$pkg.list"; then
      failed=$((failed + 1)); echo "FAIL deb: $pkg file list (diff above)"
   else
      passed=$((passed + 1))
   fi
done
if command -v lintian >/dev/null 2>&1; then
   lintian --tag-display-limit 0 "$DIR"/*.deb > "$DIR/lintian.txt" 2>/dev/null
   errors=$(grep -c '^E:' "$DIR/lintian.txt")
   warnings=$(grep -c '^W:' "$DIR/lintian.txt")
   echo "deb: lintian: $errors errors, $warnings warnings"
   check "lintian errors: $errors" test "$errors" = 0
else
   echo "SKIPPED: lintian is not installed (apt-get install lintian)"
fi
# A scratch root with the three packages unpacked, used as a user would.
ROOT=$DIR/root
rm -rf "$ROOT" "$DIR/examples" && mkdir -p "$ROOT"
for d in "$DIR"/*.deb; do dpkg-deb -x "$d" "$ROOT"; done
PC="PKG_CONFIG_PATH=$ROOT/usr/lib/$MA/pkgconfig PKG_CONFIG_SYSROOT_DIR=$ROOT"
check "pkg-config finds rsplib in the root" sh -c "$PC pkg-config --libs rsplib | grep -q -- '-L$ROOT/usr/lib/$MA'"
cp -r "$ROOT/usr/share/rsplib/examples" "$DIR/examples"
check "the examples build with their installed Makefile" \
   sh -c "$PC make -s -C '$DIR/examples' CFLAGS='-Wall -Wextra -Werror' > '$DIR/examples.log' 2>&1"
check "an example links the classic soname" sh -c "readelf -d '$DIR/examples/taglist-demo' | grep -q 'NEEDED.*librsplib.so.0'"
check "an example runs against the packaged library" \
   sh -c "LD_LIBRARY_PATH='$ROOT/usr/lib/$MA' '$DIR/examples/taglist-demo' 5 | grep -q 'Weight: 5'"
check "the packaged registrar runs" sh -c "'$ROOT/usr/bin/rspregistrar' --help | grep -q -- -daemonpidfile"
check "the library is stripped" sh -c "! readelf -S '$ROOT/usr/lib/$MA/librsplib.so.0.8.0' | grep -q '\.debug_info'"
rm -rf "$ROOT" "$DIR/examples" "$DIR/examples.log"
echo "deb: $passed passed, $failed failed"
[ "$failed" = 0 ]
