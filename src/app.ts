/**
 * Composition root: build(config) wires storage, services, the three doors and the
 * worker for the configured role. Nothing listens or runs until start() is called.
 */
import { setMaxListeners } from "node:events";
import { writeFileSync, mkdirSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import type { Server as HttpServer } from "node:http";
import type { Server as GrpcServer } from "@grpc/grpc-js";
import { Code, ConnectError } from "@connectrpc/connect";
import { IngestService } from "../gen/dodil/k3/ingest/v1/ingest_pb";
import { PipelineService } from "../gen/dodil/k3/pipeline/v1/pipeline_pb";
import { StorageService } from "../gen/dodil/k3/storage/v1/storage_pb";
import { portInUse, type Config } from "./config";
import { DEFAULT_ORG, newToken } from "./domain/auth";
import { createLogger, type Logger } from "./log";
import { createMetrics, type Metrics } from "./metrics";
import { startListener, type Listener } from "./storage/postgres/listener";
import { CHANNEL_CONFIG, CHANNEL_TOKENS } from "./storage/postgres/sql";
import { CHANNEL_WEBHOOKS } from "./storage/postgres/event-store";
import { JobHub } from "./service/job-hub";
import { WebhookDeliverer } from "./webhooks/delivery";
import { createUrlPolicy, SOURCE_ENDPOINTS, WEBHOOK_URLS } from "./domain/url-policy";
import { createOpenAuthenticator, createTokenAuthenticator, type Authenticator } from "./transport/auth";
import { createIngestService } from "./service/ingest-service";
import { createPipelineService } from "./service/pipeline-service";
import { createStorageService } from "./service/storage-service";
import { createBuckets } from "./service/buckets";
import { createBytePlane } from "./transport/s3/byte-plane";
import { loadSecretBox } from "./storage/secrets";
import { SERVICES } from "./service/descriptors";
import { createFsObjectStore } from "./storage/fs-object-store";
import { createS3ObjectStore } from "./storage/s3-object-store";
import { startEmbeddedPostgres, type EmbeddedPostgres } from "./storage/postgres/embedded";
import { migrate, migrationsDone } from "./storage/postgres/migrate";
import { isConnectionError } from "./storage/postgres/pg-errors";
import { PgRepository } from "./storage/postgres/repository";
import { bindGrpc, createGrpcServer } from "./transport/grpc";
import { createHttpServer } from "./transport/http";
import { createMetricsEndpoint } from "./transport/metrics-endpoint";
import { createRateLimiter } from "./transport/rate-limit";
import { buildOpenApi } from "./transport/openapi";
import { VERSION } from "./version";
import { registerService } from "./transport/services";
import { createLocalEmbedder, createRemoteEmbedder, type Embedder } from "./worker/embedder";
import { Worker } from "./worker/worker";
import { DiscoveryRunner } from "./sync/discovery";
import { createSourceObjects } from "./sync/source-objects";
import { createSourceService } from "./service/source-service";
import { SourceService } from "../gen/dodil/k3/source/v1/source_pb";
import { VectorService } from "../gen/dodil/k3/vector/v1/vector_pb";
import { createVectorService } from "./service/vector-service";
import { VectorIndex } from "./search/vector-index";

/** A built, not yet started, process. */
export interface App {
  /** Starts the database (embedded if needed), migrates, opens the ports and starts the worker. */
  start(): Promise<{ httpPort: number; grpcPort: number }>;
  /** Stops the worker (handing running jobs back), closes the ports, the pool and the embedded database; safe to call twice. */
  stop(): Promise<void>;
  readonly log: Logger;
  /** The repository, available after start(). */
  repo(): PgRepository;
  /** This process's metrics, after start(). */
  metrics(): Metrics | undefined;
  /** The worker, when the role runs one, after start(). */
  worker(): Worker | undefined;
}

/** The embedder a job's options ask for: the configured remote one, or the local one. */
function embedderFactory(config: Readonly<Config>): (options: Readonly<Record<string, string>>) => Embedder {
  const e = config.embeddings;
  // The built-in model named explicitly is the built-in embedder, even beside a remote one.
  return (options) =>
    e.url && options.embedding_model !== "local-hash"
      ? createRemoteEmbedder({ url: e.url, apiKey: e.apiKey, model: options.embedding_model || e.model, timeoutMs: e.timeoutMs })
      : createLocalEmbedder(Number.parseInt(options.dimensions ?? "384", 10));
}

/**
 * On the first start with auth on and an empty token table, creates an admin token for
 * every bucket of the default organization and writes it to `<dataDir>/admin-token`
 * (mode 0600), so the first command of the README ends in a usable, authenticated server.
 */
async function bootstrapAdminToken(repo: PgRepository, dataDir: string, log: Logger): Promise<void> {
  const { token, tokenId, secretHash } = newToken();
  const created = await repo.tokens.tokenInsertIfNone({
    tokenId,
    org: DEFAULT_ORG,
    secretHash,
    name: "bootstrap admin",
    grants: [{ bucket: "*", role: "admin" }],
    createdAt: Date.now(),
    expiresAt: 0,
    revokedAt: 0,
  });
  if (!created) return;
  const path = join(dataDir, "admin-token");
  mkdirSync(dataDir, { recursive: true });
  writeFileSync(path, token + "\n", { mode: 0o600 });
  log.warn("created the first admin token (organization \"default\", every bucket); it is in the file shown here", {
    path,
    tokenId,
  });
}

/**
 * Applies the migrations, waiting up to `waitMs` for a database that is not reachable yet
 * (a server started together with its PostgreSQL), so start-up order does not matter.
 */
async function migrateWhenReachable(repo: PgRepository, waitMs: number, log: Logger): Promise<string[]> {
  const deadline = Date.now() + waitMs;
  for (let delay = 250; ; delay = Math.min(delay * 2, 5000)) {
    try {
      return await migrate(repo.pool);
    } catch (err) {
      if (!isConnectionError(err) || Date.now() + delay > deadline) throw err;
      log.warn("database not reachable yet; retrying", { err: (err as Error).message, retryInMs: delay });
      await new Promise((r) => setTimeout(r, delay));
    }
  }
}

/**
 * Retention: deletes what is older than the retention in batches of 500 with a pause
 * between batches, so writers are never locked out for long.
 */
async function pruneInBatches(what: string, prune: (before: number, limit: number) => Promise<number>, retentionMs: number, log: Logger): Promise<void> {
  const before = Date.now() - retentionMs;
  let total = 0;
  try {
    for (let i = 0; i < 1000; i++) {
      const n = await prune(before, 500);
      total += n;
      if (n < 500) break;
      await new Promise((r) => setTimeout(r, 20));
    }
  } catch (err) {
    log.warn(`pruning ${what} failed`, { err: (err as Error).message });
  }
  if (total > 0) log.info(`pruned ${what} past retention`, { pruned: total, before });
}

/** Builds the application for the configuration. */
export function build(config: Readonly<Config>, log: Logger = createLogger(config.logLevel)): App {
  let embedded: EmbeddedPostgres | undefined;
  let repo: PgRepository | undefined;
  let http: HttpServer | undefined;
  let grpc: GrpcServer | undefined;
  let worker: Worker | undefined;
  let healthTimer: NodeJS.Timeout | undefined;
  let vectorIndex: VectorIndex | undefined;
  let discoveries: DiscoveryRunner | undefined;
  let workerRepo: PgRepository | undefined;
  let tokenListener: Listener | undefined;
  let deliverer: WebhookDeliverer | undefined;
  let compactTimer: NodeJS.Timeout | undefined;
  let pruneTimer: NodeJS.Timeout | undefined;
  let metrics: Metrics | undefined;
  const shutdown = new AbortController();
  // Aborted the moment stop() begins: kept-alive HTTP connections close, late requests get 503.
  const draining = new AbortController();
  // Every in-flight call links to this signal; many at once is normal, not a leak.
  setMaxListeners(0, shutdown.signal);
  let migrated = false;
  const serveApi = config.role !== "worker";
  const runWorker = config.role !== "api";

  return {
    log,
    repo() {
      if (!repo) throw new Error("app not started");
      return repo;
    },
    worker: () => worker,
    metrics: () => metrics,
    async start() {
      let url = config.databaseUrl;
      if (!url) {
        log.info("DATABASE_URL not set; using the embedded PostgreSQL", { dataDir: config.dataDir });
        embedded = await startEmbeddedPostgres({
          dataDir: config.dataDir,
          port: config.embeddedPgPort,
          log: (line) => log.debug("postgres", { line }),
          warn: (line) => log.warn(line),
        });
        url = embedded.connectionString;
      }
      repo = new PgRepository({ connectionString: url, poolSize: config.dbPoolSize });
      const applied = await migrateWhenReachable(repo, config.dbWaitMs, log);
      migrated = true;
      if (applied.length) log.info("migrations applied", { applied });
      const r = repo;
      metrics = createMetrics();
      const m = metrics;
      // Fold job count, bucket usage and collection version deltas every second (one process at a time does each).
      let compacting = false;
      compactTimer = setInterval(() => {
        if (compacting) return;
        compacting = true;
        void Promise.allSettled([r.jobs.jobCountsCompact(), r.buckets.usageCompact(), r.vector.versionsCompact()]).then((done) => {
          for (const d of done) if (d.status === "rejected") log.debug("count compaction failed", { err: (d.reason as Error).message });
          compacting = false;
        });
      }, 1000);
      compactTimer.unref();
      if (config.jobRetentionMs > 0 || config.eventRetentionMs > 0) {
        let pruning = false;
        pruneTimer = setInterval(() => {
          if (pruning) return;
          pruning = true;
          void (async () => {
            if (config.jobRetentionMs > 0) await pruneInBatches("finished jobs", (b, n) => r.jobs.jobPruneFinished(b, n), config.jobRetentionMs, log);
            if (config.eventRetentionMs > 0) {
              await pruneInBatches("job events", (b, n) => r.events.prune(b, n), config.eventRetentionMs, log);
              await pruneInBatches("ended webhook deliveries", (b, n) => r.events.pruneDeliveries(b, n), config.eventRetentionMs, log);
            }
          })().finally(() => (pruning = false));
        }, config.retentionIntervalMs);
        pruneTimer.unref();
      }
      const objects = config.s3 ? createS3ObjectStore({ ...config.s3, dataDir: config.dataDir }) : createFsObjectStore(config.dataDir);
      const secrets = loadSecretBox(config.dataDir, config.secretsKey);
      // Uploads a killed process left half-written are nobody's: an hour on, they go.
      if (serveApi) void objects.sweepStaging(3_600_000).catch((err: unknown) => log.warn("sweeping staged uploads failed", { err: (err as Error).message }));
      let httpPort = 0;
      let grpcPort = 0;
      if (serveApi) {
        let auth: Authenticator;
        if (config.auth) {
          await bootstrapAdminToken(r, config.dataDir, log);
          auth = createTokenAuthenticator(r);
        } else {
          auth = createOpenAuthenticator();
          log.warn("AUTH IS OFF (K3_AUTH=off): anyone who can reach the ports can read and change everything");
        }
        const h0 = new JobHub(r.events, log, config.watchPollMs);
        draining.signal.addEventListener("abort", () => h0.close(), { once: true });
        const webhookPolicy = createUrlPolicy(config.webhooks.allow, WEBHOOK_URLS);
        const d0 = (deliverer = new WebhookDeliverer({ store: r.events, secrets, policy: webhookPolicy, log, now: () => Date.now() }, config.webhooks));
        // One LISTEN connection per process: other instances announce token, pipeline and
        // rule changes (drop what we cached) and owed webhook deliveries. (Watchers ride
        // the hub's poll of job events, see service/job-hub.ts.)
        const a = auth;
        tokenListener = startListener({
          connectionString: url,
          channels: [CHANNEL_TOKENS, CHANNEL_CONFIG, CHANNEL_WEBHOOKS],
          onNotify: (channel) => {
            if (channel === CHANNEL_WEBHOOKS) d0.kick();
            else if (channel === CHANNEL_TOKENS) a.invalidate();
            else r.config.invalidateConfig();
          },
          onReconnect: () => {
            a.invalidate();
            r.config.invalidateConfig();
            d0.kick();
          },
          log,
        });
        d0.start();
        let boundHttpPort = config.httpPort;
        const deps = {
          repo: r,
          objects,
          now: () => Date.now(),
          secrets,
          publicUrl: () => config.publicUrl ?? `http://localhost:${boundHttpPort}`,
          discoveryCreated: () => discoveries?.kick(),
          vectorIndex: (vectorIndex = new VectorIndex(r.vector, config.searchCacheBytes)),
          embedderFor: embedderFactory(config),
          embeddingModel: config.embeddings.url ? config.embeddings.model : undefined,
          hub: h0,
          webhooks: webhookPolicy,
          sourceEndpoints: createUrlPolicy(config.sourceAllow, SOURCE_ENDPOINTS),
          log,
        };
        const ready = async () => {
          await r.ping();
          return migrated && (await migrationsDone(r.pool));
        };
        const limiter = config.writeRatePerSecond > 0 ? createRateLimiter(config.writeRatePerSecond, config.writeBurst) : undefined;
        const entries = [
          registerService(IngestService, createIngestService(deps), log, auth, m, limiter),
          registerService(PipelineService, createPipelineService(deps), log, auth, m, limiter),
          registerService(StorageService, createStorageService(deps), log, auth, m, limiter),
          registerService(SourceService, createSourceService(deps), log, auth, m, limiter),
          registerService(VectorService, createVectorService(deps), log, auth, m, limiter),
        ];
        http = createHttpServer(entries, {
          log,
          metrics: createMetricsEndpoint({ registry: m.registry, log, auth: config.metricsAuth ? auth : undefined, stats: r.jobs }),
          openapi: buildOpenApi([...SERVICES], VERSION),
          corsOrigins: config.corsOrigins,
          maxBodyBytes: config.maxBodyBytes,
          shutdownSignal: shutdown.signal,
          drainSignal: draining.signal,
          bytePlane: createBytePlane({
            repo: r,
            objects,
            buckets: createBuckets(deps),
            auth,
            secrets,
            log,
            maxObjectBytes: config.worker.maxObjectBytes,
            readTimeoutMs: config.worker.readTimeoutMs,
            now: () => Date.now(),
          }),
          live: () => embedded?.live() ?? true,
          ready,
        });
        const h = http;
        await new Promise<void>((resolve, reject) => {
          h.once("error", (err) => reject(portInUse(err, config.httpPort, "K3_HTTP_PORT")));
          h.listen(config.httpPort, config.host, () => resolve());
        });
        grpc = createGrpcServer(entries, {
          ready,
          log,
          maxReceiveBytes: config.maxBodyBytes,
          shutdownSignal: shutdown.signal,
          reflectionAuth: config.auth && config.reflectionAuth ? auth : undefined,
        });
        grpcPort = await bindGrpc(grpc, config.host, config.grpcPort).catch((err: unknown) => {
          throw portInUse(err, config.grpcPort, "K3_GRPC_PORT");
        });
        httpPort = (h.address() as AddressInfo).port;
        boundHttpPort = httpPort;
      }
      if (runWorker) {
        // The worker has a pool of its own, so API load never queues its heartbeats and
        // final writes behind list calls (and a long write has no statement timeout to fear).
        workerRepo = serveApi
          ? new PgRepository({ connectionString: url, poolSize: config.dbWorkerPoolSize, statementTimeoutMs: 300_000, applicationName: "k3-ingest worker" })
          : r;
        const sources = createSourceObjects({ sync: workerRepo.sync, credentials: workerRepo.credentials, objects, secrets, dataDir: config.dataDir, endpoints: createUrlPolicy(config.sourceAllow, SOURCE_ENDPOINTS) });
        worker = new Worker(
          { repo: workerRepo, objects, objectsFor: (job) => sources.forJob(job), connectionString: url, embedder: embedderFactory(config), localEmbedding: !config.embeddings.url, log, metrics: m },
          config.worker,
        );
        worker.start();
        const healthFile = config.healthFile;
        if (healthFile) {
          const w = worker;
          healthTimer = setInterval(() => {
            if (w.healthy(3 * config.worker.pollMs + 10_000)) writeFileSync(healthFile, `${new Date().toISOString()}\n`);
          }, 2_000);
          healthTimer.unref();
        }
        discoveries = new DiscoveryRunner({ repo: workerRepo, sync: workerRepo.sync, sources, log }, config.discovery);
        discoveries.start();
      }
      log.info("k3-ingest started", {
        role: config.role,
        ...(serveApi ? { httpPort, grpcPort } : {}),
        database: embedded ? "embedded" : "DATABASE_URL",
      });
      return { httpPort, grpcPort };
    },
    async stop() {
      clearInterval(healthTimer);
      draining.abort();
      // Both doors stop accepting at once and drain their in-flight calls; calls still
      // running after the drain deadline are aborted (UNAVAILABLE) and their connections closed.
      const DRAIN_MS = 5000;
      const drainTimer = setTimeout(
        () => shutdown.abort(new ConnectError("the server is shutting down", Code.Unavailable)),
        DRAIN_MS,
      );
      const g = grpc;
      grpc = undefined;
      const h = http;
      http = undefined;
      await Promise.all([
        g &&
          new Promise<void>((resolve) => {
            const timer = setTimeout(() => {
              g.forceShutdown();
              resolve();
            }, DRAIN_MS + 500);
            g.tryShutdown(() => {
              clearTimeout(timer);
              resolve();
            });
          }),
        h &&
          new Promise<void>((resolve) => {
            h.close(() => resolve());
            h.closeIdleConnections();
            setTimeout(() => h.closeAllConnections(), DRAIN_MS + 500).unref();
          }),
      ]);
      clearTimeout(drainTimer);
      const d = discoveries;
      discoveries = undefined;
      await d?.stop();
      const w = worker;
      worker = undefined;
      await w?.stop();
      await vectorIndex?.close();
      vectorIndex = undefined;
      await deliverer?.stop();
      deliverer = undefined;
      await tokenListener?.stop();
      tokenListener = undefined;
      clearInterval(compactTimer);
      clearInterval(pruneTimer);
      const wr = workerRepo;
      workerRepo = undefined;
      if (wr && wr !== repo) await wr.close();
      const rp = repo;
      repo = undefined;
      await rp?.close();
      const e = embedded;
      embedded = undefined;
      await e?.stop();
    },
  };
}
