SHELL := /bin/bash
# distkit — one command per intent. `make test` is what CI runs.
GO      ?= go
TIMEOUT ?= 9m

.PHONY: test test-short bench bench-ceiling demo vet

## test: every suite with the race detector: unit tests, the conformance
## suite on memory, miniredis, redis-server and a 3-master Cluster (both
## drivers), examples. Starts its own Redis processes on free ports.
test: vet
	@set -o pipefail; $(GO) test -race -count=1 -timeout $(TIMEOUT) -v ./... 2>&1 | tee test.out | \
		grep -E '^\s*(--- (PASS|FAIL|SKIP)|ok |FAIL|panic:)' ; \
	status=$${PIPESTATUS[0]}; \
	if [ $$status -ne 0 ]; then echo "--- failure context (full log: test.out) ---"; \
		grep -n -B3 -A25 -E '^\s*--- FAIL|^panic:|DATA RACE' test.out | head -300; fi; \
	passed=$$(grep -cE '^\s*--- PASS' test.out); failed=$$(grep -cE '^\s*--- FAIL' test.out); \
	skipped=$$(grep -cE '^\s*--- SKIP' test.out); \
	echo "$$passed passed, $$failed failed, $$skipped skipped"; exit $$status

## test-short: the same without -race, quieter.
test-short:
	$(GO) test -count=1 ./...

vet:
	$(GO) vet ./...

## bench: benchmarks across backends against a throwaway redis-server,
## then Strict.Inc with 64 goroutines against redis-benchmark's ceiling.
bench:
	$(GO) test -run '^$$' -bench . -benchmem -count=1 ./benchmarks/...
	$(GO) run ./benchmarks/ceiling -flush-delay 20us

## bench-ceiling: only the Strict.Inc vs redis-benchmark -P 16 comparison.
bench-ceiling:
	$(GO) run ./benchmarks/ceiling -flush-delay 20us

## demo: the quickstart on the memory backend.
demo:
	$(GO) run ./examples/quickstart
