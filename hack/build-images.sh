#!/usr/bin/env bash
# Builds the images a test cluster without a registry runs, and saves each as an OCI archive
# for `ctr images import`:
#   OUTDIR/operator.tar  localhost/entitlement-operator:e2e  the Dockerfile, via hack/podman-build.sh,
#                        this machine's platform (the same image as :e2e-amd64 or :e2e-arm64)
#   OUTDIR/operator-multiarch.tar  a manifest list of localhost/entitlement-operator:e2e-{amd64,arm64}
#   OUTDIR/pause.tar     localhost/pause:local               test/images/pause (the sandbox image)
#   OUTDIR/busybox.tar   localhost/busybox:local             test/images/busybox (a test workload)
# Images come from podman's cache when their sources did not change, and an archive is saved
# again only when its image's ID changed (OUTDIR/NAME.tar.id); the manifest list's is written
# each run (seconds). The operator images are saved only after hack/check-image.sh passed on
# both platforms. Progress and image sizes go to stderr; the last line of stdout is OUTDIR. The
# first run takes minutes (debootstrap, npm ci); a cached one seconds.
# Needs root and: apt-get install podman runc gcc libc6-dev busybox-static debootstrap. Without
# them it exits 3 with a one-line reason, so callers can skip.
# Usage: hack/build-images.sh OUTDIR
#        hack/build-images.sh --check   (only the checks: exit 0, or 3 with the reason)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
[ $# -eq 1 ] || { echo "usage: hack/build-images.sh OUTDIR" >&2; exit 2; }

skip() { echo "build-images: $*" >&2; exit 3; }
apt="apt-get install podman runc gcc libc6-dev busybox-static debootstrap"
[ "$(id -u)" -eq 0 ] || skip "needs root (podman with its own storage, debootstrap)"
for tool in podman runc gcc debootstrap; do
  command -v "$tool" > /dev/null || skip "$tool is missing ($apt)"
done
# gcc -static needs libc.a (libc6-dev); gcc prints the bare name when it has none.
libc=$(gcc -print-file-name=libc.a)
[ "${libc#/}" != "$libc" ] && [ -f "$libc" ] || skip "no static libc for gcc -static ($apt)"
# The plain busybox package's /bin/busybox is dynamic and would not run in a FROM scratch image.
[ -x /bin/busybox ] && ! ldd /bin/busybox > /dev/null 2>&1 || skip "no static /bin/busybox ($apt)"

[ "$1" != --check ] || exit 0

mkdir -p "$1"
outdir=$(cd "$1" && pwd)
# Callers with the same OUTDIR take turns; the later ones find the archives current.
exec 9> "$outdir/.lock"
flock 9

started=$SECONDS
log() { printf '[images %4ds] %s\n' $((SECONDS - started)) "$*" >&2; }
p() { "$here/podman-build.sh" --podman "$@"; }
ctx=$(mktemp -d)
check_ctr=entitlement-operator-images-check-$$
# The smoke runs below get a cgroup parent of their own, removed at exit with everything else
# they made (podman's default parent would stay behind).
cg=entitlement-operator-images-$$
run() { p run --rm --network=none --read-only --cgroup-parent "/$cg" "$@"; }
cleanup() {
  p rm -f -t 0 "$check_ctr" > /dev/null 2>&1 || true
  local d
  for d in /sys/fs/cgroup/"$cg" /sys/fs/cgroup/*/"$cg"; do [ ! -d "$d" ] || rmdir "$d" || true; done
  rm -rf "$ctx" "$outdir/operator-multiarch.tar.new" "$outdir/operator-multiarch.tar.new.tmp"
}
trap cleanup EXIT

# tiny NAME IMAGE KEY PREPARE: builds test/images/NAME in the context PREPARE fills, unless IMAGE
# already carries KEY (a hash of everything it is made from), and sets built=1 when it built.
# The label, not buildah's layer cache, decides: the context is made afresh each time, so the
# times of its files always differ.
tiny() {
  local name=$1 image=$2 key=$3 prepare=$4
  built=0
  if [ "$(p image inspect --format '{{index .Labels "io.entitlement-operator.source"}}' "$image" 2>/dev/null)" = "$key" ]; then
    log "$name: $image is current"
    return
  fi
  mkdir -p "$ctx/$name"
  cp "$repo/test/images/$name/Containerfile" "$ctx/$name/"
  "$prepare" "$ctx/$name"
  # --timestamp 0: the same sources give the same image ID, on any machine.
  p build --quiet --timestamp 0 --label "io.entitlement-operator.source=$key" -t "$image" "$ctx/$name" > /dev/null
  log "$name: built $image"
  built=1
}
# sources TEXT FILE...: the key of an image made from TEXT, FILEs and this script.
sources() { { printf '%s\n' "$1"; shift; cat "$@" "$here/build-images.sh"; } | sha256sum | cut -c1-16; }

# --- operator: the production image for both platforms (the arm64 one cross-built, see the
# Dockerfile), its manifest list, and :e2e the one of this machine's platform; podman's layer
# cache makes an unchanged rebuild quick. The list's archive is written aside and kept only once
# both images passed hack/check-image.sh.
log "operator: building localhost/entitlement-operator:e2e-{amd64,arm64} (the first time debootstrap and npm ci take minutes)"
multiarch=$outdir/operator-multiarch.tar
PLATFORMS=linux/amd64,linux/arm64 OCI_ARCHIVE="$multiarch.new" \
  "$here/podman-build.sh" localhost/entitlement-operator:e2e >&2
for arch in amd64 arm64; do
  built_arch=$(p image inspect --format '{{.Architecture}}' "localhost/entitlement-operator:e2e-$arch")
  [ "$built_arch" = "$arch" ] || { log "operator: :e2e-$arch is for $built_arch"; exit 1; }
  "$here/check-image.sh" "localhost/entitlement-operator:e2e-$arch"
done
mv -f "$multiarch.new" "$multiarch"
p tag "localhost/entitlement-operator:e2e-$(dpkg --print-architecture)" localhost/entitlement-operator:e2e
log "operator: built; $multiarch ($(numfmt --to=si --suffix=B "$(stat -c %s "$multiarch")"))"

# --- busybox: the static binary and one relative symlink per applet, so /bin/sh etc. exist.
prepare_busybox() {
  mkdir -p "$1/bin"
  cp /bin/busybox "$1/bin/busybox"
  local applet
  for applet in $(/bin/busybox --list); do
    [ "$applet" = busybox ] || ln -s busybox "$1/bin/$applet"
  done
  cp "$repo/test/images/busybox/passwd" "$repo/test/images/busybox/group" "$1/"
}
src=$repo/test/images/busybox
tiny busybox localhost/busybox:local "$(sources '' /bin/busybox "$src/Containerfile" "$src/passwd" "$src/group")" prepare_busybox
if [ "$built" = 1 ]; then
  run localhost/busybox:local \
    sh -c '[ "$(id -u):$(id -g)" = 65534:65534 ] && sleep 0 && httpd --help 2>&1 | grep -q "^Usage: httpd"' ||
    { log "busybox: the image does not run as 65534 with sh, sleep and httpd on a read-only root"; exit 1; }
fi

# --- pause: compiled here, static, into the build context.
prepare_pause() { gcc -static -Os -s -Wall -Wextra -o "$1/pause" "$repo/test/images/pause/pause.c"; }
src=$repo/test/images/pause
tiny pause localhost/pause:local "$(sources "$(gcc --version)" "$src/pause.c" "$src/Containerfile")" prepare_pause
if [ "$built" = 1 ]; then
  # As a pod's sandbox: PID 1 of a namespace another container joins, reaping what it leaves
  # behind, and gone at once with code 0 on SIGTERM.
  p run -d --name "$check_ctr" --network=none --read-only --cgroup-parent "/$cg" localhost/pause:local > /dev/null
  run --pid "container:$check_ctr" localhost/busybox:local sh -c 'sleep 1 & exit 0'
  sleep 2
  zombies=$(run --pid "container:$check_ctr" localhost/busybox:local sh -c 'ps -o stat,comm | grep -c "^Z" || true')
  p stop -t 5 "$check_ctr" > /dev/null
  code=$(p inspect --format '{{.State.ExitCode}}' "$check_ctr")
  p rm "$check_ctr" > /dev/null
  [ "$zombies" = 0 ] && [ "$code" = 0 ] ||
    { log "pause: $zombies zombie(s) left, exit code $code on SIGTERM (want 0 and 0)"; exit 1; }
fi

si() { numfmt --to=si --suffix=B "$1"; }
# save NAME IMAGE: OUTDIR/NAME.tar, unless it already holds IMAGE's current ID.
save() {
  local name=$1 image=$2 out=$outdir/$1.tar id size
  id=$(p image inspect --format '{{.Id}}' "$image")
  size=$(p image inspect --format '{{.Size}}' "$image")
  if [ -f "$out" ] && [ "$(cat "$out.id" 2>/dev/null)" = "$id" ]; then
    log "$name: $image ${id:0:12}, $(si "$size"); $out is current"
    return
  fi
  rm -f "$out.id" "$out.tmp"
  p save --quiet --format oci-archive -o "$out.tmp" "$image"
  # Renamed into place, so a reader never sees half an archive.
  mv -f "$out.tmp" "$out"
  echo "$id" > "$out.id"
  log "$name: $image ${id:0:12}, $(si "$size"); saved $out ($(si "$(stat -c %s "$out")"))"
}
save operator localhost/entitlement-operator:e2e
save pause localhost/pause:local
save busybox localhost/busybox:local
log "done"
echo "$outdir"
