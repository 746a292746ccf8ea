# 10^6 PEs supervised (issue #18): a release rspregistrar on loopback with rsplib 3.4's
# keep-alive timers (5 s interval, 5 s timeout), SUP_CONNECTIONS TCP connections registering
# SUP_PES PEs between them (as hosts with many PEs do) from SUP_SOURCES addresses 127.0.0.2…,
# every keep-alive answered for SUP_SECONDS by `rsptool bench --pes-per-connection`; prints
# PEs registered and lost (connections lost, keep-alives for unknown PEs, PEs missing from the
# handle table read over ENRP at the end, keep-alive timeouts in the registrar's log), the
# registrar's CPU (cores while registering, while steady) and memory (VmRSS, VmHWM), the
# generator's CPU. Fails if a PE was lost. Not part of `make test`.
# Usage: make bench-supervise [SUP_PES=1000000 SUP_CONNECTIONS=10000 SUP_SECONDS=300
#   SUP_REGISTRAR_THREADS=1]
SUP_PES         ?= 1000000
SUP_CONNECTIONS ?= 10000
SUP_SECONDS     ?= 300
SUP_SOURCES     ?= 10
SUP_POOLS       ?= 1
SUP_THREADS     ?= 1
# The registrar's event loops (-threads=).
SUP_REGISTRAR_THREADS ?= 1
SUP_ASAP_PORT   ?= 33863
SUP_ENRP_PORT   ?= 39901
# rsplib 3.4's defaults (rspregistrar.h), in ms.
SUP_KA_INTERVAL ?= 5000
SUP_KA_TIMEOUT  ?= 5000

.PHONY: bench-supervise
bench-supervise: build
	SUP_PES=$(SUP_PES) SUP_CONNECTIONS=$(SUP_CONNECTIONS) SUP_SECONDS=$(SUP_SECONDS) \
	  SUP_SOURCES=$(SUP_SOURCES) SUP_POOLS=$(SUP_POOLS) SUP_THREADS=$(SUP_THREADS) \
	  SUP_REGISTRAR_THREADS=$(SUP_REGISTRAR_THREADS) \
	  SUP_ASAP_PORT=$(SUP_ASAP_PORT) SUP_ENRP_PORT=$(SUP_ENRP_PORT) \
	  SUP_KA_INTERVAL=$(SUP_KA_INTERVAL) SUP_KA_TIMEOUT=$(SUP_KA_TIMEOUT) \
	  BIN=$(OUT) WORK=$(CURDIR)/build/bench-supervise bash benches/supervise.sh
