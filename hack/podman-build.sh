#!/usr/bin/env bash
# Builds the operator image with podman on a machine without Docker or a container registry:
# a Debian base made with debootstrap, with the Node 24 binary from node_modules (npm ci first)
# and npm from the machine, imported as localhost/node:24-local; then the Dockerfile on top.
# Needs root and: apt-get install podman runc debootstrap.
#
# podman keeps its state in directories of this script's own, not in /var/lib/containers,
# /run/containers, /run/libpod, /run/runc or /dev/shm: the image store, containers.conf,
# storage.conf and the debootstrap tree under $XDG_CACHE_HOME/entitlement-operator/podman, the
# run state (mounts, locks, runc's state) under ${TMPDIR:-/tmp}/entitlement-operator-podman-HASH.
# Both survive between runs, so the base image and the layer cache are reused.
#
# Usage: hack/podman-build.sh [IMAGE]    (default localhost/entitlement-operator:dev)
#   OCI_ARCHIVE=FILE hack/podman-build.sh [IMAGE]   also writes IMAGE to FILE as an OCI archive
#   hack/podman-build.sh --podman ARGS...           runs podman ARGS on this storage (for
#                                                   hack/build-images.sh, hack/check-image.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v podman > /dev/null && command -v runc > /dev/null ||
  { echo "podman-build: needs podman and runc (apt-get install podman runc debootstrap)" >&2; exit 1; }
cache=${XDG_CACHE_HOME:-$HOME/.cache}/entitlement-operator/podman
# podman refuses a runroot longer than 50 characters (its socket paths must stay short), so the
# run state lives in the temp directory, keyed by the cache it belongs to.
run=${TMPDIR:-/tmp}/entitlement-operator-podman-$(printf %s "$cache" | sha256sum | cut -c1-8)
[ ${#run} -le 50 ] || run=/tmp/${run##*/}
export CONTAINERS_CONF=$cache/containers.conf CONTAINERS_STORAGE_CONF=$cache/storage.conf
# Storage driver overlay: the kernel's overlayfs works here as root on ext4 (no fuse-overlayfs
# needed), and unlike vfs it does not copy every layer in full. The runtime is runc through a
# wrapper (see below). TMPDIR moves podman's temporary files out of /var/tmp, all but a few
# short-lived ones podman 4.3's build makes there (and deletes) whatever TMPDIR says.
podman=(env TMPDIR="$cache/tmp" podman --root "$cache/storage" --runroot "$run"
        --storage-driver overlay --runtime "$cache/bin/runc")

# podman 4.3 puts its blob-info cache in /var/lib/containers/cache whatever --root says (later
# versions use --root); when this run is the one that made it, it goes again at exit.
[ -e /var/lib/containers ] && made_var_lib=0 || made_var_lib=1
# The cgroup parent of this script's container runs: its own, so it can be removed at exit
# (podman's default, /libpod_parent, would stay behind).
cg=entitlement-operator-podman-$$
cleanup() {
  local d
  for d in /sys/fs/cgroup/"$cg" /sys/fs/cgroup/*/"$cg"; do [ ! -d "$d" ] || rmdir "$d" || true; done
  if [ "$made_var_lib" = 1 ]; then
    rm -f /var/lib/containers/cache/blob-info-cache-v1.boltdb
    rmdir /var/lib/containers/cache /var/lib/containers 2> /dev/null || true
  fi
}
trap cleanup EXIT

mkdir -p "$cache"
(
  flock 8
  # The run state describes mounts and containers of this boot only (podman expects it on a
  # tmpfs): after a reboot it is stale, so it is dropped; the image store is kept.
  boot=$(cat /proc/sys/kernel/random/boot_id)
  if [ "$(cat "$run/boot_id" 2> /dev/null)" != "$boot" ]; then
    rm -rf "$run" && mkdir -p "$run" && echo "$boot" > "$run/boot_id"
  fi
  mkdir -p "$cache/tmp" "$cache/networks" "$cache/bin"
  # runc keeps container state in /run/runc unless told otherwise, and podman passes no --root
  # for root (nor keeps --runtime-flag in the cleanup command conmon runs at exit), so a wrapper
  # gives it one. Named runc, so podman treats it as runc.
  printf '#!/bin/sh\nexec %s --root %s/runc "$@"\n' "$(command -v runc)" "$run" > "$cache/bin/runc.new"
  chmod +x "$cache/bin/runc.new"
  # crun fails on these machines (rlimits, hybrid cgroups); runc with cgroupfs works.
  # no-conmon: conmon stays in the caller's cgroup instead of a cgroup of podman's that would
  # outlive it. lock_type file: locks under tmp_dir instead of /dev/shm/libpod_lock.
  # tmp_dir, image_copy_tmp_dir and network_config_dir keep the rest out of /run/libpod,
  # /var/tmp and /etc/containers; no journald here, so logs go to files and events nowhere.
  cat > "$CONTAINERS_CONF.new" <<EOF
[containers]
default_ulimits = []
cgroups = "no-conmon"
log_driver = "k8s-file"
[engine]
cgroup_manager = "cgroupfs"
events_logger = "none"
lock_type = "file"
tmp_dir = "$run/libpod"
image_copy_tmp_dir = "$cache/tmp"
[network]
network_config_dir = "$cache/networks"
EOF
  # Its own storage.conf, so that a machine-wide one (another driver, extra image stores)
  # does not apply; the flags above say the same.
  printf '[storage]\ndriver = "overlay"\ngraphroot = "%s"\nrunroot = "%s"\n' \
    "$cache/storage" "$run" > "$CONTAINERS_STORAGE_CONF.new"
  # Renamed into place: another run may be reading the files right now.
  mv -f "$cache/bin/runc.new" "$cache/bin/runc"
  mv -f "$CONTAINERS_CONF.new" "$CONTAINERS_CONF"
  mv -f "$CONTAINERS_STORAGE_CONF.new" "$CONTAINERS_STORAGE_CONF"
) 8> "$cache/setup.lock"

if [ "${1:-}" = --podman ]; then
  shift
  # Not exec: the blob-info cache cleanup runs after podman.
  "${podman[@]}" "$@"
  exit
fi

image=${1:-localhost/entitlement-operator:dev}
base=localhost/node:24-local
# One build at a time per cache: the debootstrap tree and the base image are made only once.
exec 9> "$cache/build.lock"
flock 9

if ! "${podman[@]}" image exists "$base"; then
  [ -x node_modules/node/bin/node ] || { echo "podman-build: no node_modules/node/bin/node; run npm ci first" >&2; exit 1; }
  root=$cache/rootfs
  if [ ! -e "$root/.complete" ]; then
    # The Debian mirror this machine's apt uses (deb822 .sources or a one-line sources.list).
    mirror=$(cat /etc/apt/sources.list.d/*.sources 2> /dev/null | awk '/^URIs:/ {print $2; exit}')
    [ -n "$mirror" ] || mirror=$(awk '$1 == "deb" {print ($2 ~ /^\[/ ? $3 : $2); exit}' /etc/apt/sources.list 2> /dev/null)
    [ -n "$mirror" ] || { echo "podman-build: no Debian mirror in /etc/apt/sources.list(.d)" >&2; exit 1; }
    # Afresh when the last one did not finish: an interrupted debootstrap leaves a tree that
    # looks usable but is not.
    rm -rf "$root"
    debootstrap --variant=minbase bookworm "$root" "$mirror"
    touch "$root/.complete"
  fi
  install -m 0755 node_modules/node/bin/node "$root/usr/local/bin/node"
  mkdir -p "$root/usr/local/lib/node_modules"
  rm -rf "$root/usr/local/lib/node_modules/npm"
  cp -r "$(dirname "$(dirname "$(readlink -f "$(command -v npm)")")")" "$root/usr/local/lib/node_modules/npm"
  ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$root/usr/local/bin/npm"
  # The machine's CA bundle, for registries reached through an intercepting proxy.
  mkdir -p "$root/etc/ssl/certs" && cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
  tar -C "$root" --exclude ./.complete -c . | "${podman[@]}" import \
    --change 'ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt' \
    --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin' - "$base"
fi

"${podman[@]}" build --network=host --build-arg BUILD_IMAGE="$base" --build-arg RUNTIME_IMAGE="$base" -t "$image" .
# --network=none: no CNI bridge or iptables rules on the host for a run that needs no network.
"${podman[@]}" run --rm --network=none --cgroup-parent "/$cg" --read-only --user 65532 "$image" --help > /dev/null
echo "built $image (runs as 65532 with a read-only root filesystem)"

if [ -n "${OCI_ARCHIVE:-}" ]; then
  # Written beside the target and renamed, so a reader never sees half an archive.
  rm -f "$OCI_ARCHIVE.tmp"
  "${podman[@]}" save --quiet --format oci-archive -o "$OCI_ARCHIVE.tmp" "$image"
  mv -f "$OCI_ARCHIVE.tmp" "$OCI_ARCHIVE"
  echo "saved $image to $OCI_ARCHIVE"
fi
