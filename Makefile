# VON control plane. Tests that build network namespaces need root.
export PATH := $(PATH):/usr/local/go/bin
GO      ?= go
BUF     ?= $(GO) run github.com/bufbuild/buf/cmd/buf@v1.75.0
BIN     := bin
CMDS    := $(notdir $(wildcard cmd/*))

.PHONY: all build test unit lint e2e demo proto proto-check fmt bench fuzz clean

all: build

build: ## build every command into bin/
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/ ./cmd/...

test: lint ## everything CI runs: lint, then all tests (unit, netns, e2e) with -race
	# -p 1: one package at a time. The netns and e2e tests push real traffic against
	# leases and failure detectors measured in seconds; CPU-heavy packages running
	# beside them on a 2-core machine made them flaky.
	$(GO) test -race -count=1 -p 1 -timeout 25m ./...
	# A count, not a duration: a timed -fuzztime can end with a spurious
	# "context deadline exceeded" from the fuzzing engine.
	$(MAKE) fuzz FUZZTIME=2000x

# Fuzz targets on input from the network and from operators; `make fuzz` runs each
# for FUZZTIME (docs/reliability.md records the long runs).
FUZZTIME ?= 10m
FUZZ := wire:FuzzParse topology:FuzzParse reservation:FuzzReserveInput agent:FuzzPartitionSpec
fuzz: ## run every fuzz target for FUZZTIME (default 10m each)
	@for t in $(FUZZ); do pkg=$${t%%:*}; fn=$${t#*:}; \
	  echo "fuzz $$pkg $$fn for $(FUZZTIME)"; \
	  $(GO) test -run '^$$' -fuzz "^$$fn$$" -fuzztime $(FUZZTIME) -timeout 0 -parallel 1 ./$$pkg/ || exit 1; done

unit: ## tests that need neither root nor namespaces
	$(GO) test -race -count=1 ./topology/ ./disjoint/ ./proto/...

lint: ## gofmt, go vet, buf lint (the proto test also lints and checks generated code)
	@fmt=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$fmt" ]; then echo "gofmt needed on:"; echo "$$fmt"; exit 1; fi
	$(GO) vet ./...
	GOOS=darwin $(GO) build ./... 
	$(BUF) lint

e2e: ## end-to-end tests on real namespaces (root)
	$(GO) test -race -count=1 -timeout 20m ./e2e/...

demo: ## the end-to-end demo on network namespaces (root): reserve, isolate, release
	$(GO) run ./e2e/demo

proto: ## regenerate Go code from proto/von/v1
	$(BUF) generate

proto-check: proto ## fail if generated code is stale
	git diff --exit-code -- proto/

fmt:
	gofmt -w $$(git ls-files '*.go')

bench: ## benchmarks; compare runs with benchstat
	$(GO) test -run='^$$' -bench=. -benchmem ./...

clean:
	rm -rf $(BIN)
