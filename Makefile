# rsplib-rs — build, test and install like a distribution package expects.
#
#   make                      build the library (librsplib.so/.a), headers and programs
#   make test                 everything CI runs: cargo tests, clippy, fmt, header check, C tests
#   make install PREFIX=/usr/local DESTDIR=/tmp/pkg   only copies (stripped; STRIP=: keeps
#                             the debug information), so `sudo make install` works after `make`
#   make install-strip        the same (the GNU name)
#   make uninstall PREFIX=/usr/local DESTDIR=/tmp/pkg
#   make demo                 the main job (see README)
#   make deb                  Debian packages into build/deb (librsplib0, librsplib-rs-dev,
#                             rsplib-rs-registrar); make deb-check also lints and checks them
#   make headers              regenerate include/ from src/ffi/ (commit the result)

PREFIX     ?= /usr/local
DESTDIR    ?=
LIBDIR     ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
BINDIR     ?= $(PREFIX)/bin
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
EXAMPLESDIR  ?= $(PREFIX)/share/rsplib/examples
MANDIR     ?= $(PREFIX)/share/man
DOCDIR     ?= $(PREFIX)/share/doc/rsplib
# systemd looks for units in /usr/local/lib/systemd/system too; /usr puts them into /usr/lib.
UNITDIR    ?= $(PREFIX)/lib/systemd/system
SYSCONFDIR ?= $(if $(filter /usr,$(PREFIX)),/etc,$(PREFIX)/etc)
STRIP      ?= strip

VERSION    := 0.8.0
SOMAJOR    := 0
LIBNAME    := librsplib.so
SONAME     := $(LIBNAME).$(SOMAJOR)
REALNAME   := $(LIBNAME).$(VERSION)
# Names under which the classic library shipped (rsplib 1.0.0 / 0.8.x): links to ours.
COMPAT_SONAMES := librsplib-900.so.0 librsplib-801.so.0 librsplib-800.so.0
# libcppthread, the classic package's C++ thread classes (cppthread/): libtool's names for an
# unversioned library, which is what programs linked against the original recorded.
CPPTHREAD_SONAME   := libcppthread.so.0
CPPTHREAD_REALNAME := libcppthread.so.0.0.0
CPPTHREAD_HEADERS  := cppthread/mutex.h cppthread/thread.h

CARGO      ?= cargo
PROFILE    := release
TARGETDIR  ?= $(if $(CARGO_TARGET_DIR),$(CARGO_TARGET_DIR),$(CURDIR)/target)
OUT        := $(TARGETDIR)/$(PROFILE)
PROGRAMS   := rspregistrar rspdecode rsptool
HEADERS    := $(wildcard include/*.h)
MANPAGES   := $(wildcard man/*.[138])
# rsplib(3) documents these functions: `man rspRegister` finds it.
MAN3_LINKS := rspInitialize rspCleanUp rspAddStaticRegistrar rspGetErrorDescription rspRegister \
              rspDeregister rspHandleResolution rspFreeEndpointAddressArray rspReportFailure \
              rspCreatePoolElement rspDeletePoolElement rspAcceptSession rspCreateSession \
              rspDeleteSession rspSessionRead rspSessionWrite
# What `make` builds and `make install` copies.
CARGO_BUILT := $(OUT)/librsplib.so $(OUT)/librsplib.a $(addprefix $(OUT)/,$(PROGRAMS))
CXX        ?= c++
CPPTHREAD_OUT := $(TARGETDIR)/cppthread

# Staged install used by the C tests and the demo: they build against it with pkg-config,
# exactly as a user would, never against the source tree.
STAGE      := $(CURDIR)/build/stage
STAGE_PREFIX := /usr/local
STAGE_PKG  := PKG_CONFIG_PATH=$(STAGE)$(STAGE_PREFIX)/lib/pkgconfig PKG_CONFIG_SYSROOT_DIR=$(STAGE)

export CARGO_TERM_COLOR ?= never

.PHONY: deb deb-check all build cppthread headers install install-strip uninstall stage test \
        cargo-test clippy fmt-check \
        header-check c-tests install-check examples test-sctp bench-work demo check-tools \
        clean

all: build

# ---------------------------------------------------------------------------------- tools
# What a fresh Debian machine with Rust may lack: a C compiler, pkg-config, valgrind.
# As root with apt-get we install them; otherwise we say what is missing.
NEEDED_TOOLS := cc c++ pkg-config valgrind
check-tools:
	@missing=""; for t in $(NEEDED_TOOLS); do command -v $$t >/dev/null 2>&1 || missing="$$missing $$t"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "make: installing missing tools:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc g++ pkg-config valgrind >/dev/null || exit 1; \
	  else \
	    echo "make: missing tools:$$missing — install them (Debian: apt-get install gcc g++ pkg-config valgrind)"; exit 1; \
	  fi; \
	fi
	@command -v $(CARGO) >/dev/null 2>&1 || { echo "make: cargo not found — install Rust (rustup) first"; exit 1; }
	@# Optional: a C compiler for which bool is a keyword in C2x mode, to check tdtypes.h's C23 case.
	@if ! command -v clang-16 >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "make: installing clang-16 (checks the headers with C23's keyword bool)"; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clang-16 >/dev/null 2>&1 || \
	    { apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clang-16 >/dev/null 2>&1; } || \
	    echo "make: clang-16 not installable here; the C23 header check will be skipped"; \
	fi
	@# Optional: debhelper and lintian for `make deb-check` (skipped without them).
	@if ! command -v dh >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "make: installing debhelper and lintian (make deb-check builds and lints the packages)"; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dpkg-dev debhelper lintian >/dev/null 2>&1 || \
	    echo "make: debhelper/lintian not installable here; deb-check will be skipped"; \
	fi
	@# Optional: Debian's rsplib 3.4 cspmonitor, which a test has list our registrar's reports.
	@if ! command -v cspmonitor >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "make: installing Debian's rsplib-tools (cspmonitor reads the registrar's CSP reports)"; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rsplib-tools >/dev/null 2>&1 || \
	    echo "make: rsplib-tools not installable here; the cspmonitor test will be skipped"; \
	fi
	@# Optional: mandoc lints the manual pages (tests/manual_pages.rs; `man --warnings` otherwise).
	@if ! command -v mandoc >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "make: installing mandoc (lints the manual pages)"; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mandoc >/dev/null 2>&1 || \
	    echo "make: mandoc not installable here; the manual pages are checked with man --warnings"; \
	fi
	@for c in clippy rustfmt; do \
	  sub=$$c; [ $$c = rustfmt ] && sub=fmt; \
	  $(CARGO) $$sub --version >/dev/null 2>&1 || { \
	    echo "make: cargo $$sub missing, adding the $$c component"; \
	    rustup component add $$c || { echo "make: install the Rust $$c component"; exit 1; }; }; \
	done

# ---------------------------------------------------------------------------------- build
build:
	$(CARGO) build --release --lib --bins
	$(MAKE) --no-print-directory cppthread

# libcppthread: TDMutex/TDThread (cppthread/*.cc), linked against the librsplib just built
# (lock/unlock call its threadSafety* functions), with its own soname.
cppthread: $(CPPTHREAD_OUT)/$(CPPTHREAD_REALNAME) $(CPPTHREAD_OUT)/libcppthread.a
CPPTHREAD_OBJS := $(CPPTHREAD_OUT)/mutex.o $(CPPTHREAD_OUT)/thread.o
$(CPPTHREAD_OUT)/%.o: cppthread/%.cc $(CPPTHREAD_HEADERS) include/threadsafety.h
	@mkdir -p $(CPPTHREAD_OUT)
	$(CXX) -std=c++98 -O2 -g -fPIC -Wall -Wextra -Werror -Iinclude -Icppthread -c $< -o $@
$(CPPTHREAD_OUT)/$(CPPTHREAD_REALNAME): $(CPPTHREAD_OBJS) $(OUT)/librsplib.so
	$(CXX) -shared -Wl,-soname,$(CPPTHREAD_SONAME) -Wl,--no-undefined -o $@ $(CPPTHREAD_OBJS) \
	  -L$(OUT) -lrsplib -lpthread
$(CPPTHREAD_OUT)/libcppthread.a: $(CPPTHREAD_OBJS)
	rm -f $@ && ar rcs $@ $(CPPTHREAD_OBJS)

headers:
	RSPLIB_HEADERS_DIR=$(CURDIR)/include $(CARGO) build --lib

# ---------------------------------------------------------------------------------- install
# `install` needs the build's files, not cargo: when they are there (after `make`) it only
# copies, so `sudo make install` works with cargo only on the user's PATH. Files are stripped
# as they are installed (STRIP=: keeps debug information, as Debian's dh_strip wants).
$(CARGO_BUILT):
	$(CARGO) build --release --lib --bins

install: $(CARGO_BUILT) $(CPPTHREAD_OUT)/$(CPPTHREAD_REALNAME) $(CPPTHREAD_OUT)/libcppthread.a
	install -d $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCLUDEDIR)/rsplib $(DESTDIR)$(PKGCONFIGDIR) $(DESTDIR)$(BINDIR)
	install -m 0755 $(OUT)/librsplib.so $(DESTDIR)$(LIBDIR)/$(REALNAME)
	$(STRIP) --strip-unneeded $(DESTDIR)$(LIBDIR)/$(REALNAME)
	ln -sf $(REALNAME) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(LIBDIR)/$(LIBNAME)
	for n in $(COMPAT_SONAMES); do ln -sf $(SONAME) $(DESTDIR)$(LIBDIR)/$$n; done
	install -m 0644 $(OUT)/librsplib.a $(DESTDIR)$(LIBDIR)/librsplib.a
	$(STRIP) --strip-debug $(DESTDIR)$(LIBDIR)/librsplib.a
	install -m 0755 $(CPPTHREAD_OUT)/$(CPPTHREAD_REALNAME) $(DESTDIR)$(LIBDIR)/$(CPPTHREAD_REALNAME)
	$(STRIP) --strip-unneeded $(DESTDIR)$(LIBDIR)/$(CPPTHREAD_REALNAME)
	ln -sf $(CPPTHREAD_REALNAME) $(DESTDIR)$(LIBDIR)/$(CPPTHREAD_SONAME)
	ln -sf $(CPPTHREAD_SONAME) $(DESTDIR)$(LIBDIR)/libcppthread.so
	install -m 0644 $(CPPTHREAD_OUT)/libcppthread.a $(DESTDIR)$(LIBDIR)/libcppthread.a
	$(STRIP) --strip-debug $(DESTDIR)$(LIBDIR)/libcppthread.a
	install -m 0644 $(HEADERS) $(CPPTHREAD_HEADERS) $(DESTDIR)$(INCLUDEDIR)/rsplib/
	@# The classic package's include directory: programs whose build files name
	@# include/rserpool find the same headers there (links; pkg-config names include/rsplib).
	install -d $(DESTDIR)$(INCLUDEDIR)/rserpool
	for h in $(notdir $(HEADERS) $(CPPTHREAD_HEADERS)); do ln -sf ../rsplib/$$h $(DESTDIR)$(INCLUDEDIR)/rserpool/$$h; done
	for pc in rsplib cppthread; do \
	  sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@LIBDIR@|$(LIBDIR)|g' \
	      -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|g' -e 's|@VERSION@|$(VERSION)|g' \
	      pkgconfig/$$pc.pc.in > $(DESTDIR)$(PKGCONFIGDIR)/$$pc.pc && \
	  chmod 0644 $(DESTDIR)$(PKGCONFIGDIR)/$$pc.pc || exit 1; \
	done
	for p in $(PROGRAMS); do install -m 0755 $(OUT)/$$p $(DESTDIR)$(BINDIR)/$$p && $(STRIP) $(DESTDIR)$(BINDIR)/$$p; done
	install -d $(DESTDIR)$(EXAMPLESDIR)
	install -m 0644 c-examples/*.c c-examples/*.cc c-examples/*.h c-examples/Makefile $(DESTDIR)$(EXAMPLESDIR)/
	for m in $(MANPAGES); do s=$${m##*.}; install -d $(DESTDIR)$(MANDIR)/man$$s && install -m 0644 $$m $(DESTDIR)$(MANDIR)/man$$s/; done
	for f in $(MAN3_LINKS); do ln -sf rsplib.3 $(DESTDIR)$(MANDIR)/man3/$$f.3; done
	install -d $(DESTDIR)$(DOCDIR) $(DESTDIR)$(UNITDIR) $(DESTDIR)$(SYSCONFDIR)/default
	install -m 0644 LICENSE README.md $(DESTDIR)$(DOCDIR)/
	sed -e 's|/usr/bin/rspregistrar|$(BINDIR)/rspregistrar|' -e 's|/etc/default/|$(SYSCONFDIR)/default/|' \
	    systemd/rspregistrar.service > $(DESTDIR)$(UNITDIR)/rspregistrar.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/rspregistrar.service
	@# The options file is the administrator's once installed: never overwritten.
	test -e $(DESTDIR)$(SYSCONFDIR)/default/rspregistrar || \
	  install -m 0644 systemd/rspregistrar.default $(DESTDIR)$(SYSCONFDIR)/default/rspregistrar
	@if [ -z "$(DESTDIR)" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v ldconfig >/dev/null 2>&1; then ldconfig; \
	  else echo "make: run 'ldconfig' as root so that programs find $(SONAME) in $(LIBDIR)"; fi; \
	fi

install-strip: install

uninstall:
	rm -f $(DESTDIR)$(LIBDIR)/$(REALNAME) $(DESTDIR)$(LIBDIR)/$(SONAME) $(DESTDIR)$(LIBDIR)/$(LIBNAME)
	rm -f $(addprefix $(DESTDIR)$(LIBDIR)/,$(COMPAT_SONAMES))
	rm -f $(DESTDIR)$(LIBDIR)/librsplib.a $(DESTDIR)$(PKGCONFIGDIR)/rsplib.pc
	rm -f $(addprefix $(DESTDIR)$(LIBDIR)/,$(CPPTHREAD_REALNAME) $(CPPTHREAD_SONAME) libcppthread.so libcppthread.a)
	rm -f $(DESTDIR)$(PKGCONFIGDIR)/cppthread.pc
	rm -f $(addprefix $(DESTDIR)$(INCLUDEDIR)/rsplib/,$(notdir $(HEADERS) $(CPPTHREAD_HEADERS)))
	rm -f $(addprefix $(DESTDIR)$(INCLUDEDIR)/rserpool/,$(notdir $(HEADERS) $(CPPTHREAD_HEADERS)))
	-rmdir $(DESTDIR)$(INCLUDEDIR)/rsplib $(DESTDIR)$(INCLUDEDIR)/rserpool 2>/dev/null
	for p in $(PROGRAMS); do rm -f $(DESTDIR)$(BINDIR)/$$p; done
	rm -f $(addprefix $(DESTDIR)$(EXAMPLESDIR)/,$(notdir $(wildcard c-examples/*.c c-examples/*.cc c-examples/*.h)) Makefile)
	-rmdir -p $(DESTDIR)$(EXAMPLESDIR) 2>/dev/null
	rm -f $(foreach f,$(MAN3_LINKS),$(DESTDIR)$(MANDIR)/man3/$(f).3)
	for m in $(MANPAGES); do s=$${m##*.}; rm -f $(DESTDIR)$(MANDIR)/man$$s/$${m##*/}; rmdir -p $(DESTDIR)$(MANDIR)/man$$s 2>/dev/null; done; true
	rm -f $(DESTDIR)$(DOCDIR)/LICENSE $(DESTDIR)$(DOCDIR)/README.md $(DESTDIR)$(UNITDIR)/rspregistrar.service
	-rmdir -p $(DESTDIR)$(DOCDIR) $(DESTDIR)$(UNITDIR) 2>/dev/null
	@# The options file stays if the administrator changed it.
	if [ -e $(DESTDIR)$(SYSCONFDIR)/default/rspregistrar ] && cmp -s systemd/rspregistrar.default $(DESTDIR)$(SYSCONFDIR)/default/rspregistrar; then \
	  rm -f $(DESTDIR)$(SYSCONFDIR)/default/rspregistrar; rmdir -p $(DESTDIR)$(SYSCONFDIR)/default 2>/dev/null; fi; true

stage: build
	rm -rf $(STAGE)
	$(MAKE) --no-print-directory install PREFIX=$(STAGE_PREFIX) DESTDIR=$(STAGE)

# ---------------------------------------------------------------------------------- packages
# Debian packages, built by dpkg-buildpackage from a copy of the tree (its results land in the
# copy's parent, build/deb) with the release build made here: debian/rules only installs.
DEB_DIR := $(CURDIR)/build/deb
deb: build
	@command -v dpkg-buildpackage >/dev/null 2>&1 && command -v dh >/dev/null 2>&1 || { \
	  echo "make: deb needs dpkg-dev and debhelper (apt-get install dpkg-dev debhelper)"; exit 1; }
	rm -rf $(DEB_DIR) && mkdir -p $(DEB_DIR)/src
	tar -cf - --exclude=./target --exclude=./build --exclude=./.git --exclude=./fuzz/target . \
	  | tar -xf - -C $(DEB_DIR)/src
	cd $(DEB_DIR)/src && RSPLIB_TARGETDIR=$(TARGETDIR) dpkg-buildpackage -b -d -us -uc \
	  > $(DEB_DIR)/build.log 2>&1 || { tail -40 $(DEB_DIR)/build.log; exit 1; }
	rm -rf $(DEB_DIR)/src
	ls -l $(DEB_DIR)/*.deb

# The packages' file lists against tests/data/deb/*.list, lintian (no errors), and an
# install into a scratch root: pkg-config finds the library there and the examples build
# with their installed Makefile and run.
deb-check: deb
	sh debian/check-packages.sh $(DEB_DIR)

# ---------------------------------------------------------------------------------- tests
# Every stage runs (a failed one does not stop the others) under a heading; the last line is
# the count of stages passed and failed. deb-check is skipped (and says so) without
# dpkg-buildpackage and debhelper.
TEST_STAGES := cargo-test clippy fmt-check header-check c-tests install-check deb-check
test: check-tools
	@passed=0; failed=0; skipped=0; failures=""; \
	for s in $(TEST_STAGES); do \
	  echo; echo "======================================== make test: $$s"; \
	  if [ $$s = deb-check ] && ! { command -v dpkg-buildpackage && command -v dh; } >/dev/null 2>&1; then \
	    echo "SKIPPED: dpkg-buildpackage or debhelper missing (apt-get install dpkg-dev debhelper lintian)"; \
	    skipped=$$((skipped + 1)); continue; fi; \
	  start=$$(date +%s); \
	  if $(MAKE) --no-print-directory $$s; then passed=$$((passed + 1)); r=passed; \
	  else failed=$$((failed + 1)); failures="$$failures $$s"; r=FAILED; fi; \
	  echo "---------------------------------------- $$s: $$r in $$(( $$(date +%s) - start )) s"; \
	done; \
	echo; echo "======================================== make test: summary"; \
	if [ -n "$$failures" ]; then echo "failed stages:$$failures"; fi; \
	echo "stages: $$passed passed, $$failed failed, $$skipped skipped"; \
	[ $$failed = 0 ]

# Unit, integration and doc tests; then every benchmark once with tiny sizes (a smoke run:
# they must not break; their figures mean nothing here — `cargo bench` measures).
cargo-test:
	$(CARGO) test
	HS_BENCH_MAX=1000 BENCH_MS=50 BENCH_CONNECTED=200 $(CARGO) test --benches

clippy:
	$(CARGO) clippy --all-targets -- -D warnings

fmt-check:
	$(CARGO) fmt --check

header-check:
	$(CARGO) test --test headers_fresh

c-tests: check-tools stage
	$(STAGE_PKG) STAGE_LIB=$(STAGE)$(STAGE_PREFIX)/lib BUILD=$(CURDIR)/build/c-tests \
	  sh c-tests/run.sh

install-check: build
	sh c-tests/install-check.sh $(CURDIR)/build/install-check

# The tests that run the registrar binary through tests/common's Registrar (attacks, descriptor
# exhaustion, the service, sessions, the load generator), against a registrar with
# RSPLIB_TEST_REGISTRAR_THREADS event loops (-threads=); not in `make test` (it doubles their
# time); `make test` has its own test of several loops (tests/registrar_tcp.rs).
THREADS_TESTS := registrar_attacks registrar_descriptors registrar_service contact_node \
                 rsptool_bench rsptool_cli session_handoff bench_supervise
RSPLIB_TEST_REGISTRAR_THREADS ?= 2
.PHONY: test-threads
test-threads:
	RSPLIB_TEST_REGISTRAR_THREADS=$(RSPLIB_TEST_REGISTRAR_THREADS) cargo test \
	  $(addprefix --test ,$(THREADS_TESTS)) -- --test-threads=1

# SCTP lab scenarios (not in CI): real kernel SCTP in a small VM, Debian's rsplib 3.4 as peers.
SCTP_LAB ?= $(CURDIR)/../shared/sctp-lab/sctp-lab
SCTP_SCENARIOS := tests/sctp-lab/registrar.sh tests/sctp-lab/enrp.sh tests/sctp-lab/basic-mode.sh tests/sctp-lab/enhanced-mode.sh \
                  tests/sctp-lab/handoff.sh
# The scenarios run inside the VM from this directory; BIN tells them where the programs are.
test-sctp: build examples
	@command -v rspserver >/dev/null 2>&1 || { \
	  echo "make: installing Debian's rsplib 3.4 programs and tshark for the lab peers"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    rsplib-registrar rsplib-tools rsplib-services tshark >/dev/null; }
	@rc=0; for s in $(SCTP_SCENARIOS); do \
	  echo "=== $$s (in the SCTP lab VM)"; \
	  $(SCTP_LAB) run env BIN=$(OUT) EXAMPLES=$(CURDIR)/build/examples bash $$s || rc=1; \
	done; exit $$rc

# Load comparison in the SCTP lab: `rsptool bench` against rsplib 3.4's registrar and ours, in
# one VM run, alternating (figures, not a test). Set BENCH_SECONDS, BENCH_PUS, BENCH_DEPTH
# (resolutions outstanding per PU), BENCH_ROUNDS, BENCH_PU_WAIT (threads, loop or spin: see
# `rsptool bench --help`) on make's command line.
.PHONY: bench-sctp
bench-sctp: build $(OUT)/kernel-floor
	$(SCTP_LAB) run env BIN=$(OUT) BENCH_SECONDS=$(BENCH_SECONDS) BENCH_PUS=$(BENCH_PUS) \
	  BENCH_DEPTH=$(BENCH_DEPTH) BENCH_ROUNDS=$(BENCH_ROUNDS) BENCH_PU_WAIT=$(BENCH_PU_WAIT) \
	  bash tests/sctp-lab/bench.sh

# The kernel's least cost of a registrar's receive and send per resolution (one thread, no
# wake-ups; benches/kernel-floor/floor.c): TCP on loopback here; bench-sctp prints SCTP's.
$(OUT)/kernel-floor: benches/kernel-floor/floor.c
	@mkdir -p $(OUT)
	$(CC) -O2 -Wall -Wextra -Werror -o $@ $<

.PHONY: bench-floor
bench-floor: $(OUT)/kernel-floor
	@for i in 1 2 3; do $(OUT)/kernel-floor tcp 127.0.0.1; done

# ENRP chaos: 5 registrars, 50 PEs, rounds of SIGKILL and restart (about a minute or three).
.PHONY: chaos
chaos:
	$(CARGO) test --release --test enrp_chaos -- --ignored --nocapture

# ---------------------------------------------------------------------------------- benches
# `cargo bench` times; this counts: instructions and simulated cache misses per handlespace
# operation at 10^3 and 10^6 PEs, under valgrind's callgrind (deterministic; ~15 minutes).
bench-work:
	python3 benches/handlespace-work.py

# Our handlespace against Debian's rsplib 3.4 (librsphsmgt.so.3) on the same workload, N paired
# runs alternating processes, medians and ratios (skips when the library is absent; not a test).
# BENCH_HS_ARGS: e.g. --runs 3 --sizes 1000,10000 --policies RR,LU,LUD.
.PHONY: bench-hs-compare
bench-hs-compare:
	python3 benches/rsplib-hs/compare.py $(BENCH_HS_ARGS)

# ---------------------------------------------------------------------------------- demo
# The main job: build, install into a local prefix (build/stage), build the examples against
# that install with pkg-config, and run the Basic Mode demo on loopback (c-examples/demo.sh):
# our registrar, two echo-pe pool elements, one echo-pu; one PE is killed half way and the PU
# carries on with the other. Then the fractal pool (c-examples/fractal-demo.sh): three fractal-pe,
# one fractal-pu; a third of the way the serving PE is drained (its session is handed to another
# PE), at two thirds the next one is killed; the PU's PNG shows the three PEs' rows.
EXAMPLES := taglist-demo echo-pe echo-pu session-echo classic-echo-pe fractal-pe fractal-pu handoff-echo contact-echo
# Built with the installed examples' own Makefile, as a user of the installed package would.
examples: stage
	rm -rf build/examples && mkdir -p build && cp -r $(STAGE)$(STAGE_PREFIX)/share/rsplib/examples build/examples
	$(STAGE_PKG) $(MAKE) --no-print-directory -C build/examples CFLAGS="-Wall -Wextra -Werror" \
	  CXXFLAGS="-Wall -Wextra -Werror" $(EXAMPLES) cppthread-pe

demo: examples
	@echo "=== c-examples/demo.sh: registrar, two echo-pe, one echo-pu, built with pkg-config against build/stage"
	STAGE=$(STAGE) STAGE_PREFIX=$(STAGE_PREFIX) EXAMPLES=$(CURDIR)/build/examples OUT=$(CURDIR)/build/demo \
	  bash c-examples/demo.sh
	@echo "=== c-examples/fractal-demo.sh: registrar, three fractal-pe, one fractal-pu; one PE drained by handoff, one killed"
	STAGE=$(STAGE) STAGE_PREFIX=$(STAGE_PREFIX) EXAMPLES=$(CURDIR)/build/examples OUT=$(CURDIR)/build/demo/fractal \
	  bash c-examples/fractal-demo.sh

clean:
	$(CARGO) clean
	rm -rf build

-include mk/*.mk
