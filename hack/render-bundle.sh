#!/usr/bin/env bash
# Renders config/default into config/install.yaml, the one file `kubectl apply -f` installs.
# `hack/render-bundle.sh -` prints it instead (the tests compare the two to catch a stale file).
# Uses the pinned kubectl from hack/build-test-binaries.sh (its kustomize decides the output
# format), or $KUBECTL.
set -euo pipefail
cd "$(dirname "$0")/.."
kubectl=${KUBECTL:-$(hack/build-test-binaries.sh | tail -n 1)/kubectl}
render() {
  echo "# Generated from config/default by 'make bundle'. Do not edit; edit config/ and re-run it."
  "$kubectl" kustomize --load-restrictor LoadRestrictionsNone config/default
}
if [ "${1:-}" = "-" ]; then render; else render > config/install.yaml; fi
