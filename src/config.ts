/** Configuration: the only module that reads environment variables. */
import type { DiscoveryConfig } from "./sync/discovery";
import { resolve } from "node:path";
import { checkCorsOrigins } from "./domain/cors";
import type { LogLevel } from "./log";
import type { WorkerConfig } from "./worker/worker";

/** What a process runs: the API and a worker (default), only the API, or only a worker. */
export type Role = "all" | "api" | "worker";

/** The validated, frozen configuration of one process. */
export interface Config {
  role: Role;
  /** Bearer-token auth on every door; off only for local experiments. */
  auth: boolean;
  /** Whether gRPC reflection needs a valid token too. */
  reflectionAuth: boolean;
  /** An S3-compatible upstream for object bytes (K3_S3_*); undefined keeps them under the data dir. */
  s3: { endpoint: string; bucket: string; region: string; accessKeyId: string; secretAccessKey: string } | undefined;
  /** The base URL clients reach the HTTP port at, for presigned URLs; unset: http://localhost:<port>. */
  publicUrl: string | undefined;
  /** Key sealing S3 secret access keys (base64 of 32 bytes); unset: `<dataDir>/secrets.key`. */
  secretsKey: string | undefined;
  /** Whether /metrics needs an admin token (and then shows that organization's job gauges). */
  metricsAuth: boolean;
  /** Write calls (trigger, cancel, changes) per second per token; 0 = no limit. */
  writeRatePerSecond: number;
  /** Burst of write calls a token may make above the rate. */
  writeBurst: number;
  /** PostgreSQL URL; undefined starts the embedded database. */
  databaseUrl: string | undefined;
  host: string;
  httpPort: number;
  grpcPort: number;
  dataDir: string;
  /** Port of the embedded PostgreSQL (only used without databaseUrl). */
  embeddedPgPort: number;
  /** A file a worker touches every few seconds while its claim loop reaches the database (for container healthchecks); unset: none. */
  healthFile: string | undefined;
  logLevel: LogLevel;
  /** Log lines kept in memory for ListIngestJobLogs (K3_LOG_LINES; 0 keeps none). */
  logLines: number;
  maxBodyBytes: number;
  dbPoolSize: number;
  /** PostgreSQL connections of the worker when it runs beside the API (its own pool). */
  dbWorkerPoolSize: number;
  /** How long start-up waits for an unreachable database before giving up (ms). */
  dbWaitMs: number;
  /** Finished jobs older than this (ms) are pruned; 0 keeps them forever. */
  jobRetentionMs: number;
  /** Job events older than this (ms) are pruned (resume points before them are refused); 0 keeps them. */
  eventRetentionMs: number;
  /** How often a process with watchers reads new job events (ms): their latency, at most. */
  watchPollMs: number;
  retentionIntervalMs: number;
  /** Origins whose web pages may call the API from a browser (K3_CORS_ORIGINS); empty: none (buckets' byte planes have their own rules). */
  corsOrigins: readonly string[];
  /** Hosts external S3 sources may reach (K3_SOURCE_ALLOW); empty: any but loopback and link-local. */
  sourceAllow: readonly string[];
  /** Webhook delivery: the host allow-list (K3_WEBHOOK_ALLOW), retry schedule base, attempts, POST timeout. */
  webhooks: { allow: readonly string[]; retryBaseMs: number; maxAttempts: number; timeoutMs: number };
  worker: WorkerConfig;
  /** Bytes of vectors each API instance keeps in memory for search (K3_SEARCH_CACHE_MB). */
  searchCacheBytes: number;
  /** Discoveries of sources: idle poll (at most 1 s, the scheduled-poll resolution), lease, batch size. */
  discovery: DiscoveryConfig;
  embeddings: {
    /** OpenAI-compatible endpoint; undefined uses the built-in local embedder. */
    url: string | undefined;
    apiKey: string | undefined;
    model: string;
    timeoutMs: number;
  };
}

function port(env: NodeJS.ProcessEnv, name: string, fallback: number): number {
  const raw = env[name];
  if (raw === undefined || raw === "") return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 0 || n > 65535) {
    throw new Error(`${name}=${JSON.stringify(raw)} is not a port number (0-65535)`);
  }
  return n;
}

function onOff(env: NodeJS.ProcessEnv, name: string, fallback: boolean): boolean {
  const raw = (env[name] ?? "").trim().toLowerCase();
  if (raw === "") return fallback;
  if (["on", "true", "1", "yes"].includes(raw)) return true;
  if (["off", "false", "0", "no"].includes(raw)) return false;
  throw new Error(`${name}=${JSON.stringify(env[name])} must be on or off`);
}

/** A comma-separated list (of hosts or origins: an allow-list); empty when unset. */
function hostList(env: NodeJS.ProcessEnv, name: string): string[] {
  return (env[name] ?? "").split(",").map((s) => s.trim()).filter((s) => s !== "");
}

function positiveInt(env: NodeJS.ProcessEnv, name: string, fallback: number): number {
  const raw = env[name];
  if (raw === undefined || raw === "") return fallback;
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n <= 0) throw new Error(`${name}=${JSON.stringify(raw)} must be a positive integer`);
  return n;
}

function nonNegative(env: NodeJS.ProcessEnv, name: string, fallback: number): number {
  const raw = env[name];
  if (raw === undefined || raw === "") return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < 0) throw new Error(`${name}=${JSON.stringify(raw)} must be a number, 0 or more`);
  return n;
}

/** K3_S3_ENDPOINT and its companions; all of endpoint, bucket and credentials, or none. */
function s3Upstream(env: NodeJS.ProcessEnv): Config["s3"] {
  const endpoint = env.K3_S3_ENDPOINT || "";
  if (!endpoint) return undefined;
  if (!/^https?:\/\//.test(endpoint)) throw new Error(`K3_S3_ENDPOINT=${JSON.stringify(endpoint)} must be an http(s) URL`);
  const need = (name: string) => {
    const v = env[name];
    if (!v) throw new Error(`${name} is required with K3_S3_ENDPOINT`);
    return v;
  };
  return {
    endpoint: endpoint.replace(/\/+$/, ""),
    bucket: need("K3_S3_BUCKET"),
    region: env.K3_S3_REGION || "us-east-1",
    accessKeyId: need("K3_S3_ACCESS_KEY_ID"),
    secretAccessKey: need("K3_S3_SECRET_ACCESS_KEY"),
  };
}

const LEVELS: readonly LogLevel[] = ["debug", "info", "warn", "error", "silent"];

/** A retention (K3_JOB_RETENTION, K3_EVENT_RETENTION): a duration like 30d, 12h, 90m or 45s; "off" or 0 keeps forever. */
function retention(env: NodeJS.ProcessEnv, name: string, fallbackMs: number): number {
  const raw = (env[name] ?? "").trim();
  if (raw === "") return fallbackMs;
  if (raw === "off" || raw === "0") return 0;
  const m = /^(\d+)([smhd])$/.exec(raw);
  if (!m) throw new Error(`${name}=${JSON.stringify(raw)} must look like 30d, 12h, 15m, 90s, or off`);
  return Number(m[1]) * { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] as "s" | "m" | "h" | "d"];
}

const ROLES: readonly Role[] = ["all", "api", "worker"];

/** Reads and validates the configuration; throws an Error naming the bad variable. */
export function loadConfig(env: NodeJS.ProcessEnv): Readonly<Config> {
  const role = (env.K3_ROLE || "all") as Role;
  if (!ROLES.includes(role)) throw new Error(`K3_ROLE=${JSON.stringify(env.K3_ROLE)} must be one of ${ROLES.join(", ")}`);
  const embeddingsUrl = env.K3_EMBEDDINGS_URL || undefined;
  if (embeddingsUrl && !/^https?:\/\//.test(embeddingsUrl)) {
    throw new Error(`K3_EMBEDDINGS_URL=${JSON.stringify(embeddingsUrl)} must be an http(s) URL`);
  }
  const logLevel = (env.K3_LOG_LEVEL || "info") as LogLevel;
  if (!LEVELS.includes(logLevel)) {
    throw new Error(`K3_LOG_LEVEL=${JSON.stringify(env.K3_LOG_LEVEL)} must be one of ${LEVELS.join(", ")}`);
  }
  return Object.freeze({
    databaseUrl: env.DATABASE_URL || undefined,
    host: env.K3_HOST || "0.0.0.0",
    httpPort: port(env, "K3_HTTP_PORT", 8080),
    grpcPort: port(env, "K3_GRPC_PORT", 50051),
    dataDir: resolve(env.K3_DATA_DIR || "./.k3-data"),
    embeddedPgPort: port(env, "K3_EMBEDDED_PG_PORT", 54329),
    healthFile: env.K3_HEALTH_FILE || undefined,
    logLevel,
    logLines: nonNegative(env, "K3_LOG_LINES", 10_000),
    maxBodyBytes: positiveInt(env, "K3_MAX_BODY_BYTES", 1024 * 1024),
    dbPoolSize: positiveInt(env, "K3_DB_POOL_SIZE", 10),
    dbWorkerPoolSize: positiveInt(env, "K3_DB_WORKER_POOL_SIZE", 6),
    dbWaitMs: positiveInt(env, "K3_DB_WAIT_MS", 60_000),
    jobRetentionMs: retention(env, "K3_JOB_RETENTION", 30 * 86_400_000),
    eventRetentionMs: retention(env, "K3_EVENT_RETENTION", 86_400_000),
    watchPollMs: positiveInt(env, "K3_WATCH_POLL_MS", 25),
    corsOrigins: checkCorsOrigins(hostList(env, "K3_CORS_ORIGINS")),
    sourceAllow: hostList(env, "K3_SOURCE_ALLOW"),
    webhooks: Object.freeze({
      allow: hostList(env, "K3_WEBHOOK_ALLOW"),
      retryBaseMs: positiveInt(env, "K3_WEBHOOK_RETRY_BASE_MS", 5_000),
      maxAttempts: positiveInt(env, "K3_WEBHOOK_MAX_ATTEMPTS", 8),
      timeoutMs: positiveInt(env, "K3_WEBHOOK_TIMEOUT_MS", 10_000),
    }),
    retentionIntervalMs: positiveInt(env, "K3_RETENTION_INTERVAL_MS", 60_000),
    role,
    auth: onOff(env, "K3_AUTH", true),
    reflectionAuth: onOff(env, "K3_REFLECTION_AUTH", false),
    metricsAuth: onOff(env, "K3_METRICS_AUTH", false),
    secretsKey: env.K3_SECRETS_KEY || undefined,
    s3: s3Upstream(env),
    publicUrl: env.K3_PUBLIC_URL ? env.K3_PUBLIC_URL.replace(/\/+$/, "") : undefined,
    writeRatePerSecond: nonNegative(env, "K3_WRITE_RATE_LIMIT", 0),
    writeBurst: positiveInt(env, "K3_WRITE_BURST", 100),
    worker: Object.freeze({
      concurrency: positiveInt(env, "K3_WORKER_CONCURRENCY", 4),
      leaseMs: positiveInt(env, "K3_LEASE_MS", 30_000),
      pollMs: positiveInt(env, "K3_POLL_MS", 2_000),
      maxAttempts: positiveInt(env, "K3_MAX_ATTEMPTS", 5),
      maxLostAttempts: positiveInt(env, "K3_MAX_LOST_ATTEMPTS", 2),
      retryBaseMs: positiveInt(env, "K3_RETRY_BASE_MS", 1_000),
      retryMaxMs: positiveInt(env, "K3_RETRY_MAX_MS", 300_000),
      graceMs: positiveInt(env, "K3_WORKER_GRACE_MS", 10_000),
      maxObjectBytes: positiveInt(env, "K3_MAX_OBJECT_BYTES", 100 * 1024 * 1024),
      readTimeoutMs: positiveInt(env, "K3_READ_TIMEOUT_MS", 30_000),
      limits: Object.freeze({
        parse: Object.freeze({
          maxTextChars: positiveInt(env, "K3_MAX_TEXT_CHARS", 16_000_000),
          maxRows: positiveInt(env, "K3_MAX_ROWS", 1_000_000),
        }),
        sandbox: Object.freeze({
          memoryMb: positiveInt(env, "K3_SANDBOX_MEMORY_MB", 256),
          concurrency: positiveInt(env, "K3_SANDBOX_CONCURRENCY", 2),
          // K3_PDF_TIMEOUT_MS is the earlier name of the same limit.
          timeoutMs: positiveInt(env, "K3_PARSE_TIMEOUT_MS", positiveInt(env, "K3_PDF_TIMEOUT_MS", 60_000)),
        }),
        inlineBytes: positiveInt(env, "K3_INLINE_PARSE_BYTES", 256 * 1024),
        maxVectorValues: positiveInt(env, "K3_MAX_VECTOR_VALUES", 16_777_216),
      }),
    }),
    searchCacheBytes: positiveInt(env, "K3_SEARCH_CACHE_MB", 1024) * 2 ** 20,
    discovery: Object.freeze({
      pollMs: Math.min(positiveInt(env, "K3_POLL_MS", 2_000), 1_000),
      leaseMs: positiveInt(env, "K3_LEASE_MS", 30_000),
      batchSize: positiveInt(env, "K3_DISCOVERY_BATCH", 1_000),
    }),
    embeddings: Object.freeze({
      url: embeddingsUrl,
      apiKey: env.K3_EMBEDDINGS_API_KEY || undefined,
      model: env.K3_EMBEDDINGS_MODEL || "text-embedding-3-small",
      timeoutMs: positiveInt(env, "K3_EMBEDDINGS_TIMEOUT_MS", 30_000),
    }),
  });
}

/** A start that cannot go on, said in one line that names what to change. */
export class StartupError extends Error {
  override name = "StartupError";
}

/** `err` as the one line "port N is in use; set VARIABLE" when it says the port is taken. */
export function portInUse(err: unknown, port: number, variable: string): unknown {
  const taken = (err as NodeJS.ErrnoException | undefined)?.code === "EADDRINUSE" || /EADDRINUSE|address already in use/i.test(String((err as Error | undefined)?.message));
  return taken ? new StartupError(`port ${port} is in use; set ${variable}`) : err;
}
