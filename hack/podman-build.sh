#!/usr/bin/env bash
# Builds the operator image with podman on a machine without Docker or a container registry:
# a Debian base made with debootstrap, with the Node 24 binary from node_modules (npm ci first)
# and npm from the machine, imported as localhost/node:24-local; then the Dockerfile on top.
# Needs root and: apt-get install podman runc debootstrap.
# Usage: hack/podman-build.sh [IMAGE]   (default localhost/entitlement-operator:dev)
set -euo pipefail
cd "$(dirname "$0")/.."
image=${1:-localhost/entitlement-operator:dev}
base=localhost/node:24-local
work=${TMPDIR:-/tmp}/entitlement-operator-podman
export CONTAINERS_CONF=$work/containers.conf
podman=(podman --runtime "$(command -v runc)")

mkdir -p "$work"
# crun fails on these machines (rlimits, hybrid cgroups); runc with cgroupfs works.
printf '[containers]\ndefault_ulimits = []\n[engine]\ncgroup_manager = "cgroupfs"\n' > "$CONTAINERS_CONF"

if ! "${podman[@]}" image exists "$base"; then
  root=$work/rootfs
  # The Debian mirror this machine's apt uses (deb822 .sources or a one-line sources.list).
  mirror=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '/^URIs:/ {print $2; exit}')
  [ -n "$mirror" ] || mirror=$(awk '$1 == "deb" {print ($2 ~ /^\[/ ? $3 : $2); exit}' /etc/apt/sources.list 2>/dev/null)
  [ -n "$mirror" ] || { echo "podman-build: no Debian mirror in /etc/apt/sources.list(.d)" >&2; exit 1; }
  [ -x "$root/bin/sh" ] || debootstrap --variant=minbase bookworm "$root" "$mirror"
  install -m 0755 node_modules/node/bin/node "$root/usr/local/bin/node"
  mkdir -p "$root/usr/local/lib/node_modules"
  cp -r "$(dirname "$(dirname "$(readlink -f "$(command -v npm)")")")" "$root/usr/local/lib/node_modules/npm"
  ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$root/usr/local/bin/npm"
  # The machine's CA bundle, for registries reached through an intercepting proxy.
  mkdir -p "$root/etc/ssl/certs" && cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
  tar -C "$root" -c . | "${podman[@]}" import \
    --change 'ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt' \
    --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin' - "$base"
fi

"${podman[@]}" build --network=host --build-arg BUILD_IMAGE="$base" --build-arg RUNTIME_IMAGE="$base" -t "$image" .
"${podman[@]}" run --rm --read-only --user 65532 "$image" --help > /dev/null
echo "built $image (runs as 65532 with a read-only root filesystem)"
