#!/usr/bin/env bash
# Builds the operator image with podman on a machine without Docker or a container registry.
# The Dockerfile's build stages run on a Debian base made with debootstrap, with the Node 24
# binary from node_modules (npm ci first), npm from the machine and the machine's apt sources,
# imported as localhost/node:24-local; the image itself starts empty (see the Dockerfile).
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
#   PLATFORMS=linux/amd64,linux/arm64 OCI_ARCHIVE=FILE hack/podman-build.sh [IMAGE]
#                                                   one image per platform, IMAGE-ARCH, and FILE
#                                                   an OCI archive of a manifest list of them
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
list_made=0
cleanup() {
  [ "$list_made" = 0 ] || "${podman[@]}" manifest rm "$list" > /dev/null 2>&1 || true
  [ -z "${OCI_ARCHIVE:-}" ] || rm -f "$OCI_ARCHIVE.tmp"
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

# The base's recipe: a base made by an older one is made again.
base_key=2
if [ "$("${podman[@]}" image inspect --format '{{index .Labels "io.entitlement-operator.base"}}' "$base" 2> /dev/null)" != "$base_key" ]; then
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
  # The machine's apt sources (debootstrap's names only the release, without its security and
  # point-release updates), for the Debian packages the image is made of.
  rm -f "$root/etc/apt/sources.list" "$root"/etc/apt/sources.list.d/*
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [ ! -f "$f" ] || cp "$f" "$root$f"
  done
  tar -C "$root" --exclude ./.complete -c . | "${podman[@]}" import \
    --change 'ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt' \
    --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin' \
    --change "LABEL io.entitlement-operator.base=$base_key" - "$base"
fi

host=linux/$(dpkg --print-architecture)
# build PLATFORM NAME: the Dockerfile for PLATFORM as NAME, and a smoke run of it where it runs.
build() {
  # podman 4.3's build sets no BUILDPLATFORM of its own (Docker does): the build stages run here.
  "${podman[@]}" build --network=host --pull=never --platform "$1" --build-arg BUILDPLATFORM="$host" --build-arg BUILD_IMAGE="$base" -t "$2" .
  if [ "$1" = "$host" ]; then
    # --network=none: no CNI bridge or iptables rules on the host for a run that needs no network.
    local version
    version=$("${podman[@]}" run --rm --network=none --cgroup-parent "/$cg" --read-only --user 65532 "$2" --version)
    echo "built $2 for $1 (runs as 65532 with a read-only root filesystem, version $version)"
  else
    echo "built $2 for $1 (not run: not this machine's platform; test/cluster/image.test.ts runs it under emulation)"
  fi
}

if [ -z "${PLATFORMS:-}" ]; then
  build "$host" "$image"
  if [ -n "${OCI_ARCHIVE:-}" ]; then
    # Written beside the target and renamed, so a reader never sees half an archive.
    rm -f "$OCI_ARCHIVE.tmp"
    "${podman[@]}" save --quiet --format oci-archive -o "$OCI_ARCHIVE.tmp" "$image"
    mv -f "$OCI_ARCHIVE.tmp" "$OCI_ARCHIVE"
    echo "saved $image to $OCI_ARCHIVE"
  fi
  exit
fi

IFS=, read -r -a platforms <<< "$PLATFORMS"
[ -n "${OCI_ARCHIVE:-}" ] || { echo "podman-build: PLATFORMS needs OCI_ARCHIVE, where the manifest list goes" >&2; exit 2; }
for platform in "${platforms[@]}"; do build "$platform" "$image-${platform#linux/}"; done
# The list lives in the store only until it is in the archive: podman 4.3's `podman images` fails
# on any store holding a list of local images ("locating item named manifest-sha256:...").
list=localhost/entitlement-operator-list:$$
list_made=1
"${podman[@]}" manifest create "$list" > /dev/null
for platform in "${platforms[@]}"; do
  # By its stored name: the transport would read a short name as one on the default registry.
  name=$("${podman[@]}" image inspect --format '{{index .RepoTags 0}}' "$image-${platform#linux/}")
  "${podman[@]}" manifest add "$list" "containers-storage:$name" > /dev/null
done
rm -f "$OCI_ARCHIVE.tmp"
"${podman[@]}" manifest push --quiet --all --format oci "$list" "oci-archive:$OCI_ARCHIVE.tmp"
"${podman[@]}" manifest rm "$list" > /dev/null
list_made=0
mv -f "$OCI_ARCHIVE.tmp" "$OCI_ARCHIVE"
echo "saved a manifest list of ${platforms[*]} ($image-ARCH) to $OCI_ARCHIVE"
