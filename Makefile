# writ — common tasks. `make help` lists them.
GO      ?= go
PKGS    ?= ./...
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
BIN     := bin/writ

.PHONY: help build test test-go lint policy-check run demo bench fuzz clean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

build: ## build bin/writ
	$(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/writ

test: lint policy-check test-go ## run every test (needs PostgreSQL server binaries; see README)

# The stock OPA CLI, at the version writ embeds (go.mod), checks the default
# policies as a security team's CI would: opa test, and opa fmt.
OPA_VERSION = $(shell $(GO) list -m -f '{{.Version}}' github.com/open-policy-agent/opa)
OPA         = $(GO) run github.com/open-policy-agent/opa@$(OPA_VERSION)

policy-check: ## opa test and opa fmt --list --fail on policies/, with the stock OPA CLI
	$(OPA) test policies/
	$(OPA) fmt --list --fail policies/

test-go:
	$(GO) test -race -count=1 -timeout 30m $(PKGS)

lint: ## gofmt and go vet
	@out="$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))"; \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

run: build ## run the main job: writ serve on this repository (embedded defaults, private PostgreSQL)
	$(BIN) serve --repo .

demo: build ## walk through the whole flow on a fresh temporary repository
	$(BIN) demo

bench: ## run the benchmarks
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)

fuzz: ## fuzz the playbook decoder (FUZZTIME=5m)
	$(GO) test ./internal/playbook -run '^$$' -fuzz FuzzParse -fuzztime $(or $(FUZZTIME),1m)

clean:
	rm -rf bin
