# Fuzzing (cargo-fuzz; nightly features enabled on stable via RUSTC_BOOTSTRAP).
# Included by the top-level Makefile.
#
#   make fuzz [FUZZ_SECONDS=60]   every target for FUZZ_SECONDS each: decode (the wire decoder),
#                                 registrar and asap_client (the state machines, fuzz/src/)
#   make fuzz-build               build the targets only
#   make fuzz-seeds               rewrite the state machines' checked-in seeds
#                                 (fuzz/corpus/<target>/seed-*) and fuzz/regressions/
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := decode registrar asap_client
FUZZ_TARGET_DIR ?= $(if $(CARGO_TARGET_DIR),$(CARGO_TARGET_DIR)/fuzz,$(CURDIR)/target/fuzz)
FUZZ_ENV = cd fuzz && RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR=$(FUZZ_TARGET_DIR)

.PHONY: fuzz fuzz-build fuzz-seed fuzz-seeds fuzz-tool
fuzz: fuzz-tool fuzz-seed
	@failed=; for t in $(FUZZ_TARGETS); do \
		echo "make: fuzzing $$t for $(FUZZ_SECONDS) s"; \
		($(FUZZ_ENV) cargo fuzz run $$t corpus/$$t -- -max_total_time=$(FUZZ_SECONDS)) \
			|| failed="$$failed $$t"; \
	done; \
	if [ -n "$$failed" ]; then echo "make: failed:$$failed (inputs in fuzz/artifacts/)"; exit 1; fi

fuzz-build: fuzz-tool
	$(FUZZ_ENV) cargo fuzz build

# Seed the decoder's corpus with every ASAP/ENRP message of the rsplib capture (one file per
# message). The state machines' seeds are checked in.
fuzz-seed:
	mkdir -p fuzz/corpus/decode
	cargo test --quiet --test wire_captures -- --ignored write_fuzz_corpus >/dev/null

fuzz-seeds:
	$(FUZZ_ENV) cargo test --quiet --lib -- --ignored write_seeds

# cargo-fuzz comes from crates.io (installed once into ~/.cargo/bin).
fuzz-tool:
	@cargo fuzz --version >/dev/null 2>&1 || { echo "make: installing cargo-fuzz"; cargo install --locked cargo-fuzz; }
