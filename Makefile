# Concord's build. `make help` lists the targets.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
GO ?= go
BUF := $(GO) tool -modfile=tools/go.mod buf
PROTODEPS := .build/protodeps

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

.PHONY: run
run: ## Build and start the greeter example (embedded single-binary mode)
	$(GO) build -o bin/greeter ./examples/greeter
	./bin/greeter

.PHONY: test
test: ## Run every test, with -race
	$(GO) vet ./...
	$(GO) test -race -count=1 ./...

.PHONY: protodeps
protodeps: ## Write third-party .proto includes into .build/protodeps (git-ignored)
	$(GO) run ./cmd/concord proto-deps -skip-concord $(PROTODEPS)

.PHONY: generate
generate: protodeps ## Regenerate all generated code, examples included
	$(BUF) generate
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
