#!/usr/bin/env bash
# Fails when the production image holds something only tests or builds need: the fake AWS
# server, a package that `npm ci --omit=dev` would leave out (the devDependencies and everything
# only they need), an npm cache (.npm, _cacache), npm itself or a shell; or when it is larger
# than MAX_BYTES uncompressed (default 150 MB), runs as root, or has no tini as PID 1.
# Usage: hack/check-image.sh IMAGE   (root; an image in hack/podman-build.sh's storage)
# The bundle (bundle.mjs) keeps each package it holds as /app/node_modules/PATH/package.json, so
# a dev-only package in the bundle shows there. Dev-only packages are those package-lock.json
# marks "dev": true. A devDependency that a production package also needs (the lock does not
# mark it dev) is allowed: @types/node and @smithy/signature-v4 are such, through
# @kubernetes/client-node and the AWS SDK, and jose through openid-client.
set -euo pipefail
cd "$(dirname "$0")/.."
image=${1:?usage: hack/check-image.sh IMAGE}
podman=(hack/podman-build.sh --podman)

# The image's files as a directory: works for any image, even one without a shell. The mount is
# released on every exit, so no overlay mount outlives the check.
mnt=$("${podman[@]}" image mount "$image")
trap '"${podman[@]}" image unmount "$image" > /dev/null' EXIT
[ -f "$mnt/app/package.json" ] && [ -d "$mnt/app/node_modules" ] ||
  { echo "check-image: $image has no /app/package.json or /app/node_modules; not the operator image?" >&2; exit 1; }

problems=()
while IFS= read -r -d '' f; do problems+=("${f#"$mnt"} (the test fake)"); done \
  < <(find "$mnt/app" -xdev -name '*fake-aws*' -print0)

# The image's own package.json names its devDependencies; this checkout's lock says which
# packages, at any depth, only they need.
node=node_modules/.bin/node
[ -x "$node" ] || node=node
dev=$("$node" - "$mnt/app" package-lock.json <<'EOF'
const fs = require('node:fs');
const [app, lockFile] = process.argv.slice(2);
const pkg = JSON.parse(fs.readFileSync(`${app}/package.json`, 'utf8'));
const lock = JSON.parse(fs.readFileSync(lockFile, 'utf8')).packages ?? {};
const devOnly = new Set(Object.keys(lock).filter((path) => path && lock[path].dev));
const shared = [];
for (const name of Object.keys(pkg.devDependencies ?? {})) {
  const path = `node_modules/${name}`;
  if (!lock[path]) devOnly.add(path); // not in the lock: nothing in production asks for it
  else if (!lock[path].dev) shared.push(name);
}
if (shared.length) console.error(`check-image: devDependencies production also needs: ${shared.join(', ')}`);
const exists = (p) => { try { fs.lstatSync(p); return true; } catch { return false; } };
for (const path of [...devOnly].sort()) if (exists(`${app}/${path}`)) console.log(`/app/${path}`);
EOF
)
while IFS= read -r f; do [ -z "$f" ] || problems+=("$f (dev-only package)"); done <<< "$dev"

# npm's cache under any home (/root/.npm, /home/*/.npm, /tmp/.npm, ...) or its content store.
while IFS= read -r -d '' f; do problems+=("${f#"$mnt"} (npm cache)"); done \
  < <(find "$mnt" -xdev \( -name .npm -o -name _cacache \) -prune -print0)

# npm, and any shell: the image runs one program and nothing in it execs a shell.
for f in usr/local/lib/node_modules/npm usr/local/bin/npm usr/bin/npm bin/sh usr/bin/sh bin/bash usr/bin/bash bin/dash usr/bin/dash bin/busybox usr/bin/busybox; do
  [ ! -e "$mnt/$f" ] && [ ! -L "$mnt/$f" ] || problems+=("/$f (not needed at run time)")
done

# The size as the store counts it: the sum of the layers, uncompressed.
max=${MAX_BYTES:-150000000}
size=$("${podman[@]}" image inspect --format '{{.Size}}' "$image")
[ "$size" -le "$max" ] || problems+=("$size bytes uncompressed (at most $max)")
# Non-root by default (numeric, so runAsNonRoot can verify it), and tini as PID 1.
user=$("${podman[@]}" image inspect --format '{{.Config.User}}' "$image")
case "${user%%:*}" in '' | 0 | root | *[!0-9]*) problems+=("runs as user '$user' (want a numeric non-root user)") ;; esac
entry=$("${podman[@]}" image inspect --format '{{join .Config.Entrypoint " "}}' "$image")
[ "${entry%% *}" = /usr/bin/tini ] && [ -x "$mnt/usr/bin/tini" ] || problems+=("entrypoint '$entry' (want /usr/bin/tini as PID 1)")

if [ ${#problems[@]} -gt 0 ]; then
  echo "check-image: $image is not fit to ship:" >&2
  printf '  %s\n' "${problems[@]}" >&2
  exit 1
fi
echo "check-image: $image: $(numfmt --to=si --round=nearest --suffix=B "$size") (at most $(numfmt --to=si --suffix=B "$max")), user $user, tini as PID 1; no test fake, dev-only package, npm cache, npm or shell" >&2
