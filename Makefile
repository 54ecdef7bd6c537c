# Concord's build. `make help` lists the targets.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
GO ?= go
BUF := $(GO) tool -modfile=tools/go.mod buf
PROTODEPS := .build/protodeps
ADDR ?= 127.0.0.1:8080
DATA ?= data

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

.PHONY: run
run: ## Build and start the greeter example on ADDR (127.0.0.1:8080), its node's state in DATA (data/)
	$(GO) build -o bin/greeter ./examples/greeter
	./bin/greeter -addr $(ADDR) -data $(DATA)

.PHONY: test
test: conformance ## Run every test, with -race
	$(GO) vet ./...
	$(GO) test -race -count=1 ./...
	$(GO) -C deploy test ./...

# Each fuzz target of caller input (request bodies, fencing headers, limit
# keys, registry keys, TCC headers) for FUZZTIME; CI runs them briefly.
# FUZZTIME is a count of executions (Nx), not a duration: with a duration,
# Go's fuzz coordinator can fail a target with a bare "context deadline
# exceeded" when its workers are slow at the deadline (golang/go#75804),
# which failed CI once on a loaded machine with no crasher.
FUZZTIME ?= 100000x
FUZZ_TARGETS := ./rpc:FuzzRequestDecoding ./rpc:FuzzParseFencing ./rpc:FuzzH1Response ./rpc:FuzzTracingHeaders ./coord:FuzzLimitKey ./coord/registry:FuzzEscapeToken ./coord/registry:FuzzDecodeRegistration ./tcc:FuzzParseHeaders ./coord/txlog:FuzzDecode ./msg:FuzzDecodeEnvelope ./coord/config:FuzzDecodeEnvelope ./internal/admincreds:FuzzParse ./lambdafn:FuzzDecodeEvent

.PHONY: fuzz
fuzz: ## Run every fuzz target for FUZZTIME executions (default 100000x) each
	@for t in $(FUZZ_TARGETS); do \
		echo "fuzz $${t#*:} ($${t%%:*}) for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$${t#*:}$$" -fuzztime $(FUZZTIME) "$${t%%:*}" || exit 1; \
	done

# The TCC example (README: "TCC transactions: the bank example").
BANK_ADDR ?= 127.0.0.1:8090
BANK_ADMIN ?= 127.0.0.1:9090
BANK_DATA ?= data-bank
.PHONY: bank
bank: ## Start the bank example (TCC) on BANK_ADDR (127.0.0.1:8090), state in BANK_DATA (data-bank/)
	$(GO) run ./examples/bank -addr $(BANK_ADDR) -admin $(BANK_ADMIN) -data $(BANK_DATA)

# The start-stop stress tests (issue 19) with ten times make test's cycles.
.PHONY: stress
stress: ## Stop Apps and nodes at random moments of their start, 10x make test's cycles, with -race
	$(GO) test -race -count=1 -run 'AtAnyMomentOfStart' -timeout 60m . ./coord -args -stopstress=10

# The Connect conformance suite (connectrpc.com/conformance, at the version
# pinned in tools/go.mod) against rpc.Server; see conformance/README.md. Its
# .proto files are copied from the checksum-verified module, and the Go code
# generated from them goes to git-ignored conformance/internal/gen.
CONFORMANCE_PROTO := .build/conformance/proto
# The server under test is built with -race: the suite's concurrent calls
# over three protocols then double as a race test of rpc/.
CONFORMANCE_BUILDFLAGS ?= -race
# RPCs in flight at once; 8 keeps 2 cores busy through the suite's delays.
CONFORMANCE_FLAGS ?= --parallel 8

.PHONY: conformance
conformance: ## Run the Connect conformance suite against rpc.Server
	$(GO) mod download -modfile=tools/go.mod connectrpc.com/conformance
	rm -rf $(CONFORMANCE_PROTO) && mkdir -p $(CONFORMANCE_PROTO)/connectrpc/conformance/v1
	cp "$$($(GO) list -modfile=tools/go.mod -m -f '{{.Dir}}' connectrpc.com/conformance)"/proto/connectrpc/conformance/v1/*.proto $(CONFORMANCE_PROTO)/connectrpc/conformance/v1/
	chmod -R u+w $(CONFORMANCE_PROTO)
	$(BUF) generate $(CONFORMANCE_PROTO) --template conformance/buf.gen.yaml
	$(GO) -C conformance vet ./...
	$(GO) -C conformance build $(CONFORMANCE_BUILDFLAGS) -o $(CURDIR)/bin/concord-sut ./cmd/concord-sut
	GORACE=halt_on_error=1 $(GO) tool -modfile=tools/go.mod connectconformance --mode server \
		--conf conformance/config.yaml $(CONFORMANCE_FLAGS) -- bin/concord-sut

.PHONY: protodeps
protodeps: ## Write third-party .proto includes into .build/protodeps (git-ignored)
	$(GO) run ./cmd/concord proto-deps -skip-concord $(PROTODEPS)

.PHONY: generate
generate: protodeps ## Regenerate all generated code, examples included
	$(BUF) generate
	$(BUF) generate --template buf.gen.health.yaml
	$(GO) test ./codegen -run TestGolden -update >/dev/null

.PHONY: checkgenerate
checkgenerate: generate ## Fail if generated code is not up to date
	@git diff --exit-code -- . || { echo "generated code is stale: run make generate and commit"; exit 1; }
	@test -z "$$(git status --porcelain --untracked-files=all)" || { git status --porcelain --untracked-files=all; echo "make generate created untracked files"; exit 1; }

.PHONY: lint
lint: protodeps ## Run go vet, gofmt and buf lint
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(BUF) lint

.PHONY: clean
clean: ## Remove build outputs
	rm -rf bin .build

# Three interleaved rounds: the table shows the median of each metric.
BENCHFLAGS ?= -count 3

LOCKBENCHFLAGS ?=

.PHONY: bench
bench: ## Benchmarks with their baselines: RPC (connect-go, grpc-go), cold start, RSS, locks (etcd), TCC (the same RPCs without it), messages (raw JetStream), limiters (x/time/rate)
	cd bench && $(GO) run ./cmd/rpcbench $(BENCHFLAGS)
	cd bench && $(GO) run ./cmd/lockbench $(LOCKBENCHFLAGS)
	cd bench && $(GO) run ./cmd/tccbench $(TCCBENCHFLAGS)
	cd bench && $(GO) run ./cmd/msgbench $(MSGBENCHFLAGS)
	$(GO) test -run '^$$' -bench 'Allow|Admission|ResolveAndPick' -benchmem ./rpc/ratelimit ./rpc/breaker ./rpc .
