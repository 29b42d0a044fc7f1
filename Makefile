# VON control plane. Tests that build network namespaces need root.
export PATH := $(PATH):/usr/local/go/bin
GO      ?= go
BUF     ?= $(GO) run github.com/bufbuild/buf/cmd/buf@v1.75.0
BIN     := bin
CMDS    := $(notdir $(wildcard cmd/*))
# -buildvcs=auto stamps the commit into the binaries for --version even where
# GOFLAGS says -buildvcs=false, and still builds outside a git checkout.
GOBUILD := $(GO) build -buildvcs=auto

.PHONY: all build test unit lint verify verify-gofmt verify-vet verify-buf verify-proto verify-mod e2e demo proto proto-check fmt bench fuzz clean man package pkg-bin

all: build

build: ## build every command into bin/
	@mkdir -p $(BIN)
	$(GOBUILD) -o $(BIN)/ ./cmd/...

# Packaging. Everything goes under BUILD (not committed): static binaries in bin/,
# man pages in man/, shell completions in completions/, the .debs in deb/.
BUILD          ?= build
PKG_CMDS       := von-manager von-agent vonctl
PKG_VERSION    ?= $(shell deploy/version.sh)
PKG_ARCH       ?= $(shell $(GO) env GOARCH)
PKG_MAINTAINER ?= VON maintainers <von@localhost>
# File times in the packages: the commit's, so that rebuilding a commit gives the same files.
PKG_EPOCH      ?= $(shell git log -1 --format=%ct 2>/dev/null)
NFPM_VERSION   := v2.45.2
NFPM           := $(BUILD)/tools/nfpm-$(NFPM_VERSION)/nfpm

# -s -w: no symbol table and DWARF (half the size; panics still name functions).
pkg-bin: ## static binaries of von-manager, von-agent and vonctl for the packages, into BUILD/bin/
	@mkdir -p $(BUILD)/bin
	CGO_ENABLED=0 $(GOBUILD) -trimpath -ldflags='-s -w' -o $(BUILD)/bin/ $(addprefix ./cmd/,$(PKG_CMDS))

# The pages and completions come from the cobra commands (each binary's hidden
# gendocs command); VON_* are unset so that no flag default shows this machine's.
man: pkg-bin ## man pages and bash, zsh and fish completions into BUILD/man/ and BUILD/completions/
	rm -rf $(BUILD)/man $(BUILD)/completions
	for c in $(PKG_CMDS); do \
	  env -u VON_MANAGER -u VON_CA -u VON_CERT -u VON_KEY \
	    $(BUILD)/bin/$$c gendocs --man $(BUILD)/man --completions $(BUILD)/completions || exit 1; done
	gzip -9n $(BUILD)/man/man*/*

$(NFPM):
	GOBIN=$(abspath $(dir $(NFPM))) $(GO) install github.com/goreleaser/nfpm/v2/cmd/nfpm@$(NFPM_VERSION)

package: man $(NFPM) ## .deb packages von-manager, von-agent and vonctl (deploy/nfpm/) into BUILD/deb/
	rm -rf $(BUILD)/deb
	@mkdir -p $(BUILD)/deb
	for p in $(PKG_CMDS); do \
	  VERSION='$(PKG_VERSION)' ARCH='$(PKG_ARCH)' BUILD='$(BUILD)' MAINTAINER='$(PKG_MAINTAINER)' \
	  $(if $(PKG_EPOCH),SOURCE_DATE_EPOCH=$(PKG_EPOCH)) \
	    $(NFPM) package --config deploy/nfpm/$$p.yaml --packager deb --target $(BUILD)/deb/ || exit 1; done

# Tests that need root (network namespaces) skip without it, saying so; with
# VON_TEST_REQUIRE_ROOT=1 they fail instead, so that `make test` (CI, as root) cannot
# pass by skipping them; VON_TEST_REQUIRE_CHROMIUM=1 does the same for the dashboard's
# browser test.
test: verify ## everything CI runs: verify, then all tests (unit, netns, e2e) with -race
	# -p 1: one package at a time. The netns and e2e tests push real traffic against
	# leases and failure detectors measured in seconds; CPU-heavy packages running
	# beside them on a 2-core machine made them flaky.
	VON_TEST_REQUIRE_ROOT=1 VON_TEST_REQUIRE_CHROMIUM=1 $(GO) test -race -count=1 -p 1 -timeout 25m ./...
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

# Every package, with the tests that need root (network namespaces) skipped even as
# root (VON_TEST_NO_ROOT, internal/testenv), but e2e, whose TestMain builds the
# binaries and needs root, and e2e/scale, a long run of simulated routers.
UNIT = $$($(GO) list ./... | grep -v -e '/e2e$$' -e '/e2e/scale$$')
unit: ## the tests that need neither root nor namespaces, in every package
	VON_TEST_NO_ROOT=1 $(GO) test -race -count=1 $(UNIT)

# verify: the checks of the source that need no test run, each its own target like
# etcd's verify-*; `make test` (CI) runs them first.
verify: verify-gofmt verify-vet verify-buf verify-proto verify-mod ## gofmt, go vet (Linux and macOS), buf lint and format, generated code, go.mod tidy

# Tracked and new (not ignored) files: a file not yet added is checked too.
GOFILES = $$(git ls-files --cached --others --exclude-standard '*.go' 2>/dev/null || find . -name '*.go' -not -path './build/*')
verify-gofmt: ## fail if any Go file is not gofmt-formatted
	@fmt=$$(gofmt -l $(GOFILES)); \
	  if [ -n "$$fmt" ]; then echo "gofmt needed on (run make fmt):"; echo "$$fmt"; exit 1; fi

verify-vet: ## go vet, also for macOS (the code and tests outside linux-only files must build there)
	$(GO) vet ./...
	GOOS=darwin $(GO) vet ./...

verify-buf: ## buf lint and buf format of proto/
	$(BUF) lint
	@$(BUF) format --diff --exit-code || { echo "the .proto files are not buf-formatted: run $(BUF) format -w"; exit 1; }

# The proto test regenerates into a temporary directory and compares, so the check
# changes nothing in the work tree (proto-check regenerates in place).
verify-proto: ## fail if the generated Go code is stale against proto/
	$(GO) test -count=1 -run '^TestGeneratedCodeUpToDate$$' ./proto/von/v1/

verify-mod: ## fail if go.mod or go.sum are not what go mod tidy makes them
	@$(GO) mod tidy -diff || { echo "go.mod/go.sum are not tidy: run go mod tidy"; exit 1; }

lint: verify ## the older name of verify

e2e: ## end-to-end tests on real namespaces (root)
	VON_TEST_REQUIRE_ROOT=1 $(GO) test -race -count=1 -timeout 20m ./e2e/...

demo: ## the end-to-end demo on network namespaces (root): reserve, isolate, release
	$(GO) run ./e2e/demo

proto: ## regenerate Go code from proto/von/v1
	$(BUF) generate

proto-check: proto ## fail if generated code is stale
	git diff --exit-code -- proto/

fmt: ## gofmt every Go file
	gofmt -w $(GOFILES)

bench: ## benchmarks; compare runs with benchstat
	$(GO) test -run='^$$' -bench=. -benchmem ./...

clean:
	rm -rf $(BIN) $(BUILD)
