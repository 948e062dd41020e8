# syntax=docker/dockerfile:1
# Multi-stage build of the operator image: compile TypeScript, install production dependencies
# only, and ship them on a slim Node 24 base as a non-root user.
# The base images are build arguments so that machines without a registry can build from
# local images (see README, "Building the image without Docker").
ARG BUILD_IMAGE=node:24-bookworm-slim
ARG RUNTIME_IMAGE=node:24-bookworm-slim

FROM ${BUILD_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json .npmrc ./
# --ignore-scripts: the image already has Node 24; the `node` devDependency's download is not needed.
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN node node_modules/typescript/bin/tsc -p tsconfig.build.json

FROM ${BUILD_IMAGE} AS deps
WORKDIR /src
COPY package.json package-lock.json .npmrc ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force

FROM ${RUNTIME_IMAGE}
LABEL org.opencontainers.image.title="entitlement-operator" \
      org.opencontainers.image.description="Kubernetes operator that enforces AWS Marketplace entitlement" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV NODE_ENV=production
WORKDIR /app
COPY --from=deps /src/node_modules ./node_modules
COPY --from=build /src/dist ./dist
COPY package.json ./
# Numeric, so that runAsNonRoot can verify it.
USER 65532:65532
EXPOSE 9443 8080 8081
ENTRYPOINT ["node", "/app/dist/main.js"]
