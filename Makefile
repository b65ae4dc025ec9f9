# writ — common tasks. `make help` lists them.
GO      ?= go
PKGS    ?= ./...
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
BIN     := bin/writ

.PHONY: help build test test-go lint policy-check run demo bench pgo fuzz screenshots clean

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
	$(GO) test -race -count=1 -timeout 50m $(PKGS)

lint: ## gofmt and go vet
	@out="$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))"; \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

# make run LISTEN=0.0.0.0:8080 DATA_DIR=/srv/writ ARGS="--log-level debug"
LISTEN   ?= 127.0.0.1:8080
DATA_DIR ?=
ARGS     ?=

run: build ## run the main job: writ serve on this repository (LISTEN, DATA_DIR, ARGS; embedded defaults, private PostgreSQL)
	$(BIN) serve --repo . --listen $(LISTEN) $(if $(DATA_DIR),--data-dir $(DATA_DIR)) $(ARGS)

demo: build ## walk through the whole flow on a fresh temporary repository
	$(BIN) demo

# The profile `go build` uses for profile-guided optimization of cmd/writ
# (it picks up cmd/writ/default.pgo by itself). Benchmarks use it too, so
# they measure the code the binary runs.
PGO := $(CURDIR)/cmd/writ/default.pgo

bench: ## run the benchmarks (built with the binary's PGO profile)
	$(GO) test -pgo=$(PGO) -run '^$$' -bench . -benchmem $(PKGS)

# Regenerate the PGO profile from the CPU-heavy work of a running server
# and of writ plan: policy decisions, playbook validation, approval
# verification and planning 1,000 playbooks. Rerun
# after large changes to those paths; a stale profile still builds, it
# just helps less.
pgo: ## regenerate cmd/writ/default.pgo from the policy, playbook, approval and plan benchmarks
	@tmp="$$(mktemp -d)"; trap 'rm -rf "$$tmp"' EXIT; \
	  $(GO) test -pgo=off ./internal/policy -run '^$$' -bench 'BenchmarkDecide' -benchtime 5s -cpuprofile "$$tmp/policy.pprof" -o "$$tmp/policy.test" && \
	  $(GO) test -pgo=off ./internal/playbook -run '^$$' -bench 'BenchmarkValidate10000' -benchtime 3s -cpuprofile "$$tmp/playbook.pprof" -o "$$tmp/playbook.test" && \
	  $(GO) test -pgo=off ./internal/approval -run '^$$' -bench 'BenchmarkVerify1000' -benchtime 3s -cpuprofile "$$tmp/approval.pprof" -o "$$tmp/approval.test" && \
	  $(GO) test -pgo=off ./cmd/writ -run '^$$' -bench 'BenchmarkPlan1000$$' -benchtime 30x -cpuprofile "$$tmp/plan.pprof" -o "$$tmp/writ.test" && \
	  $(GO) tool pprof -proto "$$tmp/policy.pprof" "$$tmp/playbook.pprof" "$$tmp/approval.pprof" "$$tmp/plan.pprof" > $(PGO)
	@echo "wrote $(PGO)"

fuzz: ## fuzz the playbook, targets file and git tree decoders (FUZZTIME=5m each)
	$(GO) test ./internal/playbook -run '^$$' -fuzz 'FuzzParse$$' -fuzztime $(or $(FUZZTIME),1m)
	$(GO) test ./internal/playbook -run '^$$' -fuzz FuzzParseTargetsFile -fuzztime $(or $(FUZZTIME),1m)
	$(GO) test ./internal/gitsrc -run '^$$' -fuzz FuzzParseTree -fuzztime $(or $(FUZZTIME),1m)
	$(GO) test ./internal/gitsrc -run '^$$' -fuzz FuzzCheckName -fuzztime $(or $(FUZZTIME),1m)

screenshots: ## remake the console screenshots in docs/images (the browser test, with Chromium)
	WRIT_SCREENSHOTS=$(CURDIR)/docs/images $(GO) test ./cmd/writ -run '^TestConsoleInBrowser$$' -count=1

clean:
	rm -rf bin
