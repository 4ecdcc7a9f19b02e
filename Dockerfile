# k3-ingest, built from this checkout. Multi-stage: the build stage compiles TypeScript with
# the dev dependencies; the runtime stage keeps the production ones, runs as the unprivileged
# "node" user, and starts Node under tini so SIGTERM reaches it (graceful drain and job
# hand-back) and zombies are reaped.
#   docker build -t k3-ingest .
#   docker run -p 8080:8080 -p 50051:50051 -v k3-data:/data k3-ingest          # embedded PostgreSQL
#   docker run -e DATABASE_URL=postgres://… k3-ingest api | worker | serve
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json buf.yaml buf.gen.yaml ./
COPY proto ./proto
COPY gen ./gen
COPY src ./src
RUN npm run build && npm prune --omit=dev --no-audit --no-fund

FROM node:20-bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends tini && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
RUN mkdir -p /data && chown node:node /data
USER node
# --max-semi-space-size=8: as package.json's start script (see the README, "Memory").
ENV NODE_ENV=production NODE_OPTIONS=--max-semi-space-size=8 K3_DATA_DIR=/data K3_HTTP_PORT=8080 K3_GRPC_PORT=50051 K3_HEALTH_FILE=/tmp/k3-worker-healthy
VOLUME /data
EXPOSE 8080 50051
ENTRYPOINT ["/usr/bin/tini", "--", "node", "dist/src/main.js"]
CMD ["serve"]
