#!/usr/bin/env bash
# Makes kube-apiserver, kube-controller-manager, etcd and a matching kubectl available for the test
# control plane and prints, as its last line, the directory that holds them (the KUBEBUILDER_ASSETS
# convention). kube-controller-manager is there so that tests can have Jobs run their pods (with a
# fake kubelet) and the garbage collector delete what an owner leaves behind.
#
# Order: $KUBEBUILDER_ASSETS if set; else the cache outside the repo; else build what the cache
# lacks from the Go module proxy with the wrapper modules beside this script (their go.mod files pin
# the versions). Progress goes to stderr so that callers can take stdout's last line.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# The version a go.mod requires of a module (block or single-line require; "// indirect" allowed).
required() { awk -v m="$2" '($1 == m && $2 ~ /^v/) { print $2 } ($1 == "require" && $2 == m) { print $3 }' "$1" | head -n 1; }
k8s_version=$(required "$here/kubernetes/go.mod" k8s.io/kubernetes)
etcd_version=$(required "$here/etcd/go.mod" go.etcd.io/etcd/server/v3)
[ -n "$k8s_version" ] && [ -n "$etcd_version" ] || { echo "envtest: cannot read versions from $here/*/go.mod" >&2; exit 1; }

say() { echo "envtest: $*" >&2; }

binaries="kube-apiserver kube-controller-manager etcd kubectl"
has_binaries() {
  local name
  for name in $binaries; do [ -x "$1/$name" ] || return 1; done
}

if [ -n "${KUBEBUILDER_ASSETS:-}" ]; then
  if has_binaries "$KUBEBUILDER_ASSETS"; then
    echo "$KUBEBUILDER_ASSETS"
    exit 0
  fi
  say "KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS does not contain executable ${binaries// /, }"
  say "(setup-envtest's directories have no kube-controller-manager: add the release's own)"
  exit 1
fi

os=$(uname -s | tr '[:upper:]' '[:lower:]')
case "$(uname -m)" in x86_64) arch=amd64 ;; aarch64 | arm64) arch=arm64 ;; *) arch=$(uname -m) ;; esac
cache_root=${ENVTEST_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/agentrun-operator/envtest}
dir="$cache_root/k8s-${k8s_version#v}-etcd-${etcd_version#v}-$os-$arch"

if has_binaries "$dir"; then
  echo "$dir"
  exit 0
fi

if ! command -v go >/dev/null 2>&1; then
  cat >&2 <<MSG
envtest: kube-apiserver, kube-controller-manager and kubectl $k8s_version and etcd $etcd_version are not
all in $dir, and there is no Go toolchain to build them. Either:
  - install Go >= 1.26 (https://go.dev/doc/install) and run 'make envtest' again, or
  - fetch prebuilt binaries with controller-runtime's setup-envtest:
      setup-envtest use ${k8s_version#v} -p path
    add kube-controller-manager $k8s_version to the printed directory (setup-envtest has none; it is
    in kubernetes-server-$os-$arch.tar.gz of the release), and export KUBEBUILDER_ASSETS=<that directory>.
MSG
  exit 1
fi

mkdir -p "$dir"
# Two concurrent 'make' runs must not build the same binary twice.
exec 9>"$dir/.lock"
if command -v flock >/dev/null 2>&1; then flock 9; fi

build() { # name module-dir package ldflags
  local name=$1 module=$2 pkg=$3 ldflags=$4 start
  [ -x "$dir/$name" ] && return 0
  start=$(date +%s)
  say "building $name from the Go module proxy (about 4 min cold on 2 cores, ~3.5 GB of Go caches; cached afterwards in $dir)"
  (cd "$here/$module" && GOTOOLCHAIN=local CGO_ENABLED=0 go build -trimpath -tags selinux,notest \
    -ldflags "$ldflags" -o "$dir/$name.tmp" "$pkg")
  mv "$dir/$name.tmp" "$dir/$name"
  say "built $name in $(($(date +%s) - start)) s"
}

minor=$(echo "$k8s_version" | cut -d. -f2)
version_ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$k8s_version -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/client-go/pkg/version.gitVersion=$k8s_version"
build kube-apiserver kubernetes k8s.io/kubernetes/cmd/kube-apiserver "$version_ldflags"
# The Job, garbage-collector and TTL controllers for tests; a cache from before it was needed gains
# just this binary, as build() skips the others.
build kube-controller-manager kubernetes k8s.io/kubernetes/cmd/kube-controller-manager "$version_ldflags"
# kubectl from the same release, so tests never depend on the skew of whatever kubectl is installed.
build kubectl kubernetes k8s.io/kubernetes/cmd/kubectl "$version_ldflags"
build etcd etcd go.etcd.io/etcd/server/v3 "-s -w"

echo "$dir"
