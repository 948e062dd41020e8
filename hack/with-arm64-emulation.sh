#!/usr/bin/env bash
# Runs a command with arm64 (aarch64) Linux binaries runnable on this machine: registers Debian's
# qemu-aarch64-static with the kernel's binfmt_misc for as long as the command runs, mounting
# binfmt_misc first if it is not, and undoes both at exit (on failure too). A handler that was
# there before (the machine's own) is used and left alone.
# The F flag opens the interpreter at registration, so it works inside containers' mount
# namespaces too: `podman run --platform linux/arm64 ...` runs.
# Callers at the same time take turns (one command runs at a time; a lock), and the last one out
# removes the registration.
# Needs root and: apt-get install qemu-user-static. Without them it exits 3 with the reason.
# Usage: hack/with-arm64-emulation.sh COMMAND [ARGS...]
#        hack/with-arm64-emulation.sh --check   (exit 0, or 3 with the reason)
set -euo pipefail
qemu=/usr/bin/qemu-aarch64-static
# The package's own magic and mask for aarch64 ELF binaries.
conf=/usr/lib/binfmt.d/qemu-aarch64.conf
skip() { echo "with-arm64-emulation: $*" >&2; exit 3; }
[ "$(id -u)" -eq 0 ] || skip "needs root (binfmt_misc)"
[ -x "$qemu" ] && [ -f "$conf" ] || skip "no $qemu (apt-get install qemu-user-static)"
grep -qw binfmt_misc /proc/filesystems || skip "this kernel has no binfmt_misc"
[ "${1:-}" != --check ] || exit 0
[ $# -gt 0 ] || { echo "usage: hack/with-arm64-emulation.sh COMMAND [ARGS...]" >&2; exit 2; }

fs=/proc/sys/fs/binfmt_misc
name=entitlement-operator-aarch64
# What this group of callers set up, so that the last one undoes exactly that.
state=${XDG_CACHE_HOME:-$HOME/.cache}/entitlement-operator/arm64-emulation
mkdir -p "$(dirname "$state")"
exec 7> "$state.lock"

# Another handler for these binaries already enabled (ours from a caller still running counts).
handled() {
  local magic; magic=$(awk -F: '{print $5}' "$conf" | sed 's/\\x//g')
  grep -l -s "^magic $magic" "$fs"/* | xargs -r grep -l -x enabled | grep -q .
}

undo() {
  local code=$?
  # Released first, then taken alone without waiting: only a caller with no one else left
  # (or the last of several leaving at once) gets it.
  flock -u 7
  if flock -x -n 7; then
    if [ -e "$state.registered" ]; then echo -1 > "$fs/$name" 2> /dev/null || true; rm -f "$state.registered"; fi
    if [ -e "$state.mounted" ]; then umount "$fs" 2> /dev/null || true; rm -f "$state.mounted"; fi
  fi
  exit "$code"
}

flock -x 7
trap undo EXIT
trap "exit 143" TERM INT HUP
if [ ! -e "$fs/register" ]; then
  mount -t binfmt_misc binfmt_misc "$fs"
  touch "$state.mounted"
fi
if ! handled; then
  magic=$(awk -F: '{print $5}' "$conf")
  mask=$(awk -F: '{print $6}' "$conf")
  printf ':%s:M::%s:%s:%s:F\n' "$name" "$magic" "$mask" "$qemu" > "$fs/register"
  touch "$state.registered"
fi
# Shared while the command runs, so another caller can join but not undo.
flock -s 7
"$@"
