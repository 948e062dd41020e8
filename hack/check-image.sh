#!/usr/bin/env bash
# Fails when the production image holds something only tests or builds need: the fake AWS
# server (/app/dist/fake-aws), a package that `npm ci --omit=dev` leaves out (the devDependencies
# and everything only they need), or an npm cache (.npm, _cacache).
# Usage: hack/check-image.sh IMAGE   (root; an image in hack/podman-build.sh's storage)
# Dev-only packages are those package-lock.json marks "dev": true. A devDependency that a
# production package also needs (the lock does not mark it dev) is installed by --omit=dev and
# allowed: @types/node and @smithy/signature-v4 are such, through @kubernetes/client-node and
# the AWS SDK.
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
[ ! -e "$mnt/app/dist/fake-aws" ] || problems+=("/app/dist/fake-aws (the test fake)")

# The image's own package.json names its devDependencies; this checkout's lock says which
# packages, at any depth, only they need.
dev=$(node - "$mnt/app" package-lock.json <<'EOF'
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

if [ ${#problems[@]} -gt 0 ]; then
  echo "check-image: $image holds what production does not need:" >&2
  printf '  %s\n' "${problems[@]}" >&2
  exit 1
fi
echo "check-image: $image: no test fake, no dev-only package, no npm cache" >&2
