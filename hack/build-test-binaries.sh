#!/usr/bin/env bash
# Builds the binaries the tests run from Go modules at pinned versions, caches them by version
# outside the work tree, and prints the directory that holds them as the last line of stdout.
#
#   hack/build-test-binaries.sh [--kubernetes VERSION] [NAME...]
#
# NAMEs are any of: kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet
# kube-proxy etcd kwok kwokctl kube-score helm helm4 promtool prometheus (default: all). Only what is asked for and missing is
# built, so the demo never waits for a kubelet. VERSION (default $KUBERNETES_VERSION, else the
# newest release below) must have a module in hack/k8s/VERSION (hack/k8s/gen-go-mod.sh makes one).
# Binaries found in $KUBEBUILDER_ASSETS are used instead of building them.
# Progress goes to stderr: a full build of one release took 8 minutes on 2 cores with the Go
# module cache warm (downloading the modules first adds a few).
set -euo pipefail

NEWEST_KUBERNETES=v1.37.2   # the main suites; v1.30.14 runs the webhook mode's oldest-release job
ETCD_VERSION=v3.6.16        # also pinned in hack/etcd/go.mod
KWOK_VERSION=v0.7.0
KUBE_SCORE_VERSION=v1.20.0
HELM_VERSION=v3.22.0        # the chart's tests (charts/entitlement-operator)
HELM4_VERSION=v4.3.1        # the same chart under Helm 4, as helm4
PROMETHEUS_VERSION=v0.316.0 # Go module version of Prometheus 3.16: promtool for the alert rules, the server for the dashboard
KUBERNETES_CMDS=(kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy)
TOOLS=(etcd kwok kwokctl kube-score)
RELEASE_TOOLS=(helm helm4 promtool prometheus)

k8s_version=${KUBERNETES_VERSION:-$NEWEST_KUBERNETES}
# $KUBEBUILDER_ASSETS holds one release, of unknown version: used for the newest only, never
# when a release is asked for by name (it would be cached under that release's name).
kubernetes_assets=
[ -n "${KUBERNETES_VERSION:-}" ] || kubernetes_assets=${KUBEBUILDER_ASSETS:-}
wanted=()
while [ $# -gt 0 ]; do
  case $1 in
    --kubernetes) k8s_version=${2:?--kubernetes needs a version}; kubernetes_assets=; shift 2 ;;
    --kubernetes=*) k8s_version=${1#*=}; kubernetes_assets=; shift ;;
    -*) echo "unknown flag $1" >&2; exit 2 ;;
    *) wanted+=("$1"); shift ;;
  esac
done
[ ${#wanted[@]} -gt 0 ] || wanted=("${KUBERNETES_CMDS[@]}" "${TOOLS[@]}" "${RELEASE_TOOLS[@]}")

here=$(cd "$(dirname "$0")" && pwd)
k8s_module="$here/k8s/$k8s_version"
[ -f "$k8s_module/go.mod" ] || { echo "no module for Kubernetes $k8s_version in $k8s_module" >&2; exit 2; }
export GOTOOLCHAIN=${GOTOOLCHAIN:-local} CGO_ENABLED=0 GOFLAGS=-mod=mod
cache_root=${TESTBIN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/entitlement-operator/testbin}
# The go.sum contents are part of each key, so a changed pin never reuses a stale build.
k8s_key=$(cat "$k8s_module/go.sum" | sha256sum | cut -c1-12)
tools_key=$(cat "$here/etcd/go.sum" | sha256sum | cut -c1-12)
out="$cache_root/k8s-$k8s_version-$k8s_key"
tools="$cache_root/etcd-$ETCD_VERSION-kwok-$KWOK_VERSION-kube-score-$KUBE_SCORE_VERSION-$tools_key"
# Helm and Prometheus are built from their own modules at their own pins (go install NAME@VERSION
# checks them against the checksum database), so their directory is keyed by version alone.
release_tools="$cache_root/helm-$HELM_VERSION-$HELM4_VERSION-prometheus-$PROMETHEUS_VERSION"
mkdir -p "$out" "$tools" "$release_tools"
# Test workers may ask at the same time; one builds, the others wait and then find the binaries.
exec 9>"$out.lock"
flock 9
exec 8>"$tools.lock"
flock 8
exec 7>"$release_tools.lock"
flock 7

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

# have NAME DIR [ASSETS]: true when DIR/NAME is usable, linking it in from ASSETS (default
# $KUBEBUILDER_ASSETS) if it is there.
have() {
  local assets=${3-${KUBEBUILDER_ASSETS:-}}
  if [ -n "$assets" ] && [ -x "$assets/$1" ]; then
    ln -sf "$assets/$1" "$2/$1"
  fi
  [ -x "$2/$1" ]
}
asked() { [[ " ${wanted[*]} " == *" $1 "* ]]; }

k8s_cmds=()
for cmd in "${KUBERNETES_CMDS[@]}"; do
  if asked "$cmd" && ! have "$cmd" "$out" "$kubernetes_assets"; then k8s_cmds+=("k8s.io/kubernetes/cmd/$cmd"); fi
done
if [ ${#k8s_cmds[@]} -gt 0 ]; then
  minor=${k8s_version#v1.}; minor=${minor%%.*}
  ldflags="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  log "building ${k8s_cmds[*]##*/} $k8s_version (first time: several minutes)"
  (cd "$k8s_module" && with_heartbeat kubernetes \
    go build -trimpath -tags selinux,notest -ldflags "$ldflags" -o "$out/" "${k8s_cmds[@]}")
fi

if asked etcd && ! have etcd "$tools"; then
  log "building etcd $ETCD_VERSION"
  (cd "$here/etcd" && with_heartbeat etcd go build -trimpath -ldflags "-s -w" -o "$tools/etcd" .)
fi

if { asked kwok && ! have kwok "$tools"; } || { asked kwokctl && ! have kwokctl "$tools"; }; then
  log "building kwok and kwokctl $KWOK_VERSION"
  with_heartbeat kwok env GOBIN="$tools" GOFLAGS= \
    go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" "sigs.k8s.io/kwok/cmd/kwokctl@$KWOK_VERSION"
fi

if asked kube-score && ! have kube-score "$tools"; then
  log "building kube-score $KUBE_SCORE_VERSION"
  with_heartbeat kube-score env GOBIN="$tools" GOFLAGS= \
    go install -trimpath -ldflags "-s -w" "github.com/zegl/kube-score/cmd/kube-score@$KUBE_SCORE_VERSION"
fi

if asked helm && ! have helm "$release_tools"; then
  log "building helm $HELM_VERSION"
  # The version Helm reports, and the Kubernetes release its offline renders and lint assume (a
  # release build's: that of its client-go, 1.37), as Helm's own Makefile sets them.
  k8s_flags=
  for pkg in chartutil lint/rules; do
    k8s_flags+=" -X helm.sh/helm/v3/pkg/$pkg.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/$pkg.k8sVersionMinor=37"
  done
  with_heartbeat helm env GOBIN="$release_tools" GOFLAGS= go install -trimpath \
    -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean$k8s_flags" \
    "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
fi

if asked helm4 && ! have helm4 "$release_tools"; then
  log "building helm $HELM4_VERSION (as helm4)"
  # go install names the binary helm: into a directory of its own, linked as helm4.
  with_heartbeat helm4 env GOBIN="$release_tools/helm4-bin" GOFLAGS= go install -trimpath \
    -ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=$HELM4_VERSION" \
    "helm.sh/helm/v4/cmd/helm@$HELM4_VERSION"
  ln -sfn helm4-bin/helm "$release_tools/helm4"
fi

prometheus_cmds=()
for cmd in promtool prometheus; do
  if asked "$cmd" && ! have "$cmd" "$release_tools"; then prometheus_cmds+=("github.com/prometheus/prometheus/cmd/$cmd@$PROMETHEUS_VERSION"); fi
done
if [ ${#prometheus_cmds[@]} -gt 0 ]; then
  # One go install for both, so their shared packages compile once. Without the builtinassets
  # tag the server has no web UI, which the tests do not use (its HTTP API is all they query).
  log "building ${prometheus_cmds[*]##*/} (Prometheus module $PROMETHEUS_VERSION; first time: several minutes)"
  with_heartbeat prometheus env GOBIN="$release_tools" GOFLAGS= \
    go install -trimpath -ldflags "-s -w" "${prometheus_cmds[@]}"
fi

# One directory per Kubernetes release holds everything, the version-independent tools linked in.
for tool in "${TOOLS[@]}"; do
  if [ -x "$tools/$tool" ]; then ln -sfn "$tools/$tool" "$out/$tool"; fi
done
for tool in "${RELEASE_TOOLS[@]}"; do
  if [ -x "$release_tools/$tool" ]; then ln -sfn "$release_tools/$tool" "$out/$tool"; fi
done

log "binaries ready in $out"
echo "$out"
