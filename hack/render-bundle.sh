#!/usr/bin/env bash
# Renders the install bundles, the files `kubectl apply -f` installs:
#   config/default     -> config/install.yaml              (webhook mode, Kubernetes 1.30+)
#   config/policy-mode -> config/install-policy-mode.yaml  (policy mode, Kubernetes 1.36+)
# makes config/prometheus/prometheus_rule.yaml from the alert rules, and copies into the Helm
# chart what it packages from elsewhere (a chart reads no file outside its directory): the CRD,
# the alert rules and the Grafana dashboard.
# `hack/render-bundle.sh - [webhook|policy]` prints one instead (the tests compare them with the
# files to catch a stale one). Uses the pinned kubectl from hack/build-test-binaries.sh (its
# kustomize decides the output format), or $KUBECTL.
set -euo pipefail
cd "$(dirname "$0")/.."
kubectl=${KUBECTL:-$(hack/build-test-binaries.sh kubectl | tail -n 1)/kubectl}
render() {
  local source=$1
  echo "# Generated from $source by 'make bundle'. Do not edit; edit config/ and re-run it."
  "$kubectl" kustomize --load-restrictor LoadRestrictionsNone "$source"
}
if [ "${1:-}" = "-" ]; then
  case ${2:-webhook} in
    webhook) render config/default ;;
    policy) render config/policy-mode ;;
    *) echo "usage: $0 [- [webhook|policy]]" >&2; exit 2 ;;
  esac
else
  render config/default > config/install.yaml
  render config/policy-mode > config/install-policy-mode.yaml
  # The alert rules as a PrometheusRule for config/prometheus: the rule file's groups, indented.
  {
    printf '# Generated from config/prometheus/alerts.yaml by %s. Do not edit.\n' "'make bundle'"
    printf 'apiVersion: monitoring.coreos.com/v1\nkind: PrometheusRule\nmetadata:\n  name: alerts\n'
    printf '  namespace: system\n  labels:\n    app.kubernetes.io/name: entitlement-operator\nspec:\n'
    grep -v '^#' config/prometheus/alerts.yaml | sed 's/^\(.\)/  \1/'
  } > config/prometheus/prometheus_rule.yaml
  chart=charts/entitlement-operator
  cp crds/marketplaceproducts.yaml "$chart/crds/"
  cp config/prometheus/alerts.yaml config/grafana/entitlement-operator.json "$chart/files/"
fi
