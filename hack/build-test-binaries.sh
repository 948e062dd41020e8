#!/usr/bin/env bash
# Builds the binaries the tests run (etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl, kubelet, kube-proxy, kwok, kwokctl, and the manifest scorer
# kube-score) from Go modules at pinned versions, caches them by version outside the work tree,
# and prints the directory that holds them as the last line of stdout. Binaries found in
# $KUBEBUILDER_ASSETS are used instead of building them.
# Progress goes to stderr: the first build takes tens of minutes on 2 cores.
set -euo pipefail

K8S_VERSION=v1.34.4    # also pinned in hack/k8s/go.mod (regenerate with hack/k8s/gen-go-mod.sh)
ETCD_VERSION=v3.6.16   # also pinned in hack/etcd/go.mod
KWOK_VERSION=v0.7.0
KUBE_SCORE_VERSION=v1.20.0

here=$(cd "$(dirname "$0")" && pwd)
export GOTOOLCHAIN=${GOTOOLCHAIN:-local} CGO_ENABLED=0 GOFLAGS=-mod=mod
cache_root=${TESTBIN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/entitlement-operator/testbin}
# The go.mod/go.sum contents are part of the key, so a changed pin never reuses a stale build.
key=$(cat "$here"/k8s/go.sum "$here"/etcd/go.sum "$0" | sha256sum | cut -c1-12)
out="$cache_root/k8s-$K8S_VERSION-etcd-$ETCD_VERSION-kwok-$KWOK_VERSION-$key"
mkdir -p "$out"
# Test workers may ask at the same time; one builds, the others wait and then find the binaries.
exec 9>"$out.lock"
flock 9

started=$SECONDS
log() { printf '[testbin %4ds] %s\n' $((SECONDS - started)) "$*" >&2; }

# Runs a long command while printing a heartbeat, so a first build never looks hung.
with_heartbeat() {
  local what=$1; shift
  "$@" & local pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    sleep 30
    kill -0 "$pid" 2>/dev/null && log "still building $what..."
  done
  wait "$pid"
}

# have NAME: true when NAME is already usable, linking it in from $KUBEBUILDER_ASSETS if it is there.
have() {
  if [ -n "${KUBEBUILDER_ASSETS:-}" ] && [ -x "$KUBEBUILDER_ASSETS/$1" ]; then
    ln -sf "$KUBEBUILDER_ASSETS/$1" "$out/$1"
  fi
  [ -x "$out/$1" ]
}

k8s_cmds=()
for cmd in kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy; do
  have "$cmd" || k8s_cmds+=("k8s.io/kubernetes/cmd/$cmd")
done
if [ ${#k8s_cmds[@]} -gt 0 ]; then
  minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
  ldflags="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  log "building ${k8s_cmds[*]##*/} $K8S_VERSION (first time: tens of minutes)"
  (cd "$here/k8s" && with_heartbeat kubernetes \
    go build -trimpath -tags selinux,notest -ldflags "$ldflags" -o "$out/" "${k8s_cmds[@]}")
fi

if ! have etcd; then
  log "building etcd $ETCD_VERSION"
  (cd "$here/etcd" && with_heartbeat etcd go build -trimpath -ldflags "-s -w" -o "$out/etcd" .)
fi

if ! have kwok || ! have kwokctl; then
  log "building kwok and kwokctl $KWOK_VERSION"
  with_heartbeat kwok env GOBIN="$out" GOFLAGS= \
    go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" "sigs.k8s.io/kwok/cmd/kwokctl@$KWOK_VERSION"
fi

if ! have kube-score; then
  log "building kube-score $KUBE_SCORE_VERSION"
  with_heartbeat kube-score env GOBIN="$out" GOFLAGS= \
    go install -trimpath -ldflags "-s -w" "github.com/zegl/kube-score/cmd/kube-score@$KUBE_SCORE_VERSION"
fi

log "binaries ready in $out"
echo "$out"
