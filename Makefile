# rsplib-rs — build, test and install like a distribution package expects.
#
#   make                      build the library (librsplib.so/.a), headers and programs
#   make test                 everything CI runs: cargo tests, clippy, fmt, header check, C tests
#   make install PREFIX=/usr/local DESTDIR=/tmp/pkg
#   make uninstall PREFIX=/usr/local DESTDIR=/tmp/pkg
#   make demo                 the main job (see README)
#   make headers              regenerate include/ from src/ffi/ (commit the result)

PREFIX     ?= /usr/local
DESTDIR    ?=
LIBDIR     ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
BINDIR     ?= $(PREFIX)/bin
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
EXAMPLESDIR  ?= $(PREFIX)/share/rsplib/examples

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
CXX        ?= c++
CPPTHREAD_OUT := $(TARGETDIR)/cppthread

# Staged install used by the C tests and the demo: they build against it with pkg-config,
# exactly as a user would, never against the source tree.
STAGE      := $(CURDIR)/build/stage
STAGE_PREFIX := /usr/local
STAGE_PKG  := PKG_CONFIG_PATH=$(STAGE)$(STAGE_PREFIX)/lib/pkgconfig PKG_CONFIG_SYSROOT_DIR=$(STAGE)

export CARGO_TERM_COLOR ?= never

.PHONY: all build cppthread headers install uninstall stage test cargo-test clippy fmt-check \
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
install: build
	install -d $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCLUDEDIR)/rsplib $(DESTDIR)$(PKGCONFIGDIR) $(DESTDIR)$(BINDIR)
	install -m 0755 $(OUT)/librsplib.so $(DESTDIR)$(LIBDIR)/$(REALNAME)
	ln -sf $(REALNAME) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(LIBDIR)/$(LIBNAME)
	for n in $(COMPAT_SONAMES); do ln -sf $(SONAME) $(DESTDIR)$(LIBDIR)/$$n; done
	install -m 0644 $(OUT)/librsplib.a $(DESTDIR)$(LIBDIR)/librsplib.a
	install -m 0755 $(CPPTHREAD_OUT)/$(CPPTHREAD_REALNAME) $(DESTDIR)$(LIBDIR)/$(CPPTHREAD_REALNAME)
	ln -sf $(CPPTHREAD_REALNAME) $(DESTDIR)$(LIBDIR)/$(CPPTHREAD_SONAME)
	ln -sf $(CPPTHREAD_SONAME) $(DESTDIR)$(LIBDIR)/libcppthread.so
	install -m 0644 $(CPPTHREAD_OUT)/libcppthread.a $(DESTDIR)$(LIBDIR)/libcppthread.a
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
	for p in $(PROGRAMS); do install -m 0755 $(OUT)/$$p $(DESTDIR)$(BINDIR)/$$p; done
	install -d $(DESTDIR)$(EXAMPLESDIR)
	install -m 0644 c-examples/*.c c-examples/*.cc $(DESTDIR)$(EXAMPLESDIR)/

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
	rm -f $(addprefix $(DESTDIR)$(EXAMPLESDIR)/,$(notdir $(wildcard c-examples/*.c c-examples/*.cc)))
	-rmdir -p $(DESTDIR)$(EXAMPLESDIR) 2>/dev/null

stage:
	rm -rf $(STAGE)
	$(MAKE) --no-print-directory install PREFIX=$(STAGE_PREFIX) DESTDIR=$(STAGE)

# ---------------------------------------------------------------------------------- tests
test: check-tools cargo-test clippy fmt-check header-check c-tests install-check

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

# SCTP lab scenarios (not in CI): real kernel SCTP in a small VM, Debian's rsplib 3.4 as peers.
SCTP_LAB ?= $(CURDIR)/../shared/sctp-lab/sctp-lab
SCTP_SCENARIOS := tests/sctp-lab/registrar.sh tests/sctp-lab/enrp.sh tests/sctp-lab/basic-mode.sh tests/sctp-lab/enhanced-mode.sh
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

# ENRP chaos: 5 registrars, 50 PEs, rounds of SIGKILL and restart (about a minute or three).
.PHONY: chaos
chaos:
	$(CARGO) test --release --test enrp_chaos -- --ignored --nocapture

# ---------------------------------------------------------------------------------- benches
# `cargo bench` times; this counts: instructions and simulated cache misses per handlespace
# operation at 10^3 and 10^6 PEs, under valgrind's callgrind (deterministic; ~15 minutes).
bench-work:
	python3 benches/handlespace-work.py

# ---------------------------------------------------------------------------------- demo
# The main job: build, install into a local prefix (build/stage), build the examples against
# that install with pkg-config, and run the Basic Mode demo on loopback (c-examples/demo.sh):
# our registrar, two echo-pe pool elements, one echo-pu; one PE is killed half way and the PU
# carries on with the other.
EXAMPLES := taglist-demo echo-pe echo-pu session-echo classic-echo-pe
examples: stage
	mkdir -p build/examples
	for e in $(EXAMPLES); do \
	  $(STAGE_PKG) sh -c 'cc -Wall -Wextra -Werror c-examples/'$$e'.c $$(pkg-config --cflags --libs rsplib) -o build/examples/'$$e || exit 1; \
	done
	$(STAGE_PKG) sh -c '$(CXX) -Wall -Wextra -Werror c-examples/cppthread-pe.cc $$(pkg-config --cflags --libs rsplib cppthread) -o build/examples/cppthread-pe'

demo: examples
	@echo "=== c-examples/demo.sh: registrar, two echo-pe, one echo-pu, built with pkg-config against build/stage"
	STAGE=$(STAGE) STAGE_PREFIX=$(STAGE_PREFIX) EXAMPLES=$(CURDIR)/build/examples OUT=$(CURDIR)/build/demo \
	  bash c-examples/demo.sh

clean:
	$(CARGO) clean
	rm -rf build

-include mk/*.mk
