# syntax=docker/dockerfile:1
# The operator image: the compiled operator bundled with its packages (hack/bundle.mjs), the Node 24
# binary from the npm registry, the C libraries it links and tini from Debian's packages, on an
# empty base: no shell, no npm, no package manager. Runs as a non-root user, tini as PID 1.
# Multi-arch: every stage that runs a command runs on the build machine's platform and only
# fetches the target's files (no emulation while building); the last stage only copies.
#   docker buildx build --platform linux/amd64,linux/arm64 .     or hack/podman-build.sh
# The build image is an argument so that machines without a registry can build from a local one
# (see README, "Building the image without Docker"); it needs Node 24, npm and apt.
ARG BUILD_IMAGE=node:24-bookworm-slim

FROM --platform=$BUILDPLATFORM ${BUILD_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json .npmrc ./
# --ignore-scripts: the image already has Node 24; the `node` devDependency's download is not needed.
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY hack/bundle.mjs ./hack/
COPY src ./src
RUN node node_modules/typescript/bin/tsc -p tsconfig.build.json && node hack/bundle.mjs /out/app

# The target's Node binary: the registry's node-linux-ARCH at the version package.json pins for
# the `node` devDependency, the Node the tests run on, checked against the sha512 pinned in
# hack/node-integrity.json (the lock does not cover it: no package depends on it).
FROM --platform=$BUILDPLATFORM ${BUILD_IMAGE} AS node
ARG TARGETARCH
WORKDIR /tmp/node
COPY package.json hack/node-integrity.json ./
RUN case "$TARGETARCH" in amd64) arch=x64 ;; arm64) arch=arm64 ;; *) echo "no Node binary for $TARGETARCH" >&2; exit 1 ;; esac && \
    version=$(node -p 'require("./package.json").devDependencies.node') && \
    npm pack --silent "node-linux-$arch@$version" > /dev/null && \
    node -e 'const [arch, version, file] = process.argv.slice(1); const pin = require("./node-integrity.json"); \
      const got = "sha512-" + require("node:crypto").createHash("sha512").update(require("node:fs").readFileSync(file)).digest("base64"); \
      if (pin.version !== version || pin[arch] !== got) { console.error(`node-linux-${arch}@${version}: ${got}, but hack/node-integrity.json pins ${pin[arch]} for ${pin.version}`); process.exit(1); }' \
      "$arch" "$version" "node-linux-$arch-$version.tgz" && \
    tar -xzf "node-linux-$arch-$version.tgz" && \
    install -D -m 0755 package/bin/node /out/usr/local/bin/node && \
    install -D -m 0644 package/LICENSE /out/usr/local/share/doc/node/LICENSE && \
    rm -rf /tmp/node/* && npm cache clean --force

# The target's Debian packages, unpacked (never installed: nothing of theirs runs), and of them
# only what Node and tini need: the loader, the libraries Node links, tini's static build, the
# copyright files (libgcc-s1's and libstdc++6's are gcc-12-base's), and each package's control data in /var/lib/dpkg/status.d (as distroless has
# it) with /etc/os-release, so an image scanner knows the packages and their versions.
FROM --platform=$BUILDPLATFORM ${BUILD_IMAGE} AS rootfs
ARG TARGETARCH
WORKDIR /tmp/debs
RUN dpkg --add-architecture "$TARGETARCH" && apt-get update -qq && \
    apt-get download -qq -o APT::Sandbox::User=root $(for p in base-files libc6 gcc-12-base libgcc-s1 libstdc++6 tini; do echo "$p:$TARGETARCH"; done) && \
    mkdir -p /x /out/var/lib/dpkg/status.d /out/etc /out/tmp && \
    for deb in *.deb; do \
      pkg=$(dpkg-deb -f "$deb" Package) && dpkg-deb -x "$deb" /x && dpkg-deb -f "$deb" > "/out/var/lib/dpkg/status.d/$pkg" && \
      install -D -m 0644 "/x/usr/share/doc/$pkg/copyright" "/out/usr/share/doc/$pkg/copyright" || exit 1; \
    done && \
    cd /x && cp -a --parents lib*/ld-linux-* lib/*/ld-linux-* lib/*/libc.so.6 lib/*/libm.so.6 lib/*/libdl.so.2 \
      lib/*/libpthread.so.0 lib/*/libgcc_s.so.1 usr/lib/*/libstdc++.so.6* etc/debian_version usr/lib/os-release etc/os-release /out/ && \
    install -D -m 0755 /x/usr/bin/tini-static /out/usr/bin/tini && \
    printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' > /out/etc/passwd && \
    printf 'root:x:0:\nnonroot:x:65532:\n' > /out/etc/group && \
    printf 'hosts: files dns\n' > /out/etc/nsswitch.conf && \
    chmod 1777 /out/tmp && rm -rf /x /tmp/debs/* /var/lib/apt/lists/*

FROM scratch
LABEL org.opencontainers.image.title="entitlement-operator" \
      org.opencontainers.image.description="Kubernetes operator that enforces AWS Marketplace entitlement" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=rootfs /out/ /
COPY --from=node /out/ /
COPY --from=build /out/app /app
ENV NODE_ENV=production
WORKDIR /app
# Numeric, so that runAsNonRoot can verify it.
USER 65532:65532
EXPOSE 9443 8080 8081
# tini as PID 1: the kernel drops a signal to a namespace's PID 1 that has no handler for it, and
# Node has the operator's only once it has started (tens of ms); tini forwards it, and reaps.
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/node", "/app/main.js"]
