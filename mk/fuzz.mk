# Fuzzing the wire decoder (cargo-fuzz; nightly features enabled on stable via RUSTC_BOOTSTRAP).
# Included by the top-level Makefile. Usage: make fuzz [FUZZ_SECONDS=60]
FUZZ_SECONDS ?= 60
FUZZ_TARGET_DIR ?= $(if $(CARGO_TARGET_DIR),$(CARGO_TARGET_DIR)/fuzz,$(CURDIR)/target/fuzz)

.PHONY: fuzz fuzz-seed fuzz-tool
fuzz: fuzz-tool fuzz-seed
	cd fuzz && RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR=$(FUZZ_TARGET_DIR) \
		cargo fuzz run decode corpus/decode -- -max_total_time=$(FUZZ_SECONDS)

# Seed the corpus with every ASAP/ENRP message of the rsplib capture (one file per message).
fuzz-seed:
	mkdir -p fuzz/corpus/decode
	cargo test --quiet --test wire_captures -- --ignored write_fuzz_corpus >/dev/null

# cargo-fuzz comes from crates.io (installed once into ~/.cargo/bin).
fuzz-tool:
	@cargo fuzz --version >/dev/null 2>&1 || { echo "make: installing cargo-fuzz"; cargo install --locked cargo-fuzz; }
