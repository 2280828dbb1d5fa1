SHELL := /bin/bash
# distkit — one command per intent. `make test` is what CI runs.
GO      ?= go
TIMEOUT ?= 9m

.PHONY: test test-race fuzz docs chaos test-short bench bench-go bench-ceiling demo demo-metrics vet

## test: every suite with the race detector: unit tests, the conformance
## suite on memory, miniredis, redis-server and a 3-master Cluster (both
## drivers), examples, the README and package-doc snippets; then a short
## run of the fuzz targets (make fuzz). Starts its own Redis processes on
## free ports.
test: vet test-race fuzz

test-race:
	@set -o pipefail; $(GO) test -race -count=1 -timeout $(TIMEOUT) -v ./... 2>&1 | tee test.out | \
		grep -E '^\s*(--- (PASS|FAIL|SKIP)|ok |FAIL|panic:)' ; \
	status=$${PIPESTATUS[0]}; \
	if [ $$status -ne 0 ]; then echo "--- failure context (full log: test.out) ---"; \
		grep -n -B3 -A25 -E '^\s*--- FAIL|^panic:|DATA RACE' test.out | head -300; fi; \
	passed=$$(grep -cE '^\s*--- PASS' test.out); failed=$$(grep -cE '^\s*--- FAIL' test.out); \
	skipped=$$(grep -cE '^\s*--- SKIP' test.out); \
	echo "$$passed passed, $$failed failed, $$skipped skipped"; exit $$status

## fuzz: the fuzz targets, briefly (FUZZTIME each; corpus in testdata/fuzz):
## key encoding injective, layouts distinct per unit and slot, Lua and Go
## twins agreeing for any keys and instance ids (via miniredis); rate
## limiting: Local, Redis (Go twin and Lua) and Hybrid deciding alike for any
## rate, window, amounts and timing, no window above its limit.
FUZZTIME ?= 10s
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzEscape$$' -fuzztime=$(FUZZTIME) ./internal/keyspace
	$(GO) test -run '^$$' -fuzz '^FuzzLayouts$$' -fuzztime=$(FUZZTIME) ./internal/keyspace
	$(GO) test -run '^$$' -fuzz '^FuzzAnyKeyParity$$' -fuzztime=$(FUZZTIME) ./internal/parity
	$(GO) test -run '^$$' -fuzz '^FuzzRateLimit$$' -fuzztime=$(FUZZTIME) ./internal/parity

## docs: only the test that builds the README and package-doc snippets.
docs:
	$(GO) test -count=1 -run '^TestSnippetsCompile$$' ./internal/doccheck

## chaos: the reliability suite (faults through TCP proxies, crashes, a
## Cluster failover, linearizability), bounded to a few minutes, fixed seeds.
chaos:
	@set -o pipefail; $(GO) test -tags chaos -race -count=1 -timeout 20m -v ./internal/chaos/ 2>&1 | tee chaos.out | \
		grep -E '^\s*(--- |ok |FAIL|panic:)|_test.go:[0-9]+: ' ; \
	status=$${PIPESTATUS[0]}; exit $$status

## test-short: the same without -race, quieter.
test-short:
	$(GO) test -count=1 ./...

vet:
	$(GO) vet ./...

## bench: the benchmark report: every primitive through both drivers next
## to its Go peers, raw-client floors and redis-benchmark's ceiling, against
## one throwaway redis-server; writes bench/report.md and bench/report.svg.
bench:
	cd benchmarks/peers && $(GO) run . -out ../../bench

## bench-go: the go test benchmarks of benchmarks/ (per backend, baselines).
bench-go:
	$(GO) test -run '^$$' -bench . -benchmem -count=1 ./benchmarks/...

## bench-ceiling: only Strict.Inc (64 goroutines) vs redis-benchmark -P 16.
bench-ceiling:
	cd benchmarks/peers && $(GO) run . -only "counter inc, 64" -out ../../bench

## demo: the quickstart on the memory backend.
demo:
	$(GO) run ./examples/quickstart

## demo-metrics: a small workload on the memory backend with observability
## on; prints the state-change log lines, the OpenTelemetry metrics and the
## decorator's spans (README "Observability").
demo-metrics:
	$(GO) run ./examples/demo-metrics
