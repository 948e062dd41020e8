# One entry point for building, testing and deploying the operator. `make help` lists targets.

IMG ?= ghcr.io/entitlement-operator/entitlement-operator:0.1.0
DEFAULT_IMG := ghcr.io/entitlement-operator/entitlement-operator:0.1.0
CONTAINER_TOOL ?= docker
KIND ?= kind
KIND_CLUSTER ?= entitlement-operator
KUBECTL ?= kubectl
OPERATOR_NAMESPACE := entitlement-operator-system

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets.
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

##@ Development

.PHONY: demo
demo: node_modules ## Local cluster + fake AWS + operator + samples; runs until Ctrl-C, then removes everything.
	npm run demo

node_modules: package.json package-lock.json
	npm ci
	@touch node_modules

.PHONY: build
build: node_modules ## Compile TypeScript into dist/.
	npm run build

.PHONY: lint
lint: node_modules ## Type-check and lint.
	npm run typecheck
	npm run lint

.PHONY: testbin
testbin: ## Build (or find) etcd, Kubernetes and kwok binaries for the tests.
	hack/build-test-binaries.sh

.PHONY: test
test: node_modules ## Type-check, lint, then unit, integration and e2e tests (builds test binaries on first use).
	npm test

.PHONY: e2e-cluster
e2e-cluster: node_modules ## The shipped image in a real single-node cluster (root, containerd, podman; see README).
	npm run test:cluster

.PHONY: bench-cluster
bench-cluster: node_modules ## Benchmark the operator at scale under the Deployment's memory limit (root; flags: ARGS=...).
	npm run bench:cluster -- $(ARGS)

.PHONY: bench-hour-boundary
bench-hour-boundary: node_modules ## An hour of 5,000 pods reported, in both identity modes: time to its last record, pod starts meanwhile (root; flags: ARGS=...).
	npm run bench:hour-boundary -- $(ARGS)

.PHONY: bench-churn
bench-churn: node_modules ## A day of pod churn, accelerated: does the operator's memory stay flat? (root; flags: ARGS=...).
	npm run bench:churn -- $(ARGS)

.PHONY: bench-api-writes
bench-api-writes: node_modules ## What each write of a gated pod costs the API server and etcd (flags: ARGS=...).
	npm run bench:api-writes -- $(ARGS)

.PHONY: score
score: ## Score the rendered bundle with kube-score (built with the test binaries).
	$$(hack/build-test-binaries.sh | tail -n 1)/kube-score score config/install.yaml

.PHONY: chart-lint
chart-lint: ## helm lint --strict the chart, both admission modes (Helm built with the test binaries).
	helm=$$(hack/build-test-binaries.sh helm | tail -n 1)/helm && \
	$$helm lint --strict charts/entitlement-operator --kube-version 1.37.2 && \
	$$helm lint --strict charts/entitlement-operator --kube-version 1.37.2 --set admission.mode=policy

.PHONY: bundle
bundle: ## Render the install bundles (config/install*.yaml), the PrometheusRule, and the chart's copies.
	hack/render-bundle.sh

IMAGE_ARCHIVE ?= dist/entitlement-operator-multiarch.tar
.PHONY: image-multiarch
image-multiarch: node_modules ## $(IMG) for linux/amd64 and linux/arm64 with podman, no Docker (root): IMG-amd64, IMG-arm64, and their manifest list in $(IMAGE_ARCHIVE).
	mkdir -p $(dir $(IMAGE_ARCHIVE))
	PLATFORMS=linux/amd64,linux/arm64 OCI_ARCHIVE=$(IMAGE_ARCHIVE) hack/podman-build.sh $(IMG)

##@ Image and cluster (need Docker and kind)

.PHONY: docker-build
docker-build: ## Build the operator image $(IMG).
	$(CONTAINER_TOOL) build -t $(IMG) .

.PHONY: kind-up
kind-up: ## Create a kind cluster $(KIND_CLUSTER).
	$(KIND) get clusters | grep -qx $(KIND_CLUSTER) || $(KIND) create cluster --name $(KIND_CLUSTER)

.PHONY: kind-load
kind-load: ## Load $(IMG) into the kind cluster.
	$(KIND) load docker-image $(IMG) --name $(KIND_CLUSTER)

.PHONY: deploy
deploy: ## Install the CRD and operator (config/install.yaml) with image $(IMG).
	sed 's|image: $(DEFAULT_IMG)|image: $(IMG)|' config/install.yaml | $(KUBECTL) apply -f -

.PHONY: undeploy
undeploy: ## Remove everything deploy installed, CRD and products included.
	$(KUBECTL) delete --ignore-not-found -f config/install.yaml

.PHONY: e2e-kind
e2e-kind: kind-up docker-build kind-load deploy ## Deploy to kind and check that the operator becomes ready.
	$(KUBECTL) -n $(OPERATOR_NAMESPACE) rollout status deployment/entitlement-operator-controller-manager --timeout=180s
	$(KUBECTL) apply -n default -k config/samples
	$(KUBECTL) get -n default marketplaceproducts
