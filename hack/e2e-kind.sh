#!/usr/bin/env bash
# End to end on a throwaway kind cluster (`make test-e2e`; never part of `make test`):
#   1. create the cluster, build the image and load it into the cluster's node;
#   2. install the Prometheus Operator CRDs (the ServiceMonitor and PrometheusRule need them) and
#      deploy/postgres (the operator, its RBAC and monitoring objects, a throwaway PostgreSQL);
#   3. wait for the rollout, run deploy/samples/noop-hello.yaml to Succeeded, find its audit row;
#   4. scrape /metrics from a pod inside the cluster: one leader, and the run counted once.
# Without a Docker engine or kind it says so and exits 0.
#
# Environment: IMG (default agentrun-operator:e2e), KIND_CLUSTER (agentrun-e2e),
# KIND_NODE_IMAGE (kind's default node image unless set, e.g. kindest/node:v1.34.0),
# KEEP_CLUSTER=1 to leave the cluster running afterwards, KUBECTL, CONTAINER_TOOL (docker).
# The CRD needs Kubernetes >= 1.32 (selectableFields); the lane checks the node's version.
# `kind load docker-image` needs Docker: with CONTAINER_TOOL=podman only `make docker-build` works.
set -euo pipefail
cd "$(dirname "$0")/.."

IMG=${IMG:-agentrun-operator:e2e}
CLUSTER=${KIND_CLUSTER:-agentrun-e2e}
KUBECTL=${KUBECTL:-kubectl}
CONTAINER_TOOL=${CONTAINER_TOOL:-docker}
NS=agentrun-system

skip() {
  echo "test-e2e: SKIPPED: $*"
  exit 0
}
command -v "$CONTAINER_TOOL" >/dev/null || skip "no $CONTAINER_TOOL command"
"$CONTAINER_TOOL" info >/dev/null 2>&1 || skip "$CONTAINER_TOOL cannot reach a container engine ('$CONTAINER_TOOL info' failed)"
command -v kind >/dev/null || skip "kind is not installed (https://kind.sigs.k8s.io)"
command -v "$KUBECTL" >/dev/null || skip "no $KUBECTL command"

step() { echo "--- $*"; }

# A kubeconfig of our own: the user's ~/.kube/config and current context stay untouched.
work=$(mktemp -d)
export KUBECONFIG="$work/kubeconfig"
cleanup() {
  rc=$?
  if [ "$rc" -ne 0 ]; then
    step "failed; operator logs and state"
    "$KUBECTL" -n "$NS" get pods,statefulsets,deployments -o wide || true
    "$KUBECTL" -n "$NS" logs deployment/agentrun-operator --all-containers --tail=100 || true
    "$KUBECTL" describe agentrun hello || true
  fi
  if [ -n "${KEEP_CLUSTER:-}" ]; then
    echo "kept cluster $CLUSTER: kind get kubeconfig --name $CLUSTER"
  else
    kind delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

step "kind cluster $CLUSTER"
kind delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true # a leftover of KEEP_CLUSTER=1
kind create cluster --name "$CLUSTER" --kubeconfig "$KUBECONFIG" --wait 120s \
  ${KIND_NODE_IMAGE:+--image "$KIND_NODE_IMAGE"}
minor=$("$KUBECTL" version -o json | sed -n '/serverVersion/,/}/s/.*"minor": *"\([0-9]*\).*/\1/p')
if [ "${minor:-0}" -lt 32 ]; then
  echo "test-e2e: the kind node runs Kubernetes 1.${minor:-?}; the AgentRun CRD needs >= 1.32:" \
    "use a newer kind or KIND_NODE_IMAGE=kindest/node:v1.32.0 (or later)" >&2
  exit 1
fi

step "image $IMG"
make docker-build IMG="$IMG" CONTAINER_TOOL="$CONTAINER_TOOL"
kind load docker-image "$IMG" --name "$CLUSTER"

step "Prometheus Operator CRDs, then deploy/postgres"
"$KUBECTL" apply --server-side -f test/fixtures/prometheus-operator/
"$KUBECTL" wait --for=condition=Established --timeout=60s \
  crd/servicemonitors.monitoring.coreos.com crd/prometheusrules.monitoring.coreos.com
make deploy OVERLAY=deploy/postgres IMG="$IMG" KUBECTL="$KUBECTL"
# The operator's pods start once PostgreSQL answers (an init container waits for it).
"$KUBECTL" -n "$NS" rollout status statefulset/agentrun-postgres --timeout=300s
"$KUBECTL" -n "$NS" rollout status deployment/agentrun-operator --timeout=300s

step "sample AgentRun"
"$KUBECTL" apply -f deploy/samples/noop-hello.yaml
"$KUBECTL" wait --for=condition=Succeeded agentrun/hello --timeout=120s
"$KUBECTL" get agentruns -o wide

step "http.check refuses cluster-internal targets by default"
# The default install names no httpCheck.allowedHosts: the cloud metadata address is refused at
# plan time, the API server's own Service (a name) when the attempt runs, before anything is
# sent (docs/handlers.md, "What http.check may reach").
for target in metadata=http://169.254.169.254/latest/meta-data/ apiserver=https://kubernetes.default.svc/version; do
  "$KUBECTL" apply -f - <<EOF
apiVersion: agents.applylens.io/v1alpha1
kind: AgentRun
metadata:
  name: ssrf-${target%%=*}
spec:
  agent: http.check
  objective: must be refused by the default http.check policy
  dryRun: false
  params:
    url: ${target#*=}
EOF
  "$KUBECTL" wait --for=jsonpath='{.status.phase}'=Failed "agentrun/ssrf-${target%%=*}" --timeout=120s
  "$KUBECTL" get agentrun "ssrf-${target%%=*}" \
    -o jsonpath='{.status.conditions[?(@.type=="Succeeded")].message}{"\n"}{.status.error}{"\n"}' |
    grep "blocked by the operator's http.check policy"
done

step "an AgentDefinition's webhook is refused the API server too"
# Registered with kubectl, no restart; its URL (a name) is checked when the run executes and the
# API server's Service is refused before anything is sent (docs/agents.md).
"$KUBECTL" apply -f - <<EOF
apiVersion: agents.applylens.io/v1alpha1
kind: AgentDefinition
metadata:
  name: ssrf-hook
spec:
  webhook:
    url: https://kubernetes.default.svc/version
---
apiVersion: agents.applylens.io/v1alpha1
kind: AgentRun
metadata:
  name: ssrf-hook
spec:
  agent: ssrf-hook
  objective: must be refused by the agent webhook policy
  dryRun: false
EOF
"$KUBECTL" wait --for=condition=Ready=true agentdefinition/ssrf-hook --timeout=60s
"$KUBECTL" wait --for=jsonpath='{.status.phase}'=Failed agentrun/ssrf-hook --timeout=120s
"$KUBECTL" get agentrun ssrf-hook -o jsonpath='{.status.error}{"\n"}' |
  grep "blocked by the operator's agent webhook policy"
"$KUBECTL" get agents

step "a Job agent: the example image, end to end"
# examples/job-agent: built, loaded into kind, registered with kubectl; the run mirrors Starting,
# Running and the container's result; a failing attempt carries its termination message.
"$CONTAINER_TOOL" build -t agentrun-example-agent:dev examples/job-agent
kind load docker-image agentrun-example-agent:dev --name "$CLUSTER"
"$KUBECTL" apply -f examples/job-agent/agentdefinition.yaml
"$KUBECTL" wait --for=condition=Ready=true agentdefinition/word-counter --timeout=60s
"$KUBECTL" wait --for=condition=Succeeded agentrun/count-words --timeout=180s
"$KUBECTL" get agentrun count-words -o jsonpath='{.status.artifacts}{"\n"}' | grep '"words":6'
"$KUBECTL" get jobs -l agents.applylens.io/run-id="$("$KUBECTL" get agentrun count-words -o jsonpath='{.metadata.uid}')"
KUBECTL="$KUBECTL" node plugins/kubectl-agentrun logs count-words | grep 'objective: count the words'
"$KUBECTL" apply -f - <<EOF
apiVersion: agents.applylens.io/v1alpha1
kind: AgentRun
metadata:
  name: count-fails
spec:
  agent: word-counter
  objective: fail on purpose
  params: { fail: true }
EOF
"$KUBECTL" wait --for=jsonpath='{.status.phase}'=Failed agentrun/count-fails --timeout=180s
"$KUBECTL" get agentrun count-fails -o jsonpath='{.status.error}{"\n"}' | grep 'asked to fail'

step "audit row in PostgreSQL"
uid=$("$KUBECTL" get agentrun hello -o jsonpath='{.metadata.uid}')
for _ in $(seq 30); do
  status=$("$KUBECTL" -n "$NS" exec agentrun-postgres-0 -- psql -U agentrun -d agentrun -tAc \
    "SELECT status FROM agent_audit_log WHERE run_id = '$uid'" || true)
  [ "$status" = succeeded ] && break
  sleep 1
done
[ "$status" = succeeded ] || { echo "audit row of $uid: '$status', expected succeeded"; exit 1; }
echo "run $uid: $status"

step "metrics, scraped from inside the cluster"
# curl in a pod in the namespace default; prints what it fetched.
scrape() {
  local pod=scrape-$RANDOM phase=
  "$KUBECTL" -n default run "$pod" --restart=Never --image=curlimages/curl:8.11.1 \
    -- -sSf "$@" >/dev/null
  for _ in $(seq 90); do
    phase=$("$KUBECTL" -n default get pod "$pod" -o jsonpath='{.status.phase}')
    if [ "$phase" = Succeeded ] || [ "$phase" = Failed ]; then break; fi
    sleep 2
  done
  "$KUBECTL" -n default logs "$pod"
  "$KUBECTL" -n default delete pod "$pod" --wait=false >/dev/null
  [ "$phase" = Succeeded ]
}
# Through the metrics Service (what the ServiceMonitor scrapes): one of the replicas answers.
scrape "http://agentrun-operator-metrics.$NS.svc:8080/metrics" | grep -E '^leader_election_master_status'
# Every replica by pod address: exactly one leader, and the sample counted once.
urls=$("$KUBECTL" -n "$NS" get pods -l app.kubernetes.io/name=agentrun-operator,control-plane=controller-manager \
  -o jsonpath='{range .items[*]}http://{.status.podIP}:8080/metrics {end}')
# shellcheck disable=SC2086 # one argument per URL
metrics=$(scrape $urls)
# sum NAME [LABEL...]: the total of the series of NAME that carry every LABEL.
sum() { awk -v name="$1" -v labels="${*:2}" 'index($0, name "{") == 1 {
    n = split(labels, want, " "); for (i = 1; i <= n; i++) if (index($0, want[i]) == 0) next
    total += $NF } END { print total + 0 }' <<<"$metrics"; }
leaders=$(sum leader_election_master_status)
succeeded=$(sum agent_runs_total 'agent="noop"' 'status="succeeded"')
echo "leaders: $leaders, agent_runs_total{agent=\"noop\",status=\"succeeded\"}: $succeeded"
if [ "$leaders" != 1 ] || [ "$succeeded" != 1 ]; then
  echo "expected 1 leader and 1 succeeded noop run"
  exit 1
fi

step "PASSED"
