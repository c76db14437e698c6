# syntax=docker/dockerfile:1
# agentrun-operator image: `make docker-build IMG=registry.example/agentrun-operator:0.1.0`.
# Build: compile TypeScript with the dev dependencies. Final: Node.js, the production
# dependencies, the compiled JavaScript, crds/ and migrations/; no npm, no TypeScript, no sources.
# NODE_VERSION defaults to .nvmrc's (the Makefile passes it); a tag, not a digest.
ARG NODE_VERSION=24.21.0

FROM node:${NODE_VERSION}-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npx tsc -p tsconfig.build.json \
 && find dist -name '*.d.ts' -delete \
 && find dist -name '*.map' -delete

FROM node:${NODE_VERSION}-slim AS production-deps
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund

FROM node:${NODE_VERSION}-slim
# The package managers are build tools: leave them out of the running image.
RUN rm -rf /usr/local/lib/node_modules /usr/local/bin/npm /usr/local/bin/npx \
      /usr/local/bin/corepack /usr/local/bin/yarn /usr/local/bin/yarnpkg /opt/yarn-*
WORKDIR /app
ENV NODE_ENV=production
# What package.json's `files` publishes (dist, crds, migrations) and package.json itself, which
# the operator reads for its name and version. Owned by root and read-only to the process.
COPY package.json ./
COPY --from=production-deps /src/node_modules ./node_modules
COPY --from=build /src/dist ./dist
COPY crds ./crds
COPY migrations ./migrations
# The image's `node` user, by number so that Kubernetes can check runAsNonRoot.
USER 1000:1000
ENTRYPOINT ["node", "dist/cli/main.js"]
CMD ["run"]
