# The soak (issue #14): the release registrar for SOAK_SECONDS under 1 000 PEs answering
# keep-alives, a pool user at 200/s and rounds of attacks; prints the good PU's latency, the
# registrar's RSS over time and the PEs lost, and fails if a PE was lost. Not part of `make test`
# (whose `cargo test --benches` smoke run gives it 2 s). Usage: make soak [SOAK_SECONDS=180]
SOAK_SECONDS ?= 180

.PHONY: soak
soak:
	SOAK_SECONDS=$(SOAK_SECONDS) $(CARGO) bench --bench soak
