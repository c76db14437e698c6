#!/usr/bin/env bash
# Makes the tests' tools available and prints the path of each one named, one per line, in order
# (with one name, the last line is its path):
#
#   promtool     Prometheus's rule checker and rule unit tester
#   prometheus   the Prometheus server, which scrapes the operator in integration tests
#   argocd-lua   Argo CD's Lua VM for resource health checks (argocd-lua/main.go)
#
# Order, for each: $PROMTOOL / $PROMETHEUS / $ARGOCD_LUA if set (a path or a command on PATH);
# else the cache outside the repo; else a build from the Go module proxy with the wrapper modules
# beside this script (their go.mod files pin the versions). Progress goes to stderr so that callers
# can take stdout's lines. hack/envtest/setup.sh does the same for the control plane.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
say() { echo "tools: $*" >&2; }

[ $# -gt 0 ] || { say "usage: $0 promtool|prometheus|argocd-lua..."; exit 2; }

# The version a go.mod requires of a module (block or single-line require; "// indirect" allowed).
required() { awk -v m="$2" '($1 == m && $2 ~ /^v/) { print $2 } ($1 == "require" && $2 == m) { print $3 }' "$1" | head -n 1; }

os=$(uname -s | tr '[:upper:]' '[:lower:]')
case "$(uname -m)" in x86_64) arch=amd64 ;; aarch64 | arm64) arch=arm64 ;; *) arch=$(uname -m) ;; esac
cache_root=${TOOLS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/agentrun-operator/tools}

# Prometheus 3.x.y is published to the Go module proxy as v0.3xx.y (its module path has no /v3).
prometheus_module=$(required "$here/prometheus/go.mod" github.com/prometheus/prometheus)
[[ $prometheus_module =~ ^v0\.([0-9]+)([0-9]{2})\.([0-9]+)$ ]] ||
  { say "cannot read the Prometheus version from $here/prometheus/go.mod"; exit 1; }
prometheus_version="${BASH_REMATCH[1]}.$((10#${BASH_REMATCH[2]})).${BASH_REMATCH[3]}"

gopher_lua=$(required "$here/argocd-lua/go.mod" github.com/yuin/gopher-lua)
[ -n "$gopher_lua" ] || { say "cannot read the gopher-lua version from $here/argocd-lua/go.mod"; exit 1; }
# The harness is this repository's own code: its cache entry follows its source, not just a version.
harness_hash=$(cat "$here"/argocd-lua/{go.mod,go.sum,main.go} | sha256sum | cut -c1-12)

# build BINARY DIR MODULE-DIR PACKAGE [GO BUILD FLAGS...]: builds once into DIR/BINARY under a
# lock, so that two concurrent 'make' runs do not build the same binary twice.
build() {
  local name=$1 dir=$2 module=$3 pkg=$4 start
  shift 4
  mkdir -p "$dir"
  exec 9>"$dir/.lock"
  if command -v flock >/dev/null 2>&1; then flock 9; fi
  if [ ! -x "$dir/$name" ]; then
    if ! command -v go >/dev/null 2>&1; then
      say "$name is not in $dir and there is no Go toolchain to build it: install Go >= 1.26" \
        "(https://go.dev/doc/install) and run 'make tools' again, or set $(variable "$name") to a $name binary"
      exit 1
    fi
    start=$(date +%s)
    say "building $name from the Go module proxy ($(estimate "$name"); cached afterwards in $dir)"
    (cd "$here/$module" && GOTOOLCHAIN=local CGO_ENABLED=0 go build -trimpath "$@" -o "$dir/$name.tmp" "$pkg")
    mv "$dir/$name.tmp" "$dir/$name"
    say "built $name in $(($(date +%s) - start)) s"
  fi
  exec 9>&-
}

variable() { case $1 in promtool) echo PROMTOOL ;; prometheus) echo PROMETHEUS ;; argocd-lua) echo ARGOCD_LUA ;; esac; }

estimate() {
  case $1 in
    prometheus | promtool) echo "about 4 min cold on 2 cores for both, ~1.5 GB of Go caches" ;;
    argocd-lua) echo "a few seconds" ;;
  esac
}

# Version stamps as Prometheus's own release builds set them, so that --version tells the truth.
prometheus_ldflags() {
  local v=github.com/prometheus/common/version
  echo "-s -w -X $v.Version=$prometheus_version -X $v.Revision=$prometheus_module -X $v.Branch=HEAD" \
    "-X $v.BuildUser=agentrun-operator/hack/tools -X $v.BuildDate=$(date -u +%Y%m%d-%H:%M:%S)"
}

resolve() {
  local name=$1 var dir
  var=$(variable "$name")
  [ -n "$var" ] || { say "unknown tool '$name' (promtool, prometheus or argocd-lua)"; exit 2; }
  if [ -n "${!var:-}" ]; then
    if command -v "${!var}" >/dev/null 2>&1 && [ -x "$(command -v "${!var}")" ]; then
      command -v "${!var}"
      return
    fi
    say "$var=${!var} is not an executable"
    exit 1
  fi
  case $name in
    prometheus | promtool)
      dir="$cache_root/prometheus-$prometheus_version-$os-$arch"
      # Without builtinassets the web UI is not embedded (the tests use only the HTTP API), and
      # remove_all_sd leaves out the cloud and Kubernetes service discoveries (the tests use
      # static_configs), which halves the build.
      build "$name" "$dir" prometheus "github.com/prometheus/prometheus/cmd/$name" \
        -tags remove_all_sd -ldflags "$(prometheus_ldflags)"
      ;;
    argocd-lua)
      dir="$cache_root/argocd-lua-gopher-lua-${gopher_lua#v}-$harness_hash-$os-$arch"
      build "$name" "$dir" argocd-lua . -ldflags "-s -w"
      ;;
  esac
  echo "$dir/$name"
}

for tool in "$@"; do resolve "$tool"; done
